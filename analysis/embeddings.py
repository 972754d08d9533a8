"""Augmented neighbourhoods in logit space (paper section 2, Fig. 2).

``visualize_set`` builds the paper's I_visualize: one image, its Table 1 perturbations and other images of its
class. ``projection_table`` projects every variant's logits with PCA, t-SNE and UMAP, and ``neighbour_ranks``
says where each perturbed copy falls among the original's neighbours (by DS, rank 1 = nearest).

The dashboard's view: ``embed`` (logits or penultimate ``features``), ``shared_projection`` (one map for all variants:
fitted on their union, or aligned by Procrustes), ``anchored_set`` / ``anchored_ranks`` (several anchors at once),
``nearest_neighbours``, and :func:`anchor_views` (the embeddings page's whole neighbourhood view: one shared map,
ranks, predictions and DS to each point's anchor); ``explained_variance`` (the PCA axes' shares of variance) and
``search_rows`` (the page's search by class or image number). The whole test set is
:mod:`analysis.embeddings_whole_set`.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from models.evaluation import predict_logits
from models.objectives import distance_score
from models.perturbations import KINDS, perturb

METHODS: tuple[str, ...] = ("pca", "tsne", "umap")
META_COLUMNS = ["role", "kind", "level", "dataset_index"]


def visualize_set(
    dataset_images: torch.Tensor,
    labels: torch.Tensor,
    index: int,
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = (1, 2, 3, 4),
    seed: int = 0,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """The paper's I_visualize for the image at ``index``: the original, its perturbation at every kind x level,
    and up to ``n_same_class`` other images of its class (a seeded sample, in data set order).

    Returns the images (in that order) and a metadata table with columns role ("original" | "perturbed" |
    "same_class"), kind ("none" unless perturbed), level (0 unless perturbed), dataset_index.
    """
    labels = torch.as_tensor(labels).cpu()
    index = int(index)
    original = dataset_images[index : index + 1]
    others = torch.nonzero(labels == labels[index]).flatten()
    others = others[others != index]
    gen = torch.Generator().manual_seed(seed)
    chosen = others[torch.randperm(len(others), generator=gen)[:n_same_class]].sort().values
    parts = [original]
    meta = [{"role": "original", "kind": "none", "level": 0, "dataset_index": index}]
    for kind in kinds:
        for level in levels:
            parts.append(perturb(original, kind, level))
            meta.append({"role": "perturbed", "kind": kind, "level": int(level), "dataset_index": index})
    parts.append(dataset_images[chosen.to(dataset_images.device)])
    meta += [{"role": "same_class", "kind": "none", "level": 0, "dataset_index": int(i)} for i in chosen]
    return torch.cat(parts), pd.DataFrame(meta, columns=META_COLUMNS)


def embed_logits(
    models: dict[str, nn.Module], images: torch.Tensor, batch_size: int = 512, progress: bool = False
) -> dict[str, np.ndarray]:
    """Logits (N, classes) of ``images`` under each variant: the paper's image representation F(x)."""
    return {
        variant: predict_logits(model, images, batch_size).numpy()
        for variant, model in tqdm(models.items(), desc="logits", disable=not progress, unit="variant")
    }


def _pad2(points: np.ndarray, n: int) -> np.ndarray:
    """Zero columns up to 2 (when there are too few samples or features for two components)."""
    out = np.zeros((n, 2), dtype=np.float64)
    out[:, : points.shape[1]] = points
    return out


