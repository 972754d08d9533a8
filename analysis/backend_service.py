"""The compute backend as a service: ``analysis.service_api.ComputeService`` of each zoo on Ray Serve, over HTTP.

    scl-backend                         # the shipped zoo on 127.0.0.1:8000 (./lab backend does the same)
    scl-backend --zoo tiny=PATH --port 8123 --config backend.yaml

One Serve deployment per zoo holds its variants on its device (``device: auto``: the GPU when there is one);
predictions and batch-safe attribution methods (GradCAM, IG, saliency) of concurrent requests are batched into
one forward/backward pass with ``@serve.batch``; replica count, autoscaling and batching come from the config
file (``backend.yaml`` beside this project documents every key and its default). Requests and responses are
plain JSON (``analysis.service_wire``); ``GET /zoos`` lists the served zoos by name with their checkpoints'
sha256 (never their paths). With ``SCL_TOKEN`` set every request needs ``Authorization: Bearer TOKEN``;
error messages never show absolute paths. The client is ``analysis.service_client.RemoteComputeService``.

Heavy maps (IG, LIME: what the dashboard runs as heavy jobs) can also be jobs across the wire
(``analysis.service_jobs``): ``POST /<zoo>/jobs`` with a ``MapsRequest`` answers a job id, ``GET /<zoo>/jobs/<id>``
its state, fraction done, seconds left and queue position, ``POST /<zoo>/jobs/<id>/cancel`` stops it,
``GET /<zoo>/jobs/<id>/result`` fetches it once and ``GET /<zoo>/jobs/stats`` counts jobs by outcome. They run in
one more deployment per zoo (one replica, so every poll finds its job; its own copy of the zoo, so heavy work never
delays the batched light requests), clients (``X-SCL-Session``) take turns under the per-session quota of
``SCL_HEAVY_RUNNING`` / ``SCL_HEAVY_PER_MINUTE``, and a job its client stopped polling for
``job_orphan_timeout_s`` is cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis import service_api as api
from analysis import service_wire as wire
from analysis.jobs_protocol import HeavyQuota, QuotaExceeded
from analysis.public_mode import ENV_TOKEN, Catalogue, NotOffered, bearer, is_public, redact_paths, token_ok
from models.assets import backend_config, default_zoo

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = backend_config()  # the clone's, or the installed package's (models.assets)
DEFAULT_ZOO = default_zoo()
BATCH_SAFE_METHODS = frozenset({"gradcam", "integrated_gradients", "saliency"})  # per-sample maps, no sampling

# ----------------------------------------------------------------------------- configuration


@dataclass
class BackendConfig:
    """The backend's settings (``backend.yaml``'s keys; every default here is the one documented there)."""

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    zoos: dict[str, str] = field(default_factory=dict)  # name -> folder (empty: the shipped zoo as "default")
    datasets: dict[str, str | None] = field(default_factory=dict)  # public mode: the data sets offered
    num_replicas: int = 1
    autoscaling: dict[str, Any] | None = None  # Ray Serve autoscaling_config (replaces num_replicas)
    num_cpus: float = 1.0  # per replica
    num_gpus: float = 0.0  # per replica (0.5: two replicas share a GPU)
    max_ongoing_requests: int = 32
    batching: bool = True
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.01
    public: bool = False
    token: str | None = None
    jobs_workers: int = 1  # heavy jobs computed at once per zoo (the jobs deployment's threads)
    jobs_num_cpus: float = 0.0  # the jobs deployment's CPUs (0: it shares the replicas' cores)
    jobs_num_gpus: float = 0.0  # its GPU share (e.g. 0.5 beside one replica with 0.5)
    job_orphan_timeout_s: float = 30.0  # a job its client has not polled for this long is cancelled

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> BackendConfig:
        """Defaults, overridden by the YAML file at ``path`` (None: none); ValueError for unknown keys."""
        cfg = cls()
        if path is None:
            return cfg
        import yaml

        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{Path(path).name}: expected a YAML map of settings")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{Path(path).name}: unknown setting(s) {', '.join(unknown)}")
        for key, value in data.items():
            setattr(cfg, key, value)
        cfg.zoos = {str(k): str(v) for k, v in dict(cfg.zoos or {}).items()}
        cfg.datasets = dict(cfg.datasets or {})
        return cfg

    def catalogue(self) -> Catalogue:
        return Catalogue.from_mapping({"zoos": self.zoos, "datasets": self.datasets})


def resolve_device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


# ----------------------------------------------------------------------------- one zoo, framework-free


def zoo_info(path: str | os.PathLike) -> dict[str, Any]:
    """What ``GET /zoos`` says of a zoo: variants and checkpoint sha256 from its manifest (no path)."""
    from models.checkpoints import read_zoo_manifest

    manifest = read_zoo_manifest(path)
    variants = {v: item if isinstance(item, dict) else {} for v, item in (manifest.get("variants") or {}).items()}
    return {"variants": list(variants), "sha256": {v: str(i.get("sha256", "")) for v, i in variants.items()},
            "dataset": (manifest.get("dataset") or {}).get("name")}  # fmt: skip


class ZooServer:
    """One zoo's compute service behind the wire: decodes a request, computes it, encodes the answer.

    ``predictions_batch`` and ``maps_batch`` take many requests at once (what ``@serve.batch`` hands over) and
    answer each exactly as ``LocalComputeService`` would, with one model pass per variant."""

    def __init__(self, path: str, device: str = "cpu", catalogue: Catalogue | None = None, public: bool = False,
                 token: str | None = None) -> None:  # fmt: skip
        from models.checkpoints import load_zoo

        self.catalogue, self.public, self.token = catalogue or Catalogue(), public, token
        self.zoo = load_zoo(path, resolve_device(device))
        first = next(iter(self.zoo.entries.values()))
        classes = list((self.zoo.dataset or {}).get("classes") or first.meta.get("dataset", {}).get("classes") or [])
        data_root = (first.meta.get("config") or {}).get("data_root")
        self.names = self.catalogue.path_names()
        self.names.setdefault(str(Path(path).resolve()), self.zoo.manifest.get("name") or "zoo")
        self.local = api.LocalComputeService(self.zoo, self._load_dataset, self._class_namer(classes), data_root)
        self.passes = {"predictions": 0, "maps": 0}  # model passes run by the batched methods (one per group)

    @staticmethod
    def _class_namer(classes: list[str]):
        return lambda i: str(classes[i]) if 0 <= int(i) < len(classes) else str(i)

    def _load_dataset(self, name: str, split: str = "test", root: str | None = None, image_size: int | None = None):
        return _cached_dataset(name, split, self.catalogue.dataset_root(name, root, self.public), image_size)

    # -------------------------------------------------------------- batched

    def predictions_batch(self, requests: Sequence[api.PredictionsRequest]) -> list[api.LevelPredictions]:
        """Each request's ``LevelPredictions``, the images of every request of a variant in one forward pass."""
        import torch

        from analysis.per_image import as_batch, level_batch, logits_of

        out: list[api.LevelPredictions | None] = [None] * len(requests)
        for variant in dict.fromkeys(r.variant for r in requests):
            idx = [i for i, r in enumerate(requests) if r.variant == variant]
            xs = [torch.cat([as_batch(requests[i].image), level_batch(requests[i].image, requests[i].kind,
                                                                      requests[i].levels)]) for i in idx]  # fmt: skip
            logits = logits_of(self.local._model(variant), torch.cat(xs))
            self.passes["predictions"] += 1
            start = 0
            for i, x in zip(idx, xs, strict=True):
                out[i] = _finish_predictions(requests[i].levels, logits[start : start + len(x)])
                start += len(x)
        return out  # type: ignore[return-value]

    def maps_batch(self, requests: Sequence[api.MapsRequest]) -> list[api.LevelMaps]:
        """Each request's ``LevelMaps``; requests of one variant, batch-safe method and options in one pass."""
        import torch

        from analysis.attributions import explain, get_method
        from analysis.per_image import _scalar_extras, level_batch

        out: list[api.LevelMaps | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            named = any(k in ("baseline", "baselines") and isinstance(v, str) for k, v in r.options)
            if r.method in BATCH_SAFE_METHODS and not named:  # a baseline by name: built per image, unbatched
                groups.setdefault((r.variant, r.method, r.options), []).append(i)
            else:
                out[i] = self.local.maps(r)
                self.passes["maps"] += 1
        for (variant, method, options), idx in groups.items():
            xs = [level_batch(requests[i].image, requests[i].kind, requests[i].levels) for i in idx]
            targets = [int(requests[i].target) for i, x in zip(idx, xs, strict=True) for _ in range(len(x))]
            ex = explain(method, self.local._model(variant), torch.cat(xs), targets,
                         **get_method(method).options(**dict(options)))  # fmt: skip
            self.passes["maps"] += 1
            maps, start = np.asarray(ex.maps, dtype=np.float32), 0
            for i, x in zip(idx, xs, strict=True):
                extras = [_scalar_extras(ex.extras, j) for j in range(start, start + len(x))]
                out[i] = api.LevelMaps([int(v) for v in requests[i].levels], maps[start : start + len(x)], extras)
                start += len(x)
        return out  # type: ignore[return-value]

    def single(self, method: str, request: Any) -> Any:
        """The unbatched call of ``method`` on the in-process service."""
        return getattr(self.local, method)(request)

    # -------------------------------------------------------------- heavy maps as jobs

    def enable_jobs(self, workers: int = 1, quota: HeavyQuota | None = None, orphan_timeout_s: float = 30.0) -> None:
        """Serve heavy maps as jobs (``analysis.service_jobs``) from this server."""
        from analysis.service_jobs import ServiceJobs

        self.jobs = ServiceJobs(lambda r, progress, stop: self.local.maps(r, progress, stop), workers, quota,
                                orphan_timeout_s)  # fmt: skip

    def jobs_request(self, parts: Sequence[str], http_method: str, body: bytes, client: str) -> tuple[int, bytes]:
        """One call of the job endpoints: ``parts`` is the path after ``jobs`` ([], [id], [id, 'cancel'|'result'])."""
        from analysis.service_jobs import UnknownJob

        jobs = getattr(self, "jobs", None)
        try:
            if jobs is None:
                raise ValueError("this backend serves no jobs")
            if not parts and http_method == "POST":
                return 200, wire.dumps(jobs.submit(client, wire.request_of("maps", body)))
            if parts == ["stats"]:
                return 200, wire.dumps(jobs.stats())
            if not parts or not parts[0].isdigit() or len(parts) > 2:
                raise ValueError("job endpoints: POST jobs, GET jobs/<id>, POST jobs/<id>/cancel, GET jobs/<id>/result")
            job_id, op = int(parts[0]), (parts[1] if len(parts) == 2 else "status")
            if op == "status":
                return 200, wire.dumps(jobs.status(job_id))
            if op == "cancel":
                return 200, wire.dumps(jobs.cancel(job_id))
            if op == "result":
                return 200, wire.dumps(jobs.result(job_id))
            raise ValueError(f"unknown job operation {op!r}")
        except QuotaExceeded as exc:
            return 429, wire.dumps({"error": str(exc), "retry_s": exc.retry_s})
        except UnknownJob as exc:
            return 404, wire.dumps({"error": exc.args[0]})
        except Exception as exc:  # noqa: BLE001 - one JSON message, paths redacted
            return self.error(exc)

    # -------------------------------------------------------------- the wire

    def check(self, authorization: str | None) -> tuple[int, bytes] | None:
        """None when the request may go on, else the (status, body) refusing it."""
        if not token_ok(bearer(authorization), self.token):
            return 401, wire.dumps({"error": "this backend needs an access token (Authorization: Bearer ...)"})
        return None

    def error(self, exc: BaseException) -> tuple[int, bytes]:
        """An exception as (status, JSON body) with its paths redacted: 400 for a bad request, 500 otherwise."""
        bad = isinstance(exc, wire.WireError | NotOffered | KeyError | ValueError | TypeError)
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        message = redact_paths(f"{'' if bad else type(exc).__name__ + ': '}{text}", self.names)
        return (400 if bad else 500), wire.dumps({"error": message})


def _finish_predictions(levels: Sequence[int], logits: np.ndarray) -> api.LevelPredictions:
    """``analysis.per_image.level_predictions``' answer from the logits of [original, *levels]."""
    import torch

    from analysis.per_image import softmax
    from models.objectives import distance_score

    base, logits = logits[:1], logits[1:]
    probs = softmax(logits)
    ds = distance_score(torch.from_numpy(np.repeat(base, len(logits), 0)), torch.from_numpy(logits)).numpy()
    return api.LevelPredictions([int(v) for v in levels], logits, probs, probs.argmax(1), probs.max(1),
                                np.argsort(-probs, axis=1)[:, :3], np.asarray(ds, dtype=np.float64))  # fmt: skip


@functools.lru_cache(maxsize=6)
def _cached_dataset(name: str, split: str, root: str | None, image_size: int | None):
    from models.data import load_dataset

    return load_dataset(name, split, root or None, image_size=image_size)


# ----------------------------------------------------------------------------- on Ray Serve


def _jobs_parts(path: str) -> list[str] | None:
    """The path after ``/<zoo>/jobs`` as parts, or None when ``path`` is not a job endpoint."""
    parts = path.strip("/").split("/")
    if "jobs" not in parts:
        return None
    return parts[len(parts) - parts[::-1].index("jobs") :]


def _deployments():
    """The Serve deployment classes (built on first use: importing ray takes seconds)."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    def respond(status: int, body: bytes) -> Response:
        return Response(content=body, status_code=status, media_type="application/json")

    @serve.deployment
    class ZooDeployment:
        """One zoo: ``POST /<zoo>/<method>`` with a request of ``analysis.service_wire``; ``GET /<zoo>/info``: its
        variants and this replica's batch counts (per batched method: batch calls, requests, largest batch and the model
        passes they ran, one per variant, method and options in a batch)."""

        def __init__(self, name: str, path: str, cfg: dict[str, Any], jobs: Any = None) -> None:
            self.name, self.jobs = name, jobs  # jobs: the handle of this zoo's ZooJobs deployment
            self.server = ZooServer(path, cfg["device"], Catalogue.from_mapping(cfg), cfg["public"], cfg["token"])
            self.stats = {m: {"batches": 0, "requests": 0, "largest": 0} for m in ("predictions", "maps")}
            size = int(cfg["max_batch_size"]) if cfg["batching"] else 1
            for batched in (self.predictions_batched, self.maps_batched):
                batched.set_max_batch_size(size)
                batched.set_batch_wait_timeout_s(float(cfg["batch_wait_timeout_s"]) if cfg["batching"] else 0.0)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
        async def predictions_batched(self, requests: list[api.PredictionsRequest]) -> list[api.LevelPredictions]:
            self._count("predictions", len(requests))
            return await asyncio.to_thread(self.server.predictions_batch, requests)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
        async def maps_batched(self, requests: list[api.MapsRequest]) -> list[api.LevelMaps]:
            self._count("maps", len(requests))
            return await asyncio.to_thread(self.server.maps_batch, requests)

        def _count(self, method: str, n: int) -> None:
            stats = self.stats[method]
            stats["batches"], stats["requests"] = stats["batches"] + 1, stats["requests"] + n
            stats["largest"] = max(stats["largest"], n)

        async def __call__(self, request: Request) -> Response:
            refused = self.server.check(request.headers.get("authorization"))
            if refused:
                return respond(*refused)
            method = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            parts = _jobs_parts(request.url.path)
            if parts is not None and self.jobs is not None:  # heavy maps as jobs: the one jobs replica answers
                client = request.headers.get("x-scl-session", "")
                return respond(*await self.jobs.call.remote(parts, request.method, await request.body(), client))
            try:
                if request.method == "GET" and method == "info":
                    stats = {m: {**st, "passes": self.server.passes[m]} for m, st in self.stats.items()}
                    return respond(200, wire.dumps({**zoo_info(self.server.zoo.path), "batches": stats}))
                call = wire.request_of(method, await request.body())
                if method == "predictions":
                    result = await self.predictions_batched(call)
                elif method == "maps":
                    result = await self.maps_batched(call)
                else:
                    result = await asyncio.to_thread(self.server.single, method, call)
                return respond(200, wire.dumps(result))
            except Exception as exc:  # every failure: one JSON message, paths redacted, the replica stays up
                return respond(*self.server.error(exc))

    @serve.deployment
    class ZooJobs:
        """One zoo's heavy maps as jobs (one replica: every poll finds its job); reached through ZooDeployment."""

        def __init__(self, path: str, cfg: dict[str, Any]) -> None:
            self.server = ZooServer(path, cfg["device"], Catalogue.from_mapping(cfg), cfg["public"], cfg["token"])
            quota = HeavyQuota(*cfg["quota"])
            self.server.enable_jobs(int(cfg["jobs_workers"]), quota, float(cfg["job_orphan_timeout_s"]))

        async def call(self, parts: list[str], http_method: str, body: bytes, client: str) -> tuple[int, bytes]:
            return await asyncio.to_thread(self.server.jobs_request, parts, http_method, body, client)

    @serve.deployment
    class ZooIndex:
        """``GET /zoos``: name -> variants, checkpoint sha256 and data set of every served zoo."""

        def __init__(self, listing: dict[str, Any], token: str | None) -> None:
            self.listing, self.token = listing, token

        async def __call__(self, request: Request) -> Response:
            if not token_ok(bearer(request.headers.get("authorization")), self.token):
                return respond(401, wire.dumps({"error": "this backend needs an access token"}))
            return respond(200, wire.dumps(self.listing))

    return ZooDeployment, ZooJobs, ZooIndex


