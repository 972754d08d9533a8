"""The saliency page fits the screen (issue 24 point 2) in a real headless Chromium: every registered method on,
opened by a link (issue 22 item 6), at 1280 px and at 1920 px, every panel and colour bar lies inside the window and
nothing scrolls sideways (neither the document nor Streamlit's main container)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_browser import (  # noqa: F401  (server: the fixture)
    CHROMIUM,
    RESULT_S,
    ROOT,
    VARIANT_ROWS,
    browser_page,
    server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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
