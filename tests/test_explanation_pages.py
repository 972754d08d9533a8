"""The explanation continuity and sanity check pages (app/views/explanation_continuity.py, sanity_checks.py) driven
with AppTest on the tiny zoo: both compute on demand; explanation continuity draws its curves (with bootstrap CIs over
several images) beside the DS, and its comparison of the variants' maps is what analysis.map_comparison gives for the
same maps; the sanity check page reports analysis.sanity_checks' verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from models.perturbations import KINDS, MAX_LEVEL
from tests.test_app import app_env, assert_clean, chart_specs, open_app  # noqa: F401 - app_env is a fixture

VARIANTS = ["standard", "C", "ADV", "ADV+C"]


def _spec(at, key: str) -> dict:
    (chart,) = [c for c in at.get("plotly_chart") if key in c.proto.id]
    return json.loads(chart.proto.spec)


def test_the_page_computes_on_demand_and_compares_the_variants(app_env, one_thread):  # noqa: F811
    at = open_app("explanation_continuity")
    assert not [c for c in at.get("plotly_chart")]  # nothing is computed before the button
    assert any("Compute" in i.value for i in at.info)
    from analysis.attributions import METHOD_REGISTRY

    assert at.selectbox(key="ec_method").options == [m.label for m in METHOD_REGISTRY.values()]  # all offered
    at.selectbox(key="ec_method").set_value("gradcam")
    at.button(key="ec_compute").click().run()
    assert_clean(at)
    assert {t["name"] for t in _spec(at, "ec_moved")["data"]} == set(VARIANTS)
    (result,) = at.session_state["ec_results"].values()  # what the page computed and draws from
    table = result["moved"]
    assert len(table) == len(VARIANTS) * len(KINDS) * (MAX_LEVEL + 1)
    assert np.allclose(table.loc[table["level"] == 0, ["spearman", "ssim", "top_k_overlap"]], 1.0)  # clean vs clean
    assert (table.loc[table["level"] == MAX_LEVEL, "ssim"] < 1.0).any()  # and the maps do move
    assert _spec(at, "ec_ds")["data"]

    at.selectbox(key="ec_measure").set_value("ssim").run()  # a rerun draws from the stored results
    assert_clean(at)
    assert _spec(at, "ec_moved")["layout"]["yaxis"]["title"]["text"] == "SSIM"

    at.slider(key="ec_level").set_value(4)
    at.selectbox(key="ec_reference").set_value("standard")
    at.button(key="ec_compare").click().run()
    assert_clean(at)
    assert _spec(at, "ec_difference")["data"]
    rho = at.dataframe[-1].value
    assert list(rho.index) == VARIANTS and np.allclose(np.diag(rho.to_numpy()), 1.0)

    # The same comparison computed directly from the maps the page asked for.
    from analysis.map_comparison import compare_variants
    from analysis.per_image import level_maps
    from app import zoo_cache
    from models.data import load_dataset

    handle = zoo_cache.open_zoo(app_env, "cpu")
    ds = load_dataset("digits", "test")
    image, label = ds.images[0].numpy(), int(ds.labels[0])  # the gallery's first image, picked by default
    kind = at.selectbox(key="ec_kind").value
    maps = {v: level_maps(handle.model(v), image, kind, "gradcam", label, (4,))["maps"][0] for v in VARIANTS}
    expected = compare_variants(maps, "standard", signed=False).correlation
    pd.testing.assert_frame_equal(rho, expected.round(3), check_exact=False, atol=2e-3)


def test_over_several_test_images_the_curves_carry_bootstrap_intervals(app_env, one_thread):  # noqa: F811
    at = open_app("explanation_continuity")
    at.selectbox(key="ec_method").set_value("gradcam")
    at.radio(key="ec_scope").set_value("The first test images (95% CIs)").run()
    at.select_slider(key="ec_n").set_value(8)
    at.button(key="ec_compute").click().run()
    assert_clean(at)
    (result,) = at.session_state["ec_results"].values()
    moved, summary = result["moved"], result["summary"]
    assert moved["image"].nunique() == 8 and (summary["n_images"] + summary["n_nan"] == 8).all()
    rows = summary[summary["level"] > 0]
    assert (rows["ci_low"] <= rows["mean"] + 1e-12).all() and (rows["mean"] <= rows["ci_high"] + 1e-12).all()
    assert (rows["ci_high"] > rows["ci_low"]).any()  # eight different images: the intervals have width
    traces = _spec(at, "ec_moved")["data"]
    assert {t["name"] for t in traces} == set(VARIANTS) and all(t["error_y"]["symmetric"] is False for t in traces)


def test_the_sanity_check_page_runs_the_cascade_and_says_whether_the_method_passes(app_env, one_thread):  # noqa: F811
    at = open_app("sanity_checks")
    assert not list(at.get("plotly_chart")) and any("Run the sanity check" in i.value for i in at.info)
    at.selectbox(key="sc_method").set_value("gradcam")
    at.select_slider(key="sc_n").set_value(4)
    at.button(key="sc_run").click().run()
    assert_clean(at)
    (result,) = at.session_state["sc_results"].values()
    from analysis.sanity_checks import survives_randomisation

    per_image = result["per_image"]
    assert set(per_image["variant"]) == set(VARIANTS) and per_image["image"].nunique() == 4
    for v in VARIANTS:  # the flags are the analysis' verdicts on these rows
        assert result["flags"][v] == survives_randomisation(per_image[per_image["variant"] == v], "gradcam")
    said = " ".join(w.value for w in [*at.warning, *at.success])
    assert ("fails the sanity check" in said) == any(result["flags"].values())
    traces = _spec(at, "sc_curves")["data"]
    assert {t["name"] for t in traces} == set(VARIANTS)


def test_the_saliency_page_draws_a_field_method_when_ticked(app_env, one_thread):  # noqa: F811
    """Off by default, a light (HiResCAM) and a slow (ScoreCAM) field method are drawn once ticked."""
    at = open_app("saliency")
    assert not at.checkbox(key="sal_method_hirescam").value and not at.checkbox(key="sal_method_scorecam").value
    at.toggle(key="sal_interactive").set_value(True)
    at.checkbox(key="sal_method_integrated_gradients").uncheck()
    at.checkbox(key="sal_method_hirescam").check()
    at.checkbox(key="sal_method_scorecam").check()
    at.run()
    assert_clean(at)
    specs = chart_specs(at, "sal_fig_")
    assert len(specs) == 4
    for spec in specs:
        titles = [a["text"] for a in spec["layout"]["annotations"]]
        assert any("HiResCAM" in t for t in titles) and any("ScoreCAM" in t for t in titles)
        assert sum(t["type"] == "heatmap" for t in spec["data"]) == 3  # GradCAM, HiResCAM, ScoreCAM
