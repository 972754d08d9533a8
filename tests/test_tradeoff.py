"""analysis.tradeoff: weight-space interpolation from the baseline, trade-off curves on the tiny zoo, the comparison
at matched clean accuracy on constructed curves, its claim row, and the quick report writing both."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import claims as C
from analysis import roles as R
from analysis.robustness import ensemble_correct
from analysis.tradeoff import (
    MIDWAY,
    NOT_COMPARABLE,
    Curve,
    curve_table,
    init_notes,
    interpolate_state,
    interpolated_model,
    matched_comparison,
    matched_table,
    tradeoff_tables,
)
from models.checkpoints import load_zoo
from models.datasets import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")
ROLES = {v: R.variant_role(v) for v in ("standard", "C", "ADV", "ADV+C", "ADV-mixed")}


@pytest.fixture(scope="module")
def zoo_models(tiny_zoo):
    return load_zoo(tiny_zoo).models


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", "test")
    return ds.images[:12], ds.labels[:12]


# ----------------------------------------------------------------------------- interpolation


def test_interpolation_endpoints_are_the_two_models_exactly(zoo_models, digits):
    images, _ = digits
    base, tuned = zoo_models["standard"], zoo_models["ADV"]
    with torch.no_grad():
        assert torch.equal(interpolated_model(base, tuned, 0.0)(images), base(images))
        assert torch.equal(interpolated_model(base, tuned, 1.0)(images), tuned(images))
        middle = interpolated_model(base, tuned, 0.5)(images)
    assert not torch.equal(middle, base(images)) and not torch.equal(middle, tuned(images))


def test_float_tensors_are_blended_and_integer_buffers_come_from_the_variant(zoo_models):
    start, end = copy.deepcopy(zoo_models["standard"]), copy.deepcopy(zoo_models["ADV"])
    bn = next(k for k, v in end.state_dict().items() if k.endswith("running_mean"))
    counter = bn.replace("running_mean", "num_batches_tracked")
    start.state_dict()[bn].fill_(1.0)
    end.state_dict()[bn].fill_(3.0)
    start.state_dict()[counter].fill_(5)
    end.state_dict()[counter].fill_(9)
    state = interpolate_state(start.state_dict(), end.state_dict(), 0.25)
    assert torch.allclose(state[bn], torch.full_like(state[bn], 1.5))  # 0.75 * 1 + 0.25 * 3
    assert state[counter].item() == 9 and state[counter].dtype == torch.long
    weight = next(k for k in state if k.endswith("weight"))
    want = 0.75 * start.state_dict()[weight] + 0.25 * end.state_dict()[weight]
    assert torch.allclose(state[weight], want, atol=1e-6)


def test_networks_that_differ_are_refused(zoo_models, tiny_model):
    with pytest.raises(ValueError, match="the two networks differ"):
        interpolate_state(tiny_model.state_dict(), {"other": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match="including 1"):
        tradeoff_tables(zoo_models, "standard", ["ADV"], torch.zeros(1, 3, 32, 32), torch.zeros(1), (0.0, 0.5))


def test_curves_on_the_tiny_zoo_reproduce_both_endpoints(zoo_models, digits):
    images, labels = digits
    lams = (0.0, 0.5, 1.0)
    curves, per_image = tradeoff_tables(zoo_models, "standard", ["ADV+C", "ADV"], images, labels, lams, batch_size=8)
    assert list(curves.columns) == ["variant", "lam", "clean_acc", "robust_acc", "n_images"]
    assert len(curves) == 6 and set(curves["variant"]) == {"ADV+C", "ADV"} and (curves["n_images"] == 12).all()
    assert (curves["robust_acc"] <= curves["clean_acc"]).all()
    assert len(per_image) == 2 * 3 * 12 and not (per_image["robust"] & ~per_image["clean"]).any()
    for variant, lam, model in (("ADV", 1.0, "ADV"), ("ADV+C", 1.0, "ADV+C"), ("ADV", 0.0, "standard"),
                                ("ADV+C", 0.0, "standard")):  # fmt: skip
        # the robustness experiment's own evaluation (PGD-10 alone) of the model at that end of the path
        want = ensemble_correct(zoo_models[model], images, labels, attacks=("pgd10",), batch_size=8)
        got = per_image[(per_image["variant"] == variant) & (per_image["lam"] == lam)]
        assert got["clean"].tolist() == want["clean"].tolist() and got["robust"].tolist() == want["pgd10"].tolist()
    pd.testing.assert_frame_equal(curve_table(per_image), curves)


def test_init_notes_state_what_the_cards_say():
    cards = {"ADV": {"config": {"init": "runs/zoo/standard/model.pt"}}, "ADV+C": {"config": {"init": "x/C/model.pt"}},
             "ADV-mixed": {}}  # fmt: skip
    notes = init_notes(cards, "standard", ["ADV", "ADV+C", "ADV-mixed"])
    assert len(notes) == 2 and "WARNING" in notes[0] and "ADV+C" in notes[0] and "records no init" in notes[1]


# ----------------------------------------------------------------------------- matched comparison, constructed


def _curve(clean_acc, robust_acc, n=400, lams=(0.0, 0.5, 1.0), shift=0) -> Curve:
    """Per-image correctness with the given accuracies at each lam (robust images a subset of clean ones)."""
    clean = np.zeros((len(lams), n), bool)
    robust = np.zeros((len(lams), n), bool)
    order = np.roll(np.arange(n), shift)
    for i, (c, r) in enumerate(zip(clean_acc, robust_acc, strict=True)):
        clean[i, order[: round(c * n)]] = True
        robust[i, order[: round(r * n)]] = True
    return Curve(np.asarray(lams), clean, robust)


def test_matched_comparison_reads_both_curves_at_the_more_accurate_endpoint():
    a = _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4])  # the more accurate fine-tune: level 0.7 at its lam = 1
    b = _curve([0.9, 0.75, 0.6], [0.1, 0.2, 0.3], shift=7)  # crosses 0.7 two thirds of the way from lam 1 to 0.5
    res = matched_comparison(a, b, n_resamples=2000)
    assert res.status == "comparable" and res.level == pytest.approx(0.7)
    assert res.lam_a == 1.0 and res.lam_b == pytest.approx(1 - 0.5 * 2 / 3)
    assert res.robust_a == pytest.approx(0.4) and res.robust_b == pytest.approx(0.3 + 2 / 3 * (0.2 - 0.3))
    assert res.effect == pytest.approx(0.4 - res.robust_b)
    assert 0 < res.ci_low < res.effect < res.ci_high and res.p < 0.01
    flipped = matched_comparison(b, a, n_resamples=2000)
    assert flipped.effect == pytest.approx(-res.effect) and flipped.ci_high < 0 and flipped.p < 0.01
    # both blended: halfway from the higher endpoint (0.7) to the baseline (0.9), a at lam 0.5, b a third of the way
    # from lam 0.5 to 0
    mid = matched_comparison(a, b, level=MIDWAY, n_resamples=2000)
    assert mid.level == pytest.approx(0.8) and mid.lam_a == pytest.approx(0.5) and mid.lam_b == pytest.approx(1 / 3)
    assert mid.robust_a == pytest.approx(0.3) and mid.robust_b == pytest.approx(0.2 - 0.1 / 3) and mid.ci_low > 0


def test_equal_curves_give_an_interval_around_zero_and_a_large_p():
    a = _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4])
    b = _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4], shift=150)  # the same accuracies on other images
    res = matched_comparison(a, b, n_resamples=2000)
    assert res.effect == pytest.approx(0.0) and res.ci_low < 0 < res.ci_high and res.p > 0.5


def test_a_curve_that_never_reaches_the_level_is_not_comparable():
    a = _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4])
    b = _curve([0.9, 0.85, 0.8], [0.1, 0.2, 0.3])  # the base and a fine-tune both above 0.7 ...
    res = matched_comparison(a, b, level=0.7, names=("ADV+C", "ADV"), n_resamples=200)
    assert res.status == NOT_COMPARABLE and not res.comparable and math.isnan(res.effect) and math.isnan(res.p)
    assert "ADV's curve spans clean accuracy 80.0-90.0%, not 70.0%" in res.reason
    # ... while at the default level (b's endpoint, 0.8) a's curve is read between lam 0.5 and 0 instead
    assert matched_comparison(a, b, n_resamples=200).lam_a == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different images"):
        matched_comparison(a, _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4], n=100))


# ----------------------------------------------------------------------------- the claim


def _per_image(curves: dict[str, Curve]) -> pd.DataFrame:
    rows = []
    for v, c in curves.items():
        for i, lam in enumerate(c.lams):
            cols = {"clean": c.clean[i].astype(bool), "robust": c.robust[i].astype(bool)}
            rows.append(pd.DataFrame({"variant": v, "lam": lam, "image": np.arange(c.n_images), **cols}))
    return pd.concat(rows, ignore_index=True)


def test_matched_claim_decides_on_the_paper_pair_and_reports_a_control_apart():
    better = _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4])
    worse = _curve([0.9, 0.75, 0.6], [0.1, 0.2, 0.3], shift=7)
    low = _curve([0.5, 0.45, 0.4], [0.1, 0.2, 0.3])  # a control whose curve never comes up to ADV+C's 0.7
    per = _per_image({"ADV+C": better, "ADV": worse, "ADV-mixed": low})
    claim = C.claim_robustness_matched({"tradeoff": {"per_image": per}}, ROLES)
    assert claim.verdict == C.HOLDS and claim.seeds == 1
    paper = [t for t in claim.tests if t["kind"] == C.PAPER_KIND and t["primary"]]
    assert len(paper) == 1 and paper[0]["effect"] > 0 and paper[0]["n_images"] == 400
    row = claim.row()
    assert list(C.claims_frame([claim]).columns) == C.CLAIM_COLUMNS and "at clean 70.0%" in row["ours"]
    assert [(t["kind"], t["form"]) for t in claim.tests] == [(C.PAPER_KIND, C.PLAIN), (C.PAPER_KIND, C.BOTH_BLENDED)]
    assert row["control_verdict"] == C.NOT_MEASURED and claim.secondary_verdict == C.HOLDS
    assert row["secondary"].startswith(f"{C.BOTH_BLENDED}: ADV+C vs ADV +13.3 [")
    assert "ADV+C vs ADV-mixed (control): not comparable (ADV-mixed's curve spans clean accuracy 40.0-50.0%" in \
        row["ours"]  # fmt: skip
    reversed_ = C.claim_robustness_matched({"tradeoff": {"per_image": _per_image({"ADV+C": worse, "ADV": better})}},
                                           ROLES)  # fmt: skip
    assert reversed_.verdict == C.FAILS
    far = _per_image({"ADV+C": _curve([0.5, 0.45, 0.4], [0.1, 0.2, 0.3]), "ADV": worse})  # below ADV's 0.6 throughout
    none = C.claim_robustness_matched({"tradeoff": {"per_image": far}}, ROLES)
    assert none.verdict == C.NOT_MEASURED and "not comparable" in none.ours and "ADV+C's curve" in none.ours
    assert C.claim_robustness_matched({}, ROLES).verdict == C.NOT_MEASURED
    assert "robustness_matched_clean" in {c.key for c in C.evaluate_claims({}, ROLES)}


def test_with_seeds_each_seed_is_matched_on_its_own_and_pooled_over_seeds():
    from analysis.tradeoff import matched_over_seeds

    better, worse = _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4]), _curve([0.9, 0.75, 0.6], [0.1, 0.2, 0.3], shift=7)
    same = _curve([0.9, 0.75, 0.6], [0.1, 0.375, 0.45], shift=3)  # seed 1: at a's level 0.7, b reads 0.4 too
    seeds = [_per_image({"ADV+C": better, "ADV": worse}).assign(seed=0),
             _per_image({"ADV+C": better, "ADV": same}).assign(seed=1)]  # fmt: skip
    per = pd.concat(seeds, ignore_index=True)
    pooled, each = matched_over_seeds(per, "ADV+C", "ADV", n_resamples=2000)
    assert set(each) == {0, 1} and each[1].effect == pytest.approx(0.0, abs=1e-9) and each[0].effect > 0.1
    assert pooled.effect == pytest.approx((each[0].effect + each[1].effect) / 2) and pooled.n_images == 400
    # the seeds disagree: the pooled interval spans both, wider than either seed's own
    assert pooled.ci_high - pooled.ci_low > max(r.ci_high - r.ci_low for r in each.values())
    claim = C.claim_robustness_matched({"tradeoff": {"per_image": per}}, ROLES)
    assert claim.seeds == 2 and claim.tests[0]["n_seeds"] == 2 and "2 seed(s) x 400 images" in claim.row()["n"]
    assert sorted((t["seed"], t["form"]) for t in claim.per_seed) == [(0, C.BOTH_BLENDED), (0, C.PLAIN),
                                                                      (1, C.BOTH_BLENDED), (1, C.PLAIN)]  # fmt: skip
    far = per.copy()
    far.loc[(far["seed"] == 1) & (far["variant"] == "ADV"), "clean"] = True  # seed 1: level 100%, out of reach
    pooled, each = matched_over_seeds(far, "ADV+C", "ADV", n_resamples=200)
    assert not each[1].comparable and pooled.comparable and pooled.effect == pytest.approx(each[0].effect)
    assert "seed 1: ADV+C's curve spans clean accuracy 70.0-90.0%, not 100.0%" in pooled.reason


def test_matched_table_is_one_row_per_pair():
    per = _per_image({"ADV+C": _curve([0.9, 0.8, 0.7], [0.1, 0.3, 0.4]), "ADV": _curve([0.9, 0.7, 0.6], [0, 0, 0])})
    table = matched_table(per, "ADV+C", "ADV", n_resamples=200)
    assert len(table) == 1 and table.loc[0, "a"] == "ADV+C" and table.loc[0, "status"] == "comparable"
    assert table.loc[0, "lam_b"] == pytest.approx(0.5) and table.loc[0, "robust_b"] == 0.0


# ----------------------------------------------------------------------------- the quick report


@pytest.mark.timeout(900)
def test_quick_report_writes_the_tradeoff_tables_figure_and_claim_row(tiny_zoo, tmp_path):
    from analysis.report import main

    out = tmp_path / "report"
    args = ["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1",
            "--only", "tradeoff", "--set", "tradeoff_images=12"]  # fmt: skip
    assert main(args) == 0
    curves = pd.read_csv(out / "results" / "tradeoff.csv")
    assert set(curves["variant"]) == {"ADV", "ADV+C", "ADV-mixed"} and set(curves["lam"]) == {0.0, 0.5, 1.0}
    matched = pd.read_csv(out / "results" / "tradeoff_matched.csv")
    assert list(matched["kind"]) == ["paper", "paper", "control", "control"] and (matched["n_images"] == 12).all()
    assert list(matched["level_rule"]) == ["higher endpoint", "both blended"] * 2
    assert (out / "figures" / "tradeoff.png").is_file()
    report = (out / "REPORT.md").read_text()
    assert "### Robustness at matched clean accuracy" in report and "](figures/tradeoff.png)" in report
    assert "| ADV+C vs ADV |" in report and "| ADV+C vs ADV-mixed (control) |" in report
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    row = claims.loc["robustness_matched_clean"]
    assert row["verdict"] in (C.QUICK_VERDICT, C.NOT_MEASURED) and row["claim"].endswith("at matched clean accuracy")
