"""bench/backend.py's own logic, without Ray: the answers' comparison (its tolerance), the bounded-duration users'
loop against a stand-in service (errors counted with the first one's text, samples kept), and the goal lines."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str, file: str):
    """A bench script (bench/ is not a package) imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_backend", "backend.py")


def maps(values) -> object:
    from analysis.service_api import LevelMaps

    return LevelMaps([0, 1], np.asarray(values, dtype=np.float32), [{"delta": 0.5}, {"delta": 0.25}])


def test_first_difference_within_and_beyond_the_stated_tolerance(bench):
    want = maps(np.ones((2, 4, 4)))
    assert bench.first_difference(want, maps(np.ones((2, 4, 4)) * (1 + bench.RTOL / 2))) is None
    beyond = np.ones((2, 4, 4))
    beyond[1, 2, 3] += 10 * bench.RTOL + bench.ATOL
    diff = bench.first_difference(want, maps(beyond))
    assert diff and diff.startswith("LevelMaps.maps: differs by up to")
    assert "shape" in bench.first_difference(want, maps(np.ones((2, 4, 5))))
    other = maps(np.ones((2, 4, 4)))
    other.extras[1]["delta"] = 0.3
    assert bench.first_difference(want, other) == "LevelMaps.extras[1].delta: 0.3 instead of 0.25"
    other.levels = [0, 2]
    assert bench.first_difference(want, other).startswith("LevelMaps.levels[1]")
    assert "values differ" in bench.first_difference(np.array([1, 2, 3]), np.array([1, 2, 4]))


class StandIn:
    """A compute service that answers at once, every ``fail_every``-th call with an error; answers are counted."""

    def __init__(self, fail_every: int = 0) -> None:
        self.calls, self.fail_every, self.lock = 0, fail_every, threading.Lock()

    def _answer(self, req):
        with self.lock:
            self.calls += 1
            if self.fail_every and self.calls % self.fail_every == 0:
                raise ConnectionError(f"call {self.calls} refused")
        return maps(np.full((2, 4, 4), float(req.image.sum()), dtype=np.float32))

    maps = predictions = _answer


def test_duration_mode_loops_until_the_time_is_up_and_counts_errors(bench):
    service = StandIn(fail_every=7)
    row = bench.run_users(service, 3, 1, ["A", "B"], 8, "gradcam", "hue", duration=0.3, check_every=2)
    assert row["requests"] == service.calls and row["requests"] > 3 * 2  # more than --requests 1 would have made
    assert row["errors"] == service.calls // 7
    assert row["first_error"].startswith("ConnectionError: call ") and row["first_error"].endswith(" refused")
    assert 0 < len(row["checked"]) <= 3 * 2 * bench.MAX_CHECKED
    assert row["p50_s"] <= row["p95_s"]
    counted = bench.run_users(StandIn(), 2, 3, ["A"], 8, "gradcam", "hue")  # the default: --requests per user
    assert counted["requests"] == 2 * 3 * 2 and counted["errors"] == 0 and counted["first_error"] is None


def test_page_workload_asks_every_variant_of_an_image_a_few_at_a_time(bench):
    """The saliency page's way of asking: per image every variant's maps and predictions, ``page_workers`` in
    flight at once; a page's latency lasts until its last answer."""

    class Slow(StandIn):
        def __init__(self):
            super().__init__()
            self.in_flight = self.most = 0
            self.asked: list[tuple[float, str]] = []

        def _answer(self, req):
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
                self.asked.append((float(req.image.sum()), req.variant))
            time.sleep(0.01)
            with self.lock:
                self.in_flight -= 1
            return super()._answer(req)

        maps = predictions = _answer

    service = Slow()
    row = bench.run_users(service, 1, 3, ["A", "B", "C"], 8, "gradcam", "hue", page_workers=2)
    assert row["requests"] == 3 * 3 * 2 and row["pages"] == 3 and service.most == 2
    by_image: dict[float, set[str]] = {}
    for image_sum, variant in service.asked:
        by_image.setdefault(image_sum, set()).add(variant)
    assert list(by_image.values()) == [{"A", "B", "C"}] * 3  # every variant of each image
    assert row["p95_page_s"] >= 3 * 0.01 and row["p50_page_s"] <= row["p95_page_s"]  # 6 calls, 2 at a time
    turns = bench.run_users(Slow(), 1, 3, ["A", "B", "C"], 8, "gradcam", "hue")  # the requests workload
    assert turns["requests"] == 3 * 2 and "p95_page_s" not in turns


def test_check_answers_names_the_first_difference(bench):
    row = bench.run_users(StandIn(), 2, 4, ["A", "B"], 8, "gradcam", "hue", check_every=1)
    assert len(row["checked"]) == 2 * 4 * 2
    assert bench.check_answers(StandIn(), row["checked"]) == {"compared": 16, "differ": 0, "first_difference": None}

    class Off(StandIn):
        def _answer(self, req):
            out = super()._answer(req)
            out.maps = out.maps + 1
            return out

        maps = predictions = _answer

    check = bench.check_answers(Off(), row["checked"])
    assert check["differ"] == 16 and "LevelMaps.maps: differs by up to 1" in check["first_difference"]


