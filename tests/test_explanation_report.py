"""The explanation experiments in the report (issue 22): ROAD, sanity checks and explanation continuity run through
the registry in quick mode on the tiny zoo and get their REPORT.md sections, figures and claim rows; the continuity
claim is decided from per-image results; the full settings size the attribution claims to decide."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from analysis import claims as C
from analysis import roles as R
from analysis.experiments import EXPERIMENTS, FULL, QUICK, estimate_cpu_s
from analysis.report import main
from analysis.results_store import read_results
from models.perturbations import KINDS

VARIANTS = ("standard", "C", "ADV", "ADV+C")
ROLES = {v: R.variant_role(v) for v in VARIANTS}
NEW = ("road", "sanity_checks", "explanation_continuity")
TINY = ["n_images=16", "attr_images=3", "attr_slow_images=2", "ig_steps=4", "lime_samples=20", "deletion_steps=4",
        "sanity_images=3", "map_continuity_images=3"]  # fmt: skip


@pytest.mark.timeout(900)
def test_a_quick_report_has_the_explanation_sections_figures_and_claims(tiny_zoo, tmp_path, one_thread, capsys):
    out = tmp_path / "report"
    args = ["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1",
            "--only", ",".join(("attributions", *NEW)), *[a for s in TINY for a in ("--set", s)]]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err[-3000:]
    report = (out / "REPORT.md").read_text()
    for heading in ("### Faithfulness by ROAD (most / least relevant first)",
                    "### Sanity checks: cascading model-parameter randomisation",
                    "### Explanation continuity: how far the maps move"):  # fmt: skip
        assert heading in report, heading
    for figure in ("figures/road.png", "figures/sanity_checks.png", "figures/explanation_continuity.png"):
        assert f"]({figure})" in report and (out / figure).is_file(), figure
    assert "Paired differences between variants on the same images" in report
    summary = json.loads((out / "summary.json").read_text())
    assert all(summary["experiments"][n]["status"] == "ok" for n in NEW)
    assert all(summary["estimate_cpu_s"][n] > 0 for n in NEW)

    stored = read_results(out)[1]
    road, attributions = stored["road"]["per_image"], stored["attributions"]["per_image"]
    key = ["variant", "method", "image"]
    assert sorted(map(tuple, road[key].to_numpy())) == sorted(map(tuple, attributions[key].to_numpy()))  # same images
    assert road.groupby("method")["image"].nunique().to_dict() == {"gradcam": 3, "integrated_gradients": 3, "lime": 2}
    paired = pd.read_csv(out / "results" / "road_paired.csv")
    assert {"C vs standard", "ADV+C vs ADV"} <= set(paired["comparison"])
    assert (paired["ci_low"] <= paired["ci_high"]).all()
    sanity = pd.read_csv(out / "results" / "sanity_checks.csv")
    assert (sanity["ci_low"] <= sanity["mean"] + 1e-12).all() and (sanity["mean"] <= sanity["ci_high"] + 1e-12).all()
    assert set(sanity["step"]) >= {0, 1} and sanity["variant"].nunique() == len(summary["roles"])

    claims = pd.read_csv(out / "claims.csv").set_index("key")
    assert claims.loc["explanation_continuity_gradcam", "verdict"] == C.QUICK_VERDICT  # quick mode decides nothing
    assert "colour perturbations" in claims.loc["explanation_continuity_gradcam", "claim"]
    settings_rows = report.split("## Settings and elapsed time")[1]
    assert "images per method integrated_gradients 3, gradcam 3, lime 2" in settings_rows  # what ran, as run


def _moved(shift: dict[str, float], n: int = 50) -> dict[str, dict[str, pd.DataFrame]]:
    """A per-image explanation-continuity table: each variant's Spearman to the clean map, plus ``shift``."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, n)
    rows = [pd.DataFrame({"variant": v, "method": "gradcam", "kind": k, "level": lv, "image": range(n),
                          "spearman": base + x + 0.01 * rng.random(n), "ssim": 0.5, "top_k_overlap": 0.5})
            for v, x in shift.items() for k in KINDS for lv in (1, 4)]  # fmt: skip
    return {"explanation_continuity": {"per_image": pd.concat(rows, ignore_index=True)}}


