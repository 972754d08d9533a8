"""The saliency page on the job runner, driven with AppTest against the tiny zoo: the level on screen is drawn
before the others are computed, a slider move to a level not computed yet is computed next, Cancel stops the
background, and slider, caption and maps always name the same level (issue #24 point 1). Background work is
held back by events, so every order checked here is decided by the page, never by the clock."""

from __future__ import annotations

import re
import sys
import threading

import pytest

from tests.test_app import (  # noqa: F401
    ENTRY,
    TIMEOUT,
    AppTest,
    app_env,
    assert_clean,
    open_app,
    photo,
    png_bytes,
    saliency_rows_html,
    unescape,
)

IG = "integrated_gradients"
GATE_S = 60  # a held-back job gives up waiting after this long and says so (the test then fails)


@pytest.fixture
def jobs_env(app_env, monkeypatch):  # noqa: F811  (the fixture imported above)
    """The tiny zoo, a fresh job runner, and page runs that wait for the shown level's maps (deterministic)."""
    from app import jobs

    monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "600")
    jobs.reset_runner()
    yield app_env
    jobs.reset_runner()


class HeavyLog:
    """Wraps ``analysis.per_image.level_maps``: records each IG computation as it starts and holds back the levels
    in ``gates`` until their event is set."""

    def __init__(self, monkeypatch, held: tuple[int, ...]) -> None:
        import analysis.per_image as per_image

        self.original = per_image.level_maps
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.timeouts: list[int] = []
        self.gates = {level: threading.Event() for level in held}
        self.counts: dict[int, int] = {}
        self.counted = threading.Condition(self.lock)
        monkeypatch.setattr(per_image, "level_maps", self)

    def __call__(self, model, image, kind, method, target, levels, **options):
        if method == IG:
            (level,) = levels
            with self.lock:
                self.started.append(level)
            gate = self.gates.get(level)
            if gate is not None and not gate.wait(GATE_S):
                self.timeouts.append(level)
        out = self.original(model, image, kind, method, target, levels, **options)
        if method == IG:
            with self.counted:
                self.counts[level] = self.counts.get(level, 0) + 1
                self.counted.notify_all()
        return out

    def wait_count(self, level: int, n: int) -> bool:
        with self.counted:
            return self.counted.wait_for(lambda: self.counts.get(level, 0) >= n, timeout=GATE_S)

    def open(self) -> None:
        for gate in self.gates.values():
            gate.set()


def perturbed_alts(at) -> list[str]:
    return [re.search(r'alt="((?:perturbed|level 0)[^"]*)"', row).group(1) for row in saliency_rows_html(at)]


def method_alts(at) -> list[list[str]]:
    return [re.findall(r'alt="(Integrated Gradients|GradCAM|LIME)"', row) for row in saliency_rows_html(at)]


def browser_level(slider) -> int:
    """The level a browser shows for a slider it has just (re)mounted: the value the server sent with
    ``set_value``, else the widget's default."""
    proto = slider.proto
    return int((proto.value if proto.set_value else proto.default)[0])


def assert_one_level(at, level: int, remounted: bool = False) -> None:
    """Slider, the caption under it, every row's perturbed image and the rows' caption all name ``level`` (and,
    for a slider just put back on the page, the value the browser is sent)."""
    from models.perturbations import KIND_REGISTRY

    kind = at.selectbox(key="sal_kind").value
    slider = at.slider(key="sal_level")
    assert slider.value == level
    if remounted:
        assert browser_level(slider) == level
    label = KIND_REGISTRY[kind].label(level) if level else "none (level 0)"
    assert any(unescape(c.value) == f"Applied: **{label}**" for c in at.caption)
    assert perturbed_alts(at) == [f"perturbed: {label}" if level else "level 0 (= original)"] * 4
    assert any(f"Level {level} drawn in" in c.value for c in at.caption)


def test_upload_after_moving_the_level_keeps_slider_caption_and_maps_together(jobs_env):
    """#24 point 1: level 3 on a gallery image, switch to 'Upload an image', upload a photograph: the slider, its
    caption and the maps all stay at level 3 (the browser is sent the level, not left at the default 1)."""
    at = open_app("saliency")
    at.slider(key="sal_level").set_value(3)
    at.run()
    assert_clean(at)
    assert_one_level(at, 3)
    assert not at.slider(key="sal_level").proto.set_value  # a move of the user's own is never sent back over it

    at.radio(key="sal_source").set_value("Upload an image")
    at.run()
    assert_clean(at)
    assert not saliency_rows_html(at)  # nothing to explain yet
    at.file_uploader(key="sal_upload").set_value(("photo.png", png_bytes(photo()), "image/png"))
    at.run()
    assert_clean(at)
    assert_one_level(at, 3, remounted=True)
    assert all(alts == ["Integrated Gradients", "GradCAM"] for alts in method_alts(at))

    at.radio(key="sal_source").set_value("Test-set gallery")  # and back: still one level everywhere
    at.run()
    assert_clean(at)
    assert_one_level(at, 3)