def test_goal_lines_read_goal_measured_verdict(bench):
    def row(server, users, p95, rps, errors=0, first=None, check=None):
        return {"server": server, "users": users, "requests": 10, "errors": errors, "first_error": first,
                "throughput_rps": rps, "p50_s": p95 / 2, "p95_s": p95, "check": check}  # fmt: skip

    rows = [row("service", 1, 0.2, 4.0, check={"compared": 4, "differ": 0, "first_difference": None}),
            row("service", 8, 0.5, 9.0, check={"compared": 4, "differ": 1, "first_difference": "x: off"}),
            row("service, no batching", 1, 0.2, 4.0),
            row("service, no batching", 8, 0.3, 5.0, 2, "BackendError: no")]  # fmt: skip
    lines = bench.goals(rows)
    assert all(line.startswith("goal ") and " measured " in line for line in lines)
    by = {line.split(" measured ")[0]: line for line in lines}
    p95 = by[next(k for k in by if "service: p95 at 8 users" in k)]
    assert "2.50x (0.500 s / 0.200 s)" in p95 and p95.endswith("NOT MET")
    assert by[next(k for k in by if "no batching: p95" in k)].endswith(" met")
    gains = [line for line in lines if "batching at" in line]
    assert len(gains) == 2 and "1.00x" in gains[0] and "NOT MET" in gains[0] and "1.80x" in gains[1]
    assert gains[1].endswith(" met")
    errors = next(line for line in lines if "errors: 0" in line)
    assert "2 of 40 requests" in errors and "NOT MET" in errors and "(first: BackendError: no)" in errors
    equal = next(line for line in lines if "answers equal" in line)
    assert f"rtol {bench.RTOL:g}" in equal and "7 of 8 sampled equal" in equal and "(first: x: off)" in equal
    assert bench.goals(rows[:1] + rows[2:3])[-1].endswith(" met")  # one user each, no errors, all equal
    paged = [{**rows[0], "p95_page_s": 1.0}, {**rows[1], "p95_page_s": 1.5}]  # the page workload: whole pages
    page_line = next(line for line in bench.goals(paged) if "p95 at 8 users" in line)
    assert "service: page p95 at 8 users" in page_line and "1.50x (1.500 s / 1.000 s)" in page_line
    assert page_line.endswith(" met")


def test_bad_arguments_are_one_error_line(bench, capsys):
    for argv in (["--duration", "0"], ["--users", "0"], ["--zoo", str(ROOT / "no-such-zoo")], ["--page-workers", "0"]):
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(argv)
        assert exc.value.code == 2
        assert ": error: --" in capsys.readouterr().err.strip().splitlines()[-1]


def test_embedded_only_duration_run_prints_goals_and_writes_json(bench, tiny_zoo, tmp_path, capsys):
    """The whole command without Ray (``--servers embedded``): bounded by ``--duration``, the table, the goal
    lines and the JSON figures."""
    import json

    out = tmp_path / "figures.json"
    argv = ["--zoo", str(tiny_zoo), "--servers", "embedded", "--users", "1", "2", "--duration", "0.5",
            "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "0.5 s per user count" in printed and "\nembedded " in printed
    assert any(line.startswith("goal errors: 0") and line.endswith(" met") for line in printed.splitlines())
    figures = json.loads(out.read_text())
    assert [r["users"] for r in figures["rows"]] == [1, 2] and figures["duration_s"] == 0.5
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in figures["rows"])
    assert figures["tolerance"] == {"rtol": bench.RTOL, "atol": bench.ATOL}
    paged = tmp_path / "paged.json"
    assert bench.main([*argv[:-1], str(paged), "--workload", "page", "--page-workers", "2"]) == 0
    assert "page p95" in capsys.readouterr().out
    figures = json.loads(paged.read_text())
    assert figures["workload"] == "page" and figures["page_workers"] == 2
    assert all(r["pages"] > 0 and r["requests"] == r["pages"] * 2 * len(figures["variants"]) for r in figures["rows"])
    assert bench.main(["--zoo", str(tiny_zoo), "--servers", "embedded", "--variants", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: --variants nope: not in the zoo")


@pytest.fixture(scope="module")
def restart():
    return load_script("bench_backend_restart", "backend_restart.py")


def test_restart_check_refuses_bad_arguments_before_starting_anything(restart, tmp_path, capsys):
    assert restart.main(["--zoo", str(tmp_path / "no-zoo"), "--logs", str(tmp_path / "logs")]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "logs").exists()
    if Path(restart.CHROMIUM).exists():
        assert restart.main(["--kind", "sepia", "--logs", str(tmp_path / "logs")]) == 2
        assert capsys.readouterr().err.startswith("error: --kind must be one of brightness")
        assert restart.main(["--methods", "gradcam,nope", "--logs", str(tmp_path / "logs")]) == 2
        assert capsys.readouterr().err.startswith("error: --methods must name some of integrated_gradients")
        assert restart.main(["--mid-job", "--logs", str(tmp_path / "logs")]) == 2  # GradCAM alone: no heavy job
        assert capsys.readouterr().err.startswith("error: --mid-job needs a heavy method")


def test_restart_steps_print_pass_and_fail_and_stop_at_a_failure(restart, capsys):
    import os
    import subprocess
    import sys

    before = restart.Step.failures
    with restart.Step("first") as step:
        step.detail = "fine"
    with pytest.raises(SystemExit), restart.Step("second"):
        raise AssertionError("the message was not shown\nmore")
    lines = capsys.readouterr().out.splitlines()
    assert "PASS first (" in lines[0] and lines[0].endswith(": fine")
    assert "FAIL second (" in lines[1] and lines[1].endswith("AssertionError: the message was not shown")
    assert restart.Step.failures == before + 1
    restart.Step.failures = before
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in restart.descendants(os.getpid()) and restart.alive(child.pid)
    finally:
        child.kill()
        child.wait(10)
    assert not restart.alive(child.pid)
