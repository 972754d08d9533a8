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
