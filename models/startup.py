"""A Ctrl-C while a command is still starting (importing torch) ends with one line and exit 130, not a traceback.

Every command handles Ctrl-C itself once its ``main`` runs; before that, Python would print a KeyboardInterrupt
traceback from deep inside an import. The packages ``models`` and ``analysis`` call
:func:`quiet_interrupts_if_command` when imported: it changes nothing unless the process was started as one of
the lab's commands (``python -m models.<x>`` / ``python -m analysis.<x>`` or an ``scl-*`` script).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

EXIT_INTERRUPTED = 130  # as models.cli


def _quiet(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    # The hook stays installed after start-up; a command's own handler normally catches Ctrl-C first, and its
    # writes are staged (models.safe_output), so this line claims no more than that the command stopped.
    print("\ninterrupted (Ctrl-C); the command stopped", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def quiet_interrupts_if_command() -> bool:
    """Install the quiet Ctrl-C hook when this process runs a lab command; True when installed."""
    first = sys.argv[0] if sys.argv else ""
    if first != "-m" and not Path(first).name.startswith("scl-"):
        return False
    sys.excepthook = _quiet
    return True
