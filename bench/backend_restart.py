"""A real backend restart under a real dashboard session: no page lost, a message with Retry, then the maps again.

    .venv/bin/python bench/backend_restart.py [--zoo assets/zoo/default] [--stop-s 60] [--hard] [--logs DIR]
    .venv/bin/python bench/backend_restart.py --methods gradcam,lime --mid-job   # a heavy job cut off

Starts the compute backend (``python -m analysis.backend_service``, what ``./lab backend`` and ``scl-backend`` run)
on a free loopback port with the shipped zoo, then the dashboard (``python -m app.launch``, what ``./lab dashboard``
and ``scl-dashboard`` run) on another loopback port with ``SCL_BACKEND`` pointing at it, and drives it with headless
Chromium (Playwright, ``/usr/bin/chromium``): the saliency page until every row has drawn its maps (``--methods``,
default GradCAM; ``integrated_gradients`` and ``lime`` are heavy jobs on the backend; ``--mid-job``: only until
they run); the backend killed (SIGINT, SIGKILL after ``--stop-s``; ``--hard``: SIGKILL at once, a crash); in the
same browser session another perturbation chosen (``--mid-job``: none, the running jobs' polls need the backend),
so the page needs the backend: it must show the "not reachable" message with a Retry button, no traceback and no
rows (no old maps passed off as the new perturbation's); the backend started again on the same port; Retry
clicked: every row's maps drawn again, the message gone, the chosen perturbation kept. Each step is printed with
its time and PASS/FAIL (logs and screenshots go to ``--logs``); the exit status is 1 when any step failed (2 for
bad arguments). Every process started here (backend, its Ray processes, dashboard, browser) is stopped in
``finally``; nothing listens beyond 127.0.0.1. Ray's start-up takes one to two minutes on a loaded 2-core machine
and some 4.4 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
ROW = '[class*="st-key-sal_row_"]'
# every row has a map of each method the link asks for (an image titled with the method's label), none of them
# stale (Streamlit greys out, data-stale, what a rerun has not redrawn yet)
MAPS_DRAWN = """([rowSel, labels]) => {
    const rows = [...document.querySelectorAll(rowSel)];
    return rows.length > 0 && rows.every(r => {
        const fresh = [...r.querySelectorAll('.scl-saliency img')].filter(i => !i.closest('[data-stale="true"]'));
        return labels.every(label => fresh.some(i => i.alt === label));
    });
}"""
UNREACHABLE = "is not reachable"


class Step:
    """One printed step: its name, seconds taken, PASS/FAIL and a detail; failures are counted."""

    failures = 0
    t0 = time.perf_counter()

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Step:
        self.start = time.perf_counter()
        self.detail = ""
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        took = time.perf_counter() - self.start
        ok = exc is None
        Step.failures += not ok
        detail = self.detail if ok else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"[{time.perf_counter() - Step.t0:7.1f} s] {'PASS' if ok else 'FAIL'} {self.name} ({took:.1f} s)"
              f"{': ' + detail if detail else ''}", flush=True)  # fmt: skip
        if not ok:
            raise SystemExit(1)  # the later steps need this one
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_sigint() -> None:
    """In the child: Ctrl-C's default disposition (a shell's background job ignores SIGINT, and children inherit
    that), in its own process group so the whole group (Ray's processes too) can be stopped."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgrp()


class Backend:
    """``python -m analysis.backend_service`` on ``port``; its output goes to ``log``."""

    def __init__(self, zoo: str, port: int, log: Path, env: dict[str, str]) -> None:
        self.zoo, self.port, self.log, self.env, self.proc = zoo, port, log, env, None
        self.ready_line = ""

    def start(self, timeout_s: float) -> str:
        cmd = [sys.executable, "-m", "analysis.backend_service", "--zoo", f"default={self.zoo}",
               "--port", str(self.port), "--device", "cpu", "--num-cpus", str(os.cpu_count() or 2)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, preexec_fn=_default_sigint)  # fmt: skip
        found = threading.Event()
        out = open(self.log, "a")  # noqa: SIM115 - closed by the reader thread

        def read() -> None:
            with out:
                for line in self.proc.stdout:  # keep reading: Ray's logs would otherwise fill the pipe
                    out.write(line)
                    out.flush()
                    if line.startswith("[scl-backend]"):
                        self.ready_line = line.strip()
                        found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout_s) or not self.ready_line:
            raise RuntimeError(f"the backend was not ready after {timeout_s:g} s (exit {self.proc.poll()}); "
                               f"see {self.log}")  # fmt: skip
        return self.ready_line

    def stop(self, grace_s: float, hard: bool = False) -> str:
        """SIGINT (as Ctrl-C), then SIGKILL to its whole process group after ``grace_s`` (``hard``: at once);
        how it ended."""
        if self.proc is None or self.proc.poll() is not None:
            return "not running"
        how, below = "SIGINT", descendants(self.proc.pid)  # Ray's processes, before they lose their parent
        if hard:
            how = "SIGKILL"
        else:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                how = f"SIGINT, then SIGKILL after {grace_s:g} s"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # what is left of its group (Ray's raylet, workers)
        self.proc.wait(30)
        for pid in below:  # any that left the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30  # killed processes close their sockets as they exit: until they have
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.2)
        return f"{how}; exit {self.proc.returncode}"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    below, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - below
        below |= frontier
    return below


