"""The saliency page fits the screen (issue 24 point 2) in a real headless Chromium: every registered method on,
opened by a link (issue 22 item 6), at 1280 px and at 1920 px, every panel and colour bar lies inside the window and
nothing scrolls sideways (neither the document nor Streamlit's main container); the level and the difference view,
moved inside the rows' fragment, reach the link at once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.test_browser import (  # noqa: F401  (server: the fixture)
    CHROMIUM,
    RESULT_S,
    ROOT,
    VARIANT_ROWS,
    browser_page,
    open_saliency,
    server,
    set_level,
    wait_for_variant_rows,
    wait_idle,
    wait_level_agrees,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
VARIANT_NAMES = ["standard", "C", "ADV", "ADV+C"]  # the tiny zoo's variants, in the picker's order

MEASURE = """(n) => {
    const main = document.querySelector('[data-testid="stMain"]');
    const parts = [...document.querySelectorAll('.scl-saliency img, .scl-colour-bar')];
    if (parts.length !== n) return null;  // rows being redrawn (the rows poll while later levels compute): wait
    return {
        inner: window.innerWidth,
        document: document.documentElement.scrollWidth,
        main: main ? main.scrollWidth - main.clientWidth : 0,
        right: Math.max(...parts.map(e => e.getBoundingClientRect().right)),
        parts: parts.length,
    };
}"""


CHARTS = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg')];
    return {
        inner: window.innerWidth,
        main: main ? main.scrollWidth - main.clientWidth : 0,
        right: Math.max(0, ...charts.map(e => e.getBoundingClientRect().right)),
        charts: document.querySelectorAll('[data-testid="stPlotlyChart"]').length,
    };
}"""


