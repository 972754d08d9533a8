"""Tests and intervals behind the claims' verdicts (scipy.stats; nothing hand-rolled but Holm's step-down).

* ``mcnemar``: two variants' per-image correctness on the same images: exact McNemar test (a two-sided binomial
  test on the discordant pairs) and a paired-bootstrap 95% CI of the accuracy difference.
* ``paired_bootstrap``: a per-image continuous metric of two variants on the same images: the mean difference, its
  percentile 95% CI from >= 10,000 seeded resamples of the images, and the bootstrap p-value.
* ``welch``: one number per seed for each variant (training repeated per seed): Welch's t-test and its CI.
* ``proportion``: a share with its Clopper-Pearson (exact) 95% CI.
* ``holm``: Holm's step-down adjustment of the p-values of the comparisons of one claim.
* ``pair_verdict`` / ``claim_verdict``: the verdict rule (see ``pair_verdict``).
* ``two_level_bootstrap`` / ``two_level_paired_bootstrap``: seeds, then images within seeds (n = seeds x images);
  ``adjust`` / ``adjust_across``: Holm or Benjamini-Hochberg over any set of comparisons (a whole claims table);
  ``noninferiority``: a one-sided p for "a is not worse than b by more than a margin" (paired images, or Welch over
  seeds).
* ``VERDICT_RULE``: the one written rule; ``pair_verdict`` and ``noninferiority_verdict`` apply it, and the README,
  REPORT.md and every claim's rule quote it.

With one trained checkpoint per variant, image-level tests speak about these checkpoints, not about the training
method: a second training run could land elsewhere (``scope``: >= ``MIN_METHOD_SEEDS`` seeds per variant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

HOLDS, PARTLY, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "partly", "does not hold", "inconclusive", "not measured"
QUICK_VERDICT = "not decided at quick scale"
LEVEL = 0.95
N_RESAMPLES = 10_000
ALPHA = 0.05
#: How the report adjusts p-values across all its comparisons (a key of ``ADJUSTMENTS``).
REPORT_ADJUSTMENT = "holm"
#: The one written verdict rule: ``pair_verdict``, ``noninferiority_verdict`` and ``claim_verdict`` are this, and
#: the README, REPORT.md and every claim's rule quote it.
VERDICT_RULE = (
    "A comparison holds when its 95% CI excludes the null value (0 for a difference, 50% for a share) on the "
    "paper's side and its adjusted p < 0.05; it does not hold when its 95% CI excludes the null value on the other "
    "side and its adjusted p < 0.05; otherwise it is inconclusive. A non-inferiority comparison holds when its 95% "
    "CI lies above minus the margin and its adjusted one-sided non-inferiority p < 0.05, and does not hold when its "
    "95% CI lies below minus the margin. The adjusted p is Holm's over every comparison of the report. A verdict "
    "over several comparisons (the paper's pairs, or the controls) holds when all hold, is partly when some hold "
    "and some do not hold, does not hold when some do not hold and none holds, and is inconclusive otherwise."
)
#: Seeds per variant from which a verdict speaks about the training method rather than about these checkpoints.
MIN_METHOD_SEEDS = 3
SCOPE_METHOD, SCOPE_CHECKPOINTS = "about the training method", "about these checkpoints"


def scope(n_seeds: int | None) -> str:
    """What a verdict on ``n_seeds`` independently trained checkpoints per variant speaks about."""
    return SCOPE_METHOD if (n_seeds or 1) >= MIN_METHOD_SEEDS else SCOPE_CHECKPOINTS


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


def pair_verdict(
    result: TestResult, direction: str, p_adjusted: float | None = None, alpha: float = ALPHA, null: float = 0.0
) -> str:
    """The verdict on one comparison (``VERDICT_RULE``) from its 95% CI of ``effect`` and its adjusted p-value.

    ``direction`` is the paper's: "higher" (effect > ``null``) or "lower". Holds when the CI excludes ``null`` on
    the paper's side and the adjusted p is below ``alpha``; does not hold when it excludes ``null`` on the other
    side and the adjusted p is below ``alpha``; inconclusive otherwise (a tie, a CI that straddles ``null``, a CI
    that excludes it with an adjusted p of ``alpha`` or more, or no CI).
    """
    _check_direction(direction)
    lo, hi = result.ci_low, result.ci_high
    p = result.p if p_adjusted is None else p_adjusted
    if not (np.isfinite(lo) and np.isfinite(hi)) or not np.isfinite(p) or p >= alpha:
        return INCONCLUSIVE
    above, below = lo > null, hi < null
    if (above and direction == "higher") or (below and direction == "lower"):
        return HOLDS
    if above or below:
        return FAILS
    return INCONCLUSIVE


def noninferiority_verdict(
    result: TestResult, margin: float, direction: str = "higher", p_adjusted: float | None = None,
    alpha: float = ALPHA,
) -> str:  # fmt: skip
    """The verdict on a non-inferiority comparison (``VERDICT_RULE``): holds when the 95% CI lies on the paper's
    side of minus the margin ("higher": above -margin; "lower": below +margin) and the adjusted one-sided
    non-inferiority p (``result.p``, from ``noninferiority``) is below ``alpha``; does not hold when the CI lies
    entirely beyond the margin on the other side; inconclusive otherwise."""
    _check_direction(direction)
    lo, hi = result.ci_low, result.ci_high
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return INCONCLUSIVE
    p = result.p if p_adjusted is None else p_adjusted
    inside = lo > -margin if direction == "higher" else hi < margin
    beyond = hi < -margin if direction == "higher" else lo > margin
    if inside and np.isfinite(p) and p < alpha:
        return HOLDS
    return FAILS if beyond else INCONCLUSIVE


def _check_direction(direction: str) -> None:
    if direction not in ("higher", "lower"):
        raise ValueError("direction must be 'higher' or 'lower'")


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


# --- verdicts about training methods (issue 23): seeds x images, adjustment across a report, non-inferiority ---

ADJUSTMENTS = {"holm": "Holm step-down (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}


def _per_seed(values: Mapping[Any, Sequence[float]] | Sequence[Sequence[float]]) -> list[np.ndarray]:
    """One finite float array per seed (a mapping seed -> values, or a sequence of per-seed values)."""
    groups = list(values.values()) if isinstance(values, Mapping) else list(values)
    out = [a[np.isfinite(a)] for a in (_finite(g) for g in groups)]
    if not out or any(len(a) == 0 for a in out):
        raise ValueError("two-level bootstrap needs at least one seed, each with at least one finite value")
    return out


def _two_level_means(groups: list[np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """Resampled grand means: draw len(groups) seeds with replacement, then each drawn seed's images with
    replacement (independently each time it is drawn), and average the per-seed means (each seed weighs the same)."""
    rng = np.random.default_rng([seed, 23])
    s = len(groups)
    drawn = rng.integers(0, s, size=(n_resamples, s))  # resample b, slot k -> seed
    slot_means = np.empty((n_resamples, s))
    for k in range(s):
        for g in range(s):
            rows = np.flatnonzero(drawn[:, k] == g)
            if len(rows):
                slot_means[rows, k] = bootstrap_means(groups[g], len(rows), int(rng.integers(2**32)))
    return slot_means.mean(axis=1)


def _two_level_result(groups: list[np.ndarray], n_resamples: int, seed: int, test: str) -> TestResult:
    boot = _two_level_means(groups, n_resamples, seed)
    lo, hi = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    estimate = float(np.mean([g.mean() for g in groups]))
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    constant_zero = all(np.all(g == 0) for g in groups)
    p = 1.0 if constant_zero else min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    return TestResult(estimate, float(lo), float(hi), p, f"{test} ({n_resamples:,} resamples)",
                      n_images=min(len(g) for g in groups), n_seeds=len(groups))  # fmt: skip


def two_level_bootstrap(
    values: Mapping[Any, Sequence[float]] | Sequence[Sequence[float]], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> TestResult:
    """Mean of a per-image metric over seeds (the mean of the per-seed means) and its percentile 95% CI from a
    two-level bootstrap: seeds resampled, then images within each resampled seed.

    Pooling all seeds' images into one bootstrap ignores that a second training run lands elsewhere; this CI
    includes the seed-to-seed spread. With one seed it is the image bootstrap of that seed. ``n_seeds`` x
    ``n_images`` (the smallest per-seed count) is the n; p tests mean = 0 as ``paired_bootstrap`` does.
    """
    return _two_level_result(_per_seed(values), n_resamples, seed, "two-level bootstrap, seeds then images")


def two_level_paired_bootstrap(
    a: Mapping[Any, Sequence[float]], b: Mapping[Any, Sequence[float]], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> TestResult:
    """Paired difference a - b of a per-image metric, seed by seed (seed s of a with seed s of b, the same images
    in the same order), with its two-level bootstrap 95% CI and p (see ``two_level_bootstrap``)."""
    if set(a) != set(b):
        raise ValueError(f"paired variants need the same seeds: {sorted(a)} vs {sorted(b)}")
    diffs = []
    for s in sorted(a):
        x, y = _finite(a[s]), _finite(b[s])
        if x.shape != y.shape:
            raise ValueError(f"seed {s}: paired samples differ in length: {x.shape} vs {y.shape}")
        diffs.append(x - y)
    return _two_level_result(_per_seed(diffs), n_resamples, seed, "two-level paired bootstrap, seeds then images")


def n_label(result: TestResult) -> str:
    """The n of a result as "seeds x images" (or "images" alone without seeds)."""
    if result.n_seeds is None:
        return f"{result.n_images} images"
    return f"{result.n_seeds} seed(s) x {result.n_images} images"


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control; input order, NaN stays NaN and
    does not count in m). Controls the false discovery rate, not the family-wise error as Holm does."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    keep = np.isfinite(p)
    if keep.any():
        out[keep] = stats.false_discovery_control(p[keep], method="bh")
    return out.tolist()


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values across an arbitrary set of comparisons: ``method`` "holm" or "bh" (see ADJUSTMENTS)."""
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    raise ValueError(f"unknown adjustment {method!r}; known: {', '.join(ADJUSTMENTS)}")


