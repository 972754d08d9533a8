"""Nothing lost: every command that writes a folder or a file goes through this module.

The rule, one for all:

* a new output is written into a temporary sibling (``.<name>.tmp-<pid>-<token>``) and swapped in only when
  complete (:func:`replacing`: ``models.train_zoo``, ``models.import_model``, ``models.zoo``); what was there is
  kept as ``<name>.old-<UTC timestamp>`` (:func:`move_aside`), never deleted or written over in place. Outputs
  written piece by piece so that they can be resumed (a report, a training run) move an earlier one aside
  before they start (``analysis.report`` without ``--resume``, ``models.train --force``);
* the temporary sibling is removed on every exit path (error, Ctrl-C), and ones left by a process that no longer
  runs (``kill -9``) are removed by the next run (:func:`remove_stale_temps`);
* one writer at a time: :func:`folder_lock` holds an ``fcntl`` lock on ``.<name>.lock`` beside the output for the
  whole run; a second writer is refused with one line naming the holder's pid, and a lock left by a dead process
  is taken over (the kernel releases a dead process's lock).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from models.errors import LabError

TEMP_MARK = ".tmp-"
OLD_MARK = ".old-"


class OutputError(LabError):
    """An output that cannot be written (full disk, read-only folder) or that another process is writing."""


class OutputInUse(OutputError):
    """Another live process holds the lock of this output."""


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: what failed and where (``[Errno 28] No space left on device: 'x'``)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (signal 0 probes without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to ``<path>.old-<UTC timestamp>`` (never deletes); returns the new path."""
    path = Path(path)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    dest, n = path.with_name(f"{path.name}{OLD_MARK}{stamp}"), 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}{OLD_MARK}{stamp}-{n}")
    os.replace(path, dest)
    return dest


def temp_sibling(target: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``target``, marked with this process's pid (so leftovers can be told stale)."""
    target = Path(target)
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{target.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by processes that no longer run; returns them."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}(?:{re.escape(TEMP_MARK)}|\.)(\d+)[-.]")
    removed = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        found = pattern.match(path.name)
        if found and not pid_alive(int(found.group(1))):
            _remove(path)
            removed.append(path)
    return removed


@dataclass
class Staged:
    """An output being written: ``path`` (the temporary sibling) becomes ``target``; ``kept`` is where the earlier
    ``target`` went (None when there was none)."""

    target: Path
    path: Path
    kept: Path | None = None


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Block SIGINT and SIGTERM for the block (they are delivered right after it)."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def replacing(target: str | os.PathLike, folder: bool) -> Iterator[Staged]:
    """Write a new ``target`` (a folder, or a file) through a temporary sibling; swap it in when the block ends.

    The block writes into ``staged.path`` (an empty folder, created; or a file name, not created). On success an
    existing ``target`` is moved aside (``<target>.old-<timestamp>``; an empty folder is simply replaced) and the new
    one renamed into place; on any exception the temporary sibling is removed and ``target`` is untouched.
    """
    target = Path(target).expanduser()
    remove_stale_temps(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Staged(target, temp_sibling(target))
    try:
        if folder:
            staged.path.mkdir()
        yield staged
        if folder and not staged.path.is_dir() or not folder and not staged.path.is_file():
            raise OutputError(f"{target}: nothing was written")
        with _signals_held():  # a Ctrl-C never falls between moving the earlier output aside and the swap
            if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
                target.rmdir()
            elif target.exists() or target.is_symlink():
                staged.kept = move_aside(target)
            try:
                os.replace(staged.path, target)
            except OSError:
                if staged.kept is not None:  # put the earlier output back where it was
                    os.replace(staged.kept, target)
                    staged.kept = None
                raise
    finally:
        if staged.path.exists() or staged.path.is_symlink():
            _remove(staged.path)


# --- one writer at a time ----------------------------------------------------------------------------------------

_HELD: dict[str, list] = {}  # lock path -> [fd, depth]: a process may nest its own locks


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` beside it (so it survives the folder being moved or swapped)."""
    target = Path(os.path.abspath(Path(target).expanduser()))
    return target.with_name(f".{target.name}.lock")


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    found = re.search(r"pid (\d+)", text)
    return text if found else "pid unknown"


def _acquire(path: Path, target: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):  # retry when the file was replaced between our open and our lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputInUse(
                f"{target} is in use by another process ({_holder(path)}); wait for it to end, or write elsewhere"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}, a {what}, since {stamp}\n".encode())
            return fd
        os.close(fd)
    raise OutputInUse(f"{target}: could not take the lock {path}")


@contextlib.contextmanager
def folder_lock(target: str | os.PathLike, what: str = "writer") -> Iterator[Path]:
    """Hold the lock of ``target`` for the block; OutputInUse (one line naming the holder's pid) when another live
    process holds it. A lock left by a dead process is taken over; nested use in one process is allowed."""
    target = Path(target).expanduser()
    path = lock_path(target)
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        _HELD[key] = [_acquire(path, target, what), 1]
    try:
        yield path
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            fd = _HELD.pop(key)[0]
            with contextlib.suppress(OSError):
                path.unlink()  # while still locked, so no one else holds this very file
            os.close(fd)
