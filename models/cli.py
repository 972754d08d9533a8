"""What every command-line entry point shares: ``--version``, one thread flag, and clear errors.

Every CLI of the lab builds its parser with :func:`make_parser` (which adds ``--version``) and runs its
body through :func:`run_cli`, which turns the project's own exceptions (:class:`LabError` and its
subclasses: data set, checkpoint, zoo, settings) and OSErrors (a full disk, a read-only folder) into one line
on stderr and exit status 2, instead of a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from models.errors import LabError
from models.safe_output import describe_os_error
from models.version import version_string

EXIT_USAGE = 2  # bad input: the same status argparse uses for a bad flag
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM, state saved


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default once: ``(default: X)`` is appended unless the help text already states
    its default, and never for a default that says nothing (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default in ([], "", ())
        if empty or re.search(r"default:|\(default|%\(default\)", text):
            return text
        return super()._get_help_string(action) or text


def program_name(prog: str) -> str:
    """The name the user ran: the console script (``scl-train``) when started as one, else ``prog``."""
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return invoked if invoked.startswith("scl-") else prog


def make_parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` that shows each default once in ``--help`` and has ``--version`` (``<program> X.Y.Z``,
    the program named as it was started: ``scl-train --version`` prints ``scl-train 0.2.0``)."""
    kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
    parser = argparse.ArgumentParser(prog=program_name(prog), description=description, **kwargs)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version_string()}")
    return parser


def add_threads_argument(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """The one name of the CPU thread flag in every command: ``--num-threads`` (0 = torch's default)."""
    parser.add_argument("--num-threads", type=int, default=default, help="CPU threads for torch (0: torch's default)")


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI ``body``; a :class:`LabError`, or an OSError (a full disk, a read-only or missing folder), becomes
    ``error: <message>`` on stderr and exit status 2."""
    try:
        return body()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