def project(features: np.ndarray | torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection (N, 2) of ``features`` (N, D), deterministic for a given ``seed``.

    pca: scikit-learn PCA; tsne: scikit-learn TSNE with perplexity min(30, (N-1)/3) and PCA init; umap:
    umap.UMAP(random_state=seed) with n_neighbors min(15, N-1) (imported lazily; the first fit in a process
    compiles numba code for ~10 s, see ``warm_up_umap``).
    """
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    n = len(x)
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; known: {', '.join(METHODS)}")
    if n < 3:
        # Too few points for t-SNE / UMAP: PCA (or nothing) says all there is to say.
        if n < 2:
            return np.zeros((n, 2))
        method = "pca"
    if method == "pca":
        from sklearn.decomposition import PCA

        k = min(2, n, x.shape[1])
        return _pad2(PCA(n_components=k, random_state=seed).fit_transform(x), n)
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
        return tsne.fit_transform(x).astype(np.float64)
    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # random_state forces one thread
        warnings.filterwarnings("ignore", message=".*spectral initialisation failed.*")
        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


@functools.cache
def warm_up_umap() -> None:
    """Fit a tiny UMAP once per process so numba compiles now rather than on the first real projection."""
    project(np.random.default_rng(0).normal(size=(32, 4)), "umap")


def projection_table(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    meta: pd.DataFrame,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Every variant's logits projected by every method: one row per variant x method x image.

    Columns: variant, method, x, y, then the columns of ``meta`` (one row per image, e.g. from ``visualize_set``).
    """
    if len(meta) != len(images):
        raise ValueError(f"meta has {len(meta)} rows for {len(images)} images")
    logits = embed_logits(models, images, batch_size)
    frames = []
    bar = tqdm(total=len(models) * len(methods), desc="projections", disable=not progress, unit="map")
    for variant, feats in logits.items():
        for method in methods:
            bar.set_postfix_str(f"{variant} {method}")
            xy = project(feats, method, seed)
            head = pd.DataFrame({"variant": variant, "method": method, "x": xy[:, 0], "y": xy[:, 1]})
            frames.append(pd.concat([head, meta.reset_index(drop=True)], axis=1))
            bar.update(1)
    bar.close()
    if not frames:
        return pd.DataFrame(columns=["variant", "method", "x", "y", *meta.columns])
    return pd.concat(frames, ignore_index=True)


def neighbour_ranks(logits: np.ndarray | torch.Tensor, meta: pd.DataFrame) -> pd.DataFrame:
    """Where each perturbed copy ranks among the original's neighbours in logit space (paper Fig. 2 as numbers).

    Distances are DS from the original (squared L2 of logits). Each perturbed image is ranked against the
    ``same_class`` images: ``rank = 1 + #(same-class images strictly nearer than it)``, so rank 1 means the
    perturbed copy is the original's nearest neighbour (continuity), and ``n_candidates = n_same_class + 1``
    the worst. Columns: kind, level, rank, n_candidates.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    role = meta["role"].to_numpy()
    original = np.flatnonzero(role == "original")
    if len(original) != 1:
        raise ValueError(f"meta must have exactly one 'original' row, found {len(original)}")
    ds = distance_score(z[original[0]].expand_as(z), z).numpy()
    same = ds[role == "same_class"]
    perturbed = np.flatnonzero(role == "perturbed")
    return pd.DataFrame(
        {
            "kind": meta["kind"].to_numpy()[perturbed],
            "level": meta["level"].to_numpy()[perturbed].astype(int),
            "rank": [1 + int((same < ds[i]).sum()) for i in perturbed],
            "n_candidates": len(same) + 1,
        },
        columns=["kind", "level", "rank", "n_candidates"],
    )


# ----------------------------------------------------------------------------- representations and shared maps

REPRESENTATIONS: tuple[str, ...] = ("logits", "features")
ALIGNMENTS: tuple[str, ...] = ("union", "procrustes")


@torch.no_grad()
def predict_features(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features (N, D) on the CPU: the input of the network's head (``forward_features`` of the lab's
    networks; for any other module, the input of its last ``nn.Linear``, read with a forward hook)."""
    from models.evaluation import batches
    from models.networks import unwrap_model

    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    forward = getattr(model, "forward_features", None)
    captured: list[torch.Tensor] = []
    handle = None
    if forward is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(model).__name__} has neither forward_features nor an nn.Linear head")
        handle = linears[-1].register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].detach()))
    out = []
    try:
        for sl in batches(len(images), batch_size):
            x = images[sl].to(device)
            if forward is not None:
                out.append(forward(x).flatten(1).float().cpu())
            else:
                captured.clear()
                model(x)
                out.append(captured[-1].flatten(1).float().cpu())
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def embed(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    representation: str = "logits",
    batch_size: int = 512,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Each variant's representation of ``images``: ``logits`` (N, classes; the paper's F(x)) or ``features``
    (N, D; the penultimate layer, the head's input)."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {representation!r}; known: {', '.join(REPRESENTATIONS)}")
    if representation == "logits":
        return embed_logits(models, images, batch_size, progress)
    return {
        variant: predict_features(model, images, batch_size).numpy()
        for variant, model in tqdm(models.items(), desc="features", disable=not progress, unit="variant")
    }


def procrustes_align(reference: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) rotated, reflected, scaled and shifted onto ``reference`` (N, 2), row i onto row i
    (orthogonal Procrustes, least squares)."""
    from scipy.linalg import orthogonal_procrustes

    ref_mean, pts_mean = reference.mean(0), points.mean(0)
    a, b = reference - ref_mean, points - pts_mean
    if not np.any(b) or not np.any(a):
        return b + ref_mean
    rotation, singular_sum = orthogonal_procrustes(b, a)
    scale = singular_sum / float((b**2).sum())
    return scale * b @ rotation + ref_mean


def shared_projection(
    representations: dict[str, np.ndarray], method: str = "pca", seed: int = 0, align: str = "union"
) -> dict[str, np.ndarray]:
    """One 2-D map for several variants' representations of the same images, so their panels compare.

    ``union``: a single projection fitted on every variant's points stacked (the representations must share their
    dimension and meaning, as logits do: coordinate k is class k); ``procrustes``: each variant projected on its own,
    then aligned onto the first by orthogonal Procrustes over the matching images (for penultimate features, whose
    bases differ from network to network).
    """
    if align not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {align!r}; known: {', '.join(ALIGNMENTS)}")
    names = list(representations)
    if not names:
        return {}
    sizes = {len(representations[n]) for n in names}
    if len(sizes) != 1:
        raise ValueError(f"the variants' representations cover different numbers of images: {sorted(sizes)}")
    n = sizes.pop()
    if align == "union":
        dims = {np.asarray(representations[v]).shape[1] for v in names}
        if len(dims) != 1:
            raise ValueError(f"a union projection needs one dimension, got {sorted(dims)}: use align='procrustes'")
        xy = project(np.concatenate([np.asarray(representations[v]) for v in names]), method, seed)
        return {v: xy[i * n : (i + 1) * n] for i, v in enumerate(names)}
    maps = {v: project(representations[v], method, seed) for v in names}
    first = maps[names[0]]
    return {v: first if i == 0 else procrustes_align(first, maps[v]) for i, v in enumerate(names)}


def explained_variance(
    representations: dict[str, np.ndarray], align: str = "union", seed: int = 0
) -> dict[str, np.ndarray]:
    """The share of variance (sklearn's ``explained_variance_ratio_``) on PC1 and PC2 of the PCA map that
    ``shared_projection(representations, "pca", align=align)`` draws: for ``union`` one PCA of every variant's
    points stacked (the same two numbers for all), for ``procrustes`` each variant's own PCA (after alignment a
    variant's axes are rotated, but its plane keeps the sum). Variant -> array of 2 ratios (0 where a map has
    fewer than two components)."""
    from sklearn.decomposition import PCA

    def ratios(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros(2)
        k = min(2, len(x), x.shape[1]) if x.ndim == 2 else 0
        if len(x) >= 2 and k > 0:
            out[:k] = PCA(n_components=k, random_state=seed).fit(x).explained_variance_ratio_
        return np.nan_to_num(out)

    names = list(representations)
    if align == "union" and names:
        shared = ratios(np.concatenate([np.asarray(representations[v]) for v in names]))
        return {v: shared for v in names}
    return {v: ratios(representations[v]) for v in names}


def search_rows(points: pd.DataFrame, query: str) -> np.ndarray:
    """The ``row`` values (else the index) of the points a search matches. ``query``: comma-separated terms, each
    "#12" (test image 12: its ``dataset_index``), a class name (its ``true_name``, case-insensitive), a bare number
    that is no class name (a test image number), or part of a class name ("dre" finds Dress)."""
    rows = points["row"].to_numpy() if "row" in points else points.index.to_numpy()
    names = points["true_name"].astype(str).str.lower() if "true_name" in points else pd.Series([""] * len(points))
    known = set(names)
    index = points["dataset_index"].to_numpy() if "dataset_index" in points else np.full(len(points), -1)
    hit = np.zeros(len(points), dtype=bool)
    for raw in str(query or "").replace(";", ",").split(","):
        term = raw.strip().lower()
        if not term:
            continue
        if term.startswith("#") and term[1:].strip().isdigit():
            hit |= index == int(term[1:])
        elif term in known:
            hit |= (names == term).to_numpy()
        elif term.isdigit():
            hit |= index == int(term)
        else:
            hit |= names.str.contains(term, regex=False).to_numpy()
    return rows[hit]


# ----------------------------------------------------------------------------- several anchors


def anchored_set(
    dataset_images: torch.Tensor,
    labels: torch.Tensor,
    anchors: Sequence[tuple[str, torch.Tensor, int, int]],
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = (1, 2, 3, 4),
    seed: int = 0,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """I_visualize for several anchors at once: each anchor, its perturbations at every kind x level, and up to
    ``n_same_class`` test images of each anchor's neighbourhood class (a seeded sample per class, shared by the
    anchors of that class, never an anchor itself).

    ``anchors``: (name, image (3, H, W), neighbourhood class, data set index or -1 for an upload). Returns the images
    and a table with role, kind, level, dataset_index, anchor (the anchor's name; "" for same-class images) and
    label (the neighbourhood class).
    """
    labels = torch.as_tensor(labels).cpu()
    anchor_indices = {int(a[3]) for a in anchors if int(a[3]) >= 0}
    parts: list[torch.Tensor] = []
    meta: list[dict] = []
    for name, image, label, index in anchors:
        original = torch.as_tensor(image, dtype=torch.float32).reshape(1, *image.shape[-3:])
        parts.append(original)
        meta.append({"role": "original", "kind": "none", "level": 0, "dataset_index": int(index), "anchor": name,
                     "label": int(label)})  # fmt: skip
        for kind in kinds:
            for level in levels:
                parts.append(perturb(original, kind, level))
                meta.append({"role": "perturbed", "kind": kind, "level": int(level), "dataset_index": int(index),
                             "anchor": name, "label": int(label)})  # fmt: skip
    for label in dict.fromkeys(int(a[2]) for a in anchors):
        others = torch.nonzero(labels == label).flatten()
        others = others[~torch.isin(others, torch.tensor(sorted(anchor_indices), dtype=others.dtype))]
        gen = torch.Generator().manual_seed(seed + label)
        chosen = others[torch.randperm(len(others), generator=gen)[:n_same_class]].sort().values
        if len(chosen):
            parts.append(dataset_images[chosen.to(dataset_images.device)].cpu())
        meta += [{"role": "same_class", "kind": "none", "level": 0, "dataset_index": int(i), "anchor": "",
                  "label": label} for i in chosen]  # fmt: skip
    columns = [*META_COLUMNS, "anchor", "label"]
    if not parts:
        return torch.zeros(0, 3, 1, 1), pd.DataFrame(columns=columns)
    return torch.cat(parts), pd.DataFrame(meta, columns=columns)


def anchored_ranks(logits: np.ndarray | torch.Tensor, meta: pd.DataFrame) -> pd.DataFrame:
    """``neighbour_ranks`` for every anchor of an ``anchored_set``: each anchor's perturbed copies ranked among the
    same-class images of its neighbourhood class. Columns: anchor, kind, level, rank, n_candidates."""
    z = np.asarray(logits)
    frames = []
    for name in dict.fromkeys(meta.loc[meta["role"] == "original", "anchor"]):
        own = meta["anchor"] == name
        label = int(meta.loc[own & (meta["role"] == "original"), "label"].iloc[0])
        rows = np.flatnonzero(own.to_numpy() | ((meta["role"] == "same_class") & (meta["label"] == label)).to_numpy())
        r = neighbour_ranks(z[rows], meta.iloc[rows].reset_index(drop=True))
        r.insert(0, "anchor", name)
        frames.append(r)
    if not frames:
        return pd.DataFrame(columns=["anchor", "kind", "level", "rank", "n_candidates"])
    return pd.concat(frames, ignore_index=True)


def nearest_neighbours(representation: np.ndarray, row: int, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows nearest to ``row`` (itself excluded) by squared L2 in ``representation`` (DS for logits),
    nearest first: (rows, squared distances)."""
    z = np.asarray(representation, dtype=np.float64)
    d = ((z - z[int(row)]) ** 2).sum(1)
    d[int(row)] = np.inf
    order = np.argsort(d, kind="stable")[: max(0, min(k, len(z) - 1))]
    return order, d[order]


# ----------------------------------------------------------------------------- the embeddings page's anchor view


@dataclass
class Anchor:
    """One anchor of a neighbourhood view: a test image (``index`` >= 0) or an upload (``index`` -1, ``true`` None;
    its neighbourhood ``label`` is the class a variant predicts for it)."""

    name: str
    image: np.ndarray  # float32 (3, H, W) in [0, 1]
    label: int
    index: int = -1
    true: int | None = None


def thumbnails(images: torch.Tensor, max_side: int = 64) -> np.ndarray:
    """(N, 3, H, W) float images -> (N, h, w, 3) uint8, shrunk to at most ``max_side`` pixels a side."""
    x = images.detach().float().cpu()
    if max(x.shape[-2:]) > max_side:
        scale = max_side / max(x.shape[-2:])
        size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
        x = torch.nn.functional.interpolate(x, size=size, mode="area")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def anchor_views(
    models: dict[str, nn.Module],
    dataset_images: torch.Tensor,
    labels: torch.Tensor,
    anchors: Sequence[Anchor],
    representation: str = "logits",
    method: str = "pca",
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    class_name: Callable[[int], str] = str,
    locked: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, Any]:
    """Several anchors, their perturbations and same-class images in one 2-D map shared by ``models`` (logits:
    fitted on their union; features: Procrustes-aligned). Forward passes run inside ``locked()``.

    Returns points (variant, x, y, row, role, kind, level, dataset_index, anchor, label, pred, pred_name,
    true_name, ds, ds_to), ranks (variant, anchor, kind, level, rank, n_candidates; by DS on logits), reps
    (variant -> (N, D) shown representation), thumbs ((N, h, w, 3) uint8 by row) and align.
    """
    images, meta = anchored_set(dataset_images, labels, [(a.name, torch.from_numpy(np.asarray(a.image)), a.label,
                                                          a.index) for a in anchors],
                                n_same_class=n_same_class, kinds=list(kinds), seed=seed)  # fmt: skip
    with locked():
        logits = embed(models, images, "logits")
        reps = logits if representation == "logits" else embed(models, images, representation)
    align = "union" if representation == "logits" else "procrustes"
    xy = shared_projection(reps, method, seed, align)
    true_idx, ds_to, origin = _anchor_targets(meta, anchors, torch.as_tensor(labels).cpu().numpy())
    ref = np.array([origin.get(a, i) for i, a in enumerate(ds_to)])
    points, ranks = [], []
    for variant in models:
        z = logits[variant]
        frame = meta.reset_index(drop=True).copy()
        frame.insert(0, "row", np.arange(len(frame)))
        frame.insert(0, "y", xy[variant][:, 1])
        frame.insert(0, "x", xy[variant][:, 0])
        frame.insert(0, "variant", variant)
        frame["pred"] = z.argmax(1)
        frame["pred_name"] = [class_name(int(p)) for p in frame["pred"]]
        frame["true_name"] = ["unknown (upload)" if t is None else class_name(int(t)) for t in true_idx]
        frame["ds"] = distance_score(torch.as_tensor(z), torch.as_tensor(z[ref])).numpy()
        frame["ds_to"] = ds_to
        points.append(frame)
        r = anchored_ranks(z, meta)
        r.insert(0, "variant", variant)
        ranks.append(r)
    return {
        "points": pd.concat(points, ignore_index=True),
        "ranks": pd.concat(ranks, ignore_index=True),
        "reps": {v: np.asarray(reps[v], dtype=np.float32) for v in models},
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
    first_of_class: dict[int, str] = {}
    for a in anchors:
        first_of_class.setdefault(int(a.label), a.name)
    ds_to = [a if a else first_of_class.get(int(lbl), "") for a, lbl in zip(meta["anchor"], meta["label"], strict=True)]
    origin = {a: int(i) for i, a in zip(np.flatnonzero(meta["role"] == "original"),
                                        meta.loc[meta["role"] == "original", "anchor"], strict=True)}  # fmt: skip
    return true_idx, ds_to, origin