def serve_zoos(cfg: BackendConfig) -> str:
    """Deploy every zoo of ``cfg`` on the running Ray instance (``ray.init`` first) and return the base URL."""
    from ray import serve

    zoos = cfg.zoos or {"default": str(DEFAULT_ZOO)}
    if "zoos" in zoos:
        raise ValueError("a zoo cannot be named 'zoos' (the listing's route)")
    listing = {name: zoo_info(path) for name, path in zoos.items()}  # every manifest checked before Ray starts work
    ZooDeployment, ZooJobs, ZooIndex = _deployments()
    quota = HeavyQuota.from_env({**os.environ, "SCL_PUBLIC": "1"} if cfg.public else os.environ)
    serve.start(http_options={"host": cfg.host, "port": int(cfg.port)})
    settings = {"device": cfg.device, "public": bool(cfg.public), "token": cfg.token, "zoos": zoos,
                "datasets": cfg.datasets, "batching": bool(cfg.batching), "max_batch_size": int(cfg.max_batch_size),
                "batch_wait_timeout_s": float(cfg.batch_wait_timeout_s), "jobs_workers": int(cfg.jobs_workers),
                "job_orphan_timeout_s": float(cfg.job_orphan_timeout_s), "quota": astuple(quota)}  # fmt: skip
    scaling: dict[str, Any] = (
        {"autoscaling_config": dict(cfg.autoscaling)} if cfg.autoscaling else {"num_replicas": int(cfg.num_replicas)}
    )
    for name, path in zoos.items():
        folder = str(Path(path).expanduser().resolve())
        jobs = ZooJobs.options(
            name=f"jobs-{name}", num_replicas=1, max_ongoing_requests=int(cfg.max_ongoing_requests),
            ray_actor_options={"num_cpus": float(cfg.jobs_num_cpus), "num_gpus": float(cfg.jobs_num_gpus)},
        ).bind(folder, settings)  # fmt: skip
        app = ZooDeployment.options(
            name=f"zoo-{name}", max_ongoing_requests=int(cfg.max_ongoing_requests),
            ray_actor_options={"num_cpus": float(cfg.num_cpus), "num_gpus": float(cfg.num_gpus)}, **scaling,
        ).bind(name, folder, settings, jobs)  # fmt: skip
        serve.run(app, name=f"zoo-{name}", route_prefix=f"/{name}")
    index = ZooIndex.options(name="zoos", ray_actor_options={"num_cpus": 0}).bind(listing, cfg.token)
    serve.run(index, name="zoos", route_prefix="/zoos")
    return f"http://{cfg.host}:{int(cfg.port)}"


