"""Robustness compared at matched clean accuracy, by weight-space interpolation (issue 23).

ADV and ADV+C sit at different points of the clean-accuracy / robustness trade-off, so comparing their robust
accuracies alone cannot tell "less robust" from "another trade-off point". Without retraining, each fine-tuned
variant V gets a trade-off *curve*: the models ``theta(lam) = (1 - lam) * theta_base + lam * theta_V`` for a grid of
``lam`` in [0, 1] (as WiSE-FT, Wortsman et al. 2022, does between a zero-shot and a fine-tuned model), where
``theta_base`` is the checkpoint V was fine-tuned from. In the lab's recipes (``models.recipes``) ADV and ADV+C are
both fine-tuned from ``standard`` (``"init": "standard"``), so the base is the zoo's baseline; this module assumes
that and the report notes it. Floating-point parameters and buffers (BatchNorm running mean / var) are interpolated;
integer buffers (``num_batches_tracked``) are taken from V.

Each model on the path is evaluated on the same images with the lab's evaluation attack: ``robustness.
ensemble_correct`` with PGD-10 alone (eps 8/255, step 2/255, seeded random start), exactly what the ``robustness``
experiment runs, so ``lam = 1`` reproduces its per-image results. Per-image correctness is kept, so that
``matched_comparison`` can read both curves' robust accuracy at one common clean accuracy (linear interpolation
between the grid points of each curve) and bootstrap the difference over images, paired (the same images resampled
for both curves).

This is a comparison **at equal clean accuracy along the interpolation path**, not along retrained alphas: a point
of a curve other than its ends is a blend of two checkpoints, not a model any recipe trains.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from analysis import statistics as S
from analysis.robustness import ensemble_correct

__all__ = ["DEFAULT_LAMBDAS", "MIDWAY", "NOT_COMPARABLE", "Curve", "MatchedComparison", "curve_table", "init_notes",
           "interpolate_state", "interpolated_model", "matched_comparison", "matched_display", "matched_over_seeds",
           "matched_table", "tradeoff_per_image", "tradeoff_tables"]  # fmt: skip

DEFAULT_LAMBDAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
NOT_COMPARABLE = "not comparable"
ATTACK = "PGD-10 (eps 8/255, step 2/255, seeded random start)"
LEVEL_RULE = (
    "the common clean accuracy is the higher of the two fine-tuned endpoints' (lam = 1): interpolating towards "
    "the more accurate baseline raises clean accuracy, so the less accurate variant's curve can reach the more "
    "accurate one's clean accuracy, while the reverse would need a curve to fall below its own endpoint"
)

MIDWAY = "midway"
MIDWAY_RULE = (
    "both blended: the common clean accuracy halfway between the higher fine-tuned endpoint's and the baseline's "
    "(lam = 0), where both curves are blends (the default level compares one variant's trained checkpoint with a "
    "blend of the other)"
)
#: A common clean accuracy: a fraction, None (``LEVEL_RULE``) or ``MIDWAY`` (``MIDWAY_RULE``).
Level = float | str | None


# ----------------------------------------------------------------------------- interpolation


def interpolate_state(
    start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor], lam: float
) -> dict[str, torch.Tensor]:
    """``(1 - lam) * start + lam * end`` for every floating-point tensor; integer tensors (BatchNorm's
    ``num_batches_tracked``) from ``end``. Both state dicts must hold the same keys and shapes."""
    if set(start) != set(end):
        diff = sorted(set(start) ^ set(end))
        raise ValueError(f"the two networks differ: state keys {', '.join(diff[:5])} are in only one of them")
    out = {}
    for key, b in end.items():
        a = start[key]
        if a.shape != b.shape:
            raise ValueError(f"the two networks differ: {key} has shape {tuple(a.shape)} vs {tuple(b.shape)}")
        if b.is_floating_point():
            out[key] = torch.lerp(a.to(b.dtype), b, float(lam)) if 0 < lam < 1 else (a if lam == 0 else b).clone()
        else:
            out[key] = b.clone()
    return out


def interpolated_model(start: nn.Module, end: nn.Module, lam: float) -> nn.Module:
    """A copy of ``end`` (eval mode) with the weights of ``interpolate_state(start, end, lam)``."""
    model = copy.deepcopy(end)
    model.load_state_dict(interpolate_state(start.state_dict(), end.state_dict(), lam))
    return model.eval()


def init_notes(cards: Mapping[str, Mapping], base: str, variants: Sequence[str]) -> list[str]:
    """What each variant's card (``config.init``) says it was fine-tuned from, against the assumed ``base``: a
    warning where it names another checkpoint, a note where it is not recorded."""
    out = []
    for v in variants:
        init = ((cards.get(v) or {}).get("config") or {}).get("init")
        if not init:
            out.append(f"{v}: its card records no init checkpoint; assumed fine-tuned from {base}")
        elif Path(str(init)).parent.name != base and Path(str(init)).stem != base:
            out.append(f"{v}: WARNING: fine-tuned from {init}, not from {base}: its curve blends two checkpoints "
                       "that are not one fine-tune apart")  # fmt: skip
    return out


def _check_lambdas(lambdas: Sequence[float]) -> list[float]:
    lams = sorted({float(x) for x in lambdas})
    if not lams or lams[0] < 0 or lams[-1] > 1 or 1.0 not in lams:
        raise ValueError(f"lambdas {tuple(lambdas)}: need values in [0, 1] including 1 (the fine-tuned variant)")
    return lams


def tradeoff_per_image(
    start: nn.Module, end: nn.Module, images: torch.Tensor, labels: torch.Tensor,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS, batch_size: int = 256, seed: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Per lam and image: correct when clean and under the lab's PGD-10 (``ensemble_correct`` with PGD-10 alone;
    robust implies clean-correct). Columns: lam, image, clean, robust (booleans)."""
    frames = []
    for lam in _check_lambdas(lambdas):
        model = interpolated_model(start, end, lam)
        df = ensemble_correct(model, images, labels, attacks=("pgd10",), batch_size=batch_size, seed=seed)
        frames.append(pd.DataFrame({"lam": lam, "image": df["image"], "clean": df["clean"], "robust": df["pgd10"]}))
    return pd.concat(frames, ignore_index=True)


