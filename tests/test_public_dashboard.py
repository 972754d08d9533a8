"""The dashboard in public mode (listed zoos only, no typed paths, no absolute paths in messages), behind an access
token, and with its compute backend gone (one message naming the backend, no traceback)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

ENTRY = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TIMEOUT = 240


@pytest.fixture
def env(tiny_zoo, monkeypatch, cache_dir):
    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    for name in ("SCL_PUBLIC", "SCL_TOKEN", "SCL_BACKEND", "SCL_ZOOS", "SCL_DATASETS", "SCL_CATALOGUE"):
        monkeypatch.delenv(name, raising=False)
    from app import public

    public.catalogue.clear()
    yield monkeypatch
    public.catalogue.clear()


def texts(at) -> list[str]:
    return [e.value for e in (*at.error, *at.warning, *at.info, *at.caption, *at.markdown)]


def test_public_mode_offers_listed_zoos_only_and_hides_paths(env, tiny_zoo, tmp_path):
    broken = tmp_path / "secret-place" / "broken"
    broken.mkdir(parents=True)
    (broken / "zoo.json").write_text("{not json")
    env.setenv("SCL_PUBLIC", "1")
    env.setenv("SCL_ZOOS", f"tiny={tiny_zoo},broken={broken}")
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [w for w in at.sidebar.text_input if w.key in ("scl_zoo_path",) or w.key.startswith("scl_data_root")]
    picker = at.sidebar.selectbox(key="scl_zoo_name")
    assert list(picker.options) == ["tiny", "broken"]
    assert not any("No model zoo could be loaded" in e.value for e in at.error)  # the listed zoo opens
    picker.set_value("broken").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("No model zoo could be loaded" in e for e in errors), errors
    assert not any(str(tmp_path) in t or str(tiny_zoo) in t for t in texts(at)), texts(at)
    # an experiment page without results: where it looked and the report command, without absolute paths
    from analysis.public_mode import redact_paths

    picker = at.sidebar.selectbox(key="scl_zoo_name")
    picker.set_value("tiny").run()
    for page in ("views/continuity.py", "views/zoo.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = texts(at)
        assert shown and all(redact_paths(t) == t for t in shown), [t for t in shown if redact_paths(t) != t]


def test_access_token_gate(env, tiny_zoo):
    env.setenv("SCL_TOKEN", "s3cret")
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not at.sidebar.text_input and not at.sidebar.selectbox  # nothing of the lab before the token
    at.text_input(key="scl_token_input").set_value("wrong").run()
    assert any("not this server's access token" in e.value for e in at.error)
    assert not at.sidebar.text_input
    at.text_input(key="scl_token_input").set_value("s3cret").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.text_input(key="scl_zoo_path").value == str(tiny_zoo)


@pytest.mark.browser
@pytest.mark.slow
def test_a_deep_link_keeps_its_page_through_the_token_gate(env, tiny_zoo, tmp_path):
    """In Chromium: /saliency asks for the token, then opens the saliency page (not the default page)."""
    from tests.test_browser import browser_page, running_dashboard

    env.setenv("SCL_TOKEN", "s3cret")
    with running_dashboard(tiny_zoo, tmp_path / "streamlit.log") as (url, _, _), browser_page() as page:
        page.goto(f"{url}/saliency", wait_until="domcontentloaded", timeout=120_000)
        box = page.locator("input[type=password]")
        box.wait_for(timeout=120_000)
        assert page.get_by_role("heading", name="Saliency, side by side").count() == 0  # nothing before the token
        box.fill("s3cret")
        box.press("Enter")
        page.get_by_role("heading", name="Saliency, side by side").wait_for(timeout=240_000)
        assert page.url.rstrip("/").endswith("/saliency"), page.url


def test_backend_gone_gives_one_message(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    env.setenv("SCL_BACKEND", url)
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT).run()
    at.switch_page("views/probes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(url in e and "retrying" in e for e in errors), errors


def test_public_server_sets_headers_and_hides_metrics(env, tiny_zoo):
    import subprocess
    import sys
    import time

    import requests

    from app import launch

    env.setenv("SCL_PUBLIC", "1")
    args, extra = launch.parse([])
    assert Path(launch.streamlit_argv(args, extra)[2]).name == "asgi_app.py"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ENTRY.with_name("asgi_app.py")),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):  # up to 2 minutes on a busy CPU
            try:
                if requests.get(url + "/_stcore/health", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer on a busy CPU
                pass
            time.sleep(0.5)
        page = requests.get(url + "/", timeout=10)
        assert page.status_code == 200
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert requests.get(url + "/_stcore/metrics", timeout=10).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.browser
@pytest.mark.slow
def test_public_dashboard_renders_under_its_csp_in_chromium(env, tiny_zoo):
    """The public server's Content-Security-Policy lets Streamlit's front end draw the page (no violation in the
    console) and the zoo picker is there."""
    import os
    import subprocess
    import sys
    import time

    import requests

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian chromium is not installed at /usr/bin/chromium (./lab test installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environ = {**os.environ, "SCL_PUBLIC": "1", "SCL_ZOOS": f"tiny={tiny_zoo}"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ENTRY.with_name("asgi_app.py")),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(url + "/_stcore/health", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer on a busy CPU
                pass
            time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                console: list[str] = []
                page.on("console", lambda m: console.append(m.text))
                page.goto(url, wait_until="domcontentloaded", timeout=120_000)
                page.get_by_text("Model zoo", exact=True).first.wait_for(timeout=240_000)
                assert not [m for m in console if "Content Security Policy" in m], console
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
