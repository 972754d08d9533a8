"""The explanation pages of issue 22 (sanity checks, explanation continuity, faithfulness) in a real headless Chromium:
one ``streamlit run`` on the tiny zoo for the module; each page opened by its URL shows its title, computes what its
button asks for and draws the chart, with no exception box. Every wait is bounded; a failure leaves a screenshot and
the server log in test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, RESULT_S, ROOT, browser_page, running_dashboard, wait_idle

NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow, NEEDS_CHROMIUM]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def dashboard(tiny_zoo, tmp_path_factory):
    """One running dashboard on the tiny zoo (no report results) and one browser page, for every test here."""
    log = tmp_path_factory.mktemp("explanation-browser") / "streamlit.log"
    with running_dashboard(tiny_zoo, log) as (url, proc, _), browser_page() as page:
        yield url, proc, log, page


def open_view(dashboard, path: str, title: str):
    url, _, _, page = dashboard
    page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=120_000)
    page.get_by_role("heading", name=title).wait_for(timeout=RESULT_S * 1000)
    wait_idle(page, RESULT_S)
    return page


def press_and_see_chart(dashboard, button: str, chart_key: str, name: str) -> None:
    """Press ``button``, wait for the run to end, then check the chart ``chart_key`` is drawn with the variants'
    traces and no exception box appeared."""
    _, proc, log, page = dashboard
    try:
        page.get_by_role("button", name=button).click()
        chart = page.locator(f".st-key-{chart_key} .js-plotly-plot")
        chart.first.wait_for(timeout=RESULT_S * 1000)
        wait_idle(page, RESULT_S)
        assert page.locator('[data-testid="stException"]').count() == 0
        legend = chart.first.inner_text()
        assert "standard" in legend and "ADV" in legend, legend
        assert proc.poll() is None, "the server died"
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"), full_page=True)
        shutil.copy(log, ARTIFACTS / f"{name}-streamlit.log")
        raise


def test_sanity_checks_page_runs_the_check_and_draws_its_curves(dashboard):
    page = open_view(dashboard, "sanity_checks", "Sanity checks")
    assert page.get_by_text("Press Run the sanity check to randomise", exact=False).count() == 1  # nothing computed yet
    press_and_see_chart(dashboard, "Run the sanity check", "sc_curves", "sanity-checks")


def test_explanation_continuity_page_computes_and_draws_its_curves(dashboard):
    page = open_view(dashboard, "explanation_continuity", "Explanation continuity")
    assert page.get_by_text("Press Compute to measure", exact=False).count() == 1
    press_and_see_chart(dashboard, "Compute", "ec_moved", "explanation-continuity")


def test_faithfulness_page_says_how_to_get_results_and_runs_the_quick_version(dashboard):
    page = open_view(dashboard, "faithfulness", "Faithfulness (ROAD)")
    assert page.get_by_text("No precomputed results", exact=False).count() == 1  # the tiny zoo has no report
    assert page.get_by_text("python -m analysis.report --zoo", exact=False).count() == 1
    press_and_see_chart(dashboard, "Compute a quick version now", "road_bars", "faithfulness")
