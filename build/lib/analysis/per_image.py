"""Per-image computations behind the dashboard's saliency page: predictions, perturb-then-explain, map similarity.

Pure functions of models and arrays (no Streamlit, no zoo handle), so tests and threads call them directly.
Everything for one (image, kind) is computed for *all* levels in one batched pass: the original (level 0)
and the ``MAX_LEVEL`` perturbed copies go through the model (and through IG's interpolation batches)
together, so moving a level slider afterwards is a lookup.

* :func:`level_predictions`: logits, probabilities, top-k classes and DS = ||F(x') - F(x)||² per level.
* :func:`level_maps`: one attribution method's maps of every level, for one fixed target class.
* :func:`map_similarity`: Spearman rank correlation of two maps (``analysis.attributions``' own).

Forward passes hold the model's lock (``analysis.attributions.model_lock``): one shared model serialises
its callers, so concurrent users never read each other's activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from analysis.attribution_quality import _spearman
from analysis.attributions import explain, get_method, model_lock
from models.evaluation import predict_logits
from models.objectives import distance_score
from models.perturbations import MAX_LEVEL, perturb

__all__ = ["ALL_LEVELS", "level_batch", "level_maps", "level_predictions", "logits_of", "map_similarity", "softmax"]

ALL_LEVELS: tuple[int, ...] = tuple(range(MAX_LEVEL + 1))  # 0 = the original image

map_similarity = _spearman  # one Spearman for maps: 1.0 for identical maps, NaN when one is constant


def as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(3,H,W) or (N,3,H,W) -> float32 tensor (N,3,H,W) on the CPU."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    return x.unsqueeze(0) if x.ndim == 3 else x


def level_batch(image: np.ndarray, kind: str, levels: Sequence[int] = ALL_LEVELS) -> torch.Tensor:
    """The image at each of ``levels`` of perturbation ``kind`` (level 0 = unchanged), stacked (L,3,H,W)."""
    x = as_batch(image)
    return torch.cat([x if int(level) == 0 else perturb(x, kind, int(level)) for level in levels])


def logits_of(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Logits (N, classes) as float64 numpy, computed under the model's lock."""
    with model_lock(model):
        return predict_logits(model, images).double().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def level_predictions(
    model: nn.Module, image: np.ndarray, kind: str, levels: Sequence[int] = ALL_LEVELS, top: int = 3
) -> dict[str, Any]:
    """One forward pass over every level: ``levels``, ``logits`` (L,C), ``probs`` (L,C), ``pred`` (L,),
    ``conf`` (L,), ``top`` (L, top) class indices by probability, ``ds`` (L,) against the *original* image."""
    levels = [int(level) for level in levels]
    x = level_batch(image, kind, levels)
    original = as_batch(image)
    logits = logits_of(model, torch.cat([original, x]))
    base, logits = logits[:1], logits[1:]
    probs = softmax(logits)
    ds = distance_score(torch.from_numpy(np.repeat(base, len(levels), 0)), torch.from_numpy(logits)).numpy()
    return {
        "levels": levels,
        "logits": logits,
        "probs": probs,
        "pred": probs.argmax(1),
        "conf": probs.max(1),
        "top": np.argsort(-probs, axis=1)[:, :top],
        "ds": np.asarray(ds, dtype=np.float64),
    }


def _scalar_extras(extras: dict[str, Any], i: int) -> dict[str, float]:
    """The per-image scalar extras of an explanation (IG's delta, LIME's segment count and fit score, and
    ``map_side``, the shorter side of GradCAM's map before upsampling)."""
    out: dict[str, float] = {}
    if "raw" in extras:
        out["map_side"] = int(min(np.shape(extras["raw"])[-2:]))
    for key in ("delta", "n_segments", "score"):
        if key in extras:
            value = np.asarray(extras[key]).reshape(-1)
            if len(value) > i:
                out[key] = int(value[i]) if key == "n_segments" else float(value[i])
    return out


def level_maps(
    model: nn.Module,
    image: np.ndarray,
    kind: str,
    method: str,
    target: int,
    levels: Sequence[int] = ALL_LEVELS,
    **options: Any,
) -> dict[str, Any]:
    """Maps (L,H,W) float32 of ``method`` for class ``target`` on the image at each of ``levels``, in one
    batched ``explain`` call (IG integrates every level in the same interpolation batches), plus per-level
    scalar ``extras`` (a list of dicts). ``options`` override the method's registered defaults."""
    levels = [int(level) for level in levels]
    x = level_batch(image, kind, levels)
    opts = get_method(method).options(**options)
    ex = explain(method, model, x, [int(target)] * len(levels), **opts)
    return {
        "levels": levels,
        "maps": np.asarray(ex.maps, dtype=np.float32),
        "extras": [_scalar_extras(ex.extras, i) for i in range(len(levels))],
    }
