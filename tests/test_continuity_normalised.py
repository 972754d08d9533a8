"""analysis.continuity: DS on the variant's own logit scale and alpha's trend test, on constructed data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from analysis.continuity import (
    alpha_sweep_trend,
    ds_tables,
    level1_sum_per_image,
    logit_spreads,
    normalise_ds,
    same_class_spread,
    trend_test,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_same_class_spread_is_the_mean_over_same_class_pairs():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 4, generator=gen) * 3
    labels = torch.tensor([0] * 12 + [1] * 10 + [2] * 7 + [3])  # class 3 has one image: no pair
    per_anchor = []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        if others:
            per_anchor.append(np.mean([float(((logits[i] - logits[j]) ** 2).sum()) for j in others]))
    assert same_class_spread(logits, labels) == pytest.approx(np.mean(per_anchor))
    assert same_class_spread(2 * logits, labels) == pytest.approx(4 * np.mean(per_anchor))
    with pytest.raises(ValueError, match="no class has two images"):
        same_class_spread(logits[:2], torch.tensor([0, 1]))


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, k: float) -> None:
        super().__init__()
        self.inner, self.k = inner, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * self.inner(x)


def test_normalised_ds_does_not_depend_on_the_logits_scale():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).eval()
    models = {"base": base, "x3": Scaled(base, 3.0).eval()}
    images = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 5
    _, per_image = ds_tables(models, images, kinds=("brightness", "hue"), levels=(1,))
    spreads = logit_spreads(models, images, labels)
    assert spreads["x3"] == pytest.approx(9 * spreads["base"], rel=1e-5)
    out = normalise_ds(per_image, spreads)
    a, b = (out[out["variant"] == v].reset_index(drop=True) for v in ("base", "x3"))
    assert b["ds"].to_numpy() == pytest.approx(9 * a["ds"].to_numpy(), rel=1e-4)  # raw DS: 9 x larger
    assert b["ds_normalised"].to_numpy() == pytest.approx(a["ds_normalised"].to_numpy(), rel=1e-4)
    assert "ds_normalised" not in per_image.columns  # the input is not changed
    summed = level1_sum_per_image(out, "ds_normalised")
    assert list(summed.columns) == ["variant", "image", "ds_normalised"] and len(summed) == 80
    with pytest.raises(ValueError, match="no same-class spread for variant"):
        normalise_ds(per_image, {"base": 1.0})


ALPHAS = (0.0, 0.1, 0.3, 1.0, 3.0)


def _per_image(slope: float, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Per-image DS at every alpha: an image's own level times (1 - slope x the alpha's rank), plus noise."""
    rng = np.random.default_rng(seed)
    level = rng.gamma(2.0, 2.0, size=n)
    rows = [pd.DataFrame({"alpha": a, "image": np.arange(n),
                          "ds": level * (1 - slope * r) + rng.normal(scale=0.5, size=n)})
            for r, a in enumerate(ALPHAS)]  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_a_monotone_sweep_gives_a_small_p_and_a_flat_one_does_not():
    falling = trend_test(_per_image(slope=0.1))
    assert falling.p < 1e-6 and falling.spearman_rho == pytest.approx(-1.0)
    assert (falling.n_blocks, falling.n_levels) == (300, len(ALPHAS))
    assert "Page's L" in falling.test
    assert trend_test(_per_image(slope=0.1), direction="increasing").p > 0.99  # one-sided
    tied = _per_image(slope=0.0).assign(ds=lambda t: t["image"].astype(float))  # every alpha alike per image
    assert trend_test(tied).p > 0.05
    # under no trend p is uniform: the count of 200 noisy flat sweeps below 0.05 is Bin(200, 0.05)
    rejected = sum(trend_test(_per_image(slope=0.0, n=30, seed=s)).p < 0.05 for s in range(200))
    assert stats.binom.ppf(0.0005, 200, 0.05) <= rejected <= stats.binom.ppf(0.9995, 200, 0.05)


def test_alpha_sweep_trend_over_seeds_by_hand():
    # three seeds, each falling strictly with alpha: every block ranks the five alphas in the predicted order, so
    # Page's L is at its maximum, reached with probability (1 / 5!)^3 under no trend
    sweep = pd.DataFrame([{"alpha": a, "seed": s, "ds_level1_sum": 10 - i + 0.1 * s}
                          for s in range(3) for i, a in enumerate(ALPHAS)])  # fmt: skip
    res = alpha_sweep_trend(sweep)
    assert res.p == pytest.approx(math.factorial(5) ** -3)
    assert res.n_blocks == 3
    with pytest.raises(ValueError, match="needs >= 3 values of 'alpha'"):
        alpha_sweep_trend(sweep[sweep["alpha"].isin([0.0, 3.0])])
    with pytest.raises(ValueError, match="direction"):
        alpha_sweep_trend(sweep, direction="down")
