"""ROAD faithfulness (analysis.road): the scores are pytorch-grad-cam's own on the same inputs, a map that points at
what the model reads scores better than its reverse, and the paired CIs between variants come from the per-image
scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam.metrics.road import (
    ROADCombined,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from analysis.road import road_paired, road_scores, road_summary

PERCENTILES = (20, 50, 80)


def test_the_scores_are_the_librarys_on_the_same_inputs(tiny_model, batch, one_thread):
    images, labels = batch
    maps = np.random.default_rng(0).random((len(images), 32, 32)).astype(np.float32)
    ours = road_scores(tiny_model, images, maps, labels, PERCENTILES, seed=3, batch_size=len(images))
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in labels]
    with torch.random.fork_rng():
        torch.manual_seed(3)
        lerf = ROADLeastRelevantFirstAverage(list(PERCENTILES))(images, maps, targets, tiny_model)
        morf = ROADMostRelevantFirstAverage(list(PERCENTILES))(images, maps, targets, tiny_model)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        combined = ROADCombined(list(PERCENTILES))(images, maps, targets, tiny_model)
    np.testing.assert_array_equal(ours["lerf"], lerf.astype(np.float64))
    np.testing.assert_array_equal(ours["morf"], morf.astype(np.float64))
    np.testing.assert_allclose(ours["combined"], combined, rtol=1e-6, atol=1e-9)
    assert np.ptp(ours["morf"]) > 0  # eight images, eight different scores: not a constant
    again = road_scores(tiny_model, images, maps, labels, PERCENTILES, seed=3, batch_size=len(images))
    np.testing.assert_array_equal(again["combined"], ours["combined"])  # seeded: reproducible


class _Corner(torch.nn.Module):
    """Class 0's logit is 20 x the mean brightness of the top-left 12x12 corner; class 1's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 20 * x[:, :, :12, :12].mean((1, 2, 3))
        return torch.stack([score, torch.zeros_like(score)], 1)


def test_a_map_of_what_the_model_reads_is_more_faithful_than_its_reverse(one_thread):
    x = torch.full((4, 3, 32, 32), 0.1)
    x[:, :, :12, :12] = 0.9  # the corner the model reads is bright, the rest dark
    x += 0.02 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    faithful = np.zeros((4, 32, 32), np.float32)
    faithful[:, :12, :12] = 1.0
    faithful += np.random.default_rng(1).random(faithful.shape).astype(np.float32) * 0.01  # no ties
    good = road_scores(_Corner(), x, faithful, [0] * 4, PERCENTILES)
    bad = road_scores(_Corner(), x, 1.0 - faithful, [0] * 4, PERCENTILES)
    assert (good["morf"] < bad["morf"]).all()  # removing the corner first drops the class most
    assert (good["lerf"] > bad["lerf"]).all() and (good["combined"] > bad["combined"]).all()


def test_bad_maps_are_refused_in_one_line(tiny_model, batch):
    images, labels = batch
    with pytest.raises(ValueError, match="maps must be"):
        road_scores(tiny_model, images, np.zeros((len(images), 16, 16)), labels)
    with pytest.raises(ValueError, match="percentiles"):
        road_scores(tiny_model, images, np.zeros((len(images), 32, 32)), labels, percentiles=(0, 50))


def _per_image(shift: float, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.05, n)
    rows = []
    for variant, add in (("standard", 0.0), ("C", shift)):
        morf = base - add + rng.normal(0, 0.005, n)
        lerf = base + add + rng.normal(0, 0.005, n)
        rows.append(pd.DataFrame({"variant": variant, "method": "gradcam", "image": range(n), "morf": morf,
                                  "lerf": lerf, "combined": (lerf - morf) / 2}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_paired_intervals_between_variants_from_the_per_image_scores():
    roles = {"standard": "baseline", "C": "constrained"}
    paired = road_paired(_per_image(0.05), roles, n_resamples=2000).set_index("score")
    assert list(paired["comparison"]) == ["C vs standard"] * 3
    assert paired.loc["combined", "effect"] == pytest.approx(0.05, abs=0.01)
    assert paired.loc["combined", "ci_low"] > 0 and paired.loc["combined", "better"] == "C"
    assert paired.loc["morf", "ci_high"] < 0 and paired.loc["morf", "better"] == "C"  # lower morf: C more faithful
    tie = road_paired(_per_image(0.0), roles, n_resamples=2000).set_index("score")
    assert (tie["better"] == "-").all() and (tie["ci_low"] < 0).all() and (tie["ci_high"] > 0).all()
    summary = road_summary(_per_image(0.05), n_resamples=2000)
    row = summary[(summary["variant"] == "C") & (summary["score"] == "combined")].iloc[0]
    assert row["ci_low"] < row["mean"] < row["ci_high"] and row["n_images"] == 40
