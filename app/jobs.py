"""The server's job runner: heavy work off the page script, with progress, cancellation and per-session cleanup.

One :class:`JobRunner` per server process (:func:`get_runner`). Work is submitted as a job of kind ``"light"``
(predictions, GradCAM) or ``"heavy"`` (Integrated Gradients, LIME); each kind runs in its own
``concurrent.futures.ThreadPoolExecutor`` per device, so a light request never queues behind another session's
heavy one. A job function is called as ``fn(job, *args, **kwargs)``; long work reports its fraction done with
``job.report(f)`` and asks ``job.should_stop()`` between chunks (``job.check()`` raises :class:`Cancelled`).

Jobs are keyed (``key=``): submitting a key that is queued, running or done returns the same job and adds the
session to its owners, so sessions share what they both asked for. A session gives jobs up with
:meth:`JobRunner.release` (a new image: its stale jobs are cancelled) or :meth:`JobRunner.close_session` (it left);
a job with no owner left is cancelled if still pending and forgotten with its result, so memory returns to its
baseline when sessions close. A sweeper thread closes sessions that no longer exist (``is_alive``:
:func:`streamlit_session_alive` by default).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

try:  # the protocol the analysis functions raise when their ``should_stop`` says so
    from analysis.jobs_protocol import Cancelled
except ImportError:  # pragma: no cover - before analysis/jobs_protocol.py existed

    class Cancelled(Exception):  # noqa: N818 - the name says what happened
        """A computation stopped between chunks because it was asked to."""


__all__ = ["Cancelled", "Job", "JobProgress", "JobRunner", "current_session_id", "get_runner", "overall_progress",
           "reset_runner"]  # fmt: skip

Kind = Literal["light", "heavy"]
State = Literal["queued", "running", "done", "failed", "cancelled"]
PENDING: tuple[str, ...] = ("queued", "running")
HEARTBEAT_TTL_S = 900.0  # without a Streamlit runtime (AppTest, scripts): a session not seen for this long is gone
SWEEP_S = 15.0  # how often the sweeper looks for sessions that have gone


class JobProgress(NamedTuple):
    """Fraction done in [0, 1] and an estimate of the seconds left (None before any progress)."""

    fraction: float
    remaining_s: float | None


@dataclass(eq=False)
class Job:
    """One submitted computation: its state, progress, result or error, and who asked for it."""

    id: int
    kind: str
    label: str
    key: Hashable | None = None
    group: Hashable | None = None
    owners: set[str] = field(default_factory=set)
    state: str = "queued"
    result: Any = None
    error: BaseException | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _fraction: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _future: concurrent.futures.Future | None = field(default=None, repr=False)
    _call: tuple = field(default=(), repr=False)  # (fn, args, kwargs, device): what a requeue submits again
    _forget: Callable[[Job], None] | None = field(default=None, repr=False)  # the runner's, set on submit
    _seq: int = field(default=0, repr=False)  # when it was (re)queued: the order its pool will run it in

    # -- what the job function calls
    def report(self, fraction: float) -> None:
        """Record the fraction done (clipped to [0, 1]; never goes back)."""
        self._fraction = max(self._fraction, min(1.0, max(0.0, float(fraction))))

    def should_stop(self) -> bool:
        """True once the job was cancelled: stop at the next chunk boundary."""
        return self._stop.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when the job was cancelled (call between chunks)."""
        if self._stop.is_set():
            raise Cancelled(f"{self.label or 'job'} cancelled")

    # -- what the page reads
    @property
    def pending(self) -> bool:
        return self.state in PENDING

    @property
    def progress(self) -> JobProgress:
        """Fraction done and the estimated seconds left, from the rate since the job started."""
        f = 1.0 if self.state == "done" else self._fraction
        if self.state != "running" or self.started is None or f <= 0:
            return JobProgress(f, 0.0 if self.state == "done" else None)
        elapsed = time.monotonic() - self.started
        return JobProgress(f, elapsed * (1 - f) / f)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (done, failed or cancelled); False on timeout."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Stop the job: a queued one never starts, a running one stops at its next chunk; its result is dropped."""
        self._stop.set()
        future = self._future
        if future is not None and future.cancel():  # it had not started
            self._finish("cancelled")
        if self.state != "running" and self._forget is not None:  # a running one is forgotten when it stops
            self._forget(self)
        self.result = None

    def _finish(self, state: str, result: Any = None, error: BaseException | None = None) -> None:
        self.state, self.result, self.error = state, result, error
        if state == "done":
            self._fraction = 1.0
        self.finished = time.monotonic()
        self._done.set()


