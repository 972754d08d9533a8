"""Issue 24 (finding what matters) and issue 22 item 6: the curves carry 95% CIs computed from the images or seeds
behind each point, and every result chart's numbers download as CSV with a provenance header. Pages are driven with
Streamlit's AppTest against the tiny zoo and the committed report of the shipped zoo (assets/results/default)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.results_store import read_results
from tests import test_dashboard_pages as pages
from tests.test_app import array_values, chart_specs
from tests.test_dashboard_pages import COMMITTED, open_page

committed_env = pages.committed_env  # the tiny zoo with the committed report as its results
downloads = pages.downloads  # every file handed to a download button: name -> bytes

RESULTS = COMMITTED / "results"


def scatter_traces(spec: dict) -> list[dict]:
    return [t for t in spec["data"] if t["type"] in ("scatter", "scattergl")]


# ----------------------------------------------------------------------------- the intervals themselves


def test_image_cis_agree_with_scipy_bootstrap():
    """The curve CI of a point is the percentile bootstrap of the mean over its images: scipy's own bootstrap of
    the same data lands within Monte Carlo error of it (both far from the sd band the page used to draw)."""
    from scipy import stats

    from analysis.curve_intervals import image_cis

    rng = np.random.default_rng(3)
    ds = np.concatenate([rng.exponential(1.0, 300), rng.exponential(4.0, 300)])
    per_image = pd.DataFrame({"variant": "C", "level": np.repeat([1, 2], 300), "ds": ds})
    summary = per_image.groupby(["variant", "level"], as_index=False)["ds"].mean().rename(columns={"ds": "ds_mean"})
    out = image_cis(summary, per_image, ["variant", "level"], "ds")
    assert list(out["ci_n"]) == [300, 300]
    for row, level in zip(out.itertuples(), (1, 2), strict=True):
        values = per_image.loc[per_image["level"] == level, "ds"].to_numpy()
        ref = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile", random_state=0)
        width = ref.confidence_interval.high - ref.confidence_interval.low
        assert row.ci_low < row.ds_mean < row.ci_high
        assert abs(row.ci_low - ref.confidence_interval.low) < 0.1 * width
        assert abs(row.ci_high - ref.confidence_interval.high) < 0.1 * width
        assert width < values.std()  # an interval of the mean, not the spread of the images


def test_seed_and_accuracy_cis():
    from scipy import stats

    from analysis.curve_intervals import accuracy_cis, seed_cis

    df = pd.DataFrame({"alpha": [0.0, 0.0, 0.0, 1.0], "ds": [3.0, 4.0, 5.0, 2.0]})
    out = seed_cis(df, ["alpha"], "ds").set_index("alpha")
    low, high = stats.t.interval(0.95, 2, loc=4.0, scale=stats.sem([3.0, 4.0, 5.0]))
    assert out.loc[0.0, "ds"] == 4.0
    assert np.isclose(out.loc[0.0, "ci_low"], low) and np.isclose(out.loc[0.0, "ci_high"], high)
    assert np.isnan(out.loc[1.0, "ci_low"]) and out.loc[1.0, "ci_n"] == 1  # one seed: no interval
    acc = accuracy_cis(pd.DataFrame({"accuracy": [0.5], "n_images": [40]}))
    exact = stats.binomtest(20, 40).proportion_ci(0.95, method="exact")
    assert np.isclose(acc["ci_low"][0], exact.low) and np.isclose(acc["ci_high"][0], exact.high)


def test_csv_export_round_trip():
    from app.exports import csv_bytes, read_csv_export, safe_name

    df = pd.DataFrame({"anchor": ["#12", "#3"], "x": [0.5, -1.25]})
    header, back = read_csv_export(csv_bytes(df, {"zoo": "tiny", "method": "PCA\nunion"}))
    assert header == {"zoo": "tiny", "method": "PCA union"}
    pd.testing.assert_frame_equal(back, df)  # "#12" is data, not a comment
    assert safe_name("ADV+C / pca") == "ADVplusC_pca"


# ----------------------------------------------------------------------------- the pages


def test_continuity_curves_carry_bootstrap_cis_from_the_per_image_results(committed_env, downloads):
    from analysis.curve_intervals import image_cis
    from app.exports import read_csv_export

    at = open_page("continuity")
    spec = chart_specs(at, "cont_ds")[0]
    per_image = read_results(COMMITTED)[1]["continuity"]["per_image"]
    summary = pd.read_csv(RESULTS / "continuity.csv")
    expected = image_cis(summary, per_image, ["variant", "kind", "level"], "ds").set_index(["variant", "kind", "level"])
    traces = scatter_traces(spec)
    assert traces and all(t.get("error_y", {}).get("arrayminus") is not None for t in traces)
    checked = 0
    for t in traces:
        kind = spec["layout"]["annotations"][int((t.get("xaxis") or "x").lstrip("x") or 1) - 1]["text"]
        xs, ys = array_values(t["x"]), array_values(t["y"])
        up, down = array_values(t["error_y"]["array"]), array_values(t["error_y"]["arrayminus"])
        for x, y, u, d in zip(xs, ys, up, down, strict=True):
            row = expected.loc[(t["name"], kind, int(x))]
            assert np.isclose(y + u, row["ci_high"]) and np.isclose(y - d, row["ci_low"])
            checked += 1
    assert checked == len(traces) * 4
    assert any("bootstrap 95% CI" in c.value for c in at.caption)
    # the rank curves carry the report's CI over anchors, the alpha sweep a t interval over seeds
    assert all("arrayminus" in t["error_y"] for t in scatter_traces(chart_specs(at, "cont_rank")[0]))
    alpha = scatter_traces(chart_specs(at, "cont_alpha_ds_level1_sum")[0])[0]
    assert any(v > 0 for v in array_values(alpha["error_y"]["array"]))
    header, table = read_csv_export(downloads["continuity_ds.csv"])
    assert header["source"].endswith("continuity.csv") and header["zoo"]
    shown = {t["name"] for t in traces}  # the variants chosen on the page
    assert {"ds_mean", "ci_low", "ci_high", "ci_n"} <= set(table.columns) and set(table["variant"]) == shown
    assert len(table) == len(summary[summary["variant"].isin(shown)])


def committed_fairness_files() -> tuple[str, ...]:
    """The fairness page's CSV exports on the committed report: none while the report skipped the colour bias."""
    import json

    entry = json.loads((COMMITTED / "summary.json").read_text())["experiments"].get("fairness", {})
    if entry.get("status") != "ok":
        return ()
    return ("fairness.csv", *(("fairness_shortcut.csv",) if (RESULTS / "fairness_shortcut.csv").exists() else ()))