def test_shown_level_is_drawn_first_and_a_new_level_is_computed_next(jobs_env, monkeypatch):
    log = HeavyLog(monkeypatch, held=(2, 3, 4))
    try:
        at = open_app("saliency")  # level 1: drawn while IG of levels 2-4 is held back
        assert_one_level(at, 1)
        assert all(alts == ["Integrated Gradients", "GradCAM"] for alts in method_alts(at))
        assert not log.timeouts  # the rows did not wait for the background
        assert log.started[:8] == [1] * 4 + [0] * 4  # the shown level of every variant, then the original
        bars = [p.text for p in at.get("progress")]
        assert len(bars) == 1 and "background" in bars[0] and "maps done" in bars[0]
        assert at.button(key="sal_cancel").label == "Cancel"

        monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "0")  # draw at once: IG of level 4 is still queued
        at.slider(key="sal_level").set_value(4)
        at.run()
        assert_clean(at)
        assert_one_level(at, 4)
        assert all(alts == ["GradCAM"] for alts in method_alts(at))  # no IG map of another level under level 4
        busy = [c.value for c in at.caption if c.value.startswith("⏳ Integrated Gradients for level 4")]
        assert len(busy) == 4
        before = len(log.started)

        log.gates[4].set()  # level 4 is on screen now: no longer held back
        log.gates[2].set()  # the held level-2 job finishes; the queue must now start with level 4
        assert log.wait_count(4, 4), log.started
        assert log.started[before : before + 4] == [4] * 4
        log.open()
        monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "600")
        at.run()
        assert_clean(at)
        assert_one_level(at, 4)
        assert all(alts == ["Integrated Gradients", "GradCAM"] for alts in method_alts(at))
        assert not any(c.value.startswith("⏳") for c in at.caption)
        assert not log.timeouts
    finally:
        log.open()


def test_cancel_stops_the_background_and_keeps_the_shown_level(jobs_env, monkeypatch):
    from app import jobs

    log = HeavyLog(monkeypatch, held=(2, 3, 4))
    try:
        at = open_app("saliency")
        runner = jobs.get_runner()
        running = [j for s in runner.sessions() for j in runner.session_jobs(s) if j.kind == "heavy" and j.pending]
        assert len(running) == 12  # IG of levels 2-4 for four variants, held back or queued
        at.button(key="sal_cancel").click()
        at.run()
        assert_clean(at)
        assert_one_level(at, 1)
        assert all(alts == ["Integrated Gradients", "GradCAM"] for alts in method_alts(at))  # the shown level stays
        assert not at.get("progress")
        assert at.button(key="sal_resume").label == "Compute the cancelled maps"
        assert all(j.should_stop() for j in running)
        started = len(log.started)
        log.open()
        assert all(j.wait(GATE_S) for j in running)
        assert all(j.state == "cancelled" and j.result is None for j in running)
        sentinel = runner.submit("test", "heavy", lambda job: "drained")
        assert sentinel.wait(GATE_S)  # the heavy pool has run everything queued before it
        assert len(log.started) == started  # nothing of the cancelled background ran after the cancel
        assert not [j for s in runner.sessions() for j in runner.session_jobs(s) if j.pending]

        at.button(key="sal_resume").click()
        at.run()
        assert_clean(at)
        assert at.get("progress") or all(  # background submitted again (or already finished)
            j.state == "done" for s in runner.sessions() for j in runner.session_jobs(s) if j.kind == "heavy"
        )
    finally:
        log.open()


def test_leaving_the_page_stops_its_jobs_and_keeps_finished_maps(jobs_env, monkeypatch):
    from app import jobs

    log = HeavyLog(monkeypatch, held=(2, 3, 4))
    try:
        at = open_app("saliency")
        runner = jobs.get_runner()
        owned = [j for s in runner.sessions() for j in runner.session_jobs(s)]
        pending = [j for j in owned if j.pending]
        assert pending and any(j.state == "done" for j in owned)
        at.switch_page("views/zoo.py").run()
        assert_clean(at)
        assert all(j.should_stop() for j in pending)
        left = [j for s in runner.sessions() for j in runner.session_jobs(s)]
        assert left and all(j.state == "done" for j in left)  # the maps already drawn stay for coming back
    finally:
        log.open()


def test_cold_page_says_what_is_loading_before_the_slow_imports(jobs_env, monkeypatch):
    """The entry script writes its loading message before importing the dashboard: with that import made to
    fail, the message is still on the page."""
    import app

    monkeypatch.setitem(sys.modules, "app.components", None)
    monkeypatch.delattr(app, "components", raising=False)
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.run()
    assert at.exception  # the import failed, as arranged
    assert any("Loading the Semantic Continuity Lab" in i.value for i in at.info)
