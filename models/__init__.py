from models.startup import quiet_interrupts_if_command as _quiet_interrupts

_quiet_interrupts()  # only when run as a command: a Ctrl-C during start-up is one line, not a traceback
