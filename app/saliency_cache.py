"""The saliency page's per-image computations: ``analysis.per_image`` as jobs of the server's runner
(:mod:`app.jobs`), one job per (variant, method, level) so the level on screen is computed first and the others
fill in behind it; the older all-levels-at-once cached path (:func:`saliency_row`, :func:`saliency_grid`); and
``analysis.ood``'s calibrated out-of-distribution check.

Jobs: predictions and GradCAM are ``light`` (one forward / forward+backward per image, on the shared models under
their locks); methods with a per-image sample count in their defaults (IG's ``n_steps``, LIME's ``num_samples``)
are ``heavy`` and run in the heavy pool on a private copy of each model, so they never hold the lock a light
request waits for. Each row carries :class:`RowParams`, what it was computed for.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch

from analysis.precomputed_store import has_maps
from analysis.service_api import ComputeService, MapsRequest, PredictionsRequest
from app import compute, long_lived
from app.jobs import Job, JobProgress, JobRunner, QuotaExceeded
from app.zoo_cache import ZooHandle, _cached_zoo, attributions_module, get_dataset
from models.perturbations import MAX_LEVEL

# ----------------------------------------------------------------------------- saliency (all levels at once)


def per_image_module():
    """``analysis.per_image`` (imports captum through ``analysis.attributions``, once per server)."""
    attributions_module()
    import analysis.per_image as per_image

    return per_image


def method_info() -> dict[str, Any]:
    """The registered attribution methods (``analysis.attributions.METHOD_REGISTRY``), name -> Method."""
    return dict(attributions_module().METHOD_REGISTRY)


def logits_of(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """Logits (N, classes) as float64 numpy, computed under the model's lock."""
    return per_image_module().logits_of(model, images)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@st.cache_data(max_entries=1024, show_spinner=False)
def _cached_predictions(zoo_key: tuple, variant: str, img_key: str, _image: np.ndarray, kind: str) -> dict:
    return per_image_module().level_predictions(_cached_zoo(*zoo_key).model(variant), _image, kind)


@st.cache_data(max_entries=1024, show_spinner=False)
def _cached_maps(zoo_key: tuple, variant: str, img_key: str, _image: np.ndarray, kind: str, method: str,
                 target: int, options: tuple, levels: tuple) -> dict:  # fmt: skip
    model = _cached_zoo(*zoo_key).model(variant)
    return per_image_module().level_maps(model, _image, kind, method, target, levels, **dict(options))


def _pure_maps(handle: ZooHandle, variant: str, image: np.ndarray, kind: str, method: str, target: int,
               options: tuple, levels: tuple) -> dict:  # fmt: skip
    return per_image_module().level_maps(handle.model(variant), image, kind, method, target, levels, **dict(options))


def level_set(method: str, level: int) -> tuple[int, ...]:
    """Which levels one map computation covers: every level for fast methods (a slider is then a lookup),
    only level 0 and ``level`` for slow ones (LIME: about a second per image)."""
    if method_info()[method].slow:
        return tuple(sorted({0, int(level)}))
    return tuple(range(MAX_LEVEL + 1))


def prediction_fields(variant: str, preds: dict, i: int) -> dict[str, Any]:
    """A row's prediction columns: the original (index 0 of ``preds``) and the perturbed image (index ``i``)."""
    target = int(preds["pred"][0])
    return {
        "variant": variant, "target": target, "pred": target, "conf": float(preds["conf"][0]),
        "pred_perturbed": int(preds["pred"][i]), "conf_perturbed": float(preds["conf"][i]),
        "logits": preds["logits"][0], "logits_perturbed": preds["logits"][i],
        "probs": preds["probs"][0], "probs_perturbed": preds["probs"][i],
        "top": [int(c) for c in preds["top"][0]], "top_perturbed": [int(c) for c in preds["top"][i]],
        "ds": float(preds["ds"][i]),
    }  # fmt: skip