# ----------------------------------------------------------------------------- command line


def _zoo_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep:
        path, name = text, Path(text).name
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH or PATH, got {text!r}")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scl-backend", description="Serve zoos' compute (predictions, maps, "
                                "embeddings, quick experiments) over HTTP on Ray Serve.")  # fmt: skip
    p.add_argument("--config", default=None, help=f"YAML settings (default: {DEFAULT_CONFIG.name} when present)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    p.add_argument("--zoo", type=_zoo_arg, action="append", default=None, metavar="NAME=PATH",
                   help="a zoo to serve (repeatable; default: the config's zoos, else the shipped zoo)")  # fmt: skip
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-batching", action="store_true", help="answer every request on its own")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs Ray may use on this machine (default: all)")
    return p


def config_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> BackendConfig:
    """The config file, then the command line and ``SCL_PUBLIC`` / ``SCL_TOKEN`` / ``SCL_ZOOS`` on top."""
    environ = dict(os.environ if environ is None else environ)
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = BackendConfig.load(path)
    env_cat = Catalogue.from_env(environ)
    if args.zoo:
        cfg.zoos = dict(args.zoo)
    elif env_cat.zoos:
        cfg.zoos = env_cat.zoos
    cfg.datasets.update(env_cat.datasets)
    for key in ("host", "port", "device"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.no_batching:
        cfg.batching = False
    cfg.public = cfg.public or is_public(environ)
    cfg.token = environ.get(ENV_TOKEN) or cfg.token
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        for path in (cfg.zoos or {"default": str(DEFAULT_ZOO)}).values():
            zoo_info(path)
    except (OSError, ValueError) as exc:
        print(f"error: {redact_paths(str(exc)) if is_public() else exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # CheckpointError and the like: a bad zoo folder
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    import ray
    from ray import serve

    started = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        url = serve_zoos(cfg)
        print(f"[scl-backend] serving {', '.join(cfg.zoos or ['default'])} at {url} "
              f"(ready in {time.perf_counter() - started:.0f} s); Ctrl+C stops it", flush=True)  # fmt: skip
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # a deployment that failed to start (its replicas' logs above say why)
        print(f"error: the backend did not start: {redact_paths(str(exc)) if cfg.public else exc}", file=sys.stderr)
        return 1
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    # Through the imported module, not __main__: Ray pickles the deployments' functions by module name.
    from analysis.backend_service import main as _main

    raise SystemExit(_main())
