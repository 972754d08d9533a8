"""``RemoteComputeService``: the compute service of a zoo served by ``analysis.backend_service`` over HTTP.

It implements ``analysis.service_api.ComputeService``, so the dashboard uses it exactly as the in-process
default. A backend that cannot be reached (down, restarting, overloaded) raises :class:`BackendUnavailable`,
whose message names the backend's URL and says the page retries; the next request simply tries again, so the
dashboard picks the backend up when it is back. A request the backend refuses raises :class:`BackendError`.

``maps`` with ``progress`` or ``should_stop`` (what the dashboard's heavy jobs pass) runs as a job on the backend
(``analysis.service_jobs``): submitted, polled every ``poll_s`` (the fraction goes to ``progress``), cancelled
there when ``should_stop`` says so, its result fetched once; past the backend's per-session quota
``analysis.jobs_protocol.QuotaExceeded`` is raised with the backend's message. ``on_status`` hears every status
the backend answers, its queue position (queued jobs there before this one) among them: the saliency page shows it
as "queued: N ahead" (``app.saliency_cache.queue_position``), as it does for its own queue.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import requests

from analysis import service_api as api
from analysis import service_wire as wire
from analysis.jobs_protocol import Cancelled, QuotaExceeded, report
from analysis.public_mode import ENV_TOKEN

ENV_BACKEND = "SCL_BACKEND"
DEFAULT_TIMEOUT_S = 600.0  # a whole-set map or a LIME job may take minutes on a CPU backend
POLL_S = 0.25  # how often a job's status is asked for (also the backend's sign that its client is still there)
_local = threading.local()  # one keep-alive HTTP session per thread (requests.Session is not thread-safe)


def _session() -> requests.Session:
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
    return _local.session


class BackendUnavailable(ConnectionError):
    """The backend did not answer (connection refused, timed out, 502/503/504)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"The compute backend at {url} is not reachable ({reason}); retrying on the next request: "
                         "reload the page or change a setting once it is back.")  # fmt: skip


class BackendError(ValueError):
    """The backend answered with an error for this request (its message, paths already redacted)."""


