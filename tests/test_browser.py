"""End to end in a real headless Chromium: start the server, upload a photograph, see four explained rows.

Uses the Debian Chromium at /usr/bin/chromium through Playwright for Python (no browser download).
The server runs `streamlit run app/streamlit_app.py` against the tiny zoo in a subprocess that is
always terminated; every wait is bounded. The screenshot goes to test-artifacts/saliency.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VARIANT_ROWS = ["standard", "C", "ADV", "ADVplusC"]  # container keys: st-key-sal_row_<variant>
SERVER_START_S = 120
RESULT_S = 240  # first explanation: imports captum/lime and computes on a busy 2-core CPU

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def wait_idle(page, timeout_s: float) -> None:
    """Until Streamlit shows no 'running' status for a moment (the script run has finished)."""
    page.wait_for_function(
        """() => {
            const busy = document.querySelector('[data-testid="stStatusWidget"]');
            if (busy) { window.__sclIdleSince = null; return false; }
            window.__sclIdleSince = window.__sclIdleSince || Date.now();
            return Date.now() - window.__sclIdleSince > 1000;
        }""",
        timeout=timeout_s * 1000,
        polling=200,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_dashboard(zoo: Path, log: Path):
    """``streamlit run`` on a free local port pointed at ``zoo``; yields (base URL, process, log); always stopped."""
    pytest.importorskip("streamlit")
    port = free_port()
    env = {**os.environ, "SCL_ZOO": str(zoo), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port)]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log, SERVER_START_S)
        yield url, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture
def server(tiny_zoo, tmp_path):
    """A running dashboard pointed at the tiny zoo."""
    with running_dashboard(tiny_zoo, tmp_path / "streamlit.log") as running:
        yield running


@pytest.fixture
def default_server(tmp_path):
    """A running dashboard on the shipped zoo and its committed results (what `./lab dashboard` serves)."""
    with running_dashboard(ROOT / "assets" / "zoo" / "default", tmp_path / "streamlit.log") as running:
        yield running


@contextlib.contextmanager
def browser_page():
    """A headless Debian Chromium page (1500x1100), closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def open_saliency(page, url: str) -> None:
    """Open the saliency page and wait for its heading."""
    page.goto(f"{url}/saliency", wait_until="domcontentloaded", timeout=120_000)
    page.get_by_role("heading", name="Saliency, side by side").wait_for(timeout=RESULT_S * 1000)


def wait_for_variant_rows(page) -> None:
    """Until each variant's row has drawn its maps (images, the default drawing)."""
    for key in VARIANT_ROWS:
        row = page.locator(f".st-key-sal_row_{key}")
        row.locator(".scl-saliency img").first.wait_for(timeout=RESULT_S * 1000)


def screenshot_tall(page, path: Path) -> None:
    """Streamlit scrolls inside its main container, so a "full page" screenshot is the viewport: make it tall
    enough for the four rows, let plotly redraw at the new size, then shoot."""
    page.set_viewport_size({"width": 1500, "height": 2300})
    page.wait_for_timeout(2000)
    page.screenshot(path=str(path), full_page=True)


