"""The saliency page's per-image computations, cached: ``analysis.per_image`` for every level of a kind in one
batched pass (a level slider is then a lookup) and ``analysis.ood``'s calibrated out-of-distribution check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st
import torch

from app import long_lived
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
        "variant": variant, "target": target, "pred": target, "conf": float(preds["conf"][0]),
        "pred_perturbed": int(preds["pred"][i]), "conf_perturbed": float(preds["conf"][i]),
        "logits": preds["logits"][0], "logits_perturbed": preds["logits"][i],
        "probs": preds["probs"][0], "probs_perturbed": preds["probs"][i],
        "top": [int(c) for c in preds["top"][0]], "top_perturbed": [int(c) for c in preds["top"][i]],
        "ds": float(preds["ds"][i]), "maps": {}, "original_maps": {}, "extras": {}, "similarity": {},
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