def overall_progress(jobs: Iterable[Job]) -> JobProgress:
    """Progress of a set of jobs: the mean fraction, and seconds left from the rate since the first one started."""
    jobs = [j for j in jobs if j.state != "cancelled"]
    if not jobs:
        return JobProgress(1.0, 0.0)
    fraction = sum(j.progress.fraction for j in jobs) / len(jobs)
    starts = [j.started for j in jobs if j.started is not None]
    if fraction >= 1.0:
        return JobProgress(1.0, 0.0)
    if not starts or fraction <= 0:
        return JobProgress(fraction, None)
    elapsed = time.monotonic() - min(starts)
    return JobProgress(fraction, elapsed * (1 - fraction) / fraction)


class JobRunner:
    """Thread pools per (kind, device), keyed jobs with owner sessions, and a sweeper for sessions that left."""

    def __init__(
        self,
        light_workers: int | None = None,
        heavy_workers: int = 1,
        is_alive: Callable[[str], bool] | None = None,
        sweep_s: float | None = SWEEP_S,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self._workers = {"light": light_workers or max(2, min(4, os.cpu_count() or 2)), "heavy": int(heavy_workers)}
        self._pools: dict[tuple[str, str], concurrent.futures.ThreadPoolExecutor] = {}
        self._jobs: dict[int, Job] = {}
        self._by_key: dict[Hashable, Job] = {}
        self._seen: dict[str, float] = {}  # session -> last heartbeat (monotonic)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._is_alive = is_alive
        self._on_release = on_release
        self._closed = threading.Event()
        self._sweeper = None
        if sweep_s:
            self._sweeper = threading.Thread(target=self._sweep_loop, args=(float(sweep_s),), daemon=True,
                                             name="scl-job-sweeper")  # fmt: skip
            self._sweeper.start()

    # ------------------------------------------------------------------ submitting
    def _pool(self, kind: str, device: str) -> concurrent.futures.ThreadPoolExecutor:
        if kind not in self._workers:
            raise ValueError(f"job kind must be 'light' or 'heavy', got {kind!r}")
        pool = self._pools.get((kind, device))
        if pool is None:
            pool = self._pools[(kind, device)] = concurrent.futures.ThreadPoolExecutor(
                self._workers[kind], thread_name_prefix=f"scl-{kind}-{device}"
            )
        return pool

    def submit(
        self,
        session_id: str,
        kind: Kind,
        fn: Callable[..., Any],
        *args: Any,
        key: Hashable | None = None,
        group: Hashable | None = None,
        label: str = "",
        device: str = "cpu",
        **kwargs: Any,
    ) -> Job:
        """Run ``fn(job, *args, **kwargs)`` in the ``kind`` pool of ``device``; returns its :class:`Job`.

        A ``key`` already queued, running or done returns that job (the session becomes one of its owners)."""
        with self._lock:
            pool = self._pool(kind, device)
            self.touch(session_id)
            if key is not None:
                known = self._by_key.get(key)
                if known is not None and known.state in ("queued", "running", "done") and not known.should_stop():
                    known.owners.add(session_id)
                    return known
            job = Job(next(self._ids), kind, label, key=key, group=group, owners={session_id})
            self._jobs[job.id] = job
            if key is not None:
                self._by_key[key] = job
            job._call, job._forget, job._seq = (fn, args, kwargs, device), self._forget, next(self._ids)
            job._future = pool.submit(self._run, job, fn, args, kwargs)
            return job

    def _run(self, job: Job, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        if job.should_stop():
            job._finish("cancelled")
            self._forget(job)
            return
        job.state, job.started = "running", time.monotonic()
        try:
            result = fn(job, *args, **kwargs)
        except BaseException as exc:  # a job's failure is its own: kept on the job, never raised in the pool
            if job.should_stop() or isinstance(exc, Cancelled):
                job._finish("cancelled")
                self._forget(job)
            else:
                job._finish("failed", error=exc)
            return
        if job.should_stop():
            job._finish("cancelled")
            self._forget(job)
        else:
            job._finish("done", result)

    def requeue(self, jobs: Iterable[Job]) -> int:
        """Put the queued ones of ``jobs`` at the back of their pool's queue in the given order (the shown level
        first); running and finished jobs are left alone. Returns how many were moved."""
        moved = 0
        with self._lock:
            for job in jobs:
                future = job._future
                if job.state != "queued" or future is None or job.should_stop() or not future.cancel():
                    continue
                fn, args, kwargs, device = job._call  # the cancelled future is dropped; a new one runs the job
                job._seq = next(self._ids)
                job._future = self._pool(job.kind, device).submit(self._run, job, fn, args, kwargs)
                moved += 1
        return moved

    def put_first(self, jobs: Iterable[Job]) -> int:
        """Move the queued ones of ``jobs`` ahead of every other queued job of their kind (any session's), keeping
        the others' order: a session's new shown level goes before everyone's background work."""
        with self._lock:
            first = [j for j in jobs if j.state == "queued"]
            kinds = {j.kind for j in first}
            ids = {j.id for j in first}
            rest = [j for j in self._jobs.values() if j.kind in kinds and j.state == "queued" and j.id not in ids]
            rest.sort(key=lambda j: j._seq)
            return self.requeue(first + rest)

    # ------------------------------------------------------------------ reading
    def find(self, key: Hashable) -> Job | None:
        """The job under ``key`` (queued, running, done or failed), if any."""
        with self._lock:
            return self._by_key.get(key)

    def session_jobs(self, session_id: str, group: Hashable | None = None) -> list[Job]:
        """The jobs ``session_id`` owns (of one group, if given), oldest first."""
        with self._lock:
            return [j for j in self._jobs.values() if session_id in j.owners and (group is None or j.group == group)]

    def sessions(self) -> set[str]:
        with self._lock:
            return set(self._seen) | {s for j in self._jobs.values() for s in j.owners}

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    # ------------------------------------------------------------------ giving jobs up
    def touch(self, session_id: str) -> None:
        """A heartbeat: the session is alive now."""
        self._seen[session_id] = time.monotonic()

    def release(self, session_id: str, keep: Callable[[Job], bool] = lambda job: False) -> int:
        """The session gives up every job it owns except those ``keep`` accepts; a job left with no owner is
        cancelled (if pending) and forgotten with its result. Returns how many jobs were dropped."""
        dropped = []
        with self._lock:
            for job in list(self._jobs.values()):
                if session_id in job.owners and not keep(job):
                    job.owners.discard(session_id)
                    if not job.owners:
                        job.cancel()
                        dropped.append(job)
        if dropped and self._on_release is not None:
            self._on_release()
        return len(dropped)

    def close_session(self, session_id: str) -> int:
        """The session has gone: release all its jobs and forget it."""
        with self._lock:
            self._seen.pop(session_id, None)
        return self.release(session_id)

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            if job.key is not None and self._by_key.get(job.key) is job:
                del self._by_key[job.key]
            job.result = None

    def sweep(self) -> int:
        """Close every session that no longer exists (``is_alive``); returns how many were closed."""
        is_alive = self._is_alive or (lambda sid: self._heartbeat_alive(sid))
        gone = [sid for sid in self.sessions() if not is_alive(sid)]
        for sid in gone:
            self.close_session(sid)
        return len(gone)

    def _heartbeat_alive(self, session_id: str) -> bool:
        seen = self._seen.get(session_id)
        return seen is not None and time.monotonic() - seen < HEARTBEAT_TTL_S

    def _sweep_loop(self, every_s: float) -> None:
        while not self._closed.wait(every_s):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the sweeper must outlive one bad check
                pass

    def shutdown(self) -> None:
        """Cancel every job and stop the pools and the sweeper (tests; server exit)."""
        self._closed.set()
        with self._lock:
            jobs = list(self._jobs.values())
            for job in jobs:
                job.owners.clear()
                job.cancel()
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


def current_session_id() -> str:
    """The Streamlit session this script run belongs to ('no-session' outside a script run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "no-session"


def streamlit_session_alive(session_id: str) -> bool:
    """Is this Streamlit session still connected? (The runtime's session manager; without a runtime, e.g. under
    AppTest, a heartbeat seen in the last ``HEARTBEAT_TTL_S`` seconds.)"""
    from streamlit.runtime import Runtime

    if Runtime.exists():
        return Runtime.instance().is_active_session(session_id)
    runner = _RUNNER
    return runner is not None and runner._heartbeat_alive(session_id)


_RUNNER: JobRunner | None = None
_RUNNER_GUARD = threading.Lock()


def get_runner() -> JobRunner:
    """The server's job runner (made on first use; its results are freed as sessions close)."""
    global _RUNNER
    with _RUNNER_GUARD:
        if _RUNNER is None:
            from app import long_lived

            _RUNNER = JobRunner(is_alive=streamlit_session_alive, on_release=long_lived.trim)
        return _RUNNER


def reset_runner() -> None:
    """Shut the server's runner down (every job cancelled); the next :func:`get_runner` makes a fresh one."""
    global _RUNNER
    with _RUNNER_GUARD:
        runner, _RUNNER = _RUNNER, None
    if runner is not None:
        runner.shutdown()