def test_the_explanation_continuity_claim_is_decided_from_per_image_results():
    holds = C.claim_explanation_continuity(_moved({"standard": 0.0, "C": 0.2, "ADV": 0.0, "ADV+C": 0.1}), ROLES,
                                           "gradcam", "GradCAM")  # fmt: skip
    C.rescore([holds])
    assert holds.verdict == C.HOLDS and all(t["n_images"] == 50 for t in holds.tests)
    assert holds.tests[0]["effect"] == pytest.approx(0.2, abs=0.01)  # the per-image mean over kinds and levels
    fails = C.claim_explanation_continuity(_moved({"standard": 0.2, "C": 0.0, "ADV": 0.1, "ADV+C": 0.0}), ROLES,
                                           "gradcam", "GradCAM")  # fmt: skip
    C.rescore([fails])
    assert fails.verdict == C.FAILS
    tie = C.claim_explanation_continuity(_moved(dict.fromkeys(VARIANTS, 0.0)), ROLES, "gradcam", "GradCAM")
    C.rescore([tie])
    assert tie.verdict == C.INCONCLUSIVE
    assert C.claim_explanation_continuity({}, ROLES, "gradcam", "GradCAM").verdict == C.NOT_MEASURED
    keys = {c.key for c in C.evaluate_claims(_moved({"standard": 0.0, "C": 0.2}), ROLES)}
    assert "explanation_continuity_gradcam" in keys


def test_an_image_whose_map_never_has_ranks_is_left_out_of_both_samples():
    res = _moved({"standard": 0.0, "C": 0.2})
    table = res["explanation_continuity"]["per_image"]
    table.loc[(table["variant"] == "C") & (table["image"] == 0), "spearman"] = np.nan  # a constant map
    claim = C.claim_explanation_continuity(res, ROLES, "gradcam", "GradCAM")
    assert claim.tests[0]["n_images"] == 49


def test_the_full_settings_size_the_attribution_claims_to_decide():
    for method in ("integrated_gradients", "gradcam"):
        assert FULL.attr_images_for(method) >= 500 and QUICK.attr_images_for(method) <= 16
    for method in ("lime", "scorecam"):
        assert FULL.attr_images_for(method) >= 200 and QUICK.attr_images_for(method) <= 16
    assert FULL.n_images >= FULL.attr_images  # the evaluation subset holds them
    assert set(NEW) <= set(EXPERIMENTS)
    roles = {v: R.variant_role(v) for v in VARIANTS}
    full = estimate_cpu_s(FULL, roles)
    half = estimate_cpu_s(dataclasses.replace(FULL, attr_images=250, attr_slow_images=100), roles)
    for name in ("attributions", "road"):  # the estimate follows the images each method explains
        assert half[name] == pytest.approx(full[name] / 2, rel=1e-6)
    more_lime = estimate_cpu_s(dataclasses.replace(FULL, lime_samples=2 * FULL.lime_samples), roles)
    assert more_lime["attributions"] > full["attributions"]


@pytest.mark.timeout(900)
def test_road_scores_the_attributions_maps_without_computing_them_again(tiny_zoo, tmp_path, one_thread, monkeypatch):
    """In one report run ROAD reuses the maps the attributions experiment made (each variant's maps of each method
    computed once), and scores exactly what a ROAD run of its own computes."""
    import analysis.attributions as attributions

    calls = []
    original = attributions.explain

    def counted(method, model, images, *args, **kwargs):
        calls.append((method, len(images)))
        return original(method, model, images, *args, **kwargs)

    monkeypatch.setattr(attributions, "explain", counted)
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["--zoo", str(tiny_zoo), "--quick", "--no-progress", "--num-threads", "1", *sets]
    assert main([*base, "--out", str(tmp_path / "both"), "--only", "attributions,road"]) == 0
    variants = len(read_results(tmp_path / "both")[0]["roles"])
    methods = QUICK.attr_method_names
    assert len(calls) == variants * len(methods)  # once per variant and method, not once more for ROAD
    calls.clear()
    assert main([*base, "--out", str(tmp_path / "alone"), "--only", "road"]) == 0
    assert len(calls) == variants * len(methods)  # without the attributions run ROAD computes its own
    both, alone = (read_results(tmp_path / d)[1]["road"]["per_image"] for d in ("both", "alone"))
    pd.testing.assert_frame_equal(both, alone)
