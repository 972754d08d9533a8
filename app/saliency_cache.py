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

import copy
import functools
import inspect
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch

from app import long_lived
from app.jobs import Job, JobProgress, JobRunner
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


@functools.cache
def _accepted(method: str) -> frozenset[str]:
    """Which of the job-protocol arguments (``progress``, ``should_stop``) the method's function accepts."""
    params = inspect.signature(method_info()[method].function).parameters
    return frozenset(p for p in ("progress", "should_stop") if p in params)


def _predictions_job(job: Job, model: torch.nn.Module, image: np.ndarray, kind: str) -> dict:
    return per_image_module().level_predictions(model, image, kind)


def _map_job(job: Job, model: torch.nn.Module, image: np.ndarray, kind: str, method: str, target: int,
             level: int, options: tuple) -> dict:  # fmt: skip
    """One method's map of one level; the method reports progress and checks for cancellation where it can."""
    job.check()
    accepted = _accepted(method)
    extra = {"progress": job.report} if "progress" in accepted else {}
    if "should_stop" in accepted:
        extra["should_stop"] = job.should_stop
    per_image = per_image_module()
    res = per_image.level_maps(model, image, kind, method, int(target), (int(level),), **dict(options), **extra)
    return {"map": res["maps"][0], "extras": res["extras"][0]}


_HEAVY_COPIES: dict[tuple, torch.nn.Module] = {}
_HEAVY_GUARD = threading.Lock()


def heavy_model(handle: ZooHandle, variant: str) -> torch.nn.Module:
    """A private copy of ``variant``'s model for the heavy pool (made once per loaded zoo), so a long IG or LIME
    never holds the shared model's lock; the shared model itself where it cannot be copied."""
    key = (handle.key, variant)
    with _HEAVY_GUARD:
        model = _HEAVY_COPIES.get(key)
        if model is None:
            for stale in [k for k in _HEAVY_COPIES if k[0] != handle.key]:  # another zoo was loaded: drop its copies
                del _HEAVY_COPIES[stale]
            shared = handle.model(variant)
            try:
                with handle.lock(variant):
                    model = copy.deepcopy(shared)
            except Exception:  # noqa: BLE001 - a wrapper that cannot be copied: share it (light waits on its lock)
                model = shared
            _HEAVY_COPIES[key] = model
        return model


def submit_predictions(runner: JobRunner, session: str, handle: ZooHandle, variants: Sequence[str],
                       image: np.ndarray, img_key: str, kind: str, group: Hashable) -> dict[str, Job]:  # fmt: skip
    """A light job per variant: predictions and DS of every level (one forward pass)."""
    return {
        v: runner.submit(session, "light", _predictions_job, handle.model(v), image, kind, device=handle.device,
                         key=("pred", handle.key, v, img_key, kind), group=group, label=f"predictions {v}")
        for v in variants
    }  # fmt: skip


def map_levels(method: str, level: int, with_original: bool = True) -> list[int]:
    """The levels one method needs for the view, in the order they are computed: the shown level, then the
    original (level 0: ρ and the original maps), then every other level (fast methods only)."""
    order = [int(level)] + ([0] if with_original and level else [])
    if not method_info()[method].slow:
        order += [lv for lv in range(MAX_LEVEL + 1) if lv not in order]
    return order


def submit_maps(runner: JobRunner, session: str, handle: ZooHandle, image: np.ndarray, img_key: str, kind: str,
                targets: dict[str, int], methods: Sequence[str], method_options: dict[str, dict] | None,
                level: int, group: Hashable, heavy: bool = True) -> list[tuple[tuple[str, str, int], Job]]:  # fmt: skip
    """One job per (variant, method, level), submitted shown level first (every variant), then level 0, then the
    rest; returns ((variant, method, level), job) in that order. ``heavy=False`` submits no heavy job (after a
    cancel) and returns only the heavy jobs that already exist."""
    settings = dict(method_settings(methods, method_options))
    plan = {m: map_levels(m, level) for m in methods}
    steps = sorted({(rank, m) for m in methods for rank in range(len(plan[m]))})
    out = []
    for rank, method in steps:
        lv = plan[method][rank]
        is_heavy = heavy_method(method)
        for v in targets:
            key = ("map", handle.key, v, img_key, kind, method, int(targets[v]), settings[method], lv)
            if is_heavy and not heavy:
                known = runner.find(key)
                if known is not None and known.state == "done":
                    out.append(((v, method, lv), known))
                continue
            model = heavy_model(handle, v) if is_heavy else handle.model(v)
            job = runner.submit(session, "heavy" if is_heavy else "light", _map_job, model, image, kind, method,
                                int(targets[v]), lv, settings[method], key=key, group=group, device=handle.device,
                                label=f"{method_info()[method].label} {v} level {lv}")  # fmt: skip
            out.append(((v, method, lv), job))
    return out


def job_row(variant: str, preds: dict, params: RowParams, maps: dict[str, Job], originals: dict[str, Job | None],
            with_original: bool) -> dict[str, Any]:  # fmt: skip
    """One variant's row from finished jobs, as :func:`saliency_row` builds it, plus ``computed_for`` (the
    :class:`RowParams`), ``pending`` (method -> JobProgress of what is still running or queued) and ``failed``
    (method -> error text). Only maps computed for ``params`` are in it."""
    level = params.level
    i = preds["levels"].index(level)
    row: dict[str, Any] = {
        **prediction_fields(variant, preds, i), "maps": {}, "original_maps": {}, "extras": {}, "similarity": {},
        "computed_for": params, "pending": {}, "failed": {},
    }  # fmt: skip
    for method, job in maps.items():
        original = originals.get(method) if level else job
        needed = [job] + ([original] if with_original and original is not None else [])
        failed = [j for j in needed if j.state == "failed"]
        if failed:
            row["failed"][method] = f"{type(failed[0].error).__name__}: {failed[0].error}"
            continue
        if not all(j.state == "done" and j.result is not None for j in needed):  # drawn only when all is there
            row["pending"][method] = JobProgress(*map(_mean_or_none, zip(*(j.progress for j in needed), strict=True)))
            continue
        row["maps"][method], row["extras"][method] = job.result["map"], job.result["extras"]
        if original is not None and original.state == "done" and original.result is not None:
            if with_original:
                row["original_maps"][method] = original.result["map"]
            row["similarity"][method] = per_image_module().map_similarity(original.result["map"], job.result["map"])
    return row


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
