"""The saliency page with its compute service in trouble or busy, driven with AppTest on the tiny zoo: a backend
that cannot be reached is a message with Retry (no traceback) and the page picks it up again; a heavy pool held
by another session shows each queued map's place ("queued: N ahead"); a session over its heavy-job quota is told
so, not shown an error. Held-back work waits on events, never on the clock."""

from __future__ import annotations

import re
import threading
import time

from tests.test_app import AppTest, app_env, assert_clean, open_app, saliency_rows_html, unescape  # noqa: F401
from tests.test_app_saliency_jobs import jobs_env  # noqa: F401

GATE_S = 120  # a held-back job gives up waiting after this long (the test then fails)
DOWN = ("http://127.0.0.1:9", "connection refused or lost")


def warnings(at: AppTest) -> list[str]:
    return [unescape(w.value) for w in at.warning]


def test_backend_down_is_a_message_with_retry_and_the_page_recovers(jobs_env, monkeypatch):  # noqa: F811
    from analysis.service_client import BackendUnavailable
    from app import compute

    real = {"service": compute.service, "heavy_service": compute.heavy_service}
    mode = {"now": "unreachable"}

    class Lost:
        """A backend that went away mid-session: every request raises BackendUnavailable."""

        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise BackendUnavailable(*DOWN)

            return fail

    def stand_in(name):
        def get(handle):
            if mode["now"] == "unreachable":  # as RemoteComputeService.for_hashes when the backend is down
                raise BackendUnavailable(*DOWN)
            return Lost() if mode["now"] == "lost" else real[name](handle)

        return get

    for name in real:
        monkeypatch.setattr(compute, name, stand_in(name))
    at = open_app("saliency")
    for now in ("unreachable", "lost"):
        assert_clean(at)
        assert not at.error, [e.value for e in at.error]
        assert any("is not reachable" in w and DOWN[0] in w for w in warnings(at)), (now, warnings(at))
        assert not saliency_rows_html(at)
        mode["now"] = "lost" if now == "unreachable" else "back"
        at.button(key="sal_retry").click().run()
    assert_clean(at)
    assert not at.error and not any("not reachable" in w for w in warnings(at))
    assert saliency_rows_html(at)  # the backend is back: the maps are drawn


def test_queued_maps_show_how_many_are_ahead(jobs_env, monkeypatch):  # noqa: F811
    from app import jobs

    monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "0")  # draw at once, while the heavy pool is held
    gate = threading.Event()
    blocker = jobs.get_runner().submit("another-session", "heavy", lambda job: gate.wait(GATE_S))
    try:
        deadline = time.monotonic() + 60  # the heavy worker has taken it (not merely queued) before the page asks
        while blocker.state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        at = open_app("saliency")
        captions = [c.value for c in at.caption]
        ig = r"Integrated Gradients for level \d: queued"  # light maps (GradCAM) may be queued too on a busy machine
        ahead = sorted(int(m.group(1)) for c in captions for m in [re.search(ig + r": (\d+) ahead", c)] if m)
        assert ahead == [1, 2, 3], captions  # four variants' shown level in turn, the first one next (no count)
        assert sum(bool(re.search(ig + "$", c)) for c in captions) == 1, captions
        assert blocker.state == "running"
    finally:
        gate.set()


def test_over_the_heavy_job_quota_the_page_says_so(jobs_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SCL_HEAVY_PER_MINUTE", "3")
    at = open_app("saliency")
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert any("heavy maps in the last minute" in w for w in warnings(at)), warnings(at)
    assert saliency_rows_html(at)  # what the quota allowed (and GradCAM, a light job) is drawn
