"""The compute backend's heavy map requests as jobs: submit, progress, cancel, result, across the wire.

A client submits a ``MapsRequest`` and gets a job id; it then asks for the job's status (state, fraction done,
seconds left, queue position) until it is done and fetches the result once, or cancels it. The jobs run in an
``analysis.job_runner.JobRunner`` (clients take turns, per-client quotas), calling ``compute(request, progress,
should_stop)``. The service survives a client going away: a job nobody has asked about for ``orphan_timeout_s``
is cancelled and forgotten (a sweeper thread), as is a job whose result was fetched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from analysis.job_runner import Job, JobRunner
from analysis.jobs_protocol import HeavyQuota

__all__ = ["ORPHAN_TIMEOUT_S", "ServiceJobs", "UnknownJob"]

ORPHAN_TIMEOUT_S = 30.0  # a client polls every fraction of a second: this long without a poll, it has gone

Compute = Callable[[Any, Callable[[float], None], Callable[[], bool]], Any]


class UnknownJob(KeyError):
    """A job id the service does not hold (finished and fetched, cancelled, orphaned, or the service restarted)."""


class ServiceJobs:
    """Jobs of one zoo's service (framework-free: the Ray Serve deployment and tests call it alike)."""

    def __init__(self, compute: Compute, workers: int = 1, quota: HeavyQuota | None = None,
                 orphan_timeout_s: float = ORPHAN_TIMEOUT_S, sweep_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        """``sweep_s``: how often the sweeper runs (default a quarter of the timeout; 0: no sweeper, call
        :meth:`sweep`); ``clock``: seconds, monotonic (tests pass their own)."""
        self.compute, self.clock = compute, clock
        self.orphan_timeout_s = float(orphan_timeout_s)
        self.runner = JobRunner(light_workers=1, heavy_workers=int(workers), quota=quota, sweep_s=None,
                                heartbeat_ttl_s=self.orphan_timeout_s)  # fmt: skip
        self._polled: dict[int, float] = {}
        self._counts = {"submitted": 0, "done": 0, "cancelled": 0, "failed": 0, "orphaned": 0, "running": 0}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        every = sweep_s if sweep_s is not None else min(15.0, max(0.2, self.orphan_timeout_s / 4))
        if every:
            threading.Thread(target=self._sweep_loop, args=(every,), daemon=True, name="scl-service-jobs").start()

    def _run(self, job: Job, request: Any) -> Any:
        self._count("running")
        try:
            result = self.compute(request, job.report, job.should_stop)
        except BaseException:
            self._count("cancelled" if job.should_stop() else "failed")
            raise
        else:
            self._count("cancelled" if job.should_stop() else "done")
        finally:
            self._count("running", -1)
        return result

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] = self._counts.get(what, 0) + n

    def stats(self) -> dict[str, int]:
        """Jobs submitted, done, cancelled (stopped while computing), failed and orphaned (given up by the sweeper
        while pending) so far; ``running``: computations going on now (a cancelled one until it has stopped)."""
        with self._lock:
            return {"running": 0, "failed": 0, **self._counts}

    def _job(self, job_id: int) -> Job:
        job = self.runner.get(int(job_id))
        if job is None:
            raise UnknownJob(f"job {int(job_id)} is not on this backend (finished and fetched, cancelled, given up "
                             "after its client stopped asking, or the backend restarted)")  # fmt: skip
        with self._lock:
            self._polled[job.id] = self.clock()
        self.runner.touch(job.session)
        return job

    def submit(self, client: str, request: Any) -> dict[str, Any]:
        """A new job computing ``request`` in ``client``'s turn; its status (QuotaExceeded past the quota)."""
        client = client or "anonymous"
        label = f"{getattr(request, 'method', 'maps')} {getattr(request, 'variant', '')}".strip()
        job = self.runner.submit(client, "heavy", self._run, request, label=label)
        self._count("submitted")
        with self._lock:
            self._polled[job.id] = self.clock()
        return self.describe(job)

    def describe(self, job: Job) -> dict[str, Any]:
        fraction, remaining = job.progress
        return {"job": job.id, "state": job.state, "fraction": fraction, "remaining_s": remaining,
                "position": job.position, "error": None if job.error is None else
                f"{type(job.error).__name__}: {job.error}"}  # fmt: skip

    def status(self, job_id: int) -> dict[str, Any]:
        """The job's state, fraction done, seconds left and queue position (a poll: the client is still there)."""
        return self.describe(self._job(job_id))

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Stop the job (a queued one never starts) and forget it."""
        job = self._job(job_id)
        self._drop(job)
        return self.describe(job)

    def result(self, job_id: int) -> Any:
        """The finished job's result (then the job is forgotten); ValueError while it is not done."""
        job = self._job(job_id)
        if job.state == "failed" and job.error is not None:
            self._drop(job)
            raise job.error
        if job.state != "done":
            raise ValueError(f"job {job.id} is {job.state}, not done")
        result = job.result
        self._drop(job)
        return result

    def _drop(self, job: Job) -> None:
        with self._lock:
            self._polled.pop(job.id, None)
        self.runner.release(job.session, keep=lambda j: j is not job)
        job.cancel()

    def sweep(self) -> int:
        """Cancel and forget every job whose client has not asked about it for ``orphan_timeout_s``."""
        now = self.clock()
        with self._lock:
            stale = [i for i, t in self._polled.items() if now - t >= self.orphan_timeout_s]
        dropped = 0
        for job_id in stale:
            job = self.runner.get(job_id)
            with self._lock:
                self._polled.pop(job_id, None)
            if job is not None:
                if job.pending:
                    self._count("orphaned")
                self._drop(job)
                dropped += 1
        self.runner.sweep()  # clients not heard of for as long: their quota counters go too
        return dropped

    def __len__(self) -> int:
        return len(self.runner)

    def _sweep_loop(self, every_s: float) -> None:
        while not self._closed.wait(every_s):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the sweeper must outlive one bad check
                pass

    def shutdown(self) -> None:
        self._closed.set()
        self.runner.shutdown()
