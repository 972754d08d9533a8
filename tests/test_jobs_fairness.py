"""The job runner across sessions: heavy jobs of different sessions take turns, light requests never wait behind
them, per-session quotas (running at once: wait; per minute: refused with a message) and queue positions.
Every wait is on an event, never on the clock."""

from __future__ import annotations

import threading

import pytest

from analysis.job_runner import JobRunner
from analysis.jobs_protocol import HeavyQuota, QuotaExceeded

WAIT = 60  # seconds: an upper bound for events that should come at once, never a measured time


def make(**kwargs) -> JobRunner:
    return JobRunner(light_workers=2, sweep_s=None, **kwargs)


def test_heavy_jobs_of_two_sessions_take_turns_and_light_ones_never_wait():
    runner = make(heavy_workers=1)
    gate, order = threading.Event(), []
    try:
        blocker = runner.submit("A", "heavy", lambda job: gate.wait(WAIT))
        a = [runner.submit("A", "heavy", lambda job, n=f"a{i}": order.append(n)) for i in range(1, 5)]
        b = [runner.submit("B", "heavy", lambda job, n=f"b{i}": order.append(n)) for i in range(1, 3)]
        # A asked first and for more; B was not served yet, so it goes next, then they alternate
        assert [runner.position(j) for j in (b[0], a[0], b[1], a[1], a[2], a[3])] == [0, 1, 2, 3, 4, 5]
        assert b[0].position == 0 and blocker.position is None  # running: out of the queue
        light = runner.submit("B", "light", lambda job: "answered")
        assert light.wait(WAIT) and light.result == "answered"  # while A's heavy job still holds the pool
        assert blocker.state == "running" and all(j.state == "queued" for j in a + b)
    finally:
        gate.set()
    assert all(j.wait(WAIT) for j in [blocker, *a, *b])
    assert order == ["b1", "a1", "b2", "a2", "a3", "a4"]
    runner.shutdown()


def test_a_cancelled_queued_job_leaves_the_queue_and_positions_close_up():
    runner = make(heavy_workers=1)
    gate = threading.Event()
    try:
        runner.submit("A", "heavy", lambda job: gate.wait(WAIT))
        first, second = (runner.submit("B", "heavy", lambda job: None) for _ in range(2))
        assert (first.position, second.position) == (0, 1)
        first.cancel()
        assert first.state == "cancelled" and first.position is None and second.position == 0
    finally:
        gate.set()
        runner.shutdown()


def test_running_quota_holds_a_session_back_while_others_use_the_free_worker():
    runner = make(heavy_workers=2, quota=HeavyQuota(running=1, per_minute=0))
    gate, b_ran = threading.Event(), threading.Event()
    try:
        a1 = runner.submit("A", "heavy", lambda job: gate.wait(WAIT))
        a2 = runner.submit("A", "heavy", lambda job: "a2")
        b1 = runner.submit("B", "heavy", lambda job: b_ran.set())
        assert b_ran.wait(WAIT) and b1.wait(WAIT)  # the second worker went to B, not to A's second job
        assert a1.state == "running" and a2.state == "queued" and a2.position == 0
    finally:
        gate.set()
    assert a2.wait(WAIT) and a2.result == "a2"  # its turn came when A's first one finished
    runner.shutdown()


def test_per_minute_quota_refuses_with_a_message_and_counts_only_new_heavy_jobs():
    runner = make(heavy_workers=1, quota=HeavyQuota(running=0, per_minute=3))
    try:
        jobs = [runner.submit("A", "heavy", lambda job: None, key=("k", i)) for i in range(3)]
        assert runner.submit("A", "heavy", lambda job: None, key=("k", 0)) is jobs[0]  # shared: not a new one
        with pytest.raises(QuotaExceeded, match="3 heavy maps in the last minute") as info:
            runner.submit("A", "heavy", lambda job: None, key=("k", 3))
        assert 0 < info.value.retry_s <= 60
        assert runner.find(("k", 3)) is None and len(runner) == 3  # the refused one left nothing behind
        assert runner.submit("A", "light", lambda job: "light").wait(WAIT)  # light requests are not counted
        assert runner.submit("B", "heavy", lambda job: "b").wait(WAIT)  # another session has its own quota
    finally:
        runner.shutdown()


def test_quota_settings_defaults_env_and_public_mode():
    assert HeavyQuota.from_env({}) == HeavyQuota()
    public = HeavyQuota.from_env({"SCL_PUBLIC": "1"})
    assert public.running <= HeavyQuota().running and public.per_minute < HeavyQuota().per_minute
    assert HeavyQuota.from_env({"SCL_PUBLIC": "1", "SCL_HEAVY_PER_MINUTE": "0"}).per_minute == 0
    assert HeavyQuota.from_env({"SCL_HEAVY_RUNNING": "3"}).running == 3
    with pytest.raises(ValueError, match="SCL_HEAVY_RUNNING must be a whole number"):
        HeavyQuota.from_env({"SCL_HEAVY_RUNNING": "-1"})


def test_the_server_runner_takes_its_quota_from_the_environment(monkeypatch):
    from app import jobs

    monkeypatch.setenv("SCL_HEAVY_PER_MINUTE", "7")
    jobs.reset_runner()
    try:
        assert jobs.get_runner().quota.per_minute == 7
    finally:
        jobs.reset_runner()
