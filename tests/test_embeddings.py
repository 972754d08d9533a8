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


def test_features_are_the_heads_input(tiny_model, small_set):
    from analysis.embeddings import embed, predict_features

    images = small_set[0][:6]
    feats = predict_features(tiny_model, images)
    logits = tiny_model.head(feats)
    assert torch.allclose(logits, tiny_model(images), atol=1e-5)
    wrapped = torch.nn.Sequential(tiny_model)  # no forward_features: the last nn.Linear's input is read by a hook
    assert torch.allclose(predict_features(wrapped, images), feats, atol=1e-6)
    out = embed({"m": tiny_model}, images, "features")
    assert out["m"].shape == (6, feats.shape[1])
    with pytest.raises(ValueError):
        embed({"m": tiny_model}, images, "pixels")


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_shared_projection_puts_the_variants_in_one_map(method):
    from analysis.embeddings import procrustes_align, shared_projection

    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    reps = {"standard": a, "C": a * 0.5 + 0.01 * rng.normal(size=a.shape)}
    union = shared_projection(reps, method, seed=0, align="union")
    assert union["standard"].shape == union["C"].shape == (40, 2)
    both = np.concatenate([reps["standard"], reps["C"]])
    assert np.allclose(np.concatenate([union["standard"], union["C"]]), project(both, method, 0))  # one fit
    if method == "pca":  # C's logits are half standard's: in the shared map, C's cloud is half as wide
        spread = {v: xy.std(0).sum() for v, xy in union.items()}
        assert spread["C"] == pytest.approx(spread["standard"] / 2, rel=0.05)
    # Procrustes: the second variant's own map, rotated onto the first
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    ref = rng.normal(size=(30, 2))
    assert np.allclose(procrustes_align(ref, 3 * ref @ rot + 5), ref, atol=1e-8)
    aligned = shared_projection({"a": a, "b": a[:, ::-1] * 2}, method, seed=0, align="procrustes")
    assert np.abs(aligned["a"] - aligned["b"]).max() < 0.5 * np.abs(aligned["a"]).max()
    with pytest.raises(ValueError):
        shared_projection({"a": a, "b": a[:, :3]}, method, align="union")


def test_anchored_set_and_ranks(small_set):
    from analysis.embeddings import anchored_ranks, anchored_set, nearest_neighbours

    images, labels = small_set
    upload = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    anchors = [("#4", images[4], int(labels[4]), 4), ("#7", images[7], int(labels[7]), 7), ("up", upload, 1, -1)]
    out, meta = anchored_set(images, labels, anchors, n_same_class=4, kinds=("hue",), levels=(1, 2))
    assert list(meta.columns) == ["role", "kind", "level", "dataset_index", "anchor", "label"] and len(out) == len(meta)
    assert (meta["role"] == "original").sum() == 3 and (meta["role"] == "perturbed").sum() == 6
    same = meta[meta["role"] == "same_class"]
    assert not set(same["dataset_index"]) & {4, 7}  # an anchor is never its own neighbour
    assert set(same["label"]) == {int(labels[4]), int(labels[7]), 1}
    assert (labels[same["dataset_index"].tolist()] == torch.tensor(same["label"].tolist())).all()
    assert torch.equal(out[meta.index[meta["anchor"] == "up"][0]], upload)
    z = out.flatten(1).numpy()
    ranks = anchored_ranks(z, meta)
    assert list(ranks["anchor"].unique()) == ["#4", "#7", "up"] and len(ranks) == 6
    assert ranks["rank"].between(1, 5).all()
    rows, d = nearest_neighbours(z, 0, k=3)
    assert 0 not in rows and len(rows) == 3 and np.all(np.diff(d) >= 0)


def test_whole_set_cache_and_map(tiny_zoo, small_set, tmp_path):
    from analysis.embeddings import shared_projection
    from analysis.embeddings_whole_set import (
        load_arrays,
        place_by_neighbours,
        save_arrays,
        whole_set_key,
        whole_set_map,
        whole_set_representations,
    )

    models = dict(list(load_zoo(tiny_zoo).models.items())[:2])
    images = small_set[0]
    seen = []
    data = whole_set_representations(models, images, "logits", progress=lambda f, t: seen.append(f))
    assert seen[-1] == 1.0 and all(d["rep"].shape == (30, 10) and d["pred"].shape == (30,) for d in data.values())
    path = tmp_path / "x.npz"
    save_arrays(path, data["standard"])
    assert np.array_equal(load_arrays(path)["rep"], data["standard"]["rep"])
    assert load_arrays(tmp_path / "missing.npz") is None
    key = whole_set_key({"standard": "aa"}, "digits", 30, "logits")
    assert key == whole_set_key({"standard": "aa"}, "digits", 30, "logits")
    assert key != whole_set_key({"standard": "bb"}, "digits", 30, "logits")  # a retrained checkpoint misses
    extras = {v: d["rep"][:3] + 0.01 for v, d in data.items()}
    xy, extra_xy = whole_set_map(data, "pca", extras=extras)
    assert all(xy[v].shape == (30, 2) and extra_xy[v].shape == (3, 2) for v in data)
    fitted = shared_projection({v: d["rep"] for v, d in data.items()}, "tsne", 0, "procrustes")
    xy, extra_xy = whole_set_map(data, "tsne", extras=extras, fitted=fitted)
    assert np.array_equal(xy["standard"], fitted["standard"])
    ref = np.arange(20.0).reshape(10, 2)
    assert np.allclose(place_by_neighbours(ref[:2], ref, ref * 3, k=1), ref[:2] * 3)
    with pytest.raises(ValueError):
        whole_set_map(data, "umap")
