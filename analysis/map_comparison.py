"""Attribution maps compared: between variants on one image, and between an image's map and a perturbed copy's.

Pure functions of maps (numpy arrays (H, W)); nothing here runs a model.

* :func:`normalise_map`: a map divided by its largest magnitude, so maps of different variants (whose scores
  differ in scale) share one scale: [0, 1] for unsigned maps, [-1, 1] for signed ones (the sign kept).
* :func:`compare_variants`: every variant's normalised map, its signed difference from a reference variant's, and
  the Spearman rank correlation between every pair of variants' maps (``scipy.stats.spearmanr``).
* :func:`spearman`, :func:`ssim` (``skimage.metrics.structural_similarity`` on the normalised maps) and
  :func:`top_k_overlap` (the share of one map's ``fraction`` most important pixels that are among the other's):
  how far one map moved from another; :func:`map_movement` gives all three.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from skimage.metrics import structural_similarity

__all__ = [
    "VariantComparison",
    "compare_variants",
    "map_movement",
    "normalise_map",
    "spearman",
    "ssim",
    "top_k_overlap",
]


def _map(m: np.ndarray) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"a map must be (H, W), got shape {a.shape}")
    return a


def normalise_map(m: np.ndarray, signed: bool) -> np.ndarray:
    """``m / max|m|`` (an all-zero map stays zero); an unsigned map's negative values (none for the lab's unsigned
    methods) are clipped to 0, so it lies in [0, 1]; a signed one lies in [-1, 1]."""
    a = _map(m)
    scale = float(np.abs(a).max())
    out = a / scale if scale > 0 else np.zeros_like(a)
    return out if signed else np.clip(out, 0.0, 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps over pixels (``scipy.stats.spearmanr``): 1.0 for identical maps, NaN
    when one is constant and they differ (a constant map has no ranks)."""
    x, y = _map(a).ravel(), _map(b).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps differ in shape: {np.shape(a)} vs {np.shape(b)}")
    if np.array_equal(x, y):
        return 1.0
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def ssim(a: np.ndarray, b: np.ndarray, signed: bool) -> float:
    """Structural similarity of the two normalised maps (data range 2 for signed maps, 1 for unsigned), with
    scikit-image's 7-pixel window (smaller, odd, on maps under 7 pixels a side)."""
    x, y = normalise_map(a, signed), normalise_map(b, signed)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in shape: {x.shape} vs {y.shape}")
    side = min(x.shape)
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"maps of {x.shape} are too small for SSIM (at least 3x3)")
    return float(structural_similarity(x, y, data_range=2.0 if signed else 1.0, win_size=win))


def top_k_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1, signed: bool = False) -> float:
    """The share of ``a``'s k most important pixels (k = ceil(fraction x pixels)) that are among ``b``'s k most
    important; importance is the value for unsigned maps and the magnitude for signed ones (evidence for and
    against both count). 1.0 = the same pixels, about ``fraction`` for unrelated maps. Ties are broken by pixel
    order (a stable sort), the same way in both maps."""
    x, y = _map(a).ravel(), _map(b).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps differ in shape: {np.shape(a)} vs {np.shape(b)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * x.size))
    if signed:
        x, y = np.abs(x), np.abs(y)
    top_a = np.argsort(-x, kind="stable")[:k]
    top_b = np.argsort(-y, kind="stable")[:k]
    return len(np.intersect1d(top_a, top_b, assume_unique=True)) / k


def map_movement(clean: np.ndarray, moved: np.ndarray, signed: bool, fraction: float = 0.1) -> dict[str, float]:
    """How far ``moved`` is from ``clean``: ``spearman``, ``ssim`` and ``top_k_overlap`` (1.0 each: not at all)."""
    return {
        "spearman": spearman(clean, moved),
        "ssim": ssim(clean, moved, signed),
        "top_k_overlap": top_k_overlap(clean, moved, fraction, signed),
    }


@dataclass
class VariantComparison:
    """Variants' maps of one image side by side: ``normalised`` (variant -> map), ``difference`` (variant -> its
    normalised map minus the reference's, in [-2, 2]), the ``reference`` and ``correlation`` (a square DataFrame of
    Spearman's rho between every pair of variants, index and columns in the variants' order)."""

    reference: str
    normalised: dict[str, np.ndarray]
    difference: dict[str, np.ndarray]
    correlation: pd.DataFrame


def compare_variants(maps: Mapping[str, np.ndarray], reference: str, signed: bool) -> VariantComparison:
    """Normalise each variant's map of the same image (:func:`normalise_map`), take the signed difference from
    ``reference``'s, and the rank correlation between every pair (:func:`spearman`)."""
    if reference not in maps:
        raise ValueError(f"reference variant {reference!r} has no map; variants: {', '.join(maps)}")
    shapes = {np.shape(m) for m in maps.values()}
    if len(shapes) != 1:
        raise ValueError(f"the variants' maps differ in shape: {sorted(shapes)}")
    normalised = {v: normalise_map(m, signed) for v, m in maps.items()}
    difference = {v: m - normalised[reference] for v, m in normalised.items()}
    names = list(maps)
    rho = pd.DataFrame(np.eye(len(names)), index=names, columns=names, dtype=float)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            rho.loc[a, b] = rho.loc[b, a] = spearman(maps[a], maps[b])
    return VariantComparison(reference, normalised, difference, rho)
