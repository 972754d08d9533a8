"""The server's job runner (app.jobs): cancellation between chunks, light work beside heavy work, progress,
ordering, and results dropped when sessions close. Every wait is on an event, never on the clock."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from app.jobs import Cancelled, JobRunner, overall_progress

WAIT = 60  # seconds: an upper bound for events that should come at once, never a measured time


@pytest.fixture
def runner():
    r = JobRunner(light_workers=2, heavy_workers=1, sweep_s=None)
    yield r
    r.shutdown()


class Big:
    """A result whose lifetime a weak reference can see."""

    def __init__(self) -> None:
        self.payload = bytearray(1 << 20)


def test_cancelled_job_stops_between_chunks_and_its_result_is_dropped(runner):
    started, resume = threading.Event(), threading.Event()
    chunks: list[int] = []

    def work(job, n: int):
        partial = Big()
        for i in range(n):
            job.check()  # a chunk boundary
            chunks.append(i)
            job.report((i + 1) / n)
            if i == 2:
                started.set()
                assert resume.wait(WAIT)
        return partial

    job = runner.submit("s1", "heavy", work, 100, key="k", label="long")
    assert started.wait(WAIT) and job.state == "running"
    job.cancel()
    resume.set()
    assert job.wait(WAIT)
    assert job.state == "cancelled" and job.result is None and job.error is None
    assert chunks == [0, 1, 2]  # stopped at the next boundary, not at the end
    assert runner.find("k") is None and len(runner) == 0  # forgotten with whatever it had computed
    again = runner.submit("s1", "heavy", lambda job: "fresh", key="k")  # the key can be asked for again
    assert again is not job and again.wait(WAIT) and again.result == "fresh"


def test_a_queued_job_cancelled_never_runs(runner):
    gate, ran = threading.Event(), []
    blocker = runner.submit("s1", "heavy", lambda job: gate.wait(WAIT))
    queued = runner.submit("s2", "heavy", lambda job: ran.append(1))
    assert queued.state == "queued"
    queued.cancel()
    assert queued.state == "cancelled" and queued.wait(0)
    gate.set()
    assert blocker.wait(WAIT) and blocker.state == "done"
    runner.submit("s1", "heavy", lambda job: None).wait(WAIT)  # the heavy pool has drained past the cancelled job
    assert ran == []


def test_method_cancelled_exception_counts_as_cancelled(runner):
    def work(job):
        raise Cancelled("stopped by the method")

    job = runner.submit("s1", "heavy", work)
    assert job.wait(WAIT) and job.state == "cancelled" and job.error is None


def test_light_job_completes_while_a_heavy_job_runs(runner):
    heavy_started, release = threading.Event(), threading.Event()

    def heavy(job):
        heavy_started.set()
        assert release.wait(WAIT)
        return "heavy"

    try:
        first = runner.submit("other-session", "heavy", heavy)
        second = runner.submit("other-session", "heavy", lambda job: "queued behind")
        assert heavy_started.wait(WAIT)
        light = runner.submit("me", "light", lambda job, x: x * 2, 21)
        assert light.wait(WAIT)  # done while the heavy pool is still busy
        assert light.state == "done" and light.result == 42
        assert first.state == "running" and second.state == "queued"
    finally:
        release.set()
    assert first.wait(WAIT) and second.wait(WAIT) and second.result == "queued behind"


def test_progress_is_monotone_and_reaches_one(runner):
    seen: list[float] = []

    def work(job):
        for f in (0.1, 0.3, 0.2, 0.6, 0.6, 1.5):  # one report goes back, one overshoots
            job.report(f)
            fraction, left = job.progress
            seen.append(fraction)
            assert left is None or left >= 0
        return "ok"

    job = runner.submit("s1", "light", work)
    assert job.wait(WAIT) and job.state == "done"
    assert seen == sorted(seen) and all(0 <= f <= 1 for f in seen) and seen[-1] == 1.0
    assert job.progress == (1.0, 0.0)
    assert overall_progress([job]) == (1.0, 0.0)


def test_overall_progress_of_a_set(runner):
    gate = threading.Event()
    half_done = threading.Event()

    def half(job):
        job.report(0.5)
        half_done.set()
        assert gate.wait(WAIT)

    try:
        a = runner.submit("s1", "heavy", half)
        b = runner.submit("s1", "heavy", lambda job: None)
        assert half_done.wait(WAIT)
        fraction, left = overall_progress([a, b])
        assert fraction == pytest.approx(0.25) and left is not None and left >= 0
    finally:
        gate.set()
    assert a.wait(WAIT) and b.wait(WAIT)
    assert overall_progress([a, b]) == (1.0, 0.0)


def test_requeue_puts_the_wanted_jobs_first(runner):
    gate, order = threading.Event(), []
    blocker = runner.submit("s1", "heavy", lambda job: gate.wait(WAIT))
    jobs = {name: runner.submit("s1", "heavy", lambda job, n=name: order.append(n)) for name in ("a", "b", "c")}
    assert runner.requeue([jobs["c"], jobs["a"], jobs["b"]]) == 3
    gate.set()
    assert blocker.wait(WAIT) and all(j.wait(WAIT) for j in jobs.values())
    assert order == ["c", "a", "b"]
    assert runner.requeue(jobs.values()) == 0  # finished jobs are left alone


def test_a_new_shown_level_goes_before_every_session_s_background(runner):
    gate, order = threading.Event(), []
    blocker = runner.submit("A", "heavy", lambda job: gate.wait(WAIT))
    background = [runner.submit("A", "heavy", lambda job, n=n: order.append(n)) for n in ("a1", "a2")]
    shown = runner.submit("B", "heavy", lambda job: order.append("b-shown"))
    assert runner.put_first([shown]) == 1  # B's shown level goes before A's background (kept in its order)
    gate.set()
    assert blocker.wait(WAIT) and shown.wait(WAIT) and all(j.wait(WAIT) for j in background)
    assert order == ["b-shown", "a1", "a2"]


def test_keyed_jobs_are_shared_and_dropped_when_their_sessions_close(runner):
    made: list[weakref.ref] = []

    def compute(job):
        big = Big()
        made.append(weakref.ref(big))
        return big

    a = runner.submit("A", "light", compute, key=("map", 1))
    assert a.wait(WAIT)
    b = runner.submit("B", "light", compute, key=("map", 1))
    assert b is a and a.owners == {"A", "B"} and len(made) == 1  # computed once for both sessions

    runner.close_session("A")
    assert runner.find(("map", 1)) is a and a.result is not None  # B still holds it
    runner.close_session("B")
    assert runner.find(("map", 1)) is None and a.result is None
    del a, b
    gc.collect()
    assert made[0]() is None  # the memory is free again


def test_release_keeps_what_is_asked_and_cancels_stale_pending_jobs(runner):
    gate = threading.Event()
    try:
        running = runner.submit("s1", "heavy", lambda job: gate.wait(WAIT), group="old image")
        queued = runner.submit("s1", "heavy", lambda job: "never", group="old image")
        done = runner.submit("s1", "light", lambda job: "kept", group="new image")
        assert done.wait(WAIT)
        dropped = runner.release("s1", keep=lambda job: job.group == "new image")
        assert dropped == 2 and queued.state == "cancelled" and running.should_stop()
        assert runner.session_jobs("s1") == [done]
    finally:
        gate.set()
    assert running.wait(WAIT) and running.state == "cancelled" and running.result is None


def test_sweep_closes_sessions_that_are_gone():
    alive = {"here"}
    released = []
    r = JobRunner(is_alive=lambda sid: sid in alive, sweep_s=None, on_release=lambda: released.append(1))
    try:
        here = r.submit("here", "light", lambda job: 1, key="h")
        gone = r.submit("gone", "light", lambda job: 2, key="g")
        assert here.wait(WAIT) and gone.wait(WAIT)
        assert r.sweep() == 1
        assert r.find("g") is None and r.find("h") is here and released == [1]
        assert r.sessions() == {"here"}
    finally:
        r.shutdown()


def test_failed_job_keeps_its_error_and_bad_kind_is_refused(runner):
    job = runner.submit("s1", "light", lambda job: 1 / 0)
    assert job.wait(WAIT) and job.state == "failed" and isinstance(job.error, ZeroDivisionError)
    with pytest.raises(ValueError, match="light' or 'heavy"):
        runner.submit("s1", "medium", lambda job: None)
    assert runner.session_jobs("s1") == [job]  # the refused one left nothing behind


def test_server_runner_knows_live_sessions_without_a_streamlit_runtime():
    """Outside `streamlit run` (AppTest, scripts) a session is alive while its heartbeat is recent; the server's
    runner frees memory (gc and malloc_trim) when it drops jobs."""
    from app import jobs, long_lived

    jobs.reset_runner()
    try:
        assert not jobs.streamlit_session_alive("never-seen")
        runner = jobs.get_runner()
        runner.touch("seen")
        assert jobs.streamlit_session_alive("seen")
        assert runner._on_release is long_lived.trim
        done = runner.submit("seen", "light", lambda job: Big(), key="big")
        assert done.wait(WAIT)
        assert runner.close_session("seen") == 1 and runner.find("big") is None
    finally:
        jobs.reset_runner()
