"""Augmented neighbourhoods in logit space (paper section 2, Fig. 2).

``visualize_set`` builds the paper's I_visualize: one image, its Table 1 perturbations and other images of its
class. ``projection_table`` projects every variant's logits with PCA, t-SNE and UMAP, and ``neighbour_ranks``
says where each perturbed copy falls among the original's neighbours (by DS, rank 1 = nearest).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

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
