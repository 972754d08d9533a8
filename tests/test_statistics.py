"""analysis.statistics against answers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import statistics as S


def test_mcnemar_matches_the_hand_computed_exact_binomial():
    # 10 images: a right & b wrong on 4, a wrong & b right on 1, both right on 5. Discordant pairs: 4 vs 1.
    a = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=bool)
    b = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
    res = S.mcnemar(a, b)
    # two-sided exact: P(X <= 1) + P(X >= 4), X ~ Bin(5, 1/2) = (1 + 5 + 5 + 1) / 32 = 0.375
    assert res.p == pytest.approx(12 / 32)
    assert res.effect == pytest.approx(0.9 - 0.6) and res.n_images == 10
    assert res.ci_low <= res.effect <= res.ci_high
    assert "4 vs 1" in res.test
    assert S.mcnemar(a, a).p == 1.0  # no discordant pair


def test_mcnemar_significant_when_one_side_dominates():
    a = np.ones(40, dtype=bool)
    b = np.r_[np.zeros(12, dtype=bool), np.ones(28, dtype=bool)]
    res = S.mcnemar(a, b)
    assert res.p == pytest.approx(2 * 0.5**12)  # 12 vs 0 discordant
    assert res.ci_low > 0


def test_bootstrap_ci_of_a_constant_difference_is_that_constant():
    rng = np.random.default_rng(3)
    b = rng.normal(size=200)
    res = S.paired_bootstrap(b + 0.25, b)
    assert res.effect == pytest.approx(0.25)
    assert res.ci_low == pytest.approx(0.25) and res.ci_high == pytest.approx(0.25)
    assert res.p == pytest.approx(2 / (S.N_RESAMPLES + 1))  # every resample > 0
    assert S.paired_bootstrap(b, b).p == 1.0


def test_bootstrap_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.1, 1, 500), rng.normal(0, 1, 500)
    r1, r2 = S.paired_bootstrap(a, b, seed=7), S.paired_bootstrap(a, b, seed=7)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    assert r1.ci_low < r1.effect < r1.ci_high
    se = np.std(a - b, ddof=1) / math.sqrt(500)
    assert r1.ci_high - r1.ci_low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_holm_on_three_p_values_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert S.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adj = S.holm([0.02, float("nan")])
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1])  # NaN does not count in m


def test_welch_matches_scipy_and_needs_two_seeds():
    from scipy import stats

    a, b = [0.90, 0.91, 0.92], [0.80, 0.82, 0.84]
    res = S.welch(a, b)
    assert res.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert res.effect == pytest.approx(0.09) and res.ci_low > 0 and res.n_seeds == 3
    assert math.isnan(S.welch([0.9], [0.8]).p)


def test_clopper_pearson_interval():
    res = S.proportion(0, 10)
    assert res.ci_low == 0 and res.ci_high == pytest.approx(1 - 0.025 ** (1 / 10))  # exact upper bound for k = 0
    res = S.proportion(150, 200)
    assert res.ci_low < 0.75 < res.ci_high and res.ci_low > 0.5


def _result(lo: float, hi: float, p: float = 0.001) -> S.TestResult:
    return S.TestResult((lo + hi) / 2, lo, hi, p, "test", 100)


def test_verdict_rule_on_constructed_cases():
    assert S.pair_verdict(_result(0.02, 0.08), "higher") == S.HOLDS
    assert S.pair_verdict(_result(0.02, 0.08), "lower") == S.FAILS  # a significant reversal does not hold
    assert S.pair_verdict(_result(-0.03, 0.04, 0.6), "higher") == S.INCONCLUSIVE
    assert S.pair_verdict(_result(0.0, 0.0, 1.0), "higher") == S.INCONCLUSIVE  # a tie
    assert S.pair_verdict(_result(0.02, 0.08), "higher", p_adjusted=0.09) == S.INCONCLUSIVE  # Holm took it away
    assert S.pair_verdict(_result(float("nan"), float("nan")), "lower") == S.INCONCLUSIVE


def test_claim_verdict_combines_pairs():
    assert S.claim_verdict([S.HOLDS, S.HOLDS]) == S.HOLDS
    assert S.claim_verdict([S.HOLDS, S.FAILS]) == S.PARTLY  # only disagreement makes "partly"
    assert S.claim_verdict([S.HOLDS, S.INCONCLUSIVE]) == S.INCONCLUSIVE
    assert S.claim_verdict([S.FAILS, S.INCONCLUSIVE]) == S.FAILS
    assert S.claim_verdict([S.NOT_MEASURED]) == S.NOT_MEASURED


# --- issue 23: two-level bootstrap, adjustment across a report, non-inferiority ---


def _seeds_that_disagree(n: int = 200) -> dict[int, np.ndarray]:
    """Three seeds whose per-image metric centres on 0, 1 and 2 with little spread within a seed."""
    rng = np.random.default_rng(5)
    return {s: rng.normal(loc=float(s), scale=0.1, size=n) for s in range(3)}


def test_two_level_ci_is_wider_than_pooling_images_when_seeds_disagree():
    per_seed = _seeds_that_disagree()
    two = S.two_level_bootstrap(per_seed)
    pooled_mean, pooled_lo, pooled_hi = S.mean_ci(np.concatenate(list(per_seed.values())))
    assert two.effect == pytest.approx(np.mean([v.mean() for v in per_seed.values()]))
    assert two.effect == pytest.approx(pooled_mean)  # equal sizes: same point estimate
    # pooled: about 2 x 1.96 x 0.82 / sqrt(600) ~ 0.13 wide; over seeds the mean of 3 draws from {0, 1, 2}
    assert (two.ci_high - two.ci_low) > 5 * (pooled_hi - pooled_lo)
    assert two.ci_low < 0.5 and two.ci_high > 1.5
    assert (two.n_seeds, two.n_images) == (3, 200)
    assert S.n_label(two) == "3 seed(s) x 200 images"


def test_two_level_paired_difference_pairs_seed_by_seed():
    a = _seeds_that_disagree()
    b = {s: v - 0.3 for s, v in a.items()}  # the same shift on every image of every seed
    res = S.two_level_paired_bootstrap(a, b)
    assert res.effect == pytest.approx(0.3)
    assert res.ci_low == pytest.approx(0.3) and res.ci_high == pytest.approx(0.3)
    assert res.p == pytest.approx(2 / (S.N_RESAMPLES + 1))
    # seed-to-seed disagreement in the difference widens its CI over a pooled paired bootstrap
    c = {s: v - 0.3 * s for s, v in a.items()}  # differences 0, 0.3, 0.6
    wide = S.two_level_paired_bootstrap(a, c)
    pooled = S.paired_bootstrap(np.concatenate(list(a.values())), np.concatenate(list(c.values())))
    assert (wide.ci_high - wide.ci_low) > 5 * (pooled.ci_high - pooled.ci_low)
    with pytest.raises(ValueError, match="same seeds"):
        S.two_level_paired_bootstrap(a, {0: b[0]})
    with pytest.raises(ValueError, match="differ in length"):
        S.two_level_paired_bootstrap({0: a[0]}, {0: a[0][:-1]})


def test_two_level_with_one_seed_is_the_image_bootstrap_within_monte_carlo_error():
    rng = np.random.default_rng(11)
    x = rng.normal(size=400)
    two = S.two_level_bootstrap({0: x}, seed=1)
    _, lo, hi = S.mean_ci(x, seed=2)  # an independent image bootstrap
    # Monte Carlo error of a percentile bound from B resamples: sqrt(q (1 - q) / B) / f(x_q); with the bootstrap
    # distribution ~ N(mean, s^2 / n), f(x_q) = phi(z_q) / (s / sqrt n). A width has two (nearly independent)
    # bounds, the difference of two widths four: sd = 2 sqrt(q (1 - q) / B) / phi(z_q) x s / sqrt n.
    q, b = (1 - S.LEVEL) / 2, S.N_RESAMPLES
    z = 1.959963984540054
    phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    sd = 2 * math.sqrt(q * (1 - q) / b) / phi * x.std(ddof=1) / math.sqrt(len(x))
    assert abs((two.ci_high - two.ci_low) - (hi - lo)) < 4 * sd
    assert two.effect == pytest.approx(x.mean())
    assert (two.n_seeds, two.n_images) == (1, 400)


def test_two_level_bootstrap_is_seeded_and_rejects_empty_seeds():
    per_seed = _seeds_that_disagree(50)
    assert S.two_level_bootstrap(per_seed, seed=3) == S.two_level_bootstrap(per_seed, seed=3)
    with pytest.raises(ValueError, match="at least one seed"):
        S.two_level_bootstrap({0: [1.0], 1: []})
    with pytest.raises(ValueError, match="at least one seed"):
        S.two_level_bootstrap({})


# p-values in input order and their adjustments computed by hand (m = 4; NaN is not counted).
# Holm: sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 0.04)
# BH: p_(i) m / i = 0.02, 0.02, 0.04, 0.04, then the running minimum from the largest down.
P_RAW = [0.01, math.nan, 0.04, 0.03, 0.005]
P_HOLM = [0.03, math.nan, 0.06, 0.06, 0.02]
P_BH = [0.02, math.nan, 0.04, 0.04, 0.02]


def test_holm_and_bh_on_known_p_values():
    assert S.adjust(P_RAW, "holm") == pytest.approx(P_HOLM, nan_ok=True)
    assert S.adjust(P_RAW, "bh") == pytest.approx(P_BH, nan_ok=True)
    assert S.benjamini_hochberg([0.5]) == [0.5]
    assert S.adjust([0.9, 0.8], "holm") == [1.0, 1.0]  # 2 x 0.8 capped at 1, then monotone
    with pytest.raises(ValueError, match="unknown adjustment"):
        S.adjust(P_RAW, "bonferroni")


def test_adjust_across_a_claims_table_counts_every_comparison():
    import pandas as pd

    table = pd.DataFrame({"key": ["a", "a", "b", "b", "b"], "p": P_RAW})
    before = table.copy()
    across = S.adjust_across(table)
    assert across.name == "p_holm_all" and list(across.index) == list(table.index)
    assert across.tolist() == pytest.approx(P_HOLM, nan_ok=True)
    within = table.groupby("key")["p"].transform(lambda p: S.holm(p.tolist()))
    assert within[0] == pytest.approx(0.01) and across[0] == pytest.approx(0.03)  # m = 1 within, 4 across
    assert S.adjust_across(table, method="bh").tolist() == pytest.approx(P_BH, nan_ok=True)
    pd.testing.assert_frame_equal(table, before)
    with pytest.raises(ValueError, match="no column 'p_value'"):
        S.adjust_across(table, p_column="p_value")


def test_noninferiority_p_is_one_sided_against_the_margin():
    from scipy import stats

    rng = np.random.default_rng(7)
    b = rng.normal(size=1000)
    a = b - 0.01 + rng.normal(scale=0.1, size=1000)  # a slightly worse than b
    d = a - b
    res = S.noninferiority(a, b, margin=0.05)
    t = (d.mean() + 0.05) / (d.std(ddof=1) / math.sqrt(len(d)))
    assert res.p == pytest.approx(stats.t.sf(t, len(d) - 1))
    assert res.p < 0.001 and "margin 0.05" in res.test and res.n_images == 1000
    assert res.effect == pytest.approx(d.mean()) and res.ci_low < res.effect < res.ci_high
    assert S.noninferiority(a, b, margin=0.0).p > 0.5  # a is worse: not non-inferior without a margin
    boot = S.noninferiority(a, b, margin=0.05, method="bootstrap")
    assert boot.p == pytest.approx(1 / (S.N_RESAMPLES + 1))  # no resampled mean reaches -0.05
    # smaller is better: a larger than b by 0.01 is non-inferior within +0.05, not within 0
    assert S.noninferiority(b + 0.01, b, margin=0.05, direction="lower").p == 0.0  # no spread, clearly inside
    assert S.noninferiority(-a, -b, margin=0.05, direction="lower").p == pytest.approx(res.p)
    assert S.noninferiority(-a, -b, margin=0.0, direction="lower").p > 0.5
    with pytest.raises(ValueError, match="margin must be >= 0"):
        S.noninferiority(a, b, margin=-1)
