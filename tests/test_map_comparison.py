"""Maps compared between variants (analysis.map_comparison) and along a perturbation
(analysis.explanation_continuity), on constructed maps whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.attributions import METHOD_REGISTRY, Method
from analysis.explanation_continuity import METRICS, continuity_summary, explanation_continuity
from analysis.map_comparison import compare_variants, map_movement, normalise_map, spearman, ssim, top_k_overlap
from models.perturbations import KINDS, perturb


def blob(shift: int = 0, side: int = 32, sigma: float = 3.0) -> np.ndarray:
    """A Gaussian bump centred at (12, 12 + shift), plus a faint ramp so that no two pixels tie."""
    yy, xx = np.mgrid[:side, :side].astype(float)
    return np.exp(-((yy - 12) ** 2 + (xx - 12 - shift) ** 2) / (2 * sigma**2)) + 1e-6 * (yy * side + xx)


def test_identical_maps_have_correlation_one_and_difference_zero():
    m = blob()
    assert map_movement(m, m.copy(), signed=False) == {"spearman": 1.0, "ssim": pytest.approx(1.0),
                                                       "top_k_overlap": 1.0}  # fmt: skip
    comp = compare_variants({"standard": m, "C": 3.0 * m, "ADV": m.copy()}, reference="standard", signed=False)
    for v in ("standard", "C", "ADV"):
        np.testing.assert_allclose(comp.difference[v], 0.0, atol=1e-12)  # normalised: the scale does not count
        assert comp.normalised[v].max() == pytest.approx(1.0)
    np.testing.assert_allclose(comp.correlation.to_numpy(), 1.0)
    assert list(comp.correlation.index) == list(comp.correlation.columns) == ["standard", "C", "ADV"]


def test_a_shifted_map_overlaps_less_the_further_it_moves():
    m = blob()
    near, far = map_movement(m, blob(2), signed=False), map_movement(m, blob(8), signed=False)
    for metric in METRICS:
        assert 1.0 > near[metric] > far[metric], metric
    assert top_k_overlap(m, blob(20), 0.05) == 0.0  # the top 5% (a disc of radius ~2) no longer meets


def test_difference_and_correlation_of_opposite_signed_maps():
    m = blob() - blob(15)  # signed: evidence for on the left, against on the right
    comp = compare_variants({"a": m, "b": -m}, reference="a", signed=True)
    np.testing.assert_allclose(comp.difference["b"], -2 * normalise_map(m, signed=True))
    assert comp.correlation.loc["a", "b"] == pytest.approx(-1.0)
    assert normalise_map(m, signed=True).min() == pytest.approx(-1.0, abs=1e-3)
    # Magnitude decides a signed map's top pixels: the same pixels, whatever their sign.
    assert top_k_overlap(m, -m, 0.1, signed=True) == 1.0 and top_k_overlap(m, -m, 0.1, signed=False) < 0.2


def test_top_k_overlap_counts_shared_pixels():
    a = np.arange(100, dtype=float)[::-1].reshape(10, 10)  # top 10: pixels 0..9
    b = np.zeros(100)
    b[5:15] = np.arange(10, 0, -1)  # top 10: pixels 5..14
    assert top_k_overlap(a, b.reshape(10, 10), 0.1) == 0.5


def test_undefined_and_bad_inputs():
    flat = np.zeros((8, 8))
    assert math.isnan(spearman(flat, blob(side=8)))
    assert spearman(flat, flat) == 1.0 and ssim(flat, flat, signed=False) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reference"):
        compare_variants({"a": flat}, reference="b", signed=False)
    with pytest.raises(ValueError, match="shape"):
        compare_variants({"a": flat, "b": np.zeros((4, 4))}, reference="a", signed=False)
    with pytest.raises(ValueError, match="fraction"):
        top_k_overlap(flat, flat, 0.0)


# ----------------------------------------------------------------------------- explanation continuity


def _fixed_map(model, images, targets, **options):
    """A toy method whose map ignores the image: it cannot move."""
    return np.broadcast_to(blob(), (len(images), 32, 32)).copy(), {}


def _brightness_map(model, images, targets, **options):
    """A toy method whose map is the image's brightness: it moves with every colour perturbation."""
    return images.mean(1).detach().cpu().numpy(), {}


@pytest.fixture
def toy_methods(monkeypatch):
    monkeypatch.setitem(METHOD_REGISTRY, "toy-fixed", Method("toy-fixed", _fixed_map, "Fixed", signed=False))
    monkeypatch.setitem(METHOD_REGISTRY, "toy-bright", Method("toy-bright", _brightness_map, "Bright", signed=False))


def test_a_map_that_ignores_the_image_does_not_move(toy_methods, tiny_model, batch):
    x = batch[0][:3]
    df = explanation_continuity({"a": tiny_model, "b": tiny_model}, x, "toy-fixed", levels=(1, 4))
    assert len(df) == 2 * len(KINDS) * 2 * 3 and set(df["variant"]) == {"a", "b"}
    for metric in METRICS:
        assert np.allclose(df[metric], 1.0), metric
    with torch.no_grad():
        assert (df.groupby("image")["target"].first().to_numpy() == tiny_model(x).argmax(1).numpy()).all()


def test_a_map_that_follows_the_image_moves_with_the_level(toy_methods, tiny_model, batch):
    x = batch[0][:4]
    df = explanation_continuity({"a": tiny_model}, x, "toy-bright", levels=(0, 1, 4))
    level0 = df[df["level"] == 0]
    assert np.allclose(level0[list(METRICS)], 1.0)  # level 0 is the image itself
    kind = next(k for k in KINDS if not torch.allclose(perturb(x, k, 4).mean(1), perturb(x, k, 1).mean(1)))
    by_level = df[df["kind"] == kind].groupby("level")["ssim"].mean()
    assert by_level[4] < by_level[0]
    expected = [ssim(x[i].mean(0).numpy(), perturb(x, kind, 4)[i].mean(0).numpy(), signed=False) for i in range(4)]
    got = df[(df["kind"] == kind) & (df["level"] == 4)].sort_values("image")["ssim"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_summary_means_cis_and_undefined_images():
    per_image = pd.DataFrame({"variant": "a", "method": "m", "kind": "hue", "level": 1, "image": range(5),
                              "spearman": [0.1, 0.2, 0.3, 0.4, np.nan], "ssim": [0.5] * 5,
                              "top_k_overlap": [1.0, 0.0, 1.0, 0.0, 1.0]})  # fmt: skip
    s = continuity_summary(per_image, n_resamples=2000).set_index("metric")
    assert s.loc["spearman", "mean"] == pytest.approx(0.25)
    assert (s.loc["spearman", "n_images"], s.loc["spearman", "n_nan"]) == (4, 1)
    assert s.loc["spearman", "ci_low"] < 0.25 < s.loc["spearman", "ci_high"]
    assert s.loc["ssim", "ci_low"] == s.loc["ssim", "ci_high"] == pytest.approx(0.5)  # no spread, no interval
    with pytest.raises(ValueError, match="lacks columns"):
        continuity_summary(per_image.drop(columns="ssim"))