@pytest.fixture
def astronaut_png(tmp_path) -> Path:
    """scikit-image's astronaut (a real 512x512 photograph) as a PNG file."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_upload_photograph_and_see_four_rows(server, astronaut_png):
    url, proc, log = server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with browser_page() as page:
        try:
            open_saliency(page, url)
            wait_idle(page, RESULT_S)  # the first run (gallery image) has finished

            source = page.locator('[data-testid="stRadio"]', has_text="Upload an image")  # the image source
            assert source.count() == 1
            source.locator('[data-testid="stRadioOption"]', has_text="Upload an image").click()
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            uploader.wait_for(state="attached", timeout=60_000)
            uploader.set_input_files(str(astronaut_png))

            page.get_by_text("Uploaded astronaut.png", exact=False).wait_for(timeout=RESULT_S * 1000)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)  # the run with the upload has finished
            screenshot_tall(page, artifacts / "saliency.png")

            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.get_by_text("was not accepted").count() == 0
            body = page.inner_text("body")
            assert "PNG 512x512" in body and "RGB 32x32" in body
            for key in VARIANT_ROWS:
                row = page.locator(f".st-key-sal_row_{key}")
                assert row.count() == 1, key
                # original and perturbed photographs, then IG and GradCAM over a greyscale copy, each with a colour bar
                assert row.locator(".scl-saliency img").count() == 4, key
                assert row.locator(".scl-colour-bar").count() == 2, key
                assert "DS" in row.inner_text(), key
                assert "IG completeness" in row.inner_text(), key
            assert proc.poll() is None, "the server died"
        except BaseException:
            page.screenshot(path=str(artifacts / "saliency-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit.log")
            raise
    assert (artifacts / "saliency.png").stat().st_size > 10_000
    shutil.copy(log, artifacts / "streamlit.log")
    assert "Traceback" not in log.read_text()


EXPERIMENT_PAGES = {  # url path -> text the page shows only when it read the committed results
    "continuity": "Distance score against level",
    "probes": "channel_translation",
    "robustness": "Clean and PGD-10 accuracy",
    "transfer": "results/transfer_summary.csv",
    "fairness": "results/fairness_summary.csv",
    "claims": "Claims that hold",
}


def committed_status(experiment: str) -> str:
    """The status of ``experiment`` in the committed report on the shipped zoo (ok, skipped, ...)."""
    summary = json.loads((ROOT / "assets" / "results" / "default" / "summary.json").read_text())
    return summary["experiments"].get(experiment, {}).get("status", "missing")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_shipped_zoo_every_page_in_a_browser(default_server):
    """The shipped zoo: the saliency grid on a gallery image, every experiment page from the committed results, then
    the zoo and embeddings pages."""
    url, proc, log = default_server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with browser_page() as page:
        try:
            open_saliency(page, url)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)
            assert "fashion-mnist-m" in page.inner_text("body")
            screenshot_tall(page, artifacts / "saliency-default.png")
            assert page.locator('[data-testid="stException"]').count() == 0

            page.set_viewport_size({"width": 1500, "height": 1100})
            for path, marker in EXPERIMENT_PAGES.items():
                page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=120_000)
                main = page.locator('[data-testid="stMain"]')
                # every wait is for what the page must show: the committed results, the page's own marker, and a
                # chart, image or table of them
                main.get_by_text("Results read from", exact=False).first.wait_for(timeout=RESULT_S * 1000)
                if path in ("transfer", "fairness") and committed_status(path) == "skipped":
                    # the committed report left this experiment out: the page must say so, not draw stale results
                    main.get_by_text(f"The report skipped {path}", exact=False).first.wait_for(timeout=RESULT_S * 1000)
                    assert page.locator('[data-testid="stException"]').count() == 0, path
                    continue
                main.get_by_text(marker, exact=False).first.wait_for(timeout=RESULT_S * 1000)
                main.locator('[data-testid="stPlotlyChart"], [data-testid="stImage"], [data-testid="stDataFrame"], '
                             '[data-testid="stTable"]').first.wait_for(timeout=RESULT_S * 1000)  # fmt: skip
                wait_idle(page, RESULT_S)
                assert "assets/results/default" in main.inner_text(), path
                assert page.locator('[data-testid="stException"]').count() == 0, path
            for path, marker in {"zoo": "ADV+C", "embeddings": "UMAP"}.items():  # computed live, not read
                page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=120_000)
                main = page.locator('[data-testid="stMain"]')
                main.get_by_text(marker, exact=False).first.wait_for(timeout=RESULT_S * 1000)
                main.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=RESULT_S * 1000)
                wait_idle(page, RESULT_S)
                assert page.locator('[data-testid="stException"]').count() == 0, path
            assert proc.poll() is None, "the server died"
        except BaseException:
            page.screenshot(path=str(artifacts / "default-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-default.log")
            raise
    assert "Traceback" not in log.read_text()


def click_point(page, panel, selector: str) -> None:
    """A real mouse click at the centre of one plotly marker (plotly reads clicks from its drag layer)."""
    point = panel.locator(selector).first
    point.wait_for(timeout=RESULT_S * 1000)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    assert box, selector
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)  # plotly finds the point under the cursor on hover, then the click selects it
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_embeddings_click_shows_thumbnail_and_neighbours(server, tmp_path):
    """Clicking points of the embeddings scatter (once a KeyError: plotly 7 sends customdata as typed arrays) shows
    the point's image and its nearest neighbours beside the chart, and the page keeps working."""
    url, proc, log = server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with browser_page() as page:
        try:
            page.goto(f"{url}/embeddings", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_role("heading", name="Neighbourhood embeddings").wait_for(timeout=RESULT_S * 1000)
            panel = page.locator(".st-key-emb_panel_standard")
            panel.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=RESULT_S * 1000)
            wait_idle(page, RESULT_S)
            for selector in (".scatterlayer .trace:last-child .point", ".scatterlayer .trace:first-child .point"):
                click_point(page, panel, selector)  # the anchor star, then a same-class image
                panel.get_by_text("Nearest neighbours", exact=True).wait_for(timeout=RESULT_S * 1000)
                wait_idle(page, RESULT_S)
                assert page.locator('[data-testid="stException"]').count() == 0, selector
                text = panel.inner_text()
                assert "predicted" in text and "true" in text and "DS to" in text, text
                assert panel.locator('[data-testid="stImage"] img').count() >= 1 + 6  # the point and 6 neighbours
            assert "test image #" in panel.inner_text()  # the second click showed the same-class image
            page.screenshot(path=str(artifacts / "embeddings-click.png"))
            assert proc.poll() is None, "the server died"
        except BaseException:
            page.screenshot(path=str(artifacts / "embeddings-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-embeddings.log")
            raise
    assert "Traceback" not in log.read_text()


PAGE_TITLES = {  # url path -> (menu entry, the page's heading); "" is the default page
    "": ("The zoo", "The model zoo"),
    "saliency": ("Saliency side by side", "Saliency, side by side"),
    "embeddings": ("Neighbourhood embeddings", None),
    "continuity": ("Continuity curves", None),
    "probes": ("Semantic probes", None),
    "robustness": ("Robustness", "Robustness"),
    "transfer": ("Transfer", None),
    "fairness": ("Fairness", None),
    "claims": ("Claims", None),
}
MENU = [entry for entry, _ in PAGE_TITLES.values()]


def local_request(url: str, base: str) -> bool:
    """A request that stays on this machine: the dashboard's own server, or inline data."""
    return url.startswith(base + "/") or url == base or url.split(":", 1)[0] in ("data", "blob", "about")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_every_page_by_address_first_paint_and_no_request_leaves(server):
    """Each page opened by its address: the first menu painted is the real one (titles, not file names), the
    page's own heading shows, and every request the page makes goes to the local server."""
    url, proc, log = server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with browser_page() as page:
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        try:
            for path, (entry, heading) in PAGE_TITLES.items():
                page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=120_000)
                nav = page.locator('[data-testid="stSidebarNav"]')
                nav.wait_for(timeout=RESULT_S * 1000)
                first = nav.inner_text()  # the menu as first painted
                assert all(m in first for m in MENU), first
                assert "streamlit app" not in first.lower() and "views" not in first.lower(), first
                main = page.locator('[data-testid="stMain"]')
                if heading:
                    main.get_by_role("heading", name=heading).first.wait_for(timeout=RESULT_S * 1000)
                wait_idle(page, RESULT_S)
                assert page.locator('[data-testid="stException"]').count() == 0, path
                current = page.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
                assert entry in current.inner_text(), (path, current.inner_text())
            outside = sorted({r for r in requests if not local_request(r, url)})
            assert not outside, outside
            assert any("/_stcore/" in r or "/static/" in r for r in requests)  # the check saw real traffic
            icons = page.locator('link[rel~="icon"]')
            assert icons.count() >= 1 and all(
                local_request(page.evaluate("h => new URL(h, location.href).href", icons.nth(i).get_attribute("href")),
                              url)
                for i in range(icons.count())
            )  # fmt: skip
        except BaseException:
            page.screenshot(path=str(artifacts / "pages-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-pages.log")
            raise
    assert "Traceback" not in log.read_text()


def map_sources(page, key: str) -> list[str]:
    """The image sources of one variant's row of maps (original, perturbed, then one per method)."""
    return page.locator(f".st-key-sal_row_{key} .scl-saliency img").evaluate_all("els => els.map(e => e.src)")


def colour_bar_titles(page) -> list[str]:
    """The first (IG) colour bar's label of each variant's row, in row order."""
    return [page.locator(f".st-key-sal_row_{key} .scl-colour-bar").first.get_attribute("title") for key in VARIANT_ROWS]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_saliency_overlay_shared_scale_and_interactive_toggles(server):
    url, proc, log = server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with browser_page() as page:
        try:
            open_saliency(page, url)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)
            overlaid = map_sources(page, "standard")
            assert len(overlaid) == 4  # original, perturbed, IG and GradCAM over a greyscale copy
            assert len(set(colour_bar_titles(page))) == 1  # the shared scale (default): one label for every row
            page.locator(".st-key-sal_overlay").get_by_text("Overlay on greyscale").click()
            page.wait_for_function(
                "old => { const s = [...document.querySelectorAll('.st-key-sal_row_standard .scl-saliency img')]"
                ".map(e => e.src); return s.length === 4 && s[2] !== old; }",
                arg=overlaid[2],
                timeout=RESULT_S * 1000,
            )  # the bare map replaces the overlay
            wait_idle(page, RESULT_S)
            assert map_sources(page, "standard")[:2] == overlaid[:2]  # the photographs stay
            main = page.locator('[data-testid="stMain"]')
            assert "one scale per method is shared by every row" in main.inner_text()
            page.locator(".st-key-sal_scale").get_by_text("per map").click()
            main.get_by_text("scaled by its own largest", exact=False).first.wait_for(timeout=RESULT_S * 1000)
            wait_idle(page, RESULT_S)
            assert len(set(colour_bar_titles(page))) == len(VARIANT_ROWS)  # each row its own scale
            page.locator(".st-key-sal_interactive").get_by_text("Interactive").click()  # plotly charts instead
            for key in VARIANT_ROWS:
                chart = page.locator(f".st-key-sal_row_{key} [data-testid='stPlotlyChart'] .main-svg").first
                chart.wait_for(timeout=RESULT_S * 1000)
            wait_idle(page, RESULT_S)
            assert page.locator(".scl-saliency").count() == 0
            assert page.locator('[data-testid="stException"]').count() == 0
        except BaseException:
            page.screenshot(path=str(artifacts / "toggles-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-toggles.log")
            raise


@pytest.fixture
def rocket_png(tmp_path) -> Path:
    """scikit-image's rocket photograph (not a garment) as a PNG file."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path / "rocket.png"
    Image.fromarray(data.rocket()).save(path)
    return path


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_shipped_zoo_out_of_distribution_notice(default_server, rocket_png):
    """On the shipped fashion-mnist-m zoo: a photograph that is not a garment gets the out-of-distribution notice
    (with its threshold and the classes the zoo knows); a test image gets none."""
    url, proc, log = default_server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    notice = "looks unlike the data the zoo was trained on"
    with browser_page() as page:
        try:
            open_saliency(page, url)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)
            main = page.locator('[data-testid="stMain"]')
            assert notice not in main.inner_text()  # a test image from the gallery: no notice
            page.locator('[data-testid="stRadio"]').locator('[data-testid="stRadioOption"]',
                                                            has_text="Upload an image").click()  # fmt: skip
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            uploader.wait_for(state="attached", timeout=60_000)
            uploader.set_input_files(str(rocket_png))
            main.get_by_text(notice, exact=False).first.wait_for(timeout=RESULT_S * 1000)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)
            text = main.inner_text()
            assert "threshold at the 5th percentile of 2000 fashion-mnist-m test images" in text
            assert "know only its 10 classes" in text and "Ankle boot" in text
            page.screenshot(path=str(artifacts / "ood-notice.png"))
            assert page.locator('[data-testid="stException"]').count() == 0
        except BaseException:
            page.screenshot(path=str(artifacts / "ood-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-ood.log")
            raise
    assert "Traceback" not in log.read_text()


@pytest.fixture
def polling_server(tiny_zoo, tmp_path, monkeypatch):
    """The tiny zoo's dashboard with page runs that never wait for maps (SCL_SALIENCY_WAIT_S=0): every map comes
    in through the job runner and the rows' polling, as on a large model."""
    monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "0")
    with running_dashboard(tiny_zoo, tmp_path / "streamlit.log") as running:
        yield running


