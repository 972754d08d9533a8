"""How good an attribution map is: mask share, deletion / insertion curves, stability, and the report's table.

* ``mask_share(maps, masks)``: share of positive attribution inside the object mask, per image.
* ``deletion_insertion(model, images, maps, targets)``: Petsiuk et al.'s deletion and insertion curves
  and their AUCs; the forwards hold ``model_lock(model)`` (see :mod:`analysis.attributions`).
* ``stability(method, model, images, ...)``: Spearman correlation of clean vs perturbed maps, per kind
  and level.
* ``attribution_quality(models, images, labels, masks)``: per variant and method, mean mask share and
  deletion / insertion AUCs.

The maps come from :func:`analysis.attributions.explain`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from analysis.attribution_methods import _as_targets, _baseline_like, _device, _dtype, _numpy
from analysis.attributions import explain, model_lock
from analysis.memory_budget import memory_budget as resolve_budget
from analysis.memory_budget import samples_that_fit
from analysis.network_cost import sample_cost
from models.evaluation import predict_logits
from models.perturbations import KINDS, perturb

__all__ = ["mask_share", "deletion_insertion", "stability", "attribution_quality"]


def mask_share(maps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Share of positive attribution inside the object mask, per image (N,), in [0, 1].

    ``sum(relu(map) * mask) / sum(relu(map))``; negative attribution is ignored.
    ``masks`` (N,H,W) or (N,1,H,W), boolean or {0,1}. An image whose map has no
    positive attribution gets NaN (undefined), not 0.
    """
    m = _numpy(maps).astype(np.float64)
    k = _numpy(masks).astype(np.float64).reshape(m.shape)
    pos = np.clip(m, 0.0, None).reshape(len(m), -1)
    total = pos.sum(1)
    inside = (pos * k.reshape(len(m), -1)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: np.ndarray | torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    steps: int = 16,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
    seed: int = 0,
    memory_budget: int | str | None = None,
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves (Petsiuk et al. 2018) of each image's map.

    Pixels are ranked by map value, largest first (signed maps: most positive
    evidence first); ties are broken by one seeded random pixel order, the same
    for every image, so flat regions (GradCAM zeros) are not removed in raster
    order. For fractions ``f = 0, 1/steps, ..., 1`` the top ``round(f*H*W)``
    pixels are set to ``baseline`` (deletion) or copied into a ``baseline`` image
    (insertion), all channels. Every curve point is the softmax probability of
    the target; the ``2*(steps+1)`` images of each image are built together and go
    through the model with ``predict_logits`` (chunks of ``batch_size``), as many
    images at once as fit in the memory budget (``memory_budget``: bytes or a size
    such as ``"2GB"``; None: ``analysis.memory_budget.memory_budget``), counting
    each built image and the network's measured per-sample forward cost (at most
    half the budget, lowering ``batch_size`` if need be); not even
    one image's curves in the budget: ``MemoryBudgetError``. AUC = trapezoid over
    f in [0, 1].

    Returns ``fractions`` (steps+1,), ``deletion`` and ``insertion`` (N, steps+1),
    ``deletion_auc`` and ``insertion_auc`` (N,). Low deletion AUC and high
    insertion AUC mean a faithful map.
    """
    device = _device(model)
    x = images.detach().to(device, _dtype(model))
    n, _, h, w = x.shape
    m = _numpy(maps).reshape(n, h * w).astype(np.float64)
    t = _as_targets(targets, n, device)
    tiebreak = np.random.default_rng(seed).permutation(h * w)
    order = np.stack([np.lexsort((tiebreak, -row)) for row in m])  # (N, HW), most important first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * h * w).astype(np.int64)
    base_all = _baseline_like(x, baseline)
    curves = 2 * (steps + 1)
    with model_lock(model):
        forward = sample_cost(model, tuple(x.shape[1:])).forward_bytes
        built = curves * x[0].numel() * x.element_size() * 3  # deleted, inserted and their concatenation
        what = f"deletion/insertion curves of one {tuple(x.shape[1:])} image ({curves} perturbed copies)"
        budget = resolve_budget(device, memory_budget)
        batch_size = max(1, min(batch_size, (budget // 2) // forward))  # the forward's share: half at most
        per_chunk = samples_that_fit(built, budget, what, fixed=batch_size * forward)
        probs_parts = []
        for start in range(0, n, per_chunk):
            sl = slice(start, start + per_chunk)
            k = len(x[sl])
            chosen = torch.from_numpy(rank[sl, None, :] < counts[None, :, None]).to(device)  # (k, S+1, HW)
            chosen = chosen.view(k, steps + 1, 1, h, w)
            base, xs = base_all[sl, None], x[sl, None]
            deleted = torch.where(chosen, base, xs)
            inserted = torch.where(chosen, xs, base)
            batch = torch.cat([deleted, inserted], 1).reshape(-1, *x.shape[1:])  # (k*2*(S+1), C, H, W)
            del deleted, inserted, chosen
            probs_parts.append(
                torch.softmax(predict_logits(model, batch, batch_size=batch_size), 1).view(k, curves, -1)
            )
            del batch
    probs = torch.cat(probs_parts)
    p = probs.gather(2, t.cpu().view(n, 1, 1).expand(n, 2 * (steps + 1), 1))[..., 0].numpy()
    deletion, insertion = p[:, : steps + 1], p[:, steps + 1 :]
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": np.trapezoid(deletion, fractions, axis=1),
        "insertion_auc": np.trapezoid(insertion, fractions, axis=1),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho of two maps; 1.0 for identical maps, NaN when one map is constant and they differ."""
    a, b = a.ravel(), b.ravel()
    if np.array_equal(a, b):
        return 1.0
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def stability(
    method: str,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | None = None,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = (1, 2, 3, 4),
    **options: Any,
) -> pd.DataFrame:
    """How much a map changes when its input is perturbed (Table 1), per kind and level.

    For each image the map of ``perturb(image, kind, level)`` is compared with the
    map of the clean image by Spearman rank correlation over pixels, the target
    fixed to ``targets`` (None: the clean prediction) for both. Rows: kind, level,
    spearman_mean, spearman_std (over images with a defined correlation), n_valid
    (images whose correlation is defined: a constant map, e.g. an all-zero
    GradCAM, has no ranks). Level 0 (the identity) gives 1.0.
    """
    clean = explain(method, model, images, targets, **options)
    rows = []
    for kind in kinds:
        for level in levels:
            moved = explain(method, model, perturb(images, kind, level), clean.targets, **options)
            rho = np.array([_spearman(a, b) for a, b in zip(clean.maps, moved.maps, strict=True)])
            valid = rho[~np.isnan(rho)]
            rows.append(
                {
                    "kind": kind,
                    "level": int(level),
                    "spearman_mean": float(valid.mean()) if len(valid) else float("nan"),
                    "spearman_std": float(valid.std()) if len(valid) else float("nan"),
                    "n_valid": int(len(valid)),
                }
            )
    return pd.DataFrame(rows, columns=["kind", "level", "spearman_mean", "spearman_std", "n_valid"])