def saliency_row(
    handle: ZooHandle,
    variant: str,
    image: np.ndarray,
    kind: str,
    level: int,
    methods: Sequence[str] = ("integrated_gradients", "gradcam"),
    *,
    method_options: dict[str, dict[str, Any]] | None = None,
    cache: bool = False,
    img_key: str | None = None,
) -> dict[str, Any]:
    """One variant's row: predictions at ``level`` (and the original), DS, and each method's maps of the
    perturbed and the original image with their Spearman similarity.

    Maps explain the class the variant predicts on the *original* image, so the explained class stays
    fixed while the level moves. Fast methods are computed for all levels in one batched pass.
    """
    from app.images import image_key  # the one content hash of the dashboard

    per_image = per_image_module()
    image = np.ascontiguousarray(image, dtype=np.float32)
    key = img_key or image_key(image)
    level = int(level)
    if cache:
        preds = _cached_predictions(handle.key, variant, key, image, kind)
    else:
        preds = per_image.level_predictions(handle.model(variant), image, kind)
    i = preds["levels"].index(level)
    target = int(preds["pred"][0])
    row: dict[str, Any] = {
        **prediction_fields(variant, preds, i), "maps": {}, "original_maps": {}, "extras": {}, "similarity": {},
    }  # fmt: skip
    for method in methods:
        options = tuple(sorted((method_options or {}).get(method, {}).items()))
        levels = level_set(method, level)
        if cache:
            res = _cached_maps(handle.key, variant, key, image, kind, method, target, options, levels)
        else:
            res = _pure_maps(handle, variant, image, kind, method, target, options, levels)
        j = res["levels"].index(level)
        row["maps"][method], row["extras"][method] = res["maps"][j], res["extras"][j]
        row["original_maps"][method] = res["maps"][0]
        row["similarity"][method] = per_image.map_similarity(res["maps"][0], res["maps"][j])
    return row


