"""The backend's heavy maps as jobs, without Ray: ``analysis.service_jobs.ServiceJobs`` (progress, turns, cancel,
the result fetched once, orphans given up on a fake clock) and the same across HTTP through
``ZooServer.jobs_request`` and ``RemoteComputeService`` (a stdlib server standing in for Ray Serve's proxy; the
Ray path is in tests/test_backend_service.py). Every wait is on an event, never on the clock."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from analysis import service_api as api
from analysis import service_wire as wire
from analysis.jobs_protocol import Cancelled, HeavyQuota, QuotaExceeded
from analysis.service_jobs import ServiceJobs, UnknownJob

WAIT = 60  # seconds: an upper bound for events that should come at once, never a measured time


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_jobs_progress_turns_orphans_cancel_and_result():
    gate, started = threading.Event(), threading.Event()

    def compute(request, progress, should_stop):
        progress(0.5)
        started.set()
        while not gate.wait(0.01):
            if should_stop():
                raise Cancelled("stopped")
        return f"maps of {request}"

    clock = Clock()
    jobs = ServiceJobs(compute, orphan_timeout_s=30, sweep_s=0, clock=clock)
    try:
        a = jobs.submit("client-a", "r1")
        assert started.wait(WAIT)
        status = jobs.status(a["job"])
        assert status["state"] == "running" and status["fraction"] == 0.5 and status["position"] is None
        b = jobs.submit("client-b", "r2")
        assert jobs.status(b["job"])["position"] == 0 and jobs.status(b["job"])["state"] == "queued"

        clock.t = 20.0
        jobs.status(a["job"])  # client a still polls; client b has gone quiet since t=0
        clock.t = 31.0
        assert jobs.sweep() == 1
        with pytest.raises(UnknownJob, match="not on this backend"):
            jobs.status(b["job"])
        assert jobs.stats()["orphaned"] == 1

        running = jobs.runner.get(a["job"])
        jobs.cancel(a["job"])  # the client asks to stop: the running computation stops at its next check
        assert running.wait(WAIT) and running.state == "cancelled"
        assert jobs.stats()["cancelled"] == 1 and len(jobs) == 0

        gate.set()
        c = jobs.submit("client-a", "r3")
        assert jobs.runner.get(c["job"]).wait(WAIT)
        assert jobs.status(c["job"])["state"] == "done" and jobs.result(c["job"]) == "maps of r3"
        with pytest.raises(UnknownJob):  # fetched once, then forgotten
            jobs.result(c["job"])
    finally:
        gate.set()
        jobs.shutdown()


@contextlib.contextmanager
def over_http(server):
    """``server`` (a ZooServer with jobs) behind a stdlib HTTP server on a loopback port, answering as a replica
    does; yields its URL."""
    from analysis.backend_service import _jobs_parts
    from tests.test_backend_service import free_port

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: bytes) -> None:
            parts = _jobs_parts(self.path)
            if parts is not None:
                status, out = server.jobs_request(parts, self.command, body, self.headers.get("X-SCL-Session", ""))
            else:
                status, out = 200, wire.dumps(server.maps_batch([wire.request_of("maps", body)])[0])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self):  # noqa: N802 - http.server's name
            self._answer(self.rfile.read(int(self.headers["Content-Length"])))

        def do_GET(self):  # noqa: N802
            self._answer(b"")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.jobs.shutdown()


@pytest.fixture(scope="module")
def stand_in(tiny_zoo):
    """ZooServer with jobs (quota: 2 a minute) over HTTP."""
    from analysis.backend_service import ZooServer

    server = ZooServer(str(tiny_zoo), "cpu")
    server.enable_jobs(1, HeavyQuota(running=0, per_minute=2), orphan_timeout_s=30)
    with over_http(server) as url:
        yield server, url


def test_maps_as_a_job_over_http_equal_the_embedded_ones_and_quota_is_a_message(stand_in):
    from analysis.service_client import RemoteComputeService

    server, url = stand_in
    client = RemoteComputeService(url, "tiny", poll_s=0.02, client="page-session")
    image = np.random.default_rng(4).random((3, 32, 32), dtype=np.float32)
    req = api.MapsRequest("standard", image, "contrast", "integrated_gradients", 2, (3,),
                          (("n_steps", 64), ("internal_batch_size", 8)))  # fmt: skip
    seen: list[float] = []
    got = client.maps(req, progress=seen.append)
    want = api.LocalComputeService(server.zoo, lambda *a: None).maps(req)
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-5, atol=1e-6)
    assert got.levels == [3] and seen == sorted(seen)

    long = api.MapsRequest("standard", image, "contrast", "integrated_gradients", 2, (3,),
                           (("n_steps", 2000), ("internal_batch_size", 1)))  # fmt: skip
    mid: list[float] = []

    def record(fraction: float) -> None:
        if 0 < fraction < 1:
            mid.append(fraction)

    with pytest.raises(Cancelled):  # stopped as soon as two different fractions in (0, 1) came back
        client.maps(long, progress=record, should_stop=lambda: len(set(mid)) >= 2)
    assert max(mid) > min(mid) and len(server.jobs) == 0  # the backend gave the job up at once
    stopped = threading.Event()
    while not stopped.wait(0.05) and server.jobs.stats()["cancelled"] < 1:  # its computation stops at a chunk
        pass
    stats = server.jobs.stats()
    assert stats["cancelled"] == 1 and stats["done"] == 1 and stats["submitted"] == 2 and stats["running"] == 0

    with pytest.raises(QuotaExceeded, match="in the last minute"):  # the third new heavy job of this session
        client.maps(req, progress=seen.append)


def test_a_map_queued_on_the_backend_shows_its_place_on_the_page_then_runs(tiny_zoo):
    """One backend worker busy with another session's job, a second session's job queued: the page's heavy map,
    a job here polling its job there, reads 1 ahead, then 0 once the first is done, then none while it computes."""
    from analysis.backend_service import ZooServer
    from analysis.job_runner import JobRunner
    from analysis.service_client import RemoteComputeService
    from app import saliency_cache

    started = {lv: threading.Event() for lv in (1, 2, 3)}
    gates = {lv: threading.Event() for lv in (1, 2, 3)}

    def compute(request, progress, should_stop):  # level n: the n-th job; each waits for its gate
        lv = request.levels[0]
        started[lv].set()
        assert gates[lv].wait(WAIT)
        return api.LevelMaps([lv], np.full((1, 4, 4), lv, np.float32), [{}])

    server = ZooServer(str(tiny_zoo), "cpu")
    server.jobs = ServiceJobs(compute, workers=1, orphan_timeout_s=600)  # never given up during the test
    image = np.zeros((3, 32, 32), np.float32)

    def request(level):
        return api.MapsRequest("standard", image, "contrast", "integrated_gradients", 0, (level,))

    def place_becomes(job, want) -> bool:
        waited = threading.Event()
        for _ in range(int(WAIT / 0.02)):
            if saliency_cache.queue_position(job) == want:
                return True
            waited.wait(0.02)
        return False

    runner = JobRunner(light_workers=1, heavy_workers=1, sweep_s=None)
    try:
        with over_http(server) as url:
            server.jobs.submit("session-a", request(1))
            assert started[1].wait(WAIT)
            server.jobs.submit("session-b", request(2))
            client = RemoteComputeService(url, "tiny", poll_s=0.02, client="page-session")
            job = runner.submit("page-session", "heavy", saliency_cache._map_job, client, request(3), True)
            assert place_becomes(job, 1) and job.state == "running"  # running here, waiting there
            assert job.position is None  # the dashboard's own queue has nothing before it: the 1 is the backend's
            gates[1].set()
            assert started[2].wait(WAIT) and place_becomes(job, 0)
            gates[2].set()
            assert started[3].wait(WAIT) and place_becomes(job, None) and job.state == "running"
            gates[3].set()
            assert job.wait(WAIT) and job.state == "done", job.error
            np.testing.assert_array_equal(job.result["map"], np.full((4, 4), 3, np.float32))
            assert saliency_cache.queue_position(job) is None
    finally:
        for gate in gates.values():
            gate.set()
        runner.shutdown()