def zoo_list(url: str, token: str | None = None, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The zoos a backend serves: name -> {"variants": [...], "sha256": {variant: hash}, ...}."""
    return _call(url.rstrip("/") + "/zoos", None, token, timeout, url)


def _call(endpoint: str, body: bytes | None, token: str | None, timeout: float, url: str,
          client: str | None = None) -> Any:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if client:
        headers["X-SCL-Session"] = client
    for attempt in (1, 2):  # a kept-alive connection the backend closed (a restart): once more on a fresh one
        try:
            if body is None:
                resp = _session().get(endpoint, headers=headers, timeout=timeout)
            else:
                resp = _session().post(endpoint, data=body, headers=headers, timeout=timeout)
            break
        except requests.Timeout:
            raise BackendUnavailable(url, f"no answer within {timeout:g} s") from None
        except requests.ConnectionError:
            _local.session = None
            if attempt == 2:
                raise BackendUnavailable(url, "connection refused or lost") from None
    if resp.status_code in (502, 503, 504):
        raise BackendUnavailable(url, f"HTTP {resp.status_code}")
    try:
        payload = wire.loads(resp.content)
    except wire.WireError:
        raise BackendError(f"the backend at {url} answered HTTP {resp.status_code} without a result") from None
    if resp.status_code == 429 and isinstance(payload, dict):  # a quota: the backend's message is for the user
        raise QuotaExceeded(str(payload.get("error") or "over this backend's quota"), payload.get("retry_s") or 0)
    if resp.status_code != 200:
        message = payload.get("error") if isinstance(payload, dict) else None
        raise BackendError(str(message or f"the backend at {url} answered HTTP {resp.status_code}"))
    return payload


class RemoteComputeService:
    """:class:`analysis.service_api.ComputeService` of zoo ``zoo`` on the backend at ``url`` (http://host:port)."""

    def __init__(self, url: str, zoo: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 client: str | None = None, poll_s: float = POLL_S) -> None:  # fmt: skip
        self.url, self.zoo, self.token, self.timeout = url.rstrip("/"), zoo, token, timeout
        self.client = client or uuid.uuid4().hex  # whose turn and quota the backend counts its jobs in
        self.poll_s = float(poll_s)

    @classmethod
    def for_hashes(cls, url: str, hashes: Mapping[str, str], environ: Mapping[str, str] | None = None,
                   ) -> RemoteComputeService:  # fmt: skip
        """The backend's zoo whose checkpoints are ``hashes`` (variant -> sha256): the dashboard's loaded zoo
        served remotely. BackendError when the backend serves no such zoo."""
        environ = os.environ if environ is None else environ
        token = environ.get(ENV_TOKEN) or None
        served = zoo_list(url, token)
        wanted = {v: h for v, h in hashes.items() if h}
        for name, info in served.items():
            have = dict(info.get("sha256") or {})
            if wanted and all(have.get(v) == h for v, h in wanted.items()):
                return cls(url, name, token)
        raise BackendError(f"the backend at {url.rstrip('/')} serves no zoo with these checkpoints (it serves: "
                           f"{', '.join(served) or 'none'}); start it with --zoo on this zoo")  # fmt: skip

    def info(self) -> dict[str, Any]:
        """The zoo's variants and checkpoint hashes, and the answering replica's batch counts."""
        return _call(f"{self.url}/{self.zoo}/info", None, self.token, 10.0, self.url)

    def _post(self, method: str, request: Any) -> Any:
        return _call(f"{self.url}/{self.zoo}/{method}", wire.dumps(request), self.token, self.timeout, self.url)

    def predictions(self, request: api.PredictionsRequest) -> api.LevelPredictions:
        return self._post("predictions", request)

    def maps(self, request: api.MapsRequest, progress: Callable[[float], None] | None = None,
             should_stop: Callable[[], bool] | None = None,
             on_status: Callable[[dict], None] | None = None) -> api.LevelMaps:  # fmt: skip
        """``request``'s maps: one batched call, or a job on the backend when any callback is given (``on_status``
        hears each of its statuses, the backend's queue position among them: what the page shows while it waits)."""
        if progress is None and should_stop is None and on_status is None:
            return self._post("maps", request)  # a light request: batched with the others'
        return self.maps_job(request, progress, should_stop, on_status)

    def _job_call(self, tail: str, body: bytes | None = None, timeout: float = 30.0) -> Any:
        return _call(f"{self.url}/{self.zoo}/jobs{tail}", body, self.token, timeout, self.url, self.client)

    def maps_job(self, request: api.MapsRequest, progress: Callable[[float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_status: Callable[[dict], None] | None = None) -> api.LevelMaps:  # fmt: skip
        """``request`` as a job on the backend: polled until done (``on_status`` hears every status: state,
        fraction, remaining_s, position), cancelled there when ``should_stop`` returns True (then ``Cancelled``)."""
        status = self._job_call("", wire.dumps(request))
        job, finished = int(status["job"]), False
        try:
            while True:
                if on_status is not None:
                    on_status(status)
                state = status["state"]
                if state == "done":
                    finished = True
                    return self._job_call(f"/{job}/result", None, self.timeout)
                if state in ("failed", "cancelled"):
                    finished = True
                    if state == "cancelled":
                        raise Cancelled(f"the backend cancelled job {job}")
                    raise BackendError(str(status.get("error") or f"job {job} failed on the backend"))
                report(progress, float(status.get("fraction") or 0.0))
                if should_stop is not None and should_stop():
                    raise Cancelled(f"{request.method} maps cancelled")
                time.sleep(self.poll_s)
                status = self._job_call(f"/{job}")
        finally:
            if not finished:  # cancelled here, or this side failed: the backend stops it too (best effort)
                try:
                    self._job_call(f"/{job}/cancel", b"{}", 10.0)
                except (BackendUnavailable, BackendError):
                    pass

    def adversarial(self, request: api.AdversarialRequest) -> api.AdversarialResult:
        return self._post("adversarial", request)

    def probes(self, request: api.ProbesRequest) -> api.ProbesResult:
        return self._post("probes", request)

    def anchor_view(self, request: api.AnchorViewRequest) -> api.AnchorView:
        return self._post("anchor_view", request)

    def quick(self, request: api.QuickRequest, progress: api.Progress | None = None) -> api.QuickResult:
        """The quick group on the backend; ``progress`` hears only the end (no progress across the wire yet)."""
        result = self._post("quick", request)
        if progress is not None:
            progress(1.0, "done")
        return result