@pytest.mark.parametrize(
    ("page", "charts", "files"),
    [
        ("probes", ("probe_curves",), ("probe_curves.csv",)),
        ("robustness", ("rob_audit", "rob_eps"), ("robustness.csv", "attack_audit.csv", "eps_sweep.csv")),
        ("transfer", (), ("transfer.csv",)),
        ("fairness", (), committed_fairness_files()),
    ],
)
def test_result_pages_export_their_numbers_and_draw_cis(committed_env, downloads, page, charts, files):
    """Every result chart saves as SVG from the modebar and its numbers download as CSV with a provenance header;
    the probe and robustness curves carry 95% CIs (bootstrap over images, or Clopper-Pearson from n_images)."""
    from app.exports import read_csv_export

    at = open_page(page)
    assert not [e.value for e in at.error]
    for chart in at.get("plotly_chart"):
        import json

        config = json.loads(chart.proto.config or "{}")
        if config.get("displayModeBar") is False:  # example images, no numbers
            continue
        assert config["toImageButtonOptions"]["format"] == "svg", chart.proto.id
    for key in charts:
        for trace in scatter_traces(chart_specs(at, key)[0]):
            low, up = array_values(trace["error_y"]["arrayminus"]), array_values(trace["error_y"]["array"])
            assert len(low) == len(array_values(trace["y"])) and any(v > 0 for v in low + up), (key, trace["name"])
    if page == "fairness" and not files:  # the report skipped it: the page says so and offers no stale numbers
        assert any("The report skipped **fairness**" in c.value for c in at.caption)
        advice = next(i.value for i in at.info if "left the colour bias out" in i.value)
        assert "--resume --only fairness" in advice and f"--out {committed_env}" in advice and " h on one" in advice
        assert not [n for n in downloads if n.startswith("fairness")]
    for file in files:
        header, table = read_csv_export(downloads[file])
        assert header["zoo"] and header["source"] and len(table) > 0, file
    if page == "probes":
        _, table = read_csv_export(downloads["probe_curves.csv"])
        per_image = read_results(COMMITTED)[1]["probes"]["per_image"]
        row = table.iloc[1]
        cell = per_image[(per_image["variant"] == row["variant"]) & (per_image["probe"] == row["probe"])
                         & (per_image["level_label"] == row["level_label"])]  # fmt: skip
        assert np.isclose(cell["correct"].mean(), row["accuracy"]) and row["ci_n"] == len(cell)
        assert row["ci_low"] < row["accuracy"] < row["ci_high"]
        assert any("bootstrap 95% CI" in c.value for c in at.caption)