def adjust_across(table: pd.DataFrame, p_column: str = "p", method: str = "holm") -> pd.Series:
    """``adjust`` over every row of a claims table (e.g. ``claim_tests.csv``: all comparisons of all claims), as a
    Series aligned with ``table``'s index named ``p_<method>_all``. The table itself is not changed."""
    if p_column not in table.columns:
        raise ValueError(f"no column {p_column!r} in the table; columns: {', '.join(map(str, table.columns))}")
    return pd.Series(adjust(table[p_column].to_numpy(float), method), index=table.index, name=f"p_{method}_all")


def noninferiority(
    a: Sequence[float], b: Sequence[float], margin: float, direction: str = "higher", method: str = "t",
    n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> TestResult:  # fmt: skip
    """Non-inferiority of a to b: one-sided p of H0 "a is worse than b by ``margin`` or more".

    ``direction`` "higher": a metric where larger is better (H0: mean(a - b) <= -margin); "lower": smaller is
    better (H0: mean(a - b) >= +margin). On paired images, ``method`` "t": one-sided paired t-test
    (scipy.stats.ttest_1samp of the differences against the margin); "bootstrap": the share of
    ``paired_bootstrap``-style resampled means on H0's side (+1 smoothing); the CI is the two-sided paired-bootstrap
    95% CI of a - b. ``method`` "welch": a and b are independent per-seed values (one training run each): one-sided
    Welch t-test of a + margin against b (or a - margin for "lower"), and Welch's two-sided 95% CI of a - b.
    """
    if margin < 0:
        raise ValueError(f"the non-inferiority margin must be >= 0, got {margin}")
    _check_direction(direction)
    if method == "welch":
        return _noninferiority_welch(a, b, margin, direction)
    boot_res = paired_bootstrap(a, b, n_resamples, seed)
    x, y = _finite(a), _finite(b)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    bound, alternative = (-margin, "greater") if direction == "higher" else (margin, "less")
    if len(d) < 2:
        p = math.nan
    elif method == "t":
        if np.all(d == d[0]):  # no spread: the t statistic is undefined, the answer is not
            p = 0.0 if (d[0] > bound if direction == "higher" else d[0] < bound) else 1.0
        else:
            p = float(stats.ttest_1samp(d, bound, alternative=alternative).pvalue)
    elif method == "bootstrap":
        means = bootstrap_means(d, n_resamples, seed)
        on_h0 = (means <= bound).sum() if direction == "higher" else (means >= bound).sum()
        p = float((on_h0 + 1) / (n_resamples + 1))
    else:
        raise ValueError(f"method must be 't', 'bootstrap' or 'welch', got {method!r}")
    test = f"non-inferiority, margin {margin:g}, one-sided ({'paired t' if method == 't' else 'bootstrap'})"
    return TestResult(boot_res.effect, boot_res.ci_low, boot_res.ci_high, p, test, int(keep.sum()))


def _noninferiority_welch(a: Sequence[float], b: Sequence[float], margin: float, direction: str) -> TestResult:
    x, y = _finite(a), _finite(b)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    base = welch(x, y)
    test = f"non-inferiority, margin {margin:g}, one-sided (Welch t over seeds)"
    if not np.isfinite(base.ci_low):
        return TestResult(base.effect, base.ci_low, base.ci_high, math.nan, test, n_seeds=base.n_seeds)
    shifted = x + margin if direction == "higher" else x - margin
    alternative = "greater" if direction == "higher" else "less"
    p = float(stats.ttest_ind(shifted, y, equal_var=False, alternative=alternative).pvalue)
    return TestResult(base.effect, base.ci_low, base.ci_high, p, test, n_seeds=base.n_seeds)