def tradeoff_tables(
    models: Mapping[str, nn.Module], base: str, variants: Sequence[str], images: torch.Tensor, labels: torch.Tensor,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS, batch_size: int = 256, seed: int = 0, progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The trade-off curve of each of ``variants`` from ``base`` on the same images: (curves, per_image).
    curves: ``curve_table``; per_image: variant, lam, image, clean, robust."""
    frames = []
    for variant in tqdm(variants, desc="trade-off curves", disable=not progress, unit="variant"):
        df = tradeoff_per_image(models[base], models[variant], images, labels, lambdas, batch_size, seed)
        df.insert(0, "variant", variant)
        frames.append(df)
    per_image = pd.concat(frames, ignore_index=True)
    return curve_table(per_image), per_image


def curve_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per variant and lam: clean_acc, robust_acc, n_images (from ``tradeoff_tables``' per-image table)."""
    g = per_image.groupby(["variant", "lam"], sort=False)
    return g.agg(clean_acc=("clean", "mean"), robust_acc=("robust", "mean"), n_images=("image", "nunique")) \
        .reset_index()  # fmt: skip


# ----------------------------------------------------------------------------- matched comparison


@dataclass
class Curve:
    """One variant's trade-off curve as per-image correctness: ``clean`` and ``robust`` are (lams, images)."""

    lams: np.ndarray
    clean: np.ndarray
    robust: np.ndarray

    def __post_init__(self) -> None:
        self.lams = np.asarray(self.lams, float)
        self.clean, self.robust = np.asarray(self.clean, float), np.asarray(self.robust, float)
        if self.clean.ndim != 2 or self.clean.shape != self.robust.shape or len(self.lams) != len(self.clean):
            raise ValueError("a curve needs clean and robust arrays of shape (lams, images), one row per lam")
        order = np.argsort(self.lams)
        self.lams, self.clean, self.robust = self.lams[order], self.clean[order], self.robust[order]

    @classmethod
    def from_per_image(cls, per_image: pd.DataFrame, variant: str) -> Curve:
        """The curve of ``variant`` from a per-image table (variant, lam, image, clean, robust)."""
        sub = per_image[per_image["variant"] == variant]
        if sub.empty:
            raise ValueError(f"no trade-off curve for {variant!r}")
        wide = lambda col: sub.pivot_table(index="lam", columns="image", values=col, aggfunc="mean")  # noqa: E731
        clean, robust = wide("clean"), wide("robust")
        return cls(clean.index.to_numpy(float), clean.to_numpy(float), robust.to_numpy(float))

    @property
    def n_images(self) -> int:
        return int(self.clean.shape[1])


@dataclass
class MatchedComparison:
    """Robust accuracy of curves a and b at the common clean accuracy ``level`` (each at its own ``lam_*`` on the
    interpolation path), their difference ``effect`` (a - b) with its paired-bootstrap 95% CI and two-sided p.
    ``status``: "comparable", or ``NOT_COMPARABLE`` (``reason`` says which curve does not reach ``level``; no
    number is extrapolated). ``resamples_dropped``: the share of bootstrap resamples in which a curve missed the
    resampled level (the CI and p are over the others)."""

    level: float
    robust_a: float
    robust_b: float
    lam_a: float
    lam_b: float
    effect: float
    ci_low: float
    ci_high: float
    p: float
    n_images: int
    status: str
    reason: str = ""
    resamples_dropped: float = 0.0
    test: str = ""

    @property
    def comparable(self) -> bool:
        return self.status != NOT_COMPARABLE

    def test_result(self) -> S.TestResult:
        return S.TestResult(self.effect, self.ci_low, self.ci_high, self.p, self.test, self.n_images)

    def row(self) -> dict[str, float | int | str]:
        return asdict(self)


def _at_level(lams: np.ndarray, clean: np.ndarray, robust: np.ndarray, level: np.ndarray):
    """Per row (resample) of ``clean`` / ``robust`` (rows, lams): robust accuracy and lam where the curve's clean
    accuracy equals ``level``, linearly interpolated between grid points; the crossing nearest lam = 1 is taken (the
    least blended model). NaN where the curve never reaches ``level``."""
    rows = clean.shape[0]
    value, at = np.full(rows, np.nan), np.full(rows, np.nan)
    found = np.isclose(clean[:, -1], level, rtol=0, atol=1e-12)
    value[found], at[found] = robust[found, -1], lams[-1]
    for j in range(len(lams) - 2, -1, -1):  # segments from lam = 1 towards the base
        hi, lo = clean[:, j + 1], clean[:, j]
        cross = ~found & ((lo - level) * (hi - level) <= 0)
        step = lo - hi
        t = np.divide(level - hi, step, out=np.zeros(rows), where=step != 0)
        value = np.where(cross, robust[:, j + 1] + t * (robust[:, j] - robust[:, j + 1]), value)
        at = np.where(cross, lams[j + 1] + t * (lams[j] - lams[j + 1]), at)
        found |= cross
    return value, at


def _level_of(a_clean: np.ndarray, b_clean: np.ndarray, level: Level, rows: int) -> np.ndarray:
    """The common clean accuracy per row: a number as given; None: the higher lam = 1 endpoint (``LEVEL_RULE``);
    ``MIDWAY``: halfway from there to the curves' start, the baseline at lam = 0 (``MIDWAY_RULE``)."""
    top = np.maximum(a_clean[:, -1], b_clean[:, -1])
    if level is None:
        return top
    if level == MIDWAY:
        return (top + (a_clean[:, 0] + b_clean[:, 0]) / 2) / 2
    return np.full(rows, float(level))


def matched_comparison(
    curve_a: Curve, curve_b: Curve, level: Level = None, n_resamples: int = S.N_RESAMPLES, seed: int = 0,
    names: tuple[str, str] = ("a", "b"),
) -> MatchedComparison:  # fmt: skip
    """Robust accuracy of ``curve_a`` minus ``curve_b`` at one clean accuracy, on the same images.

    ``level``: the common clean accuracy (a fraction); None uses ``LEVEL_RULE`` (the higher of the two lam = 1
    clean accuracies) and ``MIDWAY`` uses ``MIDWAY_RULE``, each recomputed in every resample so that the CI
    carries its uncertainty. Each curve's robust
    accuracy at the level is linearly interpolated between its grid points along the interpolation path (equal
    clean accuracy **along the weight interpolation, not along retrained alphas**). The CI is the percentile
    interval of ``n_resamples`` paired bootstrap resamples of the images (the same images for both curves); the
    two-sided p is ``statistics.paired_bootstrap``'s. If a curve does not reach the level the result is
    ``NOT_COMPARABLE`` (nothing is extrapolated).
    """
    return _matched(curve_a, curve_b, level, n_resamples, seed, names)[0]


def _interval(draws: np.ndarray) -> tuple[float, float, float]:
    """Percentile 95% CI and two-sided bootstrap p (``statistics.paired_bootstrap``'s formula) of ``draws``."""
    if not len(draws):
        return math.nan, math.nan, math.nan
    lo, hi = (float(x) for x in np.quantile(draws, [(1 - S.LEVEL) / 2, (1 + S.LEVEL) / 2]))
    tail = min((draws <= 0).sum(), (draws >= 0).sum())
    p = 1.0 if np.all(draws == 0) else min(1.0, 2 * (tail + 1) / (len(draws) + 1))
    return lo, hi, float(p)


def _matched(
    curve_a: Curve, curve_b: Curve, level: Level, n_resamples: int, seed: int, names: tuple[str, str]
) -> tuple[MatchedComparison, np.ndarray]:
    """``matched_comparison`` and its finite bootstrap draws of the difference."""
    if curve_a.n_images != curve_b.n_images:
        raise ValueError(f"the curves are on different images: {curve_a.n_images} vs {curve_b.n_images}")
    n = curve_a.n_images
    if n == 0:
        raise ValueError("the curves hold no images")
    acc = lambda c, w: (w @ c.clean.T / n, w @ c.robust.T / n)  # noqa: E731  (rows of image counts -> accuracies)
    ones = np.ones((1, n))
    (ca, ra), (cb, rb) = acc(curve_a, ones), acc(curve_b, ones)
    lev = _level_of(ca, cb, level, 1)
    va, la = _at_level(curve_a.lams, ca, ra, lev)
    vb, lb = _at_level(curve_b.lams, cb, rb, lev)
    test = f"paired bootstrap over images ({n_resamples:,} resamples) at matched clean accuracy"
    missing = [(name, c) for name, c, v in ((names[0], ca, va), (names[1], cb, vb)) if not np.isfinite(v[0])]
    if missing:
        reason = "; ".join(f"{name}'s curve spans clean accuracy {100 * c.min():.1f}-{100 * c.max():.1f}%, not "
                           f"{100 * lev[0]:.1f}%" for name, c in missing)  # fmt: skip
        res = MatchedComparison(float(lev[0]), float(va[0]), float(vb[0]), float(la[0]), float(lb[0]), math.nan,
                                math.nan, math.nan, math.nan, n, NOT_COMPARABLE, reason, test=test)  # fmt: skip
        return res, np.zeros(0)
    rng = np.random.default_rng(seed)
    diffs = []
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_resamples - start)).astype(float)
        (bca, bra), (bcb, brb) = acc(curve_a, w), acc(curve_b, w)
        blev = _level_of(bca, bcb, level, len(w))
        diffs.append(_at_level(curve_a.lams, bca, bra, blev)[0] - _at_level(curve_b.lams, bcb, brb, blev)[0])
    d = np.concatenate(diffs)
    kept = d[np.isfinite(d)]
    lo, hi, p = _interval(kept)
    res = MatchedComparison(float(lev[0]), float(va[0]), float(vb[0]), float(la[0]), float(lb[0]),
                            float(va[0] - vb[0]), lo, hi, p, n, "comparable", "", float(1 - len(kept) / len(d)),
                            test)  # fmt: skip
    return res, kept


