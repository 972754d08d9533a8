"""The dashboard's map of the whole test set: representations cached on disk, and one shared 2-D map.

``whole_set_representations`` computes every variant's representation and predictions, ``whole_set_key`` names
its cache file (``save_arrays`` / ``load_arrays``, atomic .npz), and ``whole_set_map`` draws the shared map, placing
extra points (e.g. perturbed anchors) by their nearest test images (``place_by_neighbours``) where the
projection has no transform; ``whole_set_tables`` turns them into the page's per-variant point tables
(``whole_set_explained_variance``: its PCA axes' shares of variance).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.embeddings import predict_features, shared_projection
from models.evaluation import predict_logits

__all__ = [
    "WHOLE_SET_FORMAT",
    "load_arrays",
    "place_by_neighbours",
    "save_arrays",
    "whole_set_key",
    "whole_set_map",
    "whole_set_representations",
    "whole_set_explained_variance",
    "whole_set_tables",
]


def place_by_neighbours(new: np.ndarray, reference: np.ndarray, reference_xy: np.ndarray, k: int = 10) -> np.ndarray:
    """2-D positions for points outside a fitted map (t-SNE has no transform): the inverse-distance weighted mean of
    the map positions of their ``k`` nearest reference points in the representation."""
    new, reference = np.asarray(new, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(new) == 0:
        return np.zeros((0, 2))
    k = max(1, min(k, len(reference)))
    out = np.empty((len(new), 2))
    for i, z in enumerate(new):
        d = ((reference - z) ** 2).sum(1)
        near = np.argpartition(d, k - 1)[:k]
        w = 1.0 / (np.sqrt(d[near]) + 1e-9)
        out[i] = (w[:, None] * reference_xy[near]).sum(0) / w.sum()
    return out


def whole_set_representations(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    representation: str = "logits",
    batch_size: int = 512,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per variant: ``rep`` (N, D) float32 in ``representation`` and ``pred`` (N,) predicted classes, with
    ``progress(fraction, text)`` called per variant (10,000 images: ~8 s per variant on two CPU cores)."""
    out = {}
    names = list(models)
    for i, (variant, model) in enumerate(models.items()):
        if progress:
            progress(i / max(1, len(names)), f"{representation} of {len(images)} images: {variant}")
        logits = predict_logits(model, images, batch_size)
        rep = logits if representation == "logits" else predict_features(model, images, batch_size)
        out[variant] = {"rep": rep.numpy().astype(np.float32), "pred": logits.argmax(1).numpy().astype(np.int64)}
    if progress:
        progress(1.0, "done")
    return out


WHOLE_SET_FORMAT = 1


