"""The compute backend on Ray Serve against the in-process default: the same requests, the same numbers; the
client's BackendUnavailable on a dead port; public mode (listed zoos only, no absolute paths, the token)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import service_api as api
from analysis import service_wire as wire
from analysis.public_mode import Catalogue, NotOffered, redact_paths
from analysis.service_client import BackendError, BackendUnavailable, RemoteComputeService, zoo_list
from tests.test_nothing_lost import default_sigint

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123"
# float32 arithmetic: batched and unbatched passes may sum in another order (a few ulps of float32 per layer).
RTOL, ATOL = 1e-4, 1e-5
ORPHAN_S = 3.0  # the served zoo's jobs: given up this long after their client's last poll
WAIT = 120  # seconds: an upper bound for what the service should do at once, never a measured time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).random((3, size, size), dtype=np.float32)


@pytest.fixture(scope="module")
def backend(tmp_path_factory, tiny_zoo):
    """One local Ray instance for the module, the tiny zoo served on a free loopback port, token required."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from analysis.backend_service import BackendConfig, serve_zoos

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the test's own instance, loopback only
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cfg = BackendConfig(port=free_port(), device="cpu", zoos={"tiny": str(tiny_zoo)}, token=TOKEN,
                        public=True, datasets={"digits": None}, batch_wait_timeout_s=0.05,
                        job_orphan_timeout_s=ORPHAN_S)  # fmt: skip
    try:
        url = serve_zoos(cfg)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def local(tiny_zoo):
    from models.checkpoints import load_zoo
    from models.data import load_dataset

    return api.LocalComputeService(load_zoo(tiny_zoo, "cpu"), lambda n, s, r, z: load_dataset(n, s, r, image_size=z))


@pytest.fixture(scope="module")
def remote(backend):
    return RemoteComputeService(backend, "tiny", token=TOKEN)


def assert_same(a, b) -> None:
    """Every number of two responses (dataclasses, arrays, frames, dicts) equal within float32 tolerance."""
    if isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype == b.dtype
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_array_equal(b, a)
    elif isinstance(a, pd.DataFrame):
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
        for col in a.columns:
            assert_same(a[col].to_numpy(), b[col].to_numpy())
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b)
        assert_same(vars(a), vars(b))
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=RTOL, abs=ATOL, nan_ok=True)
    else:
        assert a == b