def matched_over_seeds(
    per_image: pd.DataFrame, a: str, b: str, level: Level = None, n_resamples: int = S.N_RESAMPLES,
    seed: int = 0,
) -> tuple[MatchedComparison, dict[int, MatchedComparison]]:  # fmt: skip
    """With a ``seed`` column (one checkpoint per variant and training seed): each seed's own matched comparison
    (its own curves and level), and their pooled one: the mean of the per-seed differences with a two-level
    bootstrap CI (seeds resampled, then one image-bootstrap draw of each resampled seed). Seeds whose curves do not
    reach their level are left out (the pooled ``reason`` names them); none left: ``NOT_COMPARABLE``."""
    per_seed, draws = {}, {}
    for s, g in per_image.groupby("seed", sort=True):
        res, kept = _matched(Curve.from_per_image(g, a), Curve.from_per_image(g, b), level, n_resamples,
                             seed + int(s), (a, b))  # fmt: skip
        per_seed[int(s)] = res
        if res.comparable and len(kept):
            draws[int(s)] = kept
    left_out = [f"seed {s}: {r.reason}" for s, r in per_seed.items() if not r.comparable]
    test = f"two-level bootstrap at matched clean accuracy, seeds then images ({n_resamples:,} resamples)"
    n = min((r.n_images for s, r in per_seed.items() if s in draws), default=0)  # per seed, as the claims count
    mean = lambda f: float(np.mean([getattr(per_seed[s], f) for s in draws])) if draws else math.nan  # noqa: E731
    if not draws:
        return MatchedComparison(mean("level"), math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                                 math.nan, n, NOT_COMPARABLE, "; ".join(left_out), test=test), per_seed  # fmt: skip
    rng = np.random.default_rng(seed)
    seeds = list(draws)
    pick = np.stack([draws[s][rng.integers(0, len(draws[s]), n_resamples)] for s in seeds], axis=1)  # (B, seeds)
    which = rng.integers(0, len(seeds), size=(n_resamples, len(seeds)))
    lo, hi, p = _interval(np.take_along_axis(pick, which, axis=1).mean(axis=1))
    pooled = MatchedComparison(mean("level"), mean("robust_a"), mean("robust_b"), mean("lam_a"), mean("lam_b"),
                               mean("effect"), lo, hi, p, n, "comparable", "; ".join(left_out), test=test)  # fmt: skip
    return pooled, per_seed