def assert_fits(page, width: int, parts: int) -> dict:
    """At ``width`` px, once all ``parts`` (images and colour bars) are on the page: none lies beyond the window and
    neither the document nor Streamlit's main container scrolls sideways."""
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(1500)  # the layout settles at the new width
    seen = page.wait_for_function(MEASURE, arg=parts, timeout=RESULT_S * 1000, polling=200).json_value()
    assert seen["document"] <= seen["inner"], seen  # no sideways scrolling of the page
    assert seen["main"] <= 0, seen  # nor of Streamlit's main container (it scrolls on its own)
    assert seen["right"] <= seen["inner"], seen  # every panel and colour bar inside the window
    return seen


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_every_method_on_fits_1280_and_1920_px(server):  # noqa: F811  (the fixture imported above)
    from analysis.attributions import METHOD_REGISTRY

    url, proc, log = server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    methods = list(METHOD_REGISTRY)
    with browser_page() as page:
        try:
            page.set_viewport_size({"width": 1280, "height": 1000})
            page.goto(f"{url}/saliency?methods={','.join(methods)}", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_role("heading", name="Saliency, side by side").wait_for(timeout=RESULT_S * 1000)
            for name in methods:  # the link ticked every method
                assert page.locator(f".st-key-sal_method_{name} input[type='checkbox']").is_checked(), name
            for key in VARIANT_ROWS:  # original, perturbed and one map per method in every row
                page.wait_for_function(
                    "([key, n]) => document.querySelectorAll(`.st-key-sal_row_${key} .scl-saliency img`).length === n",
                    arg=[key, 2 + len(methods)],
                    timeout=3 * RESULT_S * 1000,
                    polling=500,
                )
            wait_idle(page, RESULT_S)
            parts = len(VARIANT_ROWS) * (2 + 2 * len(methods))  # per row 2 images, then a map and a bar per method
            assert_fits(page, 1280, parts)
            page.screenshot(path=str(artifacts / "saliency-all-methods-1280.png"))
            assert_fits(page, 1920, parts)
            page.set_viewport_size({"width": 1280, "height": 1000})
            page.locator(".st-key-sal_interactive").get_by_text("Interactive").click()  # plotly charts instead
            for key in VARIANT_ROWS:
                chart = page.locator(f".st-key-sal_row_{key} [data-testid='stPlotlyChart'] .main-svg").first
                chart.wait_for(timeout=RESULT_S * 1000)
            page.wait_for_timeout(1500)
            seen = page.evaluate(CHARTS)
            # Streamlit scales a wider figure down to the page: the interactive rows fit too
            assert seen["charts"] == len(VARIANT_ROWS) and seen["main"] <= 0 and seen["right"] <= seen["inner"], seen
            assert page.locator('[data-testid="stException"]').count() == 0
        except BaseException:
            page.screenshot(path=str(artifacts / "saliency-fit-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-fit.log")
            raise


def query_of(url: str) -> dict[str, str]:
    """A URL's query parameters, one value each."""
    from urllib.parse import parse_qs, urlsplit

    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def wait_url(page, wanted: dict[str, str | None], timeout_s: float) -> dict[str, str]:
    """Until the page's URL carries ``wanted`` (None: the parameter is absent); its query parameters (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = query_of(page.url)
        if all(seen.get(k) == v for k, v in wanted.items()):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"the URL never carried {wanted}: {page.url}")
        page.wait_for_timeout(200)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_level_and_difference_view_reach_the_link_without_a_full_run(server):  # noqa: F811  (the fixture)
    """Issue 22 item 6: the level slider and the difference toggle live in the rows' fragment; once every map is
    computed (the rows no longer poll and nothing reruns the whole page), moving them updates the URL at once, and
    that URL opened in another tab (another session) shows the same level and difference view, while the first tab
    keeps its rows."""
    from models.perturbations import KIND_REGISTRY

    url, proc, log = server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    label3 = KIND_REGISTRY["brightness"].label(3)
    with browser_page() as page:
        try:
            open_saliency(page, url)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)
            page.locator('[data-testid="stProgress"]').first.wait_for(state="detached", timeout=RESULT_S * 1000)
            wait_idle(page, RESULT_S)  # every level computed: a slider move reruns the fragment only
            assert wait_url(page, {"level": "1", "kind": "brightness"}, RESULT_S)["zoo"] == "tiny"
            set_level(page, 3)
            wait_level_agrees(page, 3, label3, RESULT_S)
            link = wait_url(page, {"level": "3", "diff": None}, 10)
            page.locator(".st-key-sal_diff").get_by_text("Difference maps").click()
            page.locator(".scl-difference").first.wait_for(timeout=RESULT_S * 1000)
            link = wait_url(page, {"level": "3", "diff": VARIANT_NAMES[0]}, 10)
            assert link["image"] == "0" and link["variants"] == ",".join(VARIANT_NAMES)

            second = page.context.browser.new_context(viewport={"width": 1500, "height": 1100})  # another session
            other = second.new_page()  # opened by the copied link
            other.set_default_timeout(60_000)
            other.goto(page.url, wait_until="domcontentloaded", timeout=120_000)
            other.get_by_role("heading", name="Saliency, side by side").wait_for(timeout=RESULT_S * 1000)
            wait_for_variant_rows(other)
            wait_level_agrees(other, 3, label3, RESULT_S)
            other.locator(".scl-difference").first.wait_for(timeout=RESULT_S * 1000)
            assert other.locator(".st-key-sal_diff input[type='checkbox']").is_checked()
            assert query_of(other.url) == link  # the reopened view writes back the same link
            assert other.locator('[data-testid="stException"]').count() == 0
            second.close()

            page.bring_to_front()  # the first tab still shows its view
            wait_level_agrees(page, 3, label3, RESULT_S)
            assert page.locator(".scl-difference").count() >= 1
            assert page.locator('[data-testid="stException"]').count() == 0
        except BaseException:
            page.screenshot(path=str(artifacts / "saliency-link-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-link.log")
            raise
    assert "Traceback" not in log.read_text()