def whole_set_key(checkpoint_hashes: dict[str, str], dataset: str, n_images: int, representation: str, *extra) -> str:
    """Cache key of a whole-set computation: the variants' checkpoint sha256s (so a retrained zoo misses), the data
    set, its size, the representation and anything else that changes the result (method, seed)."""
    import hashlib
    import json

    text = json.dumps([WHOLE_SET_FORMAT, sorted(checkpoint_hashes.items()), dataset, int(n_images), representation,
                       [str(e) for e in extra]])  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Arrays saved by ``save_arrays``, or None when the file is absent or unreadable (then recomputed)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to ``path`` (.npz) atomically: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def whole_set_map(
    data: dict[str, dict[str, np.ndarray]],
    method: str = "pca",
    seed: int = 0,
    align: str = "union",
    extras: dict[str, np.ndarray] | None = None,
    fitted: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """2-D maps of the whole test set for every variant of ``data`` (from ``whole_set_representations``), shared
    across variants, and the positions of ``extras`` (per variant, (M, D): e.g. perturbed copies of anchors).

    PCA is fitted here on the test set and the extras together (a fraction of a second for 10,000 points).
    t-SNE and UMAP (~40 s per variant on 10,000 points) take their test-set map from ``fitted`` (precomputed once:
    ``shared_projection(..., align="procrustes")``) and place the extras by their nearest test images
    (``place_by_neighbours``). Returns (test-set xy per variant, extras' xy per variant).
    """
    names = list(data)
    extras = extras or {}
    if method == "pca":
        reps = {v: np.concatenate([data[v]["rep"], extras[v]]) if v in extras else data[v]["rep"] for v in names}
        if len({len(r) for r in reps.values()}) != 1:
            raise ValueError("extras must be given for every variant or none")
        xy = shared_projection(reps, "pca", seed, align)
        n = len(data[names[0]]["rep"]) if names else 0
        return {v: xy[v][:n] for v in names}, {v: xy[v][n:] for v in names if v in extras}
    if fitted is None:
        raise ValueError(f"{method} of the whole set must be precomputed (fitted=...)")
    placed = {v: place_by_neighbours(extras[v], data[v]["rep"], fitted[v]) for v in names if v in extras}
    return {v: fitted[v] for v in names}, placed


def whole_set_tables(
    data: dict[str, dict[str, np.ndarray]],
    labels: np.ndarray,
    method: str = "pca",
    representation: str = "logits",
    fitted: dict[str, np.ndarray] | None = None,
    overlay_points: pd.DataFrame | None = None,
    overlay_reps: dict[str, np.ndarray] | None = None,
    class_name: Callable[[int], str] = str,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The whole-set map as one table of points per variant (x, y, row, dataset_index, pred_name, true_name,
    correct), and the anchors' points of ``overlay_points`` (an ``analysis.embeddings.anchor_views`` points table;
    same-class images left out) placed on it, their rows numbered after the test set's.

    ``overlay_reps`` are the anchor view's representations (variant -> (M, D), by the view's row)."""
    names = list(data)
    n = len(labels)
    overlay_meta, extras = _overlay(names, overlay_points, overlay_reps)
    align = "union" if representation == "logits" else "procrustes"
    xy, extra_xy = whole_set_map(data, method, 0, align, extras or None, fitted)
    frames, overlays = {}, {}
    true_names = [class_name(int(t)) for t in labels]
    for v in names:
        pred = data[v]["pred"]
        frame = pd.DataFrame({"x": xy[v][:, 0], "y": xy[v][:, 1], "row": np.arange(n), "dataset_index": np.arange(n),
                              "pred_name": [class_name(int(p)) for p in pred], "true_name": true_names})  # fmt: skip
        frame["correct"] = np.where(pred == labels, "correct", "wrong")
        frames[v] = frame
        if overlay_meta is not None and overlay_points is not None:
            o = overlay_meta.copy()
            own = overlay_points[overlay_points["variant"] == v].set_index("row")
            o["x"], o["y"] = extra_xy[v][:, 0], extra_xy[v][:, 1]
            o["pred_name"] = own.loc[o["row"], "pred_name"].to_numpy()
            o["ds"] = own.loc[o["row"], "ds"].to_numpy()
            o["row"] = n + o["row"].to_numpy()
            overlays[v] = o
    return frames, overlays


def _overlay(
    names: list[str], overlay_points: pd.DataFrame | None, overlay_reps: dict[str, np.ndarray] | None
) -> tuple[pd.DataFrame | None, dict[str, np.ndarray]]:
    """The anchors' points of an anchor view to place on the whole-set map (same-class images left out: they are
    in the test set already) and their representations per variant."""
    if overlay_points is None or overlay_reps is None or not names:
        return None, {}
    keep = overlay_points["role"] != "same_class"
    meta = overlay_points[(overlay_points["variant"] == names[0]) & keep].drop(columns=["variant", "x", "y"])
    return meta, {v: overlay_reps[v][meta["row"].to_numpy()] for v in names}


def whole_set_explained_variance(
    data: dict[str, dict[str, np.ndarray]],
    representation: str = "logits",
    overlay_points: pd.DataFrame | None = None,
    overlay_reps: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """PC1's and PC2's shares of variance of the whole-set PCA map that ``whole_set_tables`` draws with the same
    arguments (fitted on the test set and the overlaid anchors' points together): variant -> 2 ratios."""
    from analysis.embeddings import explained_variance

    names = list(data)
    _, extras = _overlay(names, overlay_points, overlay_reps)
    reps = {v: np.concatenate([data[v]["rep"], extras[v]]) if v in extras else data[v]["rep"] for v in names}
    return explained_variance(reps, "union" if representation == "logits" else "procrustes", 0)