def attribution_quality(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    masks: np.ndarray | torch.Tensor,
    methods: Sequence[str] = ("integrated_gradients", "gradcam", "lime"),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 16,
    baseline: float = 0.0,
) -> pd.DataFrame:
    """The report's table: per variant and method, mean mask share and deletion / insertion AUCs.

    Maps explain the true ``labels``. ``method_options`` maps a method name to its
    options (e.g. ``{"lime": {"num_samples": 300}}``); leave ``"lime"`` out of
    ``methods`` to skip it. ``mask_share`` is the mean over images with positive
    attribution (NaN-ignoring).
    """
    method_options = method_options or {}
    rows = []
    for variant, model in models.items():
        for method in methods:
            ex = explain(method, model, images, labels, **dict(method_options.get(method, {})))
            share = mask_share(ex.maps, masks)
            curves = deletion_insertion(model, images, ex.maps, ex.targets, steps=steps, baseline=baseline)
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "mask_share": float(np.nanmean(share)) if np.isfinite(share).any() else float("nan"),
                    "deletion_auc": float(curves["deletion_auc"].mean()),
                    "insertion_auc": float(curves["insertion_auc"].mean()),
                    "n_images": int(len(images)),
                }
            )
    return pd.DataFrame(rows, columns=["variant", "method", "mask_share", "deletion_auc", "insertion_auc", "n_images"])
