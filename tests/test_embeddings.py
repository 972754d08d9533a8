"""analysis.embeddings: the I_visualize set, seeded projections and the neighbour ranks of perturbed copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.embeddings import (
    embed_logits,
    neighbour_ranks,
    project,
    projection_table,
    visualize_set,
    warm_up_umap,
)
from models.checkpoints import load_zoo
from models.perturbations import KINDS, perturb

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_set():
    """30 seeded 32x32 images in 3 classes."""
    gen = torch.Generator().manual_seed(7)
    return torch.rand(30, 3, 32, 32, generator=gen), torch.arange(30) % 3


def test_visualize_set_roles_and_counts(small_set):
    images, labels = small_set
    out, meta = visualize_set(images, labels, index=4, n_same_class=5, levels=(1, 4), seed=0)
    assert list(meta.columns) == ["role", "kind", "level", "dataset_index"] and len(meta) == len(out)
    assert meta["role"].value_counts().to_dict() == {"perturbed": len(KINDS) * 2, "same_class": 5, "original": 1}
    assert meta["role"].iloc[0] == "original" and torch.equal(out[0], images[4])
    perturbed = meta[meta["role"] == "perturbed"]
    assert (perturbed["dataset_index"] == 4).all() and set(perturbed["level"]) == {1, 4}
    hue4 = perturbed.index[(perturbed["kind"] == "hue") & (perturbed["level"] == 4)][0]
    assert torch.equal(out[hue4], perturb(images[4:5], "hue", 4)[0])
    same = meta[meta["role"] == "same_class"]
    assert (labels[same["dataset_index"].tolist()] == labels[4]).all() and 4 not in set(same["dataset_index"])
    assert same["dataset_index"].is_unique
    for i, idx in zip(same.index, same["dataset_index"], strict=True):
        assert torch.equal(out[i], images[idx])
    # Fewer same-class images than asked: all of them; and seeded.
    _, meta_all = visualize_set(images, labels, index=4, n_same_class=200, kinds=("hue",), levels=(1,))
    assert (meta_all["role"] == "same_class").sum() == 9
    assert visualize_set(images, labels, 4, 5, levels=(1, 4), seed=0)[1].equals(meta)
    assert not visualize_set(images, labels, 4, 5, levels=(1, 4), seed=1)[1].equals(meta)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_projections_are_seeded_and_two_dimensional(method):
    features = np.random.default_rng(0).normal(size=(40, 6))
    a = project(features, method, seed=0)
    assert a.shape == (40, 2) and np.isfinite(a).all()
    assert np.array_equal(a, project(features, method, seed=0))
    if method == "umap":  # PCA and t-SNE (PCA-initialised) do not depend on the seed
        assert not np.allclose(a, project(features, method, seed=1))
    with pytest.raises(ValueError):
        project(features, "mds")


def test_warm_up_umap_runs_once():
    warm_up_umap()
    warm_up_umap()
    assert warm_up_umap.cache_info().hits >= 1


def test_projection_table(tiny_zoo, small_set):
    models = dict(list(load_zoo(tiny_zoo).models.items())[:2])
    images, meta = visualize_set(*small_set, index=0, n_same_class=6, kinds=("brightness", "hue"), levels=(1, 2))
    logits = embed_logits(models, images)
    assert list(logits) == list(models) and logits[next(iter(models))].shape == (len(images), 10)
    df = projection_table(models, images, meta, methods=("pca", "tsne"))
    assert list(df.columns) == ["variant", "method", "x", "y", "role", "kind", "level", "dataset_index"]
    assert len(df) == 2 * 2 * len(images)
    one = df[(df["variant"] == "standard") & (df["method"] == "pca")]
    assert np.allclose(one[["x", "y"]].to_numpy(), project(logits["standard"], "pca"))
    assert one["role"].tolist() == meta["role"].tolist()


def test_neighbour_ranks_by_hand():
    # Original at 0; perturbed copies at distance^2 1 and 10; same-class images at distance^2 4, 9, 16.
    logits = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, np.sqrt(10)], [2.0, 0.0], [0.0, 3.0], [4.0, 0.0]])
    meta = pd.DataFrame(
        {
            "role": ["original", "perturbed", "perturbed", "same_class", "same_class", "same_class"],
            "kind": ["none", "hue", "hue", "none", "none", "none"],
            "level": [0, 1, 2, 0, 0, 0],
            "dataset_index": [0, 0, 0, 1, 2, 3],
        }
    )
    ranks = neighbour_ranks(logits, meta)
    assert list(ranks.columns) == ["kind", "level", "rank", "n_candidates"]
    assert ranks["rank"].tolist() == [1, 3] and (ranks["n_candidates"] == 4).all()


def test_neighbour_ranks_are_in_range(tiny_model, small_set):
    images, meta = visualize_set(*small_set, index=1, n_same_class=8)
    ranks = neighbour_ranks(embed_logits({"m": tiny_model}, images)["m"], meta)
    assert len(ranks) == len(KINDS) * 4
    assert ranks["rank"].between(1, 9).all() and (ranks["n_candidates"] == 9).all()