def level_shown(page) -> dict:
    """What one session's saliency page says about the level: the slider, the caption under it, the rows' caption
    and each row's perturbed image (Playwright locators: they see into every part of the page)."""
    slider = page.locator('.st-key-sal_level input[type="range"]')
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    perturbed = []
    for key in VARIANT_ROWS:
        alts = page.locator(f".st-key-sal_row_{key} .scl-saliency img").evaluate_all("els => els.map(e => e.alt)")
        perturbed += [a for a in alts if a.startswith("perturbed") or a.startswith("level 0")]
    return {
        "slider": slider.first.input_value() if slider.count() else None,
        "applied": [t for t in captions if t.startswith("Applied:")],
        "drawn": [m.group(1) for t in captions if (m := re.search(r"Level (\d) drawn in", t))],
        "perturbed": perturbed,
    }


def agrees(shown: dict, level: int, label: str) -> bool:
    perturbed = f"perturbed: {label}" if level else "level 0 (= original)"
    return (shown["slider"] == str(level) and shown["applied"] == [f"Applied: {label}"]
            and shown["drawn"] == [str(level)] and shown["perturbed"] == [perturbed] * len(VARIANT_ROWS))  # fmt: skip


def set_level(page, level: int) -> None:
    """Move the level slider with the keyboard (Home, then ArrowRight ``level`` times)."""
    thumb = page.locator('.st-key-sal_level input[type="range"]')
    thumb.focus()
    thumb.press("Home")
    for _ in range(level):
        thumb.press("ArrowRight")


