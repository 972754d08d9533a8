"""Verdicts about training methods (issue 23), on constructed per-image and per-seed results: the paper's pairs and
the controls decided apart, n as seeds x images, the scope by seed count, per-seed verdicts, the two-level
bootstrap, Holm across the report, the non-inferiority p and the one written rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import claims as C
from analysis import roles as R
from analysis import statistics as S

ROOT = Path(__file__).resolve().parent.parent
PAPER4 = ("standard", "C", "ADV", "ADV+C")
ROLES = {v: R.variant_role(v) for v in (*PAPER4, "standard+jitter", "ADV-mixed")}
N = 40


def ds_results(shift: dict[str, float], seeds: int | None, seed_shift: dict[str, list[float]] | None = None,
               noise: float = 0.05) -> dict:  # fmt: skip
    """Per-image level-1 DS (two kinds) of each variant, with a ``seed`` column for ``seeds`` seeds (None: one
    checkpoint each, no seed column). ``seed_shift``: per variant, an extra shift per seed."""
    rng = np.random.default_rng(0)
    base = rng.random(N)
    frames = []
    for seed in range(seeds or 1):
        for v, x in shift.items():
            extra = (seed_shift or {}).get(v, [0.0] * (seeds or 1))[seed]
            for kind in ("brightness", "hue"):
                ds = base + x + extra + noise * rng.random(N)
                frame = pd.DataFrame({"variant": v, "kind": kind, "level": 1, "image": range(N), "ds": ds})
                frames.append(frame.assign(seed=seed) if seeds else frame)
    return {"continuity": {"per_image": pd.concat(frames, ignore_index=True)}}


def test_the_paper_pairs_and_the_controls_have_their_own_verdicts():
    # the paper's pairs hold (C and ADV+C lower DS), the controls are reversed (they are lower still)
    res = ds_results({"standard": 2.0, "C": 1.0, "ADV": 2.0, "ADV+C": 1.0, "standard+jitter": 0.5,
                      "ADV-mixed": 0.5}, seeds=None)  # fmt: skip
    claims = C.evaluate_claims(res, ROLES)
    frame = C.claims_frame(claims).set_index("key")
    row = frame.loc["continuity"]
    assert (row["verdict"], row["control_verdict"]) == (C.HOLDS, C.FAILS)
    assert {"verdict", "control_verdict", "scope", "seeds_per_variant"} <= set(frame.columns)
    # the headline count reads the paper's pairs only: one claim holds, none is "partly"
    measured = frame[frame["verdict"] != C.NOT_MEASURED]
    assert measured["verdict"].value_counts().to_dict() == {C.HOLDS: 1}
    assert "(control)" in row["effect_ci"] and "(control)" not in row["effect_ci"].split(";")[0]


def test_n_is_seeds_times_images_and_the_scope_follows_the_seed_count():
    shift = {"standard": 2.0, "C": 1.0, "ADV": 2.0, "ADV+C": 1.0}
    three = C.claim_continuity(ds_results(shift, seeds=3), ROLES)
    assert three.row()["n"] == f"3 seed(s) x {N} images" and three.seeds == 3
    assert three.scope == S.SCOPE_METHOD == "about the training method"
    assert "two-level paired bootstrap" in three.tests[0]["test"]
    two = C.claim_continuity(ds_results(shift, seeds=2), ROLES)
    assert two.row()["n"] == f"2 seed(s) x {N} images" and two.scope == S.SCOPE_CHECKPOINTS
    one = C.claim_continuity(ds_results(shift, seeds=None), ROLES)
    assert one.row()["n"] == f"1 seed x {N} images" and one.scope == "about these checkpoints"
    assert "two-level" not in one.tests[0]["test"] and not one.per_seed


def test_per_seed_verdicts_are_kept():
    # seed 2 of C is reversed against standard: the per-seed table says so, the claim pools the seeds
    res = ds_results({"standard": 2.0, "C": 1.0, "ADV": 2.0, "ADV+C": 1.0}, seeds=3,
                     seed_shift={"C": [0.0, 0.0, 2.0]})  # fmt: skip
    claim = C.claim_continuity(res, ROLES)
    seeds = C.seeds_frame([claim])
    assert list(seeds.columns) == C.SEED_COLUMNS
    c_std = seeds[seeds["comparison"] == "C vs standard"].set_index("seed")["verdict"]
    assert c_std.to_dict() == {0: C.HOLDS, 1: C.HOLDS, 2: C.FAILS}
    assert set(seeds.loc[seeds["comparison"] == "ADV+C vs ADV", "verdict"]) == {C.HOLDS}


def test_the_two_level_ci_is_wider_than_pooling_images_when_seeds_disagree():
    # C minus standard is -1.5, -0.2 and -2.8 on the three seeds: the image bootstrap of all seeds' images pooled
    # hides that spread, the two-level bootstrap does not
    res = ds_results({"standard": 2.0, "C": 0.5, "ADV": 2.0, "ADV+C": 1.0}, seeds=3,
                     seed_shift={"C": [0.0, 1.3, -1.3]}, noise=0.2)  # fmt: skip
    claim = C.claim_continuity(res, ROLES)
    test = next(t for t in claim.tests if t["comparison"] == "C vs standard")
    level1 = res["continuity"]["per_image"].groupby(["seed", "variant", "image"])["ds"].sum().unstack("variant")
    pooled = S.paired_bootstrap(level1["C"].to_numpy(), level1["standard"].to_numpy())
    assert test["effect"] == pytest.approx(pooled.effect)  # the same estimate (equal images per seed) ...
    assert test["ci_high"] - test["ci_low"] > 3 * (pooled.ci_high - pooled.ci_low)  # ... a much wider CI


def _decided(p: float, effect: float = 0.1) -> C.Claim:
    res = S.TestResult(effect, effect - 0.05, effect + 0.05, p, "constructed")
    test = C.test_row("k", R.Comparison("C", "standard"), res, "higher", "m")
    return C.Claim(f"claim p={p}", "c", "p", "f", "", C.NOT_MEASURED, "r", [test], 1)


def test_holm_across_every_comparison_of_the_report():
    # alone, each comparison holds (p < 0.05); across the two, Holm takes both to 0.06
    alone = [C._finish(_decided(p)) for p in (0.03, 0.04)]
    assert [c.verdict for c in alone] == [C.HOLDS, C.HOLDS]
    together = C.rescore([_decided(0.03), _decided(0.04)])
    assert [c.tests[0]["p_holm"] for c in together] == [0.03, 0.04]  # within each claim: unchanged
    assert [c.tests[0]["p_holm_all"] for c in together] == pytest.approx([0.06, 0.06])
    assert [c.verdict for c in together] == [C.INCONCLUSIVE, C.INCONCLUSIVE]
    # evaluate_claims: p_holm_all is Holm over every comparison of every claim
    res = ds_results({"standard": 2.0, "C": 1.0, "ADV": 2.0, "ADV+C": 1.0}, seeds=None)
    res["fairness"] = {
        "fairness": pd.DataFrame(
            {
                "variant": ["standard"] * 4 + ["C"] * 4,
                "seed": [0, 1, 2, 3] * 2,
                "test_acc": [0.80, 0.82, 0.81, 0.83, 0.84, 0.86, 0.83, 0.85],
            }
        )
    }
    tests = C.tests_frame(C.evaluate_claims(res, ROLES))
    assert list(tests.columns) == C.TEST_COLUMNS
    assert tests["p_holm_all"].tolist() == pytest.approx(S.holm(tests["p"].tolist()), nan_ok=True)
    assert (tests["p_holm_all"] >= tests["p_holm"] - 1e-12).all()


def test_the_alpha_accuracy_claim_prints_the_noninferiority_p():
    acc = {0.0: [0.870, 0.880, 0.875], 1.0: [0.868, 0.876, 0.874], 3.0: [0.862, 0.871, 0.866]}
    sweep = pd.DataFrame([{"alpha": a, "seed": s, "test_acc": v, "ds_level1_sum": 10 - a}
                          for a, vs in acc.items() for s, v in enumerate(vs)])  # fmt: skip
    claim = C.claim_alpha_accuracy({"alpha_sweep": {"alpha_sweep": sweep}})
    (test,) = claim.tests
    ni = S.noninferiority(acc[3.0], acc[0.0], 0.05, "higher", method="welch")
    assert test["decision"] == C.NONINFERIORITY and test["p"] == pytest.approx(ni.p) and ni.p < 0.001
    assert test["p"] != pytest.approx(S.welch(acc[3.0], acc[0.0]).p)  # not the superiority test's p
    assert claim.verdict == C.HOLDS and "non-inferiority p" in claim.row()["p"]
    costly = sweep.assign(
        test_acc=[v - (0.1 if a == 3.0 else 0.0) for a, v in zip(sweep["alpha"], sweep["test_acc"], strict=True)]
    )
    assert C.claim_alpha_accuracy({"alpha_sweep": {"alpha_sweep": costly}}).verdict == C.FAILS  # CI below -5


def test_the_written_rule_is_the_code():
    # one rule: the README and the report quote it verbatim, every claim's rule points to it
    assert S.VERDICT_RULE in " ".join((ROOT / "README.md").read_text().split())
    from analysis.report_markdown import section_claims

    report = section_claims(C.evaluate_claims({}, ROLES))
    assert S.VERDICT_RULE in report
    # "does not hold when its 95% CI excludes the null value on the other side and its adjusted p < 0.05"
    reversed_ = S.TestResult(-0.1, -0.15, -0.05, 0.01, "constructed")
    assert S.pair_verdict(reversed_, "higher", 0.01) == S.FAILS
    assert S.pair_verdict(reversed_, "higher", 0.07) == S.INCONCLUSIVE  # CI excludes 0, adjusted p does not
    assert S.pair_verdict(reversed_, "lower", 0.01) == S.HOLDS
    assert S.pair_verdict(S.TestResult(0.6, 0.55, 0.65, 0.01, "share"), "higher", 0.01, null=0.5) == S.HOLDS
    # and through a claim: a reversal with CI and adjusted p both past the bar does not hold
    worse = C.claim_continuity(ds_results({"standard": 1.0, "C": 2.0}, seeds=None), ROLES)
    assert worse.tests[0]["ci_low"] > 0 and worse.tests[0]["p_holm_all"] < 0.05 and worse.verdict == C.FAILS
    assert "statistics.VERDICT_RULE" in worse.rule


def probe_results(seeds: int | None) -> dict:
    """C right on clean images 0-79, standard on 0-59 (of 100). Under the probe both are right on 0-29; C also on
    its extra clean images 60-79. Plain probe accuracy favours C (50% vs 30%) only through its clean accuracy."""
    right = {("C", "clean"): set(range(80)), ("standard", "clean"): set(range(60)),
             ("C", "1/32"): set(range(30)) | set(range(60, 80)), ("standard", "1/32"): set(range(30))}  # fmt: skip
    rows = [{"variant": v, "probe": "channel_translation", "level_label": lab, "image": i, "correct": i in ok}
            for (v, lab), ok in right.items() for i in range(100)]  # fmt: skip
    df = pd.DataFrame(rows)
    if seeds:
        df = pd.concat([df.assign(seed=s) for s in range(seeds)], ignore_index=True)
    return {"probes": {"per_image": df}}


@pytest.mark.parametrize("seeds", [None, 3])
def test_the_probe_claim_also_tests_the_images_both_classify_correctly_when_clean(seeds):
    claim = C.claim_probe(probe_results(seeds), ROLES, "channel_translation")
    plain, conditional = claim.tests
    assert (plain["form"], conditional["form"]) == (C.PLAIN, C.CLEAN_CORRECT) and not conditional["primary"]
    assert plain["effect"] == pytest.approx(0.2) and plain["verdict"] == C.FAILS  # C keeps *more*: reversed
    assert conditional["effect"] == 0 and conditional["n_images"] == 60 and conditional["verdict"] == C.INCONCLUSIVE
    assert claim.verdict == C.FAILS and claim.secondary_verdict == C.INCONCLUSIVE
    assert "both clean-correct: C vs standard +0 [" in claim.row()["secondary"]


def test_the_continuity_claim_shows_ds_normalised_by_the_logit_spread_beside_the_raw_ds():
    from analysis.continuity import normalise_ds

    # C's DS is half standard's, but so is its same-class logit spread: on its own scale it moved as much
    res = ds_results({"standard": 2.0, "C": 0.0}, seeds=None)
    per_image = res["continuity"]["per_image"]
    is_c, is_standard = per_image["variant"] == "C", per_image["variant"] == "standard"
    per_image.loc[is_c, "ds"] = per_image.loc[is_standard, "ds"].to_numpy() / 2
    res["continuity"]["per_image"] = normalise_ds(per_image, {"standard": 8.0, "C": 4.0})
    claim = C.claim_continuity(res, ROLES)
    raw, normalised = claim.tests
    assert raw["verdict"] == C.HOLDS and normalised["form"] == C.NORMALISED
    assert normalised["effect"] == pytest.approx(0.0, abs=1e-12) and normalised["verdict"] == C.INCONCLUSIVE
    assert claim.verdict == C.HOLDS and claim.secondary_verdict == C.INCONCLUSIVE


def test_discontinuity_states_level_1_without_hue_beside_the_maximum():
    # 200 anchors: 90% have a copy outranked at hue or at level 4; at level 1 without hue only 10% do
    rows = []
    for anchor in range(200):
        for kind in ("brightness", "hue"):
            for level in (1, 4):
                hit = (kind == "hue" or level == 4) if anchor < 180 else False
                hit = hit or (anchor < 20 and kind == "brightness" and level == 1)
                rows.append({"variant": "standard", "anchor": anchor, "kind": kind, "level": level,
                             "n_closer": int(hit), "n_same": 999, "share": hit / 999})  # fmt: skip
    claim = C.claim_discontinuity({"neighbourhood_rank": {"per_anchor": pd.DataFrame(rows)}}, ROLES)
    maximum, no_hue = claim.tests
    assert maximum["effect"] == pytest.approx(0.9) and no_hue["effect"] == pytest.approx(0.1)
    assert (claim.verdict, claim.secondary_verdict) == (C.HOLDS, C.FAILS)
    assert "level 1 without hue: 10.0%" in claim.ours


def test_alpha_monotonicity_is_a_trend_test_over_the_whole_sweep():
    alphas = (0.0, 0.1, 0.3, 1.0, 3.0)
    falling = pd.DataFrame([{"alpha": a, "seed": s, "ds_level1_sum": 10 - 2 * i + 0.1 * s, "test_acc": 0.9}
                            for i, a in enumerate(alphas) for s in range(3)])  # fmt: skip
    claim = C.claim_alpha_continuity({"alpha_sweep": {"alpha_sweep": falling}})
    trend, ends = claim.tests
    assert (trend["form"], trend["primary"], ends["form"], ends["primary"]) == (C.TREND, True, C.ENDS, False)
    assert "Page's L" in trend["test"] and trend["effect"] == pytest.approx(-1.0) and claim.verdict == C.HOLDS
    # the ends alone would say "lower" (6 < 10), but the sweep zigzags with no trend
    zigzag = falling.assign(
        ds_level1_sum=[
            {0.0: 10, 0.1: 2, 0.3: 9, 1.0: 3, 3.0: 6}[a] + 0.1 * s
            for a, s in zip(falling["alpha"], falling["seed"], strict=True)
        ]
    )
    claim = C.claim_alpha_continuity({"alpha_sweep": {"alpha_sweep": zigzag}})
    assert claim.tests[1]["ci_high"] < 0  # largest vs smallest alpha
    assert claim.verdict == C.INCONCLUSIVE


def test_the_shortcut_colour_bias_is_its_own_claim():
    fair = pd.DataFrame({"variant": ["standard"] * 5 + ["C"] * 5, "seed": list(range(5)) * 2,
                         "test_acc": [0.80, 0.81, 0.82, 0.83, 0.84, 0.90, 0.91, 0.92, 0.93, 0.94]})  # fmt: skip
    shortcut = fair.assign(test_acc=fair["test_acc"][::-1].to_numpy(), design="shortcut")
    res = {"fairness": {"fairness": fair, "shortcut": shortcut}}
    paper, short = (C.claim_fairness(res, ROLES, d) for d in ("paper", "shortcut"))
    assert (paper.key, paper.verdict, short.key, short.verdict) == ("fairness", C.HOLDS, "fairness_shortcut", C.FAILS)
    assert paper.seeds == 5 and paper.scope == S.SCOPE_METHOD  # trained from scratch per seed
    assert C.claim_fairness({"fairness": {"fairness": fair}}, ROLES, "shortcut").verdict == C.NOT_MEASURED
    keys = [c.key for c in C.evaluate_claims(res, ROLES)]
    assert "fairness" in keys and "fairness_shortcut" in keys


def test_the_transfer_claim_speaks_about_checkpoints_unless_source_seeds_differ():
    df = pd.DataFrame({"variant": ["standard"] * 3 + ["C"] * 3, "seed": [0, 1, 2] * 2, "target": "digits",
                       "test_acc": [0.80, 0.81, 0.82, 0.90, 0.91, 0.92]})  # fmt: skip
    one_source = C.claim_transfer({"transfer": {"transfer": df}}, ROLES, "digits")
    assert one_source.scope == S.SCOPE_CHECKPOINTS  # fine-tune seeds repeat one source checkpoint
    three = C.claim_transfer({"transfer": {"transfer": df.assign(source_seed=df["seed"])}}, ROLES, "digits")
    assert three.scope == S.SCOPE_METHOD


def test_runs_fine_tuned_from_one_zoo_checkpoint_count_once_across_zoo_seeds():
    """Across zoo seeds a training experiment's runs of one source checkpoint are averaged before the test: two
    checkpoints whose three runs each agree closely are two replications, not six (constructed case: the two
    checkpoints differ in how much C gains, so six runs counted as seeds make the gain look certain)."""
    rows = []
    for source, base, gain in ((0, 0.800, 0.040), (1, 0.805, 0.005)):
        for rep in range(3):
            rows += [{"variant": "standard", "source_seed": source, "repeat_seed": rep, "target": "digits",
                      "seed": source * 10_000 + rep, "test_acc": base + 0.001 * rep},
                     {"variant": "C", "source_seed": source, "repeat_seed": rep, "target": "digits",
                      "seed": source * 10_000 + rep, "test_acc": base + gain + 0.001 * rep}]  # fmt: skip
    df = pd.DataFrame(rows)
    naive = S.welch(df.loc[df["variant"] == "C", "test_acc"], df.loc[df["variant"] == "standard", "test_acc"])
    assert naive.p < 0.05  # six runs as six seeds: "holds"
    got = C.claim_transfer({"transfer": {"transfer": df}}, ROLES, "digits")
    test = next(t for t in got.tests if t["comparison"] == "C vs standard")
    assert test["p"] > 0.05 and got.verdict == C.INCONCLUSIVE  # two checkpoints: too few to tell
    assert test["effect"] == pytest.approx(naive.effect)
    assert test["n_seeds"] == 2 and "2 seed(s)" in test["n"] and "mean of 3 runs" in test["n"]
    assert got.seeds == 2 and "source checkpoints" in got.rule
    means, runs = C.per_source(df, ["variant"], ["test_acc"])
    assert runs == 3 and len(means) == 4 and set(means["seed"]) == {0, 1}
    one = df[df["source_seed"] == 0]
    assert C.per_source(one, ["variant"], ["test_acc"]) == (one, None)  # one checkpoint: its runs are the seeds


def test_the_alpha_trend_across_zoo_seeds_has_one_block_per_source_checkpoint():
    rows = [{"alpha": a, "source_seed": s, "repeat_seed": r, "seed": s * 10_000 + r,
             "ds_level1_sum": 5 - a + 0.01 * r + 0.1 * s, "test_acc": 0.9 - 0.001 * a}
            for s in (0, 1, 2) for r in (0, 1) for a in (0.0, 0.3, 1.0, 3.0)]  # fmt: skip
    res = {"alpha_sweep": {"alpha_sweep": pd.DataFrame(rows)}}
    trend = C.claim_alpha_continuity(res, ROLES)
    assert trend.seeds == 3
    assert all(t["n_seeds"] == 3 and "mean of 2 runs" in t["n"] for t in trend.tests)
    cost = C.claim_alpha_accuracy(res, ROLES)
    assert cost.seeds == 3 and cost.tests[0]["n_seeds"] == 3


def test_the_matched_c_control_is_trained_on_cs_path(tmp_path):
    from models.objectives import VARIANT_REGISTRY, jitter_augmented_loss
    from models.recipes import build_configs
    from models.runs import FINAL_FILE

    configs = build_configs("cpu-default", tmp_path)
    control, c = configs["C-control"], configs["C"]
    assert control.init == str(tmp_path / "standard" / FINAL_FILE) == c.init
    assert (control.epochs, control.preset, control.dataset) == (c.epochs, c.preset, c.dataset)
    assert control.alpha == 0.0 and VARIANT_REGISTRY["C-control"].loss is jitter_augmented_loss
    assert VARIANT_REGISTRY["C-control"].control_of == "C"
    assert configs["standard+jitter"].init is None  # "standard+jitter (scratch)" is kept beside it
    roles = {v: R.variant_role(v) for v in ("standard", "C", "standard+jitter", "C-control")}
    assert [(x.label, x.kind) for x in R.comparisons(roles, [(R.CONSTRAINED, R.BASELINE)])] == [
        ("C vs standard", "paper"),
        ("C vs standard+jitter", "control"),
        ("C vs C-control", "control"),
    ]


def test_ds_tables_with_labels_feed_the_normalised_continuity_claim(one_thread):
    import torch
    from torch import nn

    from analysis.continuity import ds_tables

    class Scaled(nn.Module):
        def __init__(self, inner: nn.Module, k: float) -> None:
            super().__init__()
            self.inner, self.k = inner, k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.k * self.inner(x)

    # "C" is standard with logits a third as large: raw DS 9x smaller, the same DS on its own logit scale
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).eval()
    models = {"standard": base, "C": Scaled(base, 1 / 3).eval()}
    images = torch.rand(60, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    summary, per_image = ds_tables(models, images, kinds=("brightness", "hue"), levels=(1,),
                                   labels=torch.arange(60) % 5)  # fmt: skip
    assert {"spread", "ds_normalised_mean"} <= set(summary.columns) and "ds_normalised" in per_image.columns
    claim = C.claim_continuity({"continuity": {"per_image": per_image}}, ROLES)
    raw, normalised = claim.tests
    assert raw["verdict"] == C.HOLDS and raw["effect"] < 0
    assert normalised["form"] == C.NORMALISED and abs(normalised["effect"]) < 1e-4 * abs(raw["effect"])
    assert claim.secondary_verdict == C.INCONCLUSIVE


def test_a_claims_n_gives_the_secondary_forms_images_as_one_range():
    rng = np.random.default_rng(0)
    a = {s: rng.normal(0.5, 0.1, 100) for s in (0, 1)}
    b = {s: rng.normal(0.4, 0.1, 100) for s in (0, 1)}
    subsets = {"C vs standard": 60, "ADV+C vs ADV": 75}  # the images both classify correctly differ per pair
    per = {"standard": b, "C": a, "ADV": b, "ADV+C": a}

    def both(c):
        return {s: v[: subsets[c.label]] for s, v in per[c.a].items()}, {
            s: v[: subsets[c.label]] for s, v in per[c.b].items()
        }

    got = C.paired_claim("k", "claim", "p", "f", "m", "higher", per, ROLES, secondary={"both correct": both})
    assert got.row()["n"] == "2 seed(s) x 100 images; secondary forms: 2 seed(s) x 60-75 images"