def matched_table(per_image: pd.DataFrame, a: str, b: str, level: Level = None,
                  n_resamples: int = S.N_RESAMPLES, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """``matched_comparison`` of variants ``a`` and ``b`` from a per-image table, as a one-row table (a, b and the
    fields of ``MatchedComparison``)."""
    res = matched_comparison(Curve.from_per_image(per_image, a), Curve.from_per_image(per_image, b), level,
                             n_resamples, seed, names=(a, b))  # fmt: skip
    return pd.DataFrame([{"a": a, "b": b, **res.row()}])


def _lam(x: float) -> str:
    return f"lam {x:.2f}" if np.isfinite(x) else "not reached"


def matched_display(matched: pd.DataFrame) -> pd.DataFrame:
    """``matched_table`` rows for the report: accuracies as percentages, the difference with its CI in points."""
    from analysis.formatting import interval, p_value, pct

    return pd.DataFrame({
        "comparison": [f"{r.a} vs {r.b}" + (" (control)" if getattr(r, "kind", "paper") == "control" else "")
                       for r in matched.itertuples()],
        "level": matched["level_rule"] if "level_rule" in matched else "higher endpoint",
        "clean accuracy": matched["level"].map(pct),
        "robust a (lam)": [f"{pct(r.robust_a)} ({_lam(r.lam_a)})" for r in matched.itertuples()],
        "robust b (lam)": [f"{pct(r.robust_b)} ({_lam(r.lam_b)})" for r in matched.itertuples()],
        "a - b [95% CI]": [interval(r.effect, r.ci_low, r.ci_high) for r in matched.itertuples()],
        "p": matched["p"].map(p_value), "status": matched["status"], "n": matched["n_images"],
    })  # fmt: skip
