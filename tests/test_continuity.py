"""analysis.continuity: DS tables against hand computations, the section-2 neighbourhood rank, the alpha sweep."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from analysis.continuity import (
    RANK_COLUMNS,
    alpha_sweep,
    ds_level1_sum,
    ds_table,
    ds_tables,
    existence_table,
    neighbourhood_rank,
    neighbourhood_rank_table,
    neighbourhood_tables,
)
from models.checkpoints import load_zoo
from models.perturbations import KINDS, perturb
from models.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """logits = W @ flatten(x - centre * mean(x)): with centre=1 blind to a uniform brightness shift."""

    def __init__(self, weight: torch.Tensor, centre: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.centre = centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.centre:
            x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        return x.flatten(1) @ self.weight.T


def _images(n: int, side: int = 4, seed: int = 0) -> torch.Tensor:
    """Pixels in [0.1, 0.5]: brightness up to +64/255 never clamps."""
    return 0.1 + 0.4 * torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _linear_ds_error_bound(weight: torch.Tensor, images: torch.Tensor, shift: float, dtype: torch.dtype) -> float:
    """Worst-case ``dtype`` rounding error of one image's DS for ``Linear(weight)`` under a brightness ``shift``.

    Each logit is a dot product of n = weight.shape[1] terms: its rounding error is at most
    n * eps * sum_i |x_i w_i| (the standard gamma_n bound), for x and for x + shift, so the logit
    difference LD_c is off by at most e_c = 2 n eps (max x + shift) sum_i |w_ci|. Squaring and summing
    over classes adds 2 |LD_c| e_c + e_c^2 per class, and 2 (C + 1) eps relative for the squares and the sum.
    """
    eps = torch.finfo(dtype).eps
    weight, images = weight.double(), images.double()
    n_terms = weight.shape[1]
    x_max = images.max().item() + shift
    e = 2 * n_terms * eps * x_max * weight.abs().sum(1)
    ld = (shift * weight.sum(1)).abs()
    ds = ld.pow(2).sum().item()
    return (2 * ld * e + e.pow(2)).sum().item() + 2 * (weight.shape[0] + 1) * eps * ds


def test_ds_of_a_linear_model_matches_the_hand_computation():
    # Unclamped brightness adds k/255 to every pixel, so LD = W @ (k/255 * 1) = k/255 * rowsum(W) for every image.
    # Tolerances follow from the arithmetic (see _linear_ds_error_bound), not from one processor's result:
    dtype = torch.float32
    weight = torch.randn(3, 48, generator=torch.Generator().manual_seed(2))
    images = _images(6)
    df = ds_table({"lin": Linear(weight)}, images, kinds=("brightness",), levels=(1, 4), batch_size=4)
    assert list(df.columns) == ["variant", "kind", "level", "ds_mean", "ds_std", "ds_median", "n"]
    for level in (1, 4):
        shift = 16 * level / 255
        expected = (shift * weight.double().sum(1)).pow(2).sum().item()
        bound = _linear_ds_error_bound(weight, images, shift, dtype)
        assert bound < 1e-2 * expected  # the bound is tight enough for the test to mean something
        row = df[df["level"] == level].iloc[0]
        assert row["ds_mean"] == pytest.approx(expected, abs=bound)
        assert row["ds_median"] == pytest.approx(expected, abs=bound)
        # Every image has the same DS up to its rounding error, so their spread is at most the bound.
        assert 0.0 <= row["ds_std"] <= bound
        assert row["n"] == 6


def test_ds_table_matches_a_loop_over_images(tiny_model, batch):
    images, _ = batch
    df, each = ds_tables({"net": tiny_model}, images, levels=(1, 3), batch_size=3)
    assert len(df) == len(KINDS) * 2 and set(df["variant"]) == {"net"}
    assert len(each) == len(KINDS) * 2 * len(images) and list(each.columns) == [
        "variant",
        "kind",
        "level",
        "image",
        "ds",
    ]
    with torch.no_grad():
        for kind in KINDS:
            for level in (1, 3):
                per_image = torch.stack(
                    [
                        (tiny_model(perturb(images[i : i + 1], kind, level)) - tiny_model(images[i : i + 1]))
                        .pow(2)
                        .sum()
                        for i in range(len(images))
                    ]
                )
                row = df[(df["kind"] == kind) & (df["level"] == level)].iloc[0]
                assert row["ds_mean"] == pytest.approx(per_image.mean().item(), rel=1e-4, abs=1e-7)
                assert row["ds_median"] == pytest.approx(float(np.median(per_image.numpy())), rel=1e-4, abs=1e-7)
                mine = each[(each["kind"] == kind) & (each["level"] == level)]["ds"].to_numpy()
                assert mine == pytest.approx(per_image.numpy(), rel=1e-4, abs=1e-7)


def test_ds_level1_sum_sums_level_one_over_kinds_in_variant_order():
    df = pd.DataFrame(
        {
            "variant": ["b", "b", "b", "a", "a"],
            "kind": ["hue", "contrast", "hue", "hue", "contrast"],
            "level": [1, 1, 2, 1, 1],
            "ds_mean": [1.0, 2.0, 100.0, 0.5, 0.25],
        }
    )
    s = ds_level1_sum(df)
    assert list(s.index) == ["b", "a"] and s.name == "ds_level1_sum"
    assert s["b"] == 3.0 and s["a"] == 0.75


def test_neighbourhood_rank_shares_are_in_unit_interval(tiny_zoo):
    models = load_zoo(tiny_zoo).models
    gen = torch.Generator().manual_seed(3)
    images, labels = torch.rand(24, 3, 32, 32, generator=gen), torch.arange(24) % 3
    df, per_anchor, exist = neighbourhood_tables(models, images, labels, kinds=("brightness", "hue"), levels=(1, 4),
                                                 n_anchors=5)  # fmt: skip
    assert list(df.columns) == RANK_COLUMNS
    assert list(df["variant"].unique()) == list(models) and len(df) == len(models) * 2 * 2
    assert df["share_closer_mean"].between(0, 1).all() and (df["share_closer_std"] >= 0).all()
    assert (df["n_anchors"] == 5).all() and (df["n_candidates"] == 7).all()  # 8 images per class, minus the anchor
    assert (df["share_closer_ci_low"] <= df["share_closer_mean"]).all()
    assert (df["share_closer_mean"] <= df["share_closer_ci_high"]).all()
    assert len(per_anchor) == len(models) * 5 * 4 and set(per_anchor["anchor"].value_counts()) == {len(models) * 4}
    # existence: an anchor counts when any of its copies is outranked
    for variant, row in exist.set_index("variant").iterrows():
        any_closer = per_anchor[per_anchor["variant"] == variant].groupby("anchor")["n_closer"].max() > 0
        assert row["outranked_anchors"] == any_closer.sum() and row["n_anchors"] == 5
        assert row["ci_low"] <= row["share"] <= row["ci_high"]
    assert df.equals(neighbourhood_rank_table(models, images, labels, ("brightness", "hue"), (1, 4), n_anchors=5))


def test_existence_table_clopper_pearson():
    per_anchor = pd.DataFrame({"variant": "s", "anchor": [0, 0, 1, 1, 2, 2], "kind": "k", "level": [1, 2] * 3,
                               "n_closer": [0, 3, 0, 0, 1, 0], "n_same": 9, "share": 0.0})  # fmt: skip
    row = existence_table(per_anchor).iloc[0]
    assert row["outranked_anchors"] == 2 and row["share"] == pytest.approx(2 / 3)
    from scipy import stats

    ci = stats.binomtest(2, 3).proportion_ci(method="exact")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_neighbourhood_rank_of_an_invariant_model_is_zero_and_of_a_sensitive_one_is_one():
    images = _images(12, seed=5)
    labels = torch.tensor([0] * 6 + [1] * 6)
    weight = torch.randn(2, 48, generator=torch.Generator().manual_seed(4))
    # Blind to uniform brightness shifts: DS(x, x') = 0, so no other image is strictly closer.
    invariant = neighbourhood_rank(Linear(weight, centre=True), images, labels, ("brightness",), (1,), n_anchors=20)
    assert invariant["share_closer_mean"].item() == 0.0 and invariant["n_anchors"].item() == 12
    # Sees only the mean brightness, scaled up: +64/255 moves further than any image differs from another.
    sensitive = neighbourhood_rank(Linear(torch.ones(2, 48)), images * 0.1 + 0.3, labels, ("brightness",), (4,),
                                   variant="big")  # fmt: skip
    assert sensitive["share_closer_mean"].item() == 1.0 and sensitive["variant"].item() == "big"


def test_alpha_sweep_trains_c_at_each_alpha(tmp_path):
    base = TrainConfig(dataset="digits", width=4, epochs=0.2, batch_size=32, train_limit=128, val_size=25,
                       checkpoint_every=1000, num_threads=1, device="cpu", augment=False)  # fmt: skip
    df = alpha_sweep((0.0, 1.0), base, tmp_path)  # DS on the digits test split (360 images)
    assert list(df.columns) == ["alpha", "seed", "val_clean_acc", "test_clean_acc", "ds_level1_sum"]
    assert df["alpha"].tolist() == [0.0, 1.0] and df["seed"].tolist() == [0, 0]
    assert df[["val_clean_acc", "test_clean_acc"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (df["ds_level1_sum"] >= 0).all()
    for alpha in ("0", "1"):
        assert (tmp_path / f"alpha-{alpha}-seed-0" / "model.pt").is_file()


def test_a_scored_alpha_run_is_taken_from_its_row_file_without_training(tmp_path, monkeypatch):
    """An alpha sweep split over sessions: with only the row files kept, the same sweep gives the same table
    without training; other evaluation images or another initial checkpoint are other runs."""
    import analysis.continuity
    from models.data import load_dataset
    from models.train import train

    base = TrainConfig(dataset="digits", width=4, epochs=0.1, batch_size=32, train_limit=96, val_size=0,
                       checkpoint_every=1000, num_threads=1, device="cpu", augment=False, eval_test=False)  # fmt: skip
    test = load_dataset("digits", "test")
    images = test.images[:24]
    first = alpha_sweep((0.0, 1.0), base, tmp_path / "w", eval_images=images, test_set=test, batch_size=64)
    assert first["test_acc"].between(0, 1).all() and list(first.columns)[-1] == "test_acc"
    for path in (tmp_path / "w").rglob("*"):
        if path.is_file() and path.name != analysis.continuity.ALPHA_ROW_FILE:
            path.unlink()  # a new machine: the run folders are gone, the row files kept

    def no_training(*args, **kw):
        raise AssertionError("a run with a stored row was trained again")

    monkeypatch.setattr(analysis.continuity, "train", no_training)
    again = alpha_sweep((0.0, 1.0), base, tmp_path / "w", eval_images=images, test_set=test, batch_size=64)
    pd.testing.assert_frame_equal(again, first)
    with pytest.raises(AssertionError, match="trained again"):  # DS on other images
        alpha_sweep((0.0,), base, tmp_path / "w", eval_images=images[1:], test_set=test)
    monkeypatch.setattr(analysis.continuity, "train", train)
    start = train(dataclasses.replace(base, variant="standard", out=str(tmp_path / "start")))
    assert start is not None
    monkeypatch.setattr(analysis.continuity, "train", no_training)
    with pytest.raises(AssertionError, match="trained again"):  # fine-tuned from another checkpoint
        alpha_sweep((0.0,), base, tmp_path / "w", init=str(tmp_path / "start" / "model.pt"), eval_images=images,
                    test_set=test)  # fmt: skip
