"""Tests and intervals behind the claims' verdicts (scipy.stats; nothing hand-rolled but Holm's step-down).

* ``mcnemar``: two variants' per-image correctness on the same images: exact McNemar test (a two-sided binomial
  test on the discordant pairs) and a paired-bootstrap 95% CI of the accuracy difference.
* ``paired_bootstrap``: a per-image continuous metric of two variants on the same images: the mean difference, its
  percentile 95% CI from >= 10,000 seeded resamples of the images, and the bootstrap p-value.
* ``welch``: one number per seed for each variant (training repeated per seed): Welch's t-test and its CI.
* ``proportion``: a share with its Clopper-Pearson (exact) 95% CI.
* ``holm``: Holm's step-down adjustment of the p-values of the comparisons of one claim.
* ``pair_verdict`` / ``claim_verdict``: the verdict rule (see ``pair_verdict``).

With one trained checkpoint per variant, image-level tests speak about these checkpoints, not about the training
method: a second training run could land elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

HOLDS, PARTLY, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "partly", "does not hold", "inconclusive", "not measured"
QUICK_VERDICT = "not decided at quick scale"
LEVEL = 0.95
N_RESAMPLES = 10_000


@dataclass
class TestResult:
    """One comparison: ``effect`` (a - b, or the statistic itself for one sample) with its 95% CI."""

    effect: float
    ci_low: float
    ci_high: float
    p: float
    test: str
    n_images: int | None = None
    n_seeds: int | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a


def bootstrap_means(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Means of ``n_resamples`` seeded resamples (with replacement) of ``values``, vectorised in chunks."""
    values = _finite(values)
    rng = np.random.default_rng(seed)
    n = len(values)
    out = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // max(1, n))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> TestResult:
    """Mean of ``a - b`` over paired images, its percentile 95% CI and a two-sided bootstrap p-value.

    The p-value is ``min(1, 2 * min(#(d* <= 0), #(d* >= 0)) + 1) / (B + 1))`` over the resampled means d*: it is
    below 0.05 exactly when the 95% percentile interval excludes 0 (up to the +1).
    """
    a, b = _finite(a), _finite(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    if n == 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, "paired bootstrap", 0)
    boot = bootstrap_means(d, n_resamples, seed)
    lo, hi = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    p = 1.0 if np.all(d == 0) else min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    return TestResult(float(d.mean()), float(lo), float(hi), p, f"paired bootstrap ({n_resamples:,} resamples)", n)


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool], seed: int = 0) -> TestResult:
    """Exact McNemar test of two variants' per-image correctness (binomial test on the discordant pairs, p = 1/2),
    with the accuracy difference a - b and its paired-bootstrap 95% CI."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    boot = paired_bootstrap(a.astype(float), b.astype(float), seed=seed)
    return TestResult(boot.effect, boot.ci_low, boot.ci_high, p,
                      f"exact McNemar ({only_a} vs {only_b} discordant)", len(a))  # fmt: skip


def welch(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Welch's t-test of per-seed values (mean a - mean b, its 95% CI); NaN p and CI with fewer than two seeds
    each or no spread at all."""
    a, b = _finite(a), _finite(b)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    effect = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    n_seeds = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return TestResult(effect, math.nan, math.nan, math.nan, "Welch t-test (needs >= 2 seeds with spread)",
                          n_seeds=n_seeds)  # fmt: skip
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(LEVEL)
    return TestResult(effect, float(ci.low), float(ci.high), float(res.pvalue), "Welch t-test", n_seeds=n_seeds)


def proportion(successes: int, n: int) -> TestResult:
    """A share k/n with its Clopper-Pearson 95% CI; p tests share = 1/2 (two-sided, exact binomial)."""
    if n <= 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, "Clopper-Pearson", 0)
    res = stats.binomtest(int(successes), int(n), 0.5)
    ci = res.proportion_ci(LEVEL, method="exact")
    return TestResult(successes / n, float(ci.low), float(ci.high), float(res.pvalue),
                      "exact binomial, Clopper-Pearson CI", n)  # fmt: skip


def mean_ci(values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap 95% CI (NaN for an empty sample)."""
    v = _finite(values)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    boot = bootstrap_means(v, n_resamples, seed)
    lo, hi = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(v.mean()), float(lo), float(hi)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the input order; NaN stays NaN and does not count in m).

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def pair_verdict(result: TestResult, direction: str, p_adjusted: float | None = None, alpha: float = 0.05) -> str:
    """The verdict on one comparison from its 95% CI of ``effect`` (a - b) and its (Holm-adjusted) p-value.

    ``direction`` is the paper's: "higher" (a > b) or "lower". Holds when the CI excludes 0 on the paper's side and
    the adjusted p is below ``alpha``; does not hold when it excludes 0 on the other side (same p condition);
    inconclusive otherwise (a tie, a CI that straddles 0, or no CI).
    """
    if direction not in ("higher", "lower"):
        raise ValueError("direction must be 'higher' or 'lower'")
    lo, hi = result.ci_low, result.ci_high
    p = result.p if p_adjusted is None else p_adjusted
    if not (np.isfinite(lo) and np.isfinite(hi)) or not np.isfinite(p) or p >= alpha:
        return INCONCLUSIVE
    sign = 1 if direction == "higher" else -1
    if (lo > 0 and sign > 0) or (hi < 0 and sign < 0):
        return HOLDS
    if (lo > 0 and sign < 0) or (hi < 0 and sign > 0):
        return FAILS
    return INCONCLUSIVE


def claim_verdict(pair_verdicts: Sequence[str]) -> str:
    """One claim's verdict from its comparisons' verdicts.

    holds: every comparison holds; partly: some hold and some significantly do not (they disagree); does not
    hold: none holds and at least one is significantly reversed (a counter-example); inconclusive: otherwise;
    not measured: no comparison was measured.
    """
    measured = [v for v in pair_verdicts if v != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    if all(v == HOLDS for v in measured):
        return HOLDS
    if HOLDS in measured and FAILS in measured:
        return PARTLY
    if FAILS in measured:
        return FAILS
    return INCONCLUSIVE
