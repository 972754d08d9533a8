"""ROAD faithfulness (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution Methods"),
called through pytorch-grad-cam's metrics (``pytorch_grad_cam.metrics.road``).

ROAD removes a share of an image's pixels in the order its map ranks them and fills them by noisy linear imputation
(each removed pixel the weighted mean of its neighbours, plus Gaussian noise of sd 0.01), so the model is not shown
the sharp holes that deletion's constant baseline leaves. For every removed share ``100 - p`` (``p`` in
``percentiles``) the library measures the change of the target's softmax probability
(``ClassifierOutputSoftmaxTarget``) from the unperturbed image, and averages it over the percentiles:

* ``morf`` (``ROADMostRelevantFirstAverage``): the most relevant pixels removed first; lower (a larger drop) = more
  faithful.
* ``lerf`` (``ROADLeastRelevantFirstAverage``): the least relevant removed first; higher (a smaller drop) = more
  faithful.
* ``combined``: ``(lerf - morf) / 2``, as ``ROADCombined`` computes it from the same two averagers; higher = more
  faithful.

* :func:`road_scores`: the three per-image scores of one model's maps.
* :func:`road_summary`: per variant and method, the mean of each score with its bootstrap 95% CI.
* :func:`road_paired`: per method, score and comparison of the paper's roles (and controls), the paired-bootstrap
  difference with its 95% CI on the same images, p-values Holm-adjusted within a method and score.

The imputer's noise comes from torch's global generator: each chunk of ``batch_size`` images is scored under a
generator seeded with ``seed`` (restored afterwards), least-relevant first then most-relevant first, as
``ROADCombined`` calls them; so the scores are reproducible for the same chunking. A map with ties at a percentile's
threshold (a GradCAM map's zeros) removes all the tied pixels: the library's thresholding (``mask < percentile``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from analysis import roles as R
from analysis import statistics as S
from analysis.attribution_methods import _as_targets, _device, _dtype, _numpy
from analysis.attributions import model_lock
from models.perturbations import eval_mode

__all__ = ["PERCENTILES", "SCORES", "road_paired", "road_scores", "road_summary"]

PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # the library's defaults
SCORES = ("morf", "lerf", "combined")
DIRECTION = {"morf": "lower", "lerf": "higher", "combined": "higher"}  # which way is more faithful


def road_scores(
    model: nn.Module,
    images: torch.Tensor,
    maps: np.ndarray | torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    percentiles: Sequence[int] = PERCENTILES,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """ROAD scores of ``maps`` (N, H, W) for ``images`` (N, C, H, W) in [0, 1] and ``targets`` (N,): ``morf``,
    ``lerf`` and ``combined``, each (N,) float64 (see the module docstring). Holds ``model_lock(model)`` and runs
    the model in eval mode, ``batch_size`` images at a time."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    m = _numpy(maps).astype(np.float32)
    if m.shape != (n, h, w):
        raise ValueError(f"maps must be (N, H, W) = {(n, h, w)}, got shape {m.shape}")
    if not percentiles or not all(0 < float(p) < 100 for p in percentiles):
        raise ValueError(f"percentiles must be in (0, 100), got {list(percentiles)}")
    device = _device(model)
    x = images.detach().to(device, _dtype(model))
    t = _as_targets(targets, n, device).cpu().tolist()
    lerf_fn = ROADLeastRelevantFirstAverage(list(percentiles))
    morf_fn = ROADMostRelevantFirstAverage(list(percentiles))
    lerf, morf = [], []
    cuda = [device] if device.type == "cuda" else []
    with model_lock(model), eval_mode(model):
        for start in range(0, n, max(1, batch_size)):
            sl = slice(start, start + max(1, batch_size))
            chunk_targets = [ClassifierOutputSoftmaxTarget(c) for c in t[sl]]
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                lerf.append(lerf_fn(x[sl], m[sl], chunk_targets, model))
                morf.append(morf_fn(x[sl], m[sl], chunk_targets, model))
    lo, mo = np.concatenate(lerf).astype(np.float64), np.concatenate(morf).astype(np.float64)
    return {"morf": mo, "lerf": lo, "combined": (lo - mo) / 2}


def road_summary(per_image: pd.DataFrame, n_resamples: int = S.N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per variant, method and score: the mean over images with its percentile bootstrap 95% CI."""
    rows = []
    for (variant, method), g in per_image.groupby(["variant", "method"], sort=False):
        for score in SCORES:
            mean, lo, hi = S.mean_ci(g[score].to_numpy(float), n_resamples, seed)
            rows.append({"variant": variant, "method": method, "score": score, "mean": mean, "ci_low": lo,
                         "ci_high": hi, "n_images": int(np.isfinite(g[score].to_numpy(float)).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "method", "score", "mean", "ci_low", "ci_high", "n_images"])


def road_paired(
    per_image: pd.DataFrame, roles: Mapping[str, str], n_resamples: int = S.N_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """Per method, score and comparison (:func:`analysis.roles.comparisons`): the mean paired difference a - b over
    the images both variants were scored on, its paired-bootstrap 95% CI and p (Holm-adjusted within a method and
    score); ``better`` names the variant the CI puts ahead in the score's faithful direction ('-' when it spans 0)."""
    cols = ["method", "score", "comparison", "kind", "effect", "ci_low", "ci_high", "p", "p_holm", "n_images",
            "better"]  # fmt: skip
    rows = []
    for method, g in per_image.groupby("method", sort=False):
        comps = [c for c in R.comparisons(roles) if {c.a, c.b} <= set(g["variant"])]
        for score in SCORES:
            wide = g.pivot_table(index="image", columns="variant", values=score, aggfunc="mean").dropna()
            results = [S.paired_bootstrap(wide[c.a], wide[c.b], n_resamples, seed) for c in comps]
            for comp, res, p_adj in zip(comps, results, S.holm([r.p for r in results]), strict=True):
                ahead = res.ci_low > 0 if DIRECTION[score] == "higher" else res.ci_high < 0
                behind = res.ci_high < 0 if DIRECTION[score] == "higher" else res.ci_low > 0
                rows.append({"method": method, "score": score, "comparison": comp.label, "kind": comp.kind,
                             "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "p": res.p,
                             "p_holm": p_adj, "n_images": res.n_images,
                             "better": comp.a if ahead else comp.b if behind else "-"})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)
