"""Run folders and stopping: file names, never-overwrite rules, and signals that only *request* a stop.

A training run lives in one folder (``--out``): ``config.json``, the resume checkpoint ``checkpoint.pt`` (weights,
optimiser, generators, step, data order) and, once finished, ``model.pt``. SIGINT and SIGTERM never interrupt a
step: :class:`StopRequest` records them, and the loop saves and exits at the next step boundary, so a resumed run
passes through exactly the states of an uninterrupted one. One process at a time writes a run folder
(:func:`holds_run_lock`, a lock from ``models.safe_output``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from models.errors import SettingsError
from models.safe_output import folder_lock, move_aside

T = TypeVar("T")
RUN_LOCK_WHAT = "training run"

RESUME_FILE = "checkpoint.pt"  # latest state, with optimiser and RNG, for --resume
FINAL_FILE = "model.pt"  # weights + card only, written when training completes
CONFIG_FILE = "config.json"  # the resolved TrainConfig, written when a run starts
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM) after saving its state at a step boundary."""

    def __init__(self, out: str | os.PathLike, step: int) -> None:
        super().__init__(f"training in {out} interrupted at step {step}; continue with --resume")
        self.out, self.step = Path(out), step


class _Stop(Exception):
    """A stop signal that arrived while a checkpoint was written (raised afterwards by :func:`signals_deferred`)."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class StopRequest:
    """A flag that SIGINT/SIGTERM set (while :meth:`installed`); the training loop polls it between steps.

    The handler only records the signal: it never raises and never prints (printing from a handler can itself
    fail mid-write), so no step, evaluation or checkpoint write is ever cut in half.
    """

    def __init__(self) -> None:
        self.reason: str | None = None

    def __bool__(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Ask the loop to stop at the next step boundary (the first reason is kept)."""
        if self.reason is None:
            self.reason = reason

    def request_signal(self, signum: int) -> None:
        """Ask to stop because of signal ``signum`` (recorded by name, e.g. SIGINT)."""
        self.request(signal.Signals(signum).name)

    def _handler(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - signal handler signature
        self.request_signal(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Route SIGINT and SIGTERM to this flag for the duration; previous handlers restored after.

        Outside the main thread (where Python cannot set handlers) it does nothing.
        """
        if not _in_main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handler) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def signals_deferred(reraise: bool = True) -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while a file is written, so a Ctrl-C never tears a save in half.

    Yields the list of signals that arrived meanwhile. With ``reraise`` the first is raised as ``_Stop`` once the
    block is done; otherwise the caller decides (e.g. forwards them to a :class:`StopRequest`). Outside the main
    thread it does nothing.
    """
    pending: list[int] = []
    if not _in_main_thread():
        yield pending
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending and reraise:
        raise _Stop(signal.Signals(pending[0]).name)


def run_files(out: str | os.PathLike) -> list[str]:
    """The checkpoint files of a run that ``out`` already holds (empty: no run there)."""
    return [name for name in (RESUME_FILE, FINAL_FILE) if (Path(out) / name).is_file()]


def claim_out(out: str | os.PathLike, resume: bool, force: bool) -> Path | None:
    """Make ``out`` ready for a new run without losing an earlier one.

    With ``resume`` nothing changes. A folder that holds a run is refused (SettingsError) unless ``force``, which
    moves it aside to ``<out>.old-<timestamp>`` (refused while another process trains there); returns that new
    path, or None when nothing was moved.
    """
    out = Path(out)
    found = run_files(out)
    if resume or not found:
        return None
    if not force:
        raise SettingsError(
            f"--out {out} already holds a training run ({', '.join(found)}); continue it with --resume, or pass "
            f"--force to move it aside to {out}.old-<timestamp> (nothing is deleted)"
        )
    with folder_lock(out, RUN_LOCK_WHAT):  # never move a live run's folder from under it
        return move_aside(out)


def holds_run_lock(train: Callable[..., T]) -> Callable[..., T]:
    """Decorate ``train(cfg, ...)`` so that it holds the lock of ``cfg.out`` for the whole run (rank 0 only, the
    one that writes): a second run, ``--resume`` or ``--force`` into a folder in use is refused (OutputInUse, one
    line naming the holder's pid); the lock of a process that died is taken over."""

    @functools.wraps(train)
    def locked(cfg: Any, *args: Any, **kwargs: Any) -> T:
        if int(os.environ.get("RANK", "0")) != 0:
            return train(cfg, *args, **kwargs)
        with folder_lock(cfg.out, RUN_LOCK_WHAT):
            return train(cfg, *args, **kwargs)

    return locked
