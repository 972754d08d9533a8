"""Explanation continuity: how far a variant's attribution map moves from the clean image's map along a perturbation.

The paper measures how far the *logits* move (DS); this measures the same for the *explanation*. For each variant,
kind and level, each image's map of the perturbed copy is compared with its map of the clean image, the explained
class fixed to the clean prediction (or the given targets), by Spearman's rank correlation, SSIM and top-k overlap
(:func:`analysis.map_comparison.map_movement`; 1.0 = the map did not move).

* :func:`explanation_continuity`: the per-image table (one row per variant, kind, level and image), tidy.
* :func:`continuity_summary`: per variant, kind, level and metric, the mean over images with its percentile
  bootstrap 95% CI (:func:`analysis.statistics.mean_ci`); images whose metric is undefined (NaN: a constant map has
  no ranks) are left out and counted.

The report's ``explanation_continuity`` experiment (:mod:`analysis.experiments.explanations`) runs it on the first
test images, and its claim (:func:`analysis.claims.claim_explanation_continuity`) is decided from the per-image
table; the dashboard's explanation continuity page computes it on demand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.attributions import explain, get_method
from analysis.map_comparison import map_movement
from analysis.statistics import N_RESAMPLES, mean_ci
from models.perturbations import KINDS, MAX_LEVEL, perturb

__all__ = ["METRICS", "PER_IMAGE_COLUMNS", "SUMMARY_COLUMNS", "continuity_summary", "explanation_continuity"]

METRICS = ("spearman", "ssim", "top_k_overlap")
PER_IMAGE_COLUMNS = ["variant", "method", "kind", "level", "image", "target", *METRICS]
SUMMARY_COLUMNS = ["variant", "method", "kind", "level", "metric", "mean", "ci_low", "ci_high", "n_images", "n_nan"]


def explanation_continuity(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    method: str,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = tuple(range(1, MAX_LEVEL + 1)),
    targets: torch.Tensor | Sequence[int] | None = None,
    fraction: float = 0.1,
    **options: Any,
) -> pd.DataFrame:
    """Per image: how far ``method``'s map of each perturbed copy moved from the clean image's map.

    ``images`` (N, 3, H, W) in [0, 1]; ``targets`` None: each variant explains its own clean prediction, kept for
    every level. ``options`` override the method's registered defaults. Each (variant, kind) is one ``explain``
    call over all levels and images. Rows: variant, method, kind, level, image (its index in ``images``), target,
    spearman, ssim, top_k_overlap (``fraction``: the top-k share).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    info = get_method(method)
    opts = info.options(**options)
    levels = [int(lv) for lv in levels]
    rows = []
    for variant, model in models.items():
        clean = explain(method, model, images, targets, **opts)
        n = len(images)
        for kind in kinds:
            batch = torch.cat([perturb(images, kind, lv) for lv in levels])
            moved = explain(method, model, batch, np.tile(clean.targets, len(levels)), **opts).maps
            for j, level in enumerate(levels):
                for i in range(n):
                    rows.append({"variant": variant, "method": method, "kind": kind, "level": level, "image": i,
                                 "target": int(clean.targets[i]),
                                 **map_movement(clean.maps[i], moved[j * n + i], info.signed, fraction)})  # fmt: skip
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


def continuity_summary(per_image: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per variant, method, kind, level and metric: the mean over images, its bootstrap 95% CI, the images used
    and those whose metric was undefined (``n_nan``)."""
    missing = {"variant", "method", "kind", "level", *METRICS} - set(per_image.columns)
    if missing:
        raise ValueError(f"per-image table lacks columns: {', '.join(sorted(missing))}")
    rows = []
    keys = ["variant", "method", "kind", "level"]
    for key, group in per_image.groupby(keys, sort=False):
        for metric in METRICS:
            values = group[metric].to_numpy(dtype=float)
            mean, lo, hi = mean_ci(values, n_resamples, seed)
            rows.append({**dict(zip(keys, key, strict=True)), "metric": metric, "mean": mean, "ci_low": lo,
                         "ci_high": hi, "n_images": int(np.isfinite(values).sum()),
                         "n_nan": int((~np.isfinite(values)).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