def test_cli_serves_and_stops_on_ctrl_c(tiny_zoo):
    """``python -m analysis.backend_service`` (what scl-backend and ./lab backend run): ready line, an answer equal
    to the embedded default's, exit 0 on SIGINT."""
    import signal
    import time

    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("SCL_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "analysis.backend_service", "--zoo", f"tiny={tiny_zoo}",
                             "--port", str(port), "--num-cpus", "2", "--device", "cpu"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    try:
        line = ""
        for line in proc.stdout:  # until the ready line (or EOF if it died); Ray may log lines before it
            if line.startswith("[scl-backend]"):
                break
        assert line.startswith("[scl-backend] serving tiny at http://127.0.0.1:"), line
        import threading

        # keep reading its output: Ray's shutdown logs would otherwise fill the pipe and block the exit
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        req = api.PredictionsRequest("ADV", image(5), "hue")
        from models.checkpoints import load_zoo

        want = api.LocalComputeService(load_zoo(tiny_zoo, "cpu"), lambda *a: None).predictions(req)
        assert_same(want, RemoteComputeService(f"http://127.0.0.1:{port}", "tiny").predictions(req))
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_wire_round_trip_is_exact():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": [0.1, float("nan")]})
    req = api.MapsRequest("C", image(0), "brightness", "gradcam", 3, (0, 2), (("layer", "layer4"),))
    back = wire.loads(wire.dumps({"r": req, "f": frame, (1, 2): [np.float32(1.5)]}))
    assert back["r"].image.dtype == np.float32 and np.array_equal(back["r"].image, req.image)
    assert back["r"].levels == (0, 2) and back["r"].options == (("layer", "layer4"),)
    pd.testing.assert_frame_equal(back["f"], frame, check_dtype=False)
    assert back[(1, 2)] == [1.5]
    with pytest.raises(wire.WireError, match="unknown type"):
        wire.loads(b'{"__type__": "Popen", "fields": {}}')
    with pytest.raises(wire.WireError, match="takes a MapsRequest"):
        wire.request_of("maps", wire.dumps(api.PredictionsRequest("C", image(0), "brightness")))


def test_predictions_same_as_local_also_when_batched(backend, local, remote):
    variants = list(local.zoo.variants)
    reqs = [api.PredictionsRequest(variants[i % len(variants)], image(i), "brightness") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # concurrent: the service batches them
        got = list(pool.map(remote.predictions, reqs))
    for req, res in zip(reqs, got, strict=True):
        assert_same(local.predictions(req), res)
    counted = remote.info()["batches"]["predictions"]  # one replica: every request went through @serve.batch
    assert counted["requests"] >= len(reqs) and 1 <= counted["largest"] <= 16
    assert counted["batches"] <= counted["passes"] <= counted["requests"]  # a pass per variant of a batch


def test_a_batch_runs_one_model_pass_per_variant_and_says_so(tiny_zoo):
    """What the bench's requests-per-pass figure rests on: the server counts the passes it runs, not calls."""
    from analysis.backend_service import ZooServer

    server = ZooServer(str(tiny_zoo))
    first, second = list(server.zoo.variants)[:2]
    preds = [api.PredictionsRequest(v, image(i), "brightness") for i, v in enumerate([first, second, first])]
    server.predictions_batch(preds)
    assert server.passes == {"predictions": 2, "maps": 0}
    maps = [api.MapsRequest(first, image(5 + i), "contrast", "gradcam", i, (0, 1)) for i in range(3)]
    server.maps_batch(maps)
    assert server.passes["maps"] == 1  # three requests of one variant, method and options: one pass


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_batched_maps_same_as_local(backend, local, remote, method):
    reqs = [api.MapsRequest("standard", image(10 + i), "contrast", method, i, (0, 1, 3)) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(remote.maps, reqs))
    for req, res in zip(reqs, got, strict=True):
        want = local.maps(req)
        assert res.levels == [0, 1, 3]
        assert_same(want, res)


def test_probes_same_as_local(backend, local, remote):
    req = api.ProbesRequest(image(3), ("standard", "ADV"))
    assert_same(local.probes(req), remote.probes(req))


def test_zoo_list_names_and_hashes_without_paths(backend, tiny_zoo):
    listing = zoo_list(backend, TOKEN)
    assert list(listing) == ["tiny"]
    assert str(tiny_zoo) not in wire.dumps(listing).decode()
    from models.checkpoints import read_zoo_manifest

    hashes = {v: i["sha256"] for v, i in read_zoo_manifest(tiny_zoo)["variants"].items()}
    assert RemoteComputeService.for_hashes(backend, hashes, {"SCL_TOKEN": TOKEN}).zoo == "tiny"
    with pytest.raises(BackendError, match="serves no zoo with these checkpoints"):
        RemoteComputeService.for_hashes(backend, {"standard": "0" * 64}, {"SCL_TOKEN": TOKEN})


def test_token_required(backend):
    with pytest.raises(BackendError, match="access token"):
        RemoteComputeService(backend, "tiny").predictions(api.PredictionsRequest("standard", image(0), "brightness"))
    with pytest.raises(BackendError, match="access token"):
        zoo_list(backend, "wrong")


def test_errors_are_clear_and_show_no_path(backend, remote, tiny_zoo):
    with pytest.raises(BackendError, match="unknown variant 'nope'"):
        remote.predictions(api.PredictionsRequest("nope", image(0), "brightness"))
    # public mode: a typed data folder is refused, without echoing server paths
    spec = ("digits", "test", str(tiny_zoo), 32)
    anchor_req = api.AnchorViewRequest(spec, (), ("standard",))
    with pytest.raises(BackendError) as info:
        remote.anchor_view(anchor_req)
    assert "cannot be chosen on this server" in str(info.value)
    assert "/" not in str(info.value).replace("</", "")  # no absolute path at all


def _until(condition, what: str) -> None:
    """Poll ``condition`` until it holds (an upper bound of WAIT seconds, not a measured time)."""
    import threading

    tick = threading.Event()
    for _ in range(int(WAIT / 0.1)):
        if condition():
            return
        tick.wait(0.1)
    raise AssertionError(f"not within {WAIT} s: {what}")


def _ig(steps: int, batch: int, seed: int = 30, **extra) -> api.MapsRequest:
    options = (("n_steps", steps), ("internal_batch_size", batch), *extra.items())
    return api.MapsRequest("standard", image(seed), "contrast", "integrated_gradients", 1, (2,), options)


def test_heavy_maps_as_jobs_progress_cancel_and_result(backend, local, remote):
    """A heavy map as a job on the service: its result equals the embedded one, its fraction rises while it runs,
    and Cancel stops the computation on the service."""
    from analysis.jobs_protocol import Cancelled

    seen: list[float] = []
    req = _ig(64, 8)
    assert_same(local.maps(req), remote.maps(req, progress=seen.append, should_stop=lambda: False))
    assert seen == sorted(seen)
    stats = remote._job_call("/stats")
    mid: list[float] = []
    with pytest.raises(Cancelled):
        remote.maps(_ig(20_000, 1, integration_method="riemann_trapezoid"),
                    progress=lambda f: mid.append(f) if 0 < f < 1 else None,
                    should_stop=lambda: len(set(mid)) >= 2)  # fmt: skip
    assert max(mid) > min(mid)
    _until(lambda: remote._job_call("/stats")["cancelled"] > stats["cancelled"], "the cancelled job stopped")


def test_the_service_gives_up_a_job_whose_client_went_away(backend, remote):
    job = remote._job_call("", wire.dumps(_ig(50_000, 1, seed=31, integration_method="riemann_trapezoid")))["job"]
    before = remote._job_call("/stats")["orphaned"]  # the job is never polled again: its client has gone
    _until(lambda: remote._job_call("/stats")["orphaned"] > before, "the orphaned job was given up")
    with pytest.raises(BackendError, match="not on this backend"):
        remote._job_call(f"/{job}")
    _until(lambda: remote._job_call("/stats")["running"] == 0, "nothing left running")


def test_dead_port_raises_backend_unavailable():
    url = f"http://127.0.0.1:{free_port()}"
    client = RemoteComputeService(url, "tiny", timeout=5)
    with pytest.raises(BackendUnavailable) as info:
        client.predictions(api.PredictionsRequest("standard", image(0), "brightness"))
    assert url in str(info.value) and "retrying" in str(info.value)


# ----------------------------------------------------------------------------- public mode, no Ray needed


def test_catalogue_refuses_typed_paths_and_opens_listed_zoos(tmp_path, tiny_zoo):
    cat = Catalogue.from_env({"SCL_ZOOS": f"tiny={tiny_zoo}", "SCL_DATASETS": "digits,photos=/srv/photos"})
    assert cat.zoo_path("tiny", public=True) == str(tiny_zoo)
    with pytest.raises(NotOffered, match="not offered on this server; choose one of: tiny") as info:
        cat.zoo_path(str(tmp_path), public=True)
    assert str(tmp_path) not in str(info.value)
    assert cat.zoo_path(str(tmp_path), public=False) == str(tmp_path)
    assert cat.dataset_root("photos", None, public=True) == "/srv/photos"
    assert cat.dataset_root("digits", None, public=True) is None
    with pytest.raises(NotOffered, match="cannot be chosen"):
        cat.dataset_root("digits", "/etc", public=True)
    with pytest.raises(NotOffered, match="choose one of: digits, photos"):
        cat.dataset_root("cifar10", None, public=True)
    yaml_file = tmp_path / "cat.yaml"
    yaml_file.write_text(f"zoos:\n  tiny: {tiny_zoo}\ndatasets:\n  digits: null\n")
    assert Catalogue.from_env({"SCL_CATALOGUE": str(yaml_file)}).zoos == {"tiny": str(tiny_zoo)}


def test_redact_paths():
    text = "zoo /srv/zoos/a/zoo.json: file C.pt missing; see ~/x/y and C:\\data\\z, not http://h:80/api or a/b"
    out = redact_paths(text, {"/srv/zoos/a": "shipped"})
    assert out == "zoo <shipped>: file C.pt missing; see <path> and <path>, not http://h:80/api or a/b"


def test_cli_bad_zoo_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.backend_service", "--zoo", f"x={tmp_path}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_dashboard_as_client_of_the_service(backend, tiny_zoo, monkeypatch, cache_dir):
    """The probes page with SCL_BACKEND at the service (and its token): the probes drawn, no error; the same page
    with a dead backend says so (tests/test_public_dashboard.py), so these figures came over the wire."""
    import json

    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    for name in ("SCL_PUBLIC", "SCL_ZOOS", "SCL_DATASETS", "SCL_CATALOGUE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    monkeypatch.setenv("SCL_BACKEND", backend)
    monkeypatch.setenv("SCL_TOKEN", TOKEN)
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=240).run()
    at.text_input(key="scl_token_input").set_value(TOKEN).run()
    at.switch_page("views/probes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "probe_ex_" in c.proto.id]
    assert len(specs) == 3


def test_client_recovers_when_the_backend_is_back(tiny_zoo):
    """A backend that goes away and comes back on the same port (a restart): BackendUnavailable while it is
    away, then answers again from the same client (its kept-alive connection replaced). A stdlib HTTP server
    stands in for the service here, answering with ZooServer exactly as a replica does."""
    import contextlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from analysis.backend_service import ZooServer

    zoo_server = ZooServer(str(tiny_zoo), "cpu")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Ray Serve's proxy

        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = wire.request_of(self.path.rsplit("/", 1)[-1], body)
            out = wire.dumps(zoo_server.predictions_batch([request])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def setup(self):
            super().setup()
            open_connections.add(self.connection)

        def log_message(self, *args):
            pass

    port, open_connections = free_port(), set()

    def stop(server: ThreadingHTTPServer) -> None:
        """As a killed process: the listening socket and every kept-alive connection closed."""
        server.shutdown()
        server.server_close()
        for conn in list(open_connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        open_connections.clear()

    def start() -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    client = RemoteComputeService(f"http://127.0.0.1:{port}", "tiny", timeout=10)
    req = api.PredictionsRequest("C", image(7), "saturation")
    want = api.LocalComputeService(zoo_server.zoo, lambda *a: None).predictions(req)
    server = start()
    assert_same(want, client.predictions(req))
    stop(server)
    with pytest.raises(BackendUnavailable, match="retrying"):
        client.predictions(req)
    server = start()
    try:
        assert_same(want, client.predictions(req))
        assert_same(want, client.predictions(req))
    finally:
        stop(server)