def saliency_grid(
    handle: ZooHandle,
    image: np.ndarray,
    kind: str,
    level: int,
    methods: Sequence[str] = ("integrated_gradients", "gradcam"),
    *,
    lime_samples: int = 1000,
    seed: int = 0,
    with_original: bool = False,
    cache: bool = False,
    variants: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`saliency_row` for each variant (default: the paper's four in the zoo). ``with_original`` keeps
    the original image's maps in ``original_maps`` (else None). ``cache=True`` goes through ``st.cache_data``."""
    from app.images import image_key
    from app.page_labels import default_variants

    options = {"lime": {"num_samples": int(lime_samples), "seed": int(seed)}}
    key = image_key(np.ascontiguousarray(image, dtype=np.float32))
    rows = {}
    for variant in variants or default_variants(handle.variants):
        row = saliency_row(handle, variant, image, kind, level, methods, method_options=options, cache=cache,
                           img_key=key)  # fmt: skip
        if not with_original:
            row["original_maps"] = None
            row["similarity"] = {}
        rows[variant] = row
    return rows


# ----------------------------------------------------------------------------- saliency as jobs (the page)


def heavy_method(method: str) -> bool:
    """Slow methods and those that take a per-image sample count (IG's steps, LIME's, SmoothGrad's and
    GradientSHAP's samples) run as heavy jobs."""
    info = method_info()[method]
    return bool(info.slow) or any(k in info.defaults for k in ("n_steps", "num_samples", "nt_samples", "n_samples"))


def method_settings(methods: Sequence[str], method_options: dict[str, dict[str, Any]] | None) -> tuple:
    """The settings the maps depend on, hashable: ((method, ((option, value), ...)), ...) in ``methods`` order."""
    return tuple((m, tuple(sorted((method_options or {}).get(m, {}).items()))) for m in methods)


@dataclass(frozen=True)
class RowParams:
    """What one row of maps is (or is to be) computed for: image hash, kind, level and method settings."""

    image_key: str
    kind: str
    level: int
    settings: tuple


def _predictions_job(job: Job, service: ComputeService, request: PredictionsRequest) -> dict:
    return vars(service.predictions(request))


def _map_job(job: Job, service: ComputeService, request: MapsRequest, heavy: bool) -> dict:
    """One method's map of one level through the compute service (which also turns a baseline given by name into
    its image). A heavy one is a job there too: the method (or the backend) reports progress and stops when the
    job is cancelled; a light one is one plain call (the backend batches it with others)."""
    job.check()
    from analysis.service_client import RemoteComputeService

    if not heavy:
        res = service.maps(request)
    elif isinstance(service, RemoteComputeService):  # a job on the backend: its queue place is shown here
        res = service.maps(request, job.report, job.should_stop, on_status=lambda s: _note_backend_place(job, s))
    else:
        res = service.maps(request, progress=job.report, should_stop=job.should_stop)
    return {"map": res.maps[0], "extras": res.extras[0]}


_BACKEND_PLACE: weakref.WeakKeyDictionary[Job, int] = weakref.WeakKeyDictionary()  # job -> queued before it there


def _note_backend_place(job: Job, status: dict) -> None:
    """Keep the backend's queue position of ``job``'s remote job while it waits there."""
    position = status.get("position") if status.get("state") == "queued" else None
    if position is None:
        _BACKEND_PLACE.pop(job, None)
    else:
        _BACKEND_PLACE[job] = int(position)


def queue_position(job: Job) -> int | None:
    """How many queued jobs start before ``job``: in this dashboard's pool while it waits here, in the backend's
    while its map waits there (the job runs here, polling); None once it computes or has finished."""
    if job.state == "queued":
        return job.position
    return _BACKEND_PLACE.get(job) if job.state == "running" else None


def submit_predictions(runner: JobRunner, session: str, handle: ZooHandle, variants: Sequence[str],
                       image: np.ndarray, img_key: str, kind: str, group: Hashable) -> dict[str, Job]:  # fmt: skip
    """A light job per variant: predictions and DS of every level (one forward pass, through the compute
    service: ``BackendUnavailable`` when it is a backend that cannot be reached)."""
    svc = compute.service(handle)
    return {
        v: runner.submit(session, "light", _predictions_job, svc, PredictionsRequest(v, image, kind),
                         device=handle.device, key=("pred", handle.key, v, img_key, kind), group=group,
                         label=f"predictions {v}")
        for v in variants
    }  # fmt: skip


class MapSteps(list):
    """:func:`submit_maps`' ((variant, method, level), job) list; ``quota`` is the message of a per-session quota
    that refused some heavy jobs (None when none was refused)."""

    quota: str | None = None


def map_levels(method: str, level: int, with_original: bool = True) -> list[int]:
    """The levels one method needs for the view, in the order they are computed: the shown level, then the
    original (level 0: ρ and the original maps), then every other level (fast methods only)."""
    order = [int(level)] + ([0] if with_original and level else [])
    if not method_info()[method].slow:
        order += [lv for lv in range(MAX_LEVEL + 1) if lv not in order]
    return order


def submit_maps(runner: JobRunner, session: str, handle: ZooHandle, image: np.ndarray, img_key: str, kind: str,
                targets: dict[str, int], methods: Sequence[str], method_options: dict[str, dict] | None,
                level: int, group: Hashable, heavy: bool = True) -> MapSteps:  # fmt: skip
    """One job per (variant, method, level), submitted shown level first (every variant), then level 0, then the
    rest; returns ((variant, method, level), job) in that order. ``heavy=False`` submits no heavy job (after a
    cancel) and returns only the heavy jobs that already exist, as does a session over its heavy-job quota (the
    message in ``quota``). Every map is computed by the compute service (``app.compute``; heavy ones by
    :func:`app.compute.heavy_service`)."""
    settings = dict(method_settings(methods, method_options))
    plan = {m: map_levels(m, level) for m in methods}
    steps = sorted({(rank, m) for m in methods for rank in range(len(plan[m]))})
    light_svc, heavy_svc = compute.service(handle), compute.heavy_service(handle)
    out = MapSteps()
    for rank, method in steps:
        lv = plan[method][rank]
        for v in targets:  # a map in scl-precompute's store is a light read
            stored = has_maps(handle.model(v), image, kind, method, int(targets[v]), (int(lv),), settings[method])
            is_heavy = heavy_method(method) and not stored
            key = ("map", handle.key, v, img_key, kind, method, int(targets[v]), settings[method], lv)
            if is_heavy and (not heavy or out.quota is not None):
                known = runner.find(key)
                if known is not None and (known.state == "done" or (out.quota is not None and known.pending)):
                    out.append(((v, method, lv), known))
                continue
            request = MapsRequest(v, image, kind, method, int(targets[v]), (int(lv),), settings[method])
            try:
                job = runner.submit(
                    session,
                    "heavy" if is_heavy else "light",
                    _map_job,
                    heavy_svc if is_heavy else light_svc,
                    request,
                    is_heavy,
                    key=key,
                    group=group,
                    device=handle.device,
                    label=f"{method_info()[method].label} {v} level {lv}",
                )
            except QuotaExceeded as exc:  # the rest of this view's heavy maps wait for the session's quota
                out.quota = str(exc)
                continue
            out.append(((v, method, lv), job))
    return out


def job_row(variant: str, preds: dict, params: RowParams, maps: dict[str, Job], originals: dict[str, Job | None],
            with_original: bool) -> dict[str, Any]:  # fmt: skip
    """One variant's row from finished jobs, as :func:`saliency_row` builds it, plus ``computed_for`` (the
    :class:`RowParams`), ``pending`` (method -> JobProgress of what is still running or queued), ``ahead``
    (method -> how many queued jobs go before its first queued one), ``failed`` (method -> error text) and
    ``notices`` (messages for the user, not failures: a backend not reachable, a quota). Only maps computed for
    ``params`` are in it."""
    level = params.level
    i = preds["levels"].index(level)
    row: dict[str, Any] = {
        **prediction_fields(variant, preds, i), "maps": {}, "original_maps": {}, "extras": {}, "similarity": {},
        "computed_for": params, "pending": {}, "ahead": {}, "failed": {}, "notices": [],
    }  # fmt: skip
    for method, job in maps.items():
        original = originals.get(method) if level else job
        needed = [job] + ([original] if with_original and original is not None else [])
        failed = [j for j in needed if j.state == "failed"]
        if failed:
            if notice(failed[0].error) is not None:
                row["notices"].append(notice(failed[0].error))
            else:
                row["failed"][method] = f"{type(failed[0].error).__name__}: {failed[0].error}"
            continue
        if not all(j.state == "done" and j.result is not None for j in needed):  # drawn only when all is there
            row["pending"][method] = JobProgress(*map(_mean_or_none, zip(*(j.progress for j in needed), strict=True)))
            ahead = [p for p in map(queue_position, needed) if p is not None]
            if ahead:
                row["ahead"][method] = min(ahead)
            continue
        row["maps"][method], row["extras"][method] = job.result["map"], job.result["extras"]
        if original is not None and original.state == "done" and original.result is not None:
            if with_original:
                row["original_maps"][method] = original.result["map"]
            row["similarity"][method] = per_image_module().map_similarity(original.result["map"], job.result["map"])
    return row


def notice(error: BaseException | None) -> str | None:
    """The message for the user when ``error`` is not a failure of the computation: the compute backend cannot be
    reached (the page offers Retry) or a per-session quota refused the job; None otherwise."""
    from analysis.service_client import BackendUnavailable

    if isinstance(error, BackendUnavailable | QuotaExceeded):
        return str(error)
    return None


def _mean_or_none(values: tuple) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if len(known) == len(values) else None


# ----------------------------------------------------------------------------- out-of-distribution notice


@st.cache_resource(show_spinner="Calibrating the out-of-distribution score on the test split (once per zoo)...",
                   max_entries=4)  # fmt: skip
def _ood_calibration(zoo_key: tuple, dataset: tuple, n_images: int):
    from analysis import ood

    handle = _cached_zoo(*zoo_key)
    ds = get_dataset(*dataset)
    return long_lived.freeze(ood.load_or_calibrate(handle.zoo.models, handle.hashes, ds.images[: int(n_images)],
                                                   dataset=str(dataset[0])))  # fmt: skip


def ood_assessment(handle: ZooHandle, dataset: tuple, image: np.ndarray, n_images: int = 2000) -> dict[str, Any]:
    """Is ``image`` unlike the zoo's test data? ``analysis.ood.assess`` against a calibration computed once
    per zoo and data set (stored on disk keyed by the checkpoints' sha256s); adds ``description``."""
    from analysis import ood

    cal = _ood_calibration(handle.key, dataset, n_images)
    out = ood.assess(handle.zoo.models, image, cal)
    out["description"] = ood.describe(cal)
    return out