def wait_level_agrees(page, level: int, label: str, timeout_s: float) -> None:
    """Until slider, caption, every row's perturbed image and the rows' caption all say ``level`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    shown = level_shown(page)
    while not agrees(shown, level, label):
        if time.monotonic() > deadline:
            pytest.fail(f"the page never agreed on level {level}: {shown}")
        page.wait_for_timeout(250)
        shown = level_shown(page)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_saliency_level_agrees_everywhere_and_heavy_work_shows_progress(polling_server, astronaut_png):
    """Issue #24 point 1 in a browser, with a second session computing at the same time: level 3 on a gallery image,
    switch to 'Upload an image', upload a photograph: slider, caption and maps all say level 3 once drawn (never
    the slider at 1 over level-3 maps); the maps come in with a progress bar and a Cancel button; a second
    session's level moves read right while the first one's LIME runs; the server stays up."""
    from models.perturbations import KIND_REGISTRY

    url, proc, log = polling_server
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    label3, label2 = KIND_REGISTRY["brightness"].label(3), KIND_REGISTRY["brightness"].label(2)
    with browser_page() as page:
        try:
            open_saliency(page, url)
            wait_for_variant_rows(page)
            wait_idle(page, RESULT_S)
            set_level(page, 3)
            wait_level_agrees(page, 3, label3, RESULT_S)
            wait_idle(page, RESULT_S)

            page.locator('[data-testid="stRadioOption"]', has_text="Upload an image").click()
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            uploader.wait_for(state="attached", timeout=60_000)
            page.locator(".st-key-sal_method_lime").get_by_text("LIME").click()  # a slow method: visible progress
            uploader.set_input_files(str(astronaut_png))
            page.locator('[data-testid="stProgress"]').first.wait_for(timeout=RESULT_S * 1000)
            assert page.locator(".st-key-sal_cancel").get_by_role("button", name="Cancel", exact=True).count() == 1
            shown = level_shown(page)
            assert shown["slider"] == "3" and shown["applied"] == [f"Applied: {label3}"], shown
            assert set(shown["perturbed"]) <= {f"perturbed: {label3}"}, shown  # busy rows, or level 3: never another

            second = page.context.browser.new_context(viewport={"width": 1500, "height": 1100})  # another session
            try:
                other = second.new_page()
                open_saliency(other, url)
                wait_for_variant_rows(other)
                set_level(other, 2)
                wait_level_agrees(other, 2, label2, RESULT_S)
            finally:
                second.close()
            page.bring_to_front()  # a tab in the background is not redrawn

            wait_level_agrees(page, 3, label3, RESULT_S)
            page.locator(".st-key-sal_row_standard .scl-saliency img[alt='LIME']").wait_for(timeout=RESULT_S * 1000)
            page.locator('[data-testid="stProgress"]').first.wait_for(state="detached", timeout=RESULT_S * 1000)
            wait_idle(page, RESULT_S)  # every map computed: the bar has gone and the polling stopped
            assert page.locator('[data-testid="stProgress"]').count() == 0
            shown = level_shown(page)
            assert agrees(shown, 3, label3), shown
            assert page.locator('[data-testid="stException"]').count() == 0
            assert proc.poll() is None, "the server died"
        except BaseException:
            page.screenshot(path=str(artifacts / "saliency-jobs-failure.png"), full_page=True)
            shutil.copy(log, artifacts / "streamlit-jobs.log")
            raise
    assert "Traceback" not in log.read_text()