def alive(pid: int) -> bool:
    """``pid`` exists and is no zombie (a zombie has closed its sockets; its new parent may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"the dashboard was not healthy after {timeout_s:g} s")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def page_problems(page) -> str:
    """A traceback on the page (Streamlit's exception box), or an error box: what it says; '' when none."""
    boxes = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    return "; ".join(boxes.nth(i).inner_text()[:200] for i in range(boxes.count()))


def choose_kind(page, kind: str) -> None:
    """Pick ``kind`` in the page's Perturbation select box, as a user does."""
    page.locator(".st-key-sal_kind input").first.click()  # the select box's combobox
    page.get_by_role("option", name=kind, exact=True).click()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default=str(ROOT / "assets" / "zoo" / "default"))
    p.add_argument("--ready-s", type=float, default=400, help="longest wait for the backend's ready line")
    p.add_argument("--maps-s", type=float, default=400, help="longest wait for every row's maps")
    p.add_argument("--stop-s", type=float, default=60, help="SIGKILL the backend this long after its SIGINT")
    p.add_argument("--methods", default="gradcam",
                   help="map methods, comma-separated (integrated_gradients, lime: heavy jobs)")  # fmt: skip
    p.add_argument("--mid-job", action="store_true", help="kill the backend while the page's heavy jobs run "
                   "(--methods with integrated_gradients or lime), not after the maps are drawn")  # fmt: skip
    p.add_argument("--hard", action="store_true", help="kill the backend with SIGKILL at once (a crash)")
    p.add_argument("--kind", default="brightness", help="the first perturbation (the second is the next one)")
    p.add_argument("--logs", default=str(ROOT / "test-artifacts"), help="folder for the logs and screenshots")
    args = p.parse_args(argv)
    if not Path(args.zoo, "zoo.json").is_file():
        print(f"error: {args.zoo} is not a zoo folder (no zoo.json)", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"error: needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    from models.perturbations import KINDS

    if args.kind not in KINDS:
        print(f"error: --kind must be one of {', '.join(KINDS)}", file=sys.stderr)
        return 2
    from analysis.attributions import METHOD_REGISTRY

    methods = [m for m in args.methods.split(",") if m]
    if not methods or any(m not in METHOD_REGISTRY for m in methods):
        print(f"error: --methods must name some of {', '.join(METHOD_REGISTRY)}", file=sys.stderr)
        return 2
    if args.mid_job and not {"integrated_gradients", "lime"} & set(methods):
        print("error: --mid-job needs a heavy method in --methods (integrated_gradients or lime)", file=sys.stderr)
        return 2
    drawn = [ROW, [METHOD_REGISTRY[m].label for m in methods]]  # MAPS_DRAWN's argument
    second = list(KINDS)[(list(KINDS).index(args.kind) + 1) % len(KINDS)] if not args.mid_job else args.kind
    from playwright.sync_api import sync_playwright

    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    backend_port, dash_port = free_port(), free_port()
    backend_url, dash_url = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{dash_port}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    for name in ("SCL_TOKEN", "SCL_PUBLIC", "SCL_ZOOS", "SCL_DATASETS", "SCL_CATALOGUE"):
        env.pop(name, None)
    backend_log, dash_log = logs / "restart-backend.log", logs / "restart-dashboard.log"
    backend_log.write_text("")
    backend = Backend(args.zoo, backend_port, backend_log, env)
    dashboard = None
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; backend {backend_url}, dashboard {dash_url}; "
          f"logs in {logs}", flush=True)  # fmt: skip
    try:
        with Step("backend started") as s:
            s.detail = backend.start(args.ready_s)
        with Step("dashboard started with SCL_BACKEND") as s:
            with open(dash_log, "w") as out:
                dashboard = subprocess.Popen(
                    [sys.executable, "-m", "app.launch", "--zoo", args.zoo, "--port", str(dash_port),
                     "--address", "127.0.0.1", "--server.headless", "true"],
                    cwd=ROOT, env={**env, "SCL_BACKEND": backend_url},
                    stdout=out, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)  # fmt: skip
            wait_healthy(dash_url, dashboard, 180)
            s.detail = dash_url
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            try:
                wanted = "heavy maps computing (Cancel shown)" if args.mid_job else f"{'+'.join(methods)} maps drawn"
                with Step(f"saliency page: every row's {wanted} (over the backend)") as s:
                    page.goto(f"{dash_url}/saliency?image=0&kind={args.kind}&methods={','.join(methods)}",
                              wait_until="domcontentloaded", timeout=120_000)  # fmt: skip
                    page.get_by_role("heading", name="Saliency, side by side").wait_for(timeout=args.maps_s * 1000)
                    if args.mid_job:  # the heavy jobs are running on the backend: the page offers Cancel
                        page.locator(".st-key-sal_cancel").get_by_role("button").wait_for(timeout=args.maps_s * 1000)
                    else:
                        page.wait_for_function(MAPS_DRAWN, arg=drawn, timeout=args.maps_s * 1000, polling=500)
                    problems = page_problems(page)
                    assert not problems, problems
                    s.detail = f"{page.locator(ROW).count()} rows"
                    page.screenshot(path=str(logs / "restart-1-drawn.png"))
                with Step("backend killed") as s:
                    s.detail = backend.stop(args.stop_s, args.hard)
                    deadline = time.monotonic() + 30
                    while listening(backend_port) and time.monotonic() < deadline:
                        time.sleep(0.5)
                    assert not listening(backend_port), f"port {backend_port} still answers 30 s later"
                asking = "its running jobs poll" if args.mid_job else f'it asks for "{second}"'
                with Step(f'page, as {asking}: "not reachable" message, Retry, no traceback') as s:
                    if not args.mid_job:
                        choose_kind(page, second)
                    page.get_by_text(UNREACHABLE).first.wait_for(timeout=args.maps_s * 1000)
                    page.get_by_role("button", name="Retry").wait_for(timeout=30_000)
                    if not args.mid_job:  # no rows: the old perturbation's maps are not passed off as the new one's
                        page.wait_for_function(f"() => document.querySelectorAll('{ROW}').length === 0",
                                               timeout=30_000)  # fmt: skip
                    problems = page_problems(page)
                    assert not problems, problems
                    page.get_by_text(UNREACHABLE).first.scroll_into_view_if_needed()
                    page.screenshot(path=str(logs / "restart-2-unreachable.png"))
                    s.detail = page.get_by_text(UNREACHABLE).first.inner_text()[:160]
                with Step("backend started again on the same port") as s:
                    s.detail = backend.start(args.ready_s)
                with Step("Retry clicked: every row's maps drawn again, the message gone") as s:
                    page.get_by_role("button", name="Retry").click()
                    page.wait_for_function(MAPS_DRAWN, arg=drawn, timeout=args.maps_s * 1000, polling=500)
                    page.get_by_text(UNREACHABLE).first.wait_for(state="detached", timeout=60_000)
                    problems = page_problems(page)
                    assert not problems, problems
                    shown = page.locator(".st-key-sal_kind input").first.input_value()
                    assert shown == second, f"the perturbation is {shown!r} again: the choice was lost"
                    rows = page.locator(ROW)
                    stale = [i for i in range(rows.count()) if second not in rows.nth(i).inner_text()]
                    assert not stale, f"rows {stale} are not of {second} (each caption names its perturbation)"
                    page.screenshot(path=str(logs / "restart-3-recovered.png"))
                    s.detail = f"{page.locator(ROW).count()} rows, perturbation still {second}"
            except SystemExit:
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(logs / "restart-failure.png"), full_page=True)
                raise
            finally:
                browser.close()
    except SystemExit:
        pass  # a failed step: printed; the processes are stopped below
    finally:
        print(f"stopping: backend {backend.stop(15)}", flush=True)
        if dashboard is not None and dashboard.poll() is None:
            dashboard.terminate()
            try:
                dashboard.wait(15)
            except subprocess.TimeoutExpired:
                dashboard.kill()
                dashboard.wait(15)
    print(f"{'all steps PASS' if Step.failures == 0 else f'{Step.failures} step(s) FAIL'}", flush=True)
    return 1 if Step.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
