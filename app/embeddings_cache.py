"""The embeddings page's computations, cached: neighbourhoods of anchors (test images or uploads) with their
perturbations and same-class images in one shared 2-D map, and the whole test split's representations and
fitted maps, cached on disk keyed by the checkpoints' sha256s. Re-exported by :mod:`app.backend`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import long_lived
from app.images import as_batch, image_key, perturbed_image
from app.saliency_cache import logits_of
from app.zoo_cache import ZooHandle, _cached_zoo, embeddings_module, get_dataset
from models.data import ImageDataset
from models.perturbations import KINDS

# ----------------------------------------------------------------------------- neighbourhood embeddings


def neighbourhood(
    handle: ZooHandle,
    ds: ImageDataset,
    index: int,
    method: str = "pca",
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Projected logits of the original, its perturbations and same-class images, per variant.

    Returns (points, ranks): points has columns variant, x, y, row, role, kind, level, dataset_index;
    ranks has variant, kind, level, rank, n_candidates (rank 1 = the perturbed copy is the
    original's nearest neighbour among the same-class images, by DS).
    """
    emb = embeddings_module(method == "umap")
    images, meta = emb.visualize_set(ds.images, ds.labels, int(index), n_same_class=n_same_class, kinds=list(kinds),
                                     seed=seed)  # fmt: skip
    with handle.all_locks():
        logits = emb.embed_logits(handle.zoo.models, images)
    points, ranks = [], []
    for variant in handle.variants:
        xy = emb.project(logits[variant], method, seed)
        frame = meta.reset_index(drop=True).copy()
        frame.insert(0, "row", np.arange(len(frame)))
        frame.insert(0, "y", xy[:, 1])
        frame.insert(0, "x", xy[:, 0])
        frame.insert(0, "variant", variant)
        points.append(frame)
        r = emb.neighbour_ranks(logits[variant], meta)
        r.insert(0, "variant", variant)
        ranks.append(r)
    return pd.concat(points, ignore_index=True), pd.concat(ranks, ignore_index=True)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_neighbourhood(
    zoo_key: tuple,
    dataset: tuple,
    index: int,
    method: str,
    n_same_class: int,
    kinds: tuple[str, ...],
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return neighbourhood(_cached_zoo(*zoo_key), get_dataset(*dataset), index, method, n_same_class, kinds, seed)


def neighbourhood_image(ds: ImageDataset, row: pd.Series | dict, original_index: int) -> np.ndarray:
    """The image behind one point of a neighbourhood plot."""
    if row["role"] == "perturbed":
        return perturbed_image(ds.images[int(original_index)].numpy(), str(row["kind"]), int(row["level"]))
    return ds.images[int(row["dataset_index"])].numpy()


# ----------------------------------------------------------------------------- embeddings page: anchors, shared maps


@dataclass
class Anchor:
    """One anchor of the embeddings page: a test image (``index`` >= 0) or an upload (``index`` -1, ``true`` None;
    its neighbourhood ``label`` is the class a variant predicts for it)."""

    name: str
    image: np.ndarray  # float32 (3, H, W) in [0, 1]
    label: int
    index: int = -1
    true: int | None = None

    @property
    def key(self) -> tuple:
        return (self.name, image_key(self.image), int(self.label), int(self.index))


def thumbnails(images: torch.Tensor, max_side: int = 64) -> np.ndarray:
    """(N, 3, H, W) float images -> (N, h, w, 3) uint8, shrunk to at most ``max_side`` pixels a side."""
    x = images.detach().float().cpu()
    if max(x.shape[-2:]) > max_side:
        scale = max_side / max(x.shape[-2:])
        size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
        x = torch.nn.functional.interpolate(x, size=size, mode="area")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def anchor_views(
    handle: ZooHandle,
    ds: ImageDataset,
    anchors: Sequence[Anchor],
    variants: Sequence[str],
    representation: str = "logits",
    method: str = "pca",
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
) -> dict[str, Any]:
    """The embeddings page's neighbourhood view (pure): several anchors, their perturbations and same-class images
    in one 2-D map shared by ``variants`` (logits: fitted on their union; features: Procrustes-aligned).

    Returns points (variant, x, y, row, role, kind, level, dataset_index, anchor, label, pred, pred_name,
    true_name, ds, ds_to), ranks (variant, anchor, kind, level, rank, n_candidates; by DS on logits), reps
    (variant -> (N, D) shown representation), thumbs ((N, h, w, 3) uint8 by row) and align.
    """
    emb = embeddings_module(method == "umap")
    images, meta = emb.anchored_set(ds.images, ds.labels, [(a.name, torch.from_numpy(np.asarray(a.image)), a.label,
                                                            a.index) for a in anchors],
                                    n_same_class=n_same_class, kinds=list(kinds), seed=seed)  # fmt: skip
    models = {v: handle.model(v) for v in variants}
    with handle.all_locks():
        logits = emb.embed(models, images, "logits")
        reps = logits if representation == "logits" else emb.embed(models, images, representation)
    align = "union" if representation == "logits" else "procrustes"
    xy = emb.shared_projection(reps, method, seed, align)
    true_idx, ds_to, origin = _anchor_targets(meta, anchors, ds.labels.numpy())
    points, ranks = [], []
    for variant in variants:
        z = logits[variant]
        ref = np.array([origin.get(a, i) for i, a in enumerate(ds_to)])
        frame = meta.reset_index(drop=True).copy()
        frame.insert(0, "row", np.arange(len(frame)))
        frame.insert(0, "y", xy[variant][:, 1])
        frame.insert(0, "x", xy[variant][:, 0])
        frame.insert(0, "variant", variant)
        frame["pred"] = z.argmax(1)
        frame["pred_name"] = [handle.class_name(int(p)) for p in frame["pred"]]
        frame["true_name"] = ["unknown (upload)" if t is None else handle.class_name(int(t)) for t in true_idx]
        frame["ds"] = ((z - z[ref]) ** 2).sum(1)
        frame["ds_to"] = ds_to
        points.append(frame)
        r = emb.anchored_ranks(z, meta)
        r.insert(0, "variant", variant)
        ranks.append(r)
    return {
        "points": pd.concat(points, ignore_index=True),
        "ranks": pd.concat(ranks, ignore_index=True),
        "reps": {v: np.asarray(reps[v], dtype=np.float32) for v in variants},
        "thumbs": thumbnails(images),
        "align": align,
    }


def _anchor_targets(
    meta: pd.DataFrame, anchors: Sequence[Anchor], labels: np.ndarray
) -> tuple[list[int | None], list[str], dict[str, int]]:
    """Per point of ``meta``: its true class (None for an upload) and the anchor its DS is measured to (its own, or
    for a same-class image the first anchor of its class); and the row of each anchor's original."""
    true = {a.name: a.true for a in anchors}
    true_idx = [
        (int(labels[i]) if role == "same_class" else true.get(a)) for role, a, i in
        zip(meta["role"], meta["anchor"], meta["dataset_index"], strict=True)
    ]  # fmt: skip
    first_of_class = {}
    for a in anchors:
        first_of_class.setdefault(int(a.label), a.name)
    ds_to = [a if a else first_of_class.get(int(lbl), "") for a, lbl in zip(meta["anchor"], meta["label"], strict=True)]
    origin = {a: int(i) for i, a in zip(np.flatnonzero(meta["role"] == "original"),
                                        meta.loc[meta["role"] == "original", "anchor"], strict=True)}  # fmt: skip
    return true_idx, ds_to, origin


@st.cache_data(max_entries=32, show_spinner=False)
def cached_anchor_views(
    zoo_key: tuple,
    dataset: tuple,
    anchor_keys: tuple,
    _anchors: Sequence[Anchor],
    variants: tuple[str, ...],
    representation: str,
    method: str,
    n_same_class: int,
    kinds: tuple[str, ...],
    seed: int = 0,
) -> dict[str, Any]:
    return anchor_views(_cached_zoo(*zoo_key), get_dataset(*dataset), _anchors, variants, representation, method,
                        n_same_class, kinds, seed)  # fmt: skip


def upload_anchor(handle: ZooHandle, name: str, image: np.ndarray, variant: str) -> Anchor:
    """An uploaded image as an anchor: its neighbourhood is the class ``variant`` predicts for it."""
    pred = int(logits_of(handle.model(variant), as_batch(image)).argmax(1)[0])
    return Anchor(name, np.asarray(image, dtype=np.float32), pred, -1, None)


def embeddings_cache_dir() -> Path:
    """Where whole-test-set embeddings are cached: ``$SCL_CACHE_DIR/embeddings`` (default ~/.cache/...)."""
    env = os.environ.get("SCL_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "semantic-continuity-lab"
    return base / "embeddings"


def checkpoint_hashes(handle: ZooHandle, variants: Sequence[str]) -> dict[str, str]:
    """Variant -> sha256 of its checkpoint (from the verified manifest)."""
    items = handle.zoo.manifest.get("variants", {})
    return {v: str((items.get(v) or {}).get("sha256") or f"{handle.path}:{v}:{handle.stamp}") for v in variants}


def _whole_set_paths(handle: ZooHandle, dataset: tuple, n: int, representation: str, variants: Sequence[str],
                     method: str, seed: int) -> tuple[dict[str, Path], Path | None]:  # fmt: skip
    from analysis.embeddings import whole_set_key

    folder = embeddings_cache_dir()
    hashes = checkpoint_hashes(handle, variants)
    reps = {v: folder / f"rep-{whole_set_key({v: h}, repr(dataset), n, representation)}.npz" for v, h in hashes.items()}
    fitted = None
    if method != "pca":  # aligned to the first variant: the key keeps the variants' order
        key = whole_set_key(hashes, repr(dataset), n, representation, method, seed, *variants)
        fitted = folder / f"map-{key}.npz"
    return reps, fitted


def whole_set_ready(handle: ZooHandle, dataset: tuple, n: int, representation: str, variants: Sequence[str],
                    method: str, seed: int = 0) -> bool:  # fmt: skip
    """Whether the whole-set map is on disk already (then the page draws it without asking)."""
    reps, fitted = _whole_set_paths(handle, dataset, n, representation, variants, method, seed)
    return all(p.is_file() for p in reps.values()) and (fitted is None or fitted.is_file())


@st.cache_resource(max_entries=8, show_spinner=False)
def _read_arrays(path: str, mtime: int) -> dict[str, np.ndarray] | None:
    from analysis.embeddings import load_arrays

    return long_lived.freeze(load_arrays(path))


def whole_set(
    handle: ZooHandle,
    ds: ImageDataset,
    dataset: tuple,
    representation: str,
    variants: Sequence[str],
    method: str = "pca",
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray] | None]:
    """The whole test split's representation and predictions per variant, and for t-SNE / UMAP the fitted map,
    computed once and cached on disk (keyed by the checkpoints' sha256s): (data, fitted xy or None)."""
    from analysis.embeddings import save_arrays, shared_projection, whole_set_representations

    progress = progress or (lambda f, t: None)
    n = len(ds)
    rep_paths, fitted_path = _whole_set_paths(handle, dataset, n, representation, variants, method, seed)
    data: dict[str, dict[str, np.ndarray]] = {}
    missing = [v for v, p in rep_paths.items() if _read_arrays(str(p), _mtime(p)) is None]
    for i, v in enumerate(variants):
        if v in missing:
            step = _scaled(progress, i, len(variants))
            with handle.lock(v):
                one = whole_set_representations({v: handle.model(v)}, ds.images, representation, progress=step)
            save_arrays(rep_paths[v], one[v])
        data[v] = _read_arrays(str(rep_paths[v]), _mtime(rep_paths[v]))
    fitted = None
    if fitted_path is not None:
        fitted = _read_arrays(str(fitted_path), _mtime(fitted_path))
        if fitted is None:
            progress(0.5, f"{method} of {n} points x {len(variants)} variants (once; then cached on disk)")
            xy = shared_projection({v: data[v]["rep"] for v in variants}, method, seed, "procrustes")
            save_arrays(fitted_path, xy)
            fitted = _read_arrays(str(fitted_path), _mtime(fitted_path))
    progress(1.0, "done")
    return data, fitted


def _scaled(progress: Callable[[float, str], None], i: int, n: int) -> Callable[[float, str], None]:
    """Variant ``i`` of ``n``'s progress as its share of the first half of the bar (the representations)."""
    return lambda fraction, text: progress(0.5 * (i + fraction) / n, text)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0
