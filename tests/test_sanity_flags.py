"""A method whose maps survive randomisation is flagged on every page that shows it (issue 22):
analysis.sanity_checks.flagged_methods decides it from the per-image cascade, and the explanation continuity,
sanity check and saliency pages show the flag, from the report's results or from this session's run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.attributions import METHOD_REGISTRY, Method
from analysis.sanity_checks import cascading_randomisation, flagged_methods
from tests.test_app import app_env, assert_clean, open_app  # noqa: F401 - app_env is a fixture
from tests.test_sanity_checks import _edges

FLAG = "fails the sanity check"


def _cascade(last: dict[tuple[str, str], float], n: int = 6, steps: int = 3) -> pd.DataFrame:
    """Per-image rows of a cascade: (variant, method) -> the mean rank correlation at the last step."""
    rng = np.random.default_rng(0)
    rows = []
    for (variant, method), rho in last.items():
        for step in range(steps + 1):
            value = 1.0 if step == 0 else rho if step == steps else 0.5 * (1 + rho)
            rows += [{"variant": variant, "method": method, "step": step, "layer": f"block{step}", "image": i,
                      "target": 0, "spearman": value + 0.001 * rng.standard_normal(), "spearman_abs": value,
                      "ssim": value} for i in range(n)]  # fmt: skip
    return pd.DataFrame(rows)


def test_a_method_is_flagged_when_its_maps_survive_for_some_variant():
    df = _cascade({("standard", "gradcam"): 0.1, ("C", "gradcam"): 0.8, ("standard", "integrated_gradients"): 0.05,
                   ("C", "integrated_gradients"): 0.45})  # fmt: skip
    flags = flagged_methods(df)
    assert list(flags) == ["gradcam"]
    assert FLAG in flags["gradcam"] and "C (rank correlation 0.80)" in flags["gradcam"]
    assert "standard" not in flags["gradcam"]
    assert flagged_methods(df, threshold=0.4).keys() == {"gradcam", "integrated_gradients"}
    assert flagged_methods(None) == {} and flagged_methods(df.iloc[0:0]) == {}
    with pytest.raises(ValueError, match="lacks columns: spearman"):
        flagged_methods(df.drop(columns="spearman"))


def test_an_edge_detector_posing_as_a_method_is_flagged_from_its_cascade(monkeypatch, tiny_model, batch, one_thread):
    monkeypatch.setitem(METHOD_REGISTRY, "toy-edges", Method("toy-edges", _edges, "Edges", signed=False))
    edges = cascading_randomisation(tiny_model, batch[0][:3], "toy-edges")  # one model: no variant column
    cam = cascading_randomisation(tiny_model, batch[0][:3], "gradcam")
    flags = flagged_methods(pd.concat([edges, cam], ignore_index=True))
    assert "toy-edges" in flags and "the model (rank correlation 1.00)" in flags["toy-edges"]
    assert ("gradcam" in flags) == (np.nanmean(cam.loc[cam["step"] == cam["step"].max(), "spearman"]) >= 0.5)


@pytest.fixture
def flagged_report(app_env, tmp_path):  # noqa: F811
    """The zoo's report results say GradCAM survives randomisation for C (a sanity_checks per-image table)."""
    folder = tmp_path / "results" / app_env.name / "results"
    folder.mkdir(parents=True)
    _cascade({("standard", "gradcam"): 0.1, ("C", "gradcam"): 0.9}).to_csv(folder / "sanity_checks_per_image.csv",
                                                                           index=False)  # fmt: skip
    return app_env


def _warnings(at) -> str:
    return " ".join(w.value for w in at.warning)


def test_the_explanation_continuity_page_flags_the_method(flagged_report, one_thread):
    at = open_app("explanation_continuity")
    at.selectbox(key="ec_method").set_value("gradcam").run()
    assert_clean(at)
    said = _warnings(at)
    assert f"**GradCAM** {FLAG}" in said and "C (rank correlation 0.9" in said
    at.selectbox(key="ec_method").set_value("integrated_gradients").run()
    assert FLAG not in _warnings(at)  # only the flagged method is flagged


def test_the_sanity_check_page_flags_from_the_report_then_from_its_own_run(flagged_report, one_thread):
    at = open_app("sanity_checks")
    at.selectbox(key="sc_method").set_value("gradcam").run()
    assert f"**GradCAM** {FLAG}" in _warnings(at)  # the report's verdict, before anything is computed here
    at.select_slider(key="sc_n").set_value(4)
    at.button(key="sc_run").click().run()
    assert_clean(at)
    (result,) = at.session_state["sc_results"].values()
    from app.sanity_flags import SESSION_KEY

    (stored,) = at.session_state[SESSION_KEY].values()
    pd.testing.assert_frame_equal(stored["gradcam"], result["per_image"])  # this run replaces the report's rows
    assert (FLAG in _warnings(at)) == any(result["flags"].values())


def test_the_saliency_page_flags_a_ticked_method(flagged_report, one_thread):
    at = open_app("saliency")
    assert_clean(at)
    assert at.checkbox(key="sal_method_gradcam").value  # ticked by default
    assert f"**GradCAM** {FLAG}" in _warnings(at)
    at.checkbox(key="sal_method_gradcam").uncheck().run()
    assert FLAG not in _warnings(at)
