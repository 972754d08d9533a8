"""The report's curves carry 95% CIs: DS and probe curves over the images, the eps sweep's Clopper-Pearson."""

from __future__ import annotations

import matplotlib.axes
import numpy as np
import pandas as pd
import pytest

from analysis.curve_intervals import accuracy_cis, image_cis
from analysis.report_figures import fig_continuity, fig_eps, fig_probe


@pytest.fixture
def recorded(monkeypatch):
    calls = []
    original = matplotlib.axes.Axes.errorbar

    def record(self, x, y, yerr=None, **kwargs):
        calls.append((np.asarray(y, float), None if yerr is None else np.asarray(yerr, float)))
        return original(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", record)
    return calls


def test_continuity_and_probe_curves_draw_the_bootstrap_ci_over_the_images(tmp_path, recorded):
    rng = np.random.default_rng(0)
    per = pd.DataFrame([{"variant": v, "kind": "hue", "level": lv, "image": i, "ds": rng.gamma(2.0, 1 + lv)}
                        for v in ("standard", "C") for lv in (1, 2) for i in range(40)])  # fmt: skip
    ds = per.groupby(["variant", "kind", "level"], sort=False)["ds"].mean().rename("ds_mean").reset_index()
    ds["n"] = 40
    fig_continuity(ds, tmp_path / "f3.png", per)
    expected = image_cis(ds, per, ("variant", "kind", "level"), "ds")
    (y, yerr), _ = recorded[0], recorded[1]
    first = expected[expected["variant"] == "standard"]
    assert np.allclose(y, first["ds_mean"]) and np.allclose(y - yerr[0], first["ci_low"])
    assert np.allclose(y + yerr[1], first["ci_high"]) and (yerr > 0).all()

    recorded.clear()
    correct = pd.DataFrame([{"variant": v, "probe": "channel_translation", "level_label": lab, "image": i,
                             "correct": bool(rng.random() < 0.7)}
                            for v in ("standard", "C") for lab in ("clean", "1") for i in range(50)])  # fmt: skip
    probes = (correct.groupby(["variant", "probe", "level_label"], sort=False)["correct"].mean()
              .rename("accuracy").reset_index().assign(n_images=50))  # fmt: skip
    fig_probe(probes, "channel_translation", tmp_path / "p.png", "6", correct)
    y, yerr = recorded[0]
    first = image_cis(probes, correct, ("variant", "probe", "level_label"), "correct").iloc[:2]
    assert np.allclose(y - yerr[0], 100 * first["ci_low"]) and np.allclose(y + yerr[1], 100 * first["ci_high"])


def test_the_eps_sweep_draws_clopper_pearson_intervals(tmp_path, recorded):
    eps = pd.DataFrame({"variant": ["ADV"] * 3, "eps_255": [0, 4, 8], "accuracy": [0.7, 0.5, 0.3], "n_images": 100})
    fig_eps(eps, tmp_path / "e.png")
    y, yerr = recorded[0]
    cis = accuracy_cis(eps)
    assert np.allclose(y - yerr[0], 100 * cis["ci_low"]) and np.allclose(y + yerr[1], 100 * cis["ci_high"])


def test_the_legend_of_seven_variants_hides_no_panel(tmp_path, monkeypatch):
    """Fig. 3 with the shipped zoo's seven variants: the legend sits beside the panels, overlapping none of them
    (inside the last panel it hid the hue curves)."""
    import analysis.report_figures as figures

    kept = []
    monkeypatch.setattr(figures.plt, "close", kept.append)
    variants = ("standard", "C", "ADV", "ADV+C", "standard+jitter", "C-control", "ADV-mixed")
    ds = pd.DataFrame([{"variant": v, "kind": k, "level": lv, "ds_mean": 1.0 + i + lv, "n": 10}
                       for i, v in enumerate(variants) for k in ("brightness", "contrast", "saturation", "hue")
                       for lv in (1, 2, 3, 4)])  # fmt: skip
    fig_continuity(ds, tmp_path / "f3.png")
    (fig,) = kept
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1 and len(legends[0].get_texts()) == len(variants)
    box = legends[0].get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
