"""A job runner for heavy work: thread pools per (kind, device), progress, cancellation, fairness and quotas.

Framework-free, so the dashboard's server (``app.jobs.get_runner``) and the compute backend's job endpoints
(``analysis.service_jobs``) run the same one. Work is submitted as a job of kind ``"light"`` (predictions,
GradCAM) or ``"heavy"`` (Integrated Gradients, LIME); each kind runs in its own
``concurrent.futures.ThreadPoolExecutor`` per device, so a light request never queues behind a heavy one. A job
function is called as ``fn(job, *args, **kwargs)``; long work reports its fraction done with ``job.report(f)`` and
asks ``job.should_stop()`` between chunks (``job.check()`` raises :class:`Cancelled`).

Fairness: a pool is handed a job only when one of its workers is free, and the runner picks it: jobs put first
(:meth:`JobRunner.put_first`: a shown level) before the rest, and among those the session served least recently,
its oldest job first. So sessions take turns: one session's queue of LIME jobs never starves another's.
:meth:`JobRunner.position` says how many queued jobs go before a job. Quotas (:class:`HeavyQuota`): a session's
heavy jobs beyond ``running`` at once wait their turn; more than ``per_minute`` new ones in 60 s are refused with
:class:`QuotaExceeded` (a message for the user, not an error).

Jobs are keyed (``key=``): submitting a key that is queued, running or done returns the same job and adds the
session to its owners. A session gives jobs up with :meth:`JobRunner.release` or :meth:`JobRunner.close_session`;
a job with no owner left is cancelled if still pending and forgotten with its result, so memory returns to its
baseline when sessions close. A sweeper thread closes sessions that no longer exist (``is_alive``; default: a
heartbeat, :meth:`JobRunner.touch`, seen within ``heartbeat_ttl_s``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from analysis.jobs_protocol import Cancelled, HeavyQuota, QuotaExceeded

__all__ = ["Cancelled", "HeavyQuota", "Job", "JobProgress", "JobRunner", "QuotaExceeded", "overall_progress"]

Kind = Literal["light", "heavy"]
PENDING: tuple[str, ...] = ("queued", "running")
HEARTBEAT_TTL_S = 900.0  # a session not seen for this long is gone (without a better ``is_alive``)
SWEEP_S = 15.0  # how often the sweeper looks for sessions that have gone
MINUTE_S = 60.0


class JobProgress(NamedTuple):
    """Fraction done in [0, 1] and an estimate of the seconds left (None before any progress)."""

    fraction: float
    remaining_s: float | None


@dataclass(eq=False)
class Job:
    """One submitted computation: its state, progress, result or error, and who asked for it (``session``: the
    first, whose turn it runs in)."""

    id: int
    kind: str
    label: str
    key: Hashable | None = None
    group: Hashable | None = None
    session: str = ""
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
    _call: tuple = field(default=(), repr=False)  # (fn, args, kwargs, device)
    _runner: JobRunner | None = field(default=None, repr=False)
    _seq: int = field(default=0, repr=False)  # its place in its session's queue (requeue renumbers)
    _first: bool = field(default=False, repr=False)  # put first: ahead of every job not put first

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

    @property
    def position(self) -> int | None:
        """How many queued jobs of its pool go before it (None once it has started or finished)."""
        runner = self._runner
        return runner.position(self) if runner is not None else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (done, failed or cancelled); False on timeout."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Stop the job: a queued one never starts, a running one stops at its next chunk; its result is dropped."""
        self._stop.set()
        runner = self._runner
        if runner is not None:
            runner._unqueue(self)
        future = self._future
        if future is not None and future.cancel():  # handed to its pool but not started
            self._finish("cancelled")
        if self.state != "running" and runner is not None:  # a running one is forgotten when it stops
            runner._forget(self)
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
    """Thread pools per (kind, device) fed in turn across sessions, keyed jobs with owner sessions, per-session
    quotas on heavy jobs (``quota``; None: none) and a sweeper for sessions that left."""

    def __init__(
        self,
        light_workers: int | None = None,
        heavy_workers: int = 1,
        is_alive: Callable[[str], bool] | None = None,
        sweep_s: float | None = SWEEP_S,
        on_release: Callable[[], None] | None = None,
        quota: HeavyQuota | None = None,
        heartbeat_ttl_s: float = HEARTBEAT_TTL_S,
    ) -> None:
        self._workers = {"light": light_workers or max(2, min(4, os.cpu_count() or 2)), "heavy": int(heavy_workers)}
        self.quota = quota
        self._ttl = float(heartbeat_ttl_s)
        self._pools: dict[tuple[str, str], concurrent.futures.ThreadPoolExecutor] = {}
        self._queues: dict[tuple[str, str], list[Job]] = collections.defaultdict(list)  # not yet handed to a pool
        self._active: collections.Counter = collections.Counter()  # (kind, device) -> jobs handed to its pool
        self._running: collections.Counter = collections.Counter()  # session -> its heavy jobs handed to a pool
        self._served: dict[tuple[str, str], dict[str, int]] = collections.defaultdict(dict)  # session -> last turn
        self._asked: dict[str, collections.deque] = collections.defaultdict(collections.deque)  # heavy submit times
        self._jobs: dict[int, Job] = {}
        self._by_key: dict[Hashable, Job] = {}
        self._seen: dict[str, float] = {}  # session -> last heartbeat (monotonic)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._turns = itertools.count(1)
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

    def _check_quota(self, session_id: str) -> None:
        """Count one new heavy job of ``session_id`` against ``quota.per_minute``; QuotaExceeded when full."""
        limit = self.quota.per_minute if self.quota is not None else 0
        if not limit:
            return
        asked, now = self._asked[session_id], time.monotonic()
        while asked and now - asked[0] >= MINUTE_S:
            asked.popleft()
        if len(asked) >= limit:
            retry = MINUTE_S - (now - asked[0])
            raise QuotaExceeded(f"This session has asked for {len(asked)} heavy maps in the last minute, the most "
                                f"this server allows; the rest are asked for again in about {retry:.0f} s.",
                                retry)  # fmt: skip
        asked.append(now)

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
        """Run ``fn(job, *args, **kwargs)`` in the ``kind`` pool of ``device`` in the session's turn; returns its
        :class:`Job`. A ``key`` already queued, running or done returns that job (the session becomes one of its
        owners). A new heavy job beyond the session's per-minute quota raises :class:`QuotaExceeded`."""
        with self._lock:
            self._pool(kind, device)
            self.touch(session_id)
            if key is not None:
                known = self._by_key.get(key)
                if known is not None and known.state in ("queued", "running", "done") and not known.should_stop():
                    known.owners.add(session_id)
                    return known
            if kind == "heavy":
                self._check_quota(session_id)
            job = Job(next(self._ids), kind, label, key=key, group=group, session=session_id, owners={session_id})
            self._jobs[job.id] = job
            if key is not None:
                self._by_key[key] = job
            job._call, job._runner, job._seq = (fn, args, kwargs, device), self, next(self._ids)
            self._queues[(kind, device)].append(job)
            self._dispatch((kind, device))
            return job

    def _eligible(self, queue: list[Job], running: collections.Counter) -> list[Job]:
        """The queued jobs that may go next: not held back by their session's running quota, put-first ones only
        when there are any."""
        limit = self.quota.running if self.quota is not None else 0
        ok = [j for j in queue if j.kind != "heavy" or not limit or running[j.session] < limit]
        first = [j for j in ok if j._first]
        return first or ok

    @staticmethod
    def _next(eligible: list[Job], served: dict[str, int]) -> Job:
        """The oldest job of the session served least recently (never served: by its oldest job)."""
        oldest: dict[str, Job] = {}
        for job in eligible:
            if job.session not in oldest or job._seq < oldest[job.session]._seq:
                oldest[job.session] = job
        session = min(oldest, key=lambda s: (served.get(s, 0), oldest[s]._seq))
        return oldest[session]

    def _dispatch(self, pool_key: tuple[str, str]) -> None:
        """Hand queued jobs to the pool while it has a free worker, in turn (see the module's docstring)."""
        kind, _ = pool_key
        with self._lock:
            queue = self._queues[pool_key]
            while queue and self._active[pool_key] < self._workers[kind] and not self._closed.is_set():
                eligible = self._eligible(queue, self._running)
                if not eligible:
                    return
                job = self._next(eligible, self._served[pool_key])
                queue.remove(job)
                self._served[pool_key][job.session] = next(self._turns)
                self._active[pool_key] += 1
                if kind == "heavy":
                    self._running[job.session] += 1
                job._future = self._pools[pool_key].submit(self._run, job)
                job._future.add_done_callback(lambda _f, j=job: self._handed_back(j, pool_key))

    def _handed_back(self, job: Job, pool_key: tuple[str, str]) -> None:
        with self._lock:
            self._active[pool_key] -= 1
            if job.kind == "heavy":
                self._running[job.session] -= 1
                if self._running[job.session] <= 0:
                    del self._running[job.session]
            self._dispatch(pool_key)

    def _run(self, job: Job) -> None:
        fn, args, kwargs, _ = job._call
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
        """Put the queued ones of ``jobs`` at the back of their sessions' queues in the given order (no longer put
        first); running and finished jobs are left alone. Returns how many were moved."""
        moved = 0
        with self._lock:
            for job in jobs:
                if job.state == "queued" and not job.should_stop() and job in self._queues[(job.kind, job._call[3])]:
                    job._seq, job._first = next(self._ids), False
                    moved += 1
        return moved

    def put_first(self, jobs: Iterable[Job]) -> int:
        """Move the queued ones of ``jobs`` ahead of every queued job not put first (any session's), in the given
        order: a session's new shown level goes before everyone's background work (sessions put first still take
        turns). Returns how many were moved."""
        with self._lock:
            first = [j for j in jobs if j.state == "queued"]
            moved = self.requeue(first)
            for job in first:
                if job in self._queues[(job.kind, job._call[3])]:
                    job._first = True
            return moved

    # ------------------------------------------------------------------ reading
    def queue_order(self, kind: str = "heavy", device: str = "cpu") -> list[Job]:
        """The queued jobs of one pool in the order they will start if nothing changes (running quotas aside)."""
        with self._lock:
            queue = list(self._queues.get((kind, device), ()))
            served = dict(self._served.get((kind, device), {}))
            order = []
            while queue:
                first = [j for j in queue if j._first]
                job = self._next(first or queue, served)
                served[job.session] = next(self._turns)
                queue.remove(job)
                order.append(job)
            return order

    def position(self, job: Job) -> int | None:
        """How many queued jobs of its pool start before ``job`` (None once it has left the queue)."""
        with self._lock:
            if job.state != "queued" or not job._call or job not in self._queues.get((job.kind, job._call[3]), ()):
                return None
            return self.queue_order(job.kind, job._call[3]).index(job)

    def find(self, key: Hashable) -> Job | None:
        """The job under ``key`` (queued, running, done or failed), if any."""
        with self._lock:
            return self._by_key.get(key)

    def get(self, job_id: int) -> Job | None:
        """The job of this id, while the runner holds it."""
        with self._lock:
            return self._jobs.get(int(job_id))

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
            self._asked.pop(session_id, None)
        return self.release(session_id)

    def _unqueue(self, job: Job) -> None:
        """A cancelled job that no pool has been handed yet: out of its queue, finished as cancelled."""
        with self._lock:
            if job._call:
                queue = self._queues.get((job.kind, job._call[3]))
                if queue is not None and job in queue:
                    queue.remove(job)
                    job._finish("cancelled")

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            if job.key is not None and self._by_key.get(job.key) is job:
                del self._by_key[job.key]
            job.result = None

    def sweep(self) -> int:
        """Close every session that no longer exists (``is_alive``); returns how many were closed."""
        is_alive = self._is_alive or self._heartbeat_alive
        gone = [sid for sid in self.sessions() if not is_alive(sid)]
        for sid in gone:
            self.close_session(sid)
        return len(gone)

    def _heartbeat_alive(self, session_id: str) -> bool:
        seen = self._seen.get(session_id)
        return seen is not None and time.monotonic() - seen < self._ttl

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
