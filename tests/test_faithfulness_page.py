"""The faithfulness page (app/views/faithfulness.py) driven with AppTest on the tiny zoo: it draws the report's ROAD
results (a results folder written here from per-image scores through analysis.road, as the report does) per variant
and method with their 95% CIs, shows and exports the paired comparisons, and without report results offers the quick
version, which runs the registry's ``road`` experiment."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from tests.test_app import app_env, assert_clean, open_app  # noqa: F401 - app_env is a fixture
from tests.test_dashboard_pages import _point_results_at, downloads  # noqa: F401 - downloads is a fixture

VARIANTS = ["standard", "C", "ADV", "ADV+C"]
METHODS = ["integrated_gradients", "gradcam"]


def _per_image(n: int = 30) -> pd.DataFrame:
    """ROAD scores per variant, method and image; C's maps made more faithful (a larger MoRF drop) than standard's."""
    rng = np.random.default_rng(0)
    rows = []
    for v in VARIANTS:
        for m in METHODS:
            morf = rng.normal(-0.30 if v == "C" else -0.10, 0.05, n)
            lerf = rng.normal(-0.05, 0.05, n)
            rows.append(pd.DataFrame({"variant": v, "method": m, "image": np.arange(n), "target": 0, "morf": morf,
                                      "lerf": lerf, "combined": (lerf - morf) / 2}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def road_results(tiny_zoo, monkeypatch, tmp_path, cache_dir):
    """The tiny zoo with a results folder holding the report's three ROAD tables (results/road*.csv)."""
    from analysis.road import road_paired, road_summary
    from analysis.roles import zoo_roles

    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    folder = tmp_path / "results" / tiny_zoo.name / "results"
    folder.mkdir(parents=True)
    per_image = _per_image()
    tables = {"road": road_summary(per_image, n_resamples=500),
              "road_paired": road_paired(per_image, zoo_roles(VARIANTS), n_resamples=500),
              "road_per_image": per_image}  # fmt: skip
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    _point_results_at(monkeypatch, tmp_path / "results")
    return {name: pd.read_csv(folder / f"{name}.csv") for name in tables}


def _bars(at) -> list[dict]:
    (chart,) = [c for c in at.get("plotly_chart") if "road_bars" in c.proto.id]
    return json.loads(chart.proto.spec)["data"]


def _values(value) -> np.ndarray:
    """A plotly JSON array (a list, or a typed array {"dtype", "bdata"}) as numbers."""
    if isinstance(value, dict):
        import base64

        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


def _check_bars(at, summary: pd.DataFrame, score: str) -> None:
    traces = _bars(at)
    assert [t["name"] for t in traces] == VARIANTS
    for trace in traces:
        rows = summary[(summary["variant"] == trace["name"]) & (summary["score"] == score)]
        assert np.allclose(_values(trace["y"]), rows["mean"])
        assert np.allclose(_values(trace["error_y"]["array"]), rows["ci_high"] - rows["mean"])
        assert np.allclose(_values(trace["error_y"]["arrayminus"]), rows["mean"] - rows["ci_low"])


def test_the_page_draws_the_reports_road_scores_with_cis_and_exports_them(road_results, downloads):  # noqa: F811
    from app.exports import read_csv_export

    at = open_app("faithfulness")
    assert at.title[0].value == "Faithfulness (ROAD)"
    summary, paired = road_results["road"], road_results["road_paired"]
    _check_bars(at, summary, "combined")  # the default score

    at.selectbox(key="road_score").set_value("morf").run()
    assert_clean(at)
    _check_bars(at, summary, "morf")
    c_vs_standard = paired[(paired["score"] == "morf") & (paired["comparison"] == "C vs standard")]
    assert (c_vs_standard["better"] == "C").all() and len(c_vs_standard) == len(METHODS)  # C's larger drop

    header, table = read_csv_export(downloads["road_paired_morf.csv"])
    assert header["score"] == "morf" and header["zoo"] and "road_paired" in header["source"]
    expected = paired[paired["score"] == "morf"].reset_index(drop=True)
    assert table[["method", "comparison", "better"]].equals(expected[["method", "comparison", "better"]])
    assert np.allclose(table["effect"], expected["effect"]) and np.allclose(table["p_holm"], expected["p_holm"])
    header, bars = read_csv_export(downloads["road_morf.csv"])
    assert header["score"] == "morf" and len(bars) == len(VARIANTS) * len(METHODS)
    assert np.allclose(bars["mean"], summary.loc[summary["score"] == "morf", "mean"])


def test_without_results_the_quick_version_runs_the_road_experiment(app_env, monkeypatch, one_thread):  # noqa: F811
    from analysis import results_store as stored
    from app import results_store

    small = dataclasses.replace(stored.QUICK, attr_images=3, attr_slow_images=2, attr_methods=("gradcam",),
                                road_percentiles=(50,))  # fmt: skip
    monkeypatch.setattr(stored, "QUICK", small)
    monkeypatch.setattr(results_store, "QUICK_SIZES", {g: stored.quick_size(g, small) for g in stored.QUICK_GROUPS})
    at = open_app("faithfulness")
    assert any("python -m analysis.report --zoo" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if "road_bars" in c.proto.id]  # nothing before the button
    at.button(key="quick_road").click().run()
    assert_clean(at)
    assert any("Quick results on the first 3 test images" in c.value for c in at.caption)
    traces = _bars(at)
    assert [t["name"] for t in traces] == VARIANTS
    for trace in traces:
        y = _values(trace["y"])
        assert len(y) == 1 and np.isfinite(y).all()  # one method, a real score
