"""What every command-line entry point shares: ``--version``, one thread flag, and clear errors.

Every CLI of the lab builds its parser with :func:`make_parser` (which adds ``--version``) and runs its
body through :func:`run_cli`, which turns the project's own exceptions (:class:`LabError` and its
subclasses: data set, checkpoint, zoo, settings) into one line on stderr and exit status 2, instead of
a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from models.errors import LabError
from models.version import version_string

EXIT_USAGE = 2  # bad input: the same status argparse uses for a bad flag
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM, state saved


def make_parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` that shows defaults in ``--help`` and has ``--version``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version_string()}")
    return parser


def add_threads_argument(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """The one name of the CPU thread flag in every command: ``--num-threads`` (0 = torch's default)."""
    parser.add_argument("--num-threads", type=int, default=default, help="CPU threads for torch (0: torch's default)")


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI ``body``; a :class:`LabError` becomes ``error: <message>`` on stderr and exit status 2."""
    try:
        return body()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
