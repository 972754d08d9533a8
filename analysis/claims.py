"""The paper's claims, tested on our measurements: each with its effect, 95% CI, test, p-value, n and verdict.

Every claim compares variants by their **roles** (``analysis.roles``): the paper's pairs (constrained vs its
unconstrained counterpart: C vs standard, ADV+C vs ADV) and, when the zoo has them, the controls that isolate the
constraint (C vs standard+jitter, ADV+C vs ADV-mixed). Tests (``analysis.statistics``): per-image correctness of two
variants on the same images -> exact McNemar with a paired-bootstrap CI; per-image continuous metrics -> paired
bootstrap (10,000 seeded resamples); one number per training seed -> Welch's t-test. The p-values of one claim's
comparisons are Holm-adjusted. A comparison holds when its CI excludes 0 in the paper's direction (adjusted p <
0.05), does not hold when it excludes 0 the other way (also only with adjusted p < 0.05), and is inconclusive
otherwise; the claim holds when every comparison holds, partly when they disagree, does not hold when one is
reversed and none holds.

With one trained checkpoint per variant, image-level tests speak about these checkpoints, not about the training
method. In quick mode every measured claim reads "not decided at quick scale".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis import roles as R
from analysis import statistics as S
from analysis.formatting import interval, num, p_value, pct
from analysis.paper import FIGURE_SHORT, PAPER, PAPER_SOURCE  # noqa: F401 (re-exported)
from analysis.statistics import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, PARTLY, QUICK_VERDICT
from models.roles import paper_names

VERDICTS = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, NOT_MEASURED, QUICK_VERDICT)
CLAIM_COLUMNS = ["key", "claim", "paper", "paper_figure", "ours", "effect_ci", "test", "p", "n", "verdict", "rule"]
TEST_COLUMNS = ["key", "comparison", "kind", "metric", "direction", "effect", "ci_low", "ci_high", "unit", "test",
                "p", "p_holm", "n_images", "n_seeds", "verdict"]  # fmt: skip
PROBE_FIGURES = {"channel_translation": "fig6", "randomised_centre": "fig8", "sliding_puzzle": "fig10"}
CHECKPOINT_NOTE = ("one trained checkpoint per variant: image-level tests speak about these checkpoints, not about "
                   "the training method")  # fmt: skip

Results = Mapping[str, Mapping[str, pd.DataFrame]]


@dataclass
class Claim:
    """One claim: what the paper says, what we measured, the tests behind the verdict and the rule."""

    key: str
    claim: str
    paper: str
    paper_figure: str
    ours: str
    verdict: str
    rule: str
    tests: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The claims.csv row: the tests summarised as text (``claim_tests.csv`` has them as numbers)."""
        unit = lambda t: t.get("unit", "points")  # noqa: E731
        effect = "; ".join(f"{t['comparison']}: {interval(t['effect'], t['ci_low'], t['ci_high'], unit(t))}"
                           for t in self.tests)  # fmt: skip
        tests = "; ".join(dict.fromkeys(t["test"].split(" (")[0] for t in self.tests))
        p = "; ".join(f"{t['comparison']}: {p_value(t['p'])} (Holm {p_value(t['p_holm'])[2:]})" for t in self.tests)
        n = "; ".join(dict.fromkeys(_n_text(t) for t in self.tests))
        return {"key": self.key, "claim": self.claim, "paper": self.paper, "paper_figure": self.paper_figure,
                "ours": self.ours, "effect_ci": effect or "-", "test": tests or "-", "p": p or "-", "n": n or "-",
                "verdict": self.verdict, "rule": self.rule}  # fmt: skip

    def document(self) -> dict[str, Any]:
        """The claims.json entry: the row plus every test."""
        return {**self.row(), "tests": [_jsonable(t) for t in self.tests]}


def _n_text(t: Mapping[str, Any]) -> str:
    parts = []
    if t.get("n_images"):
        parts.append(f"{int(t['n_images'])} images")
    if t.get("n_seeds"):
        parts.append(f"{int(t['n_seeds'])} seed(s)")
    return ", ".join(parts) or "-"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def not_measured(key: str, claim: str, paper: str, paper_figure: str, rule: str, why: str) -> Claim:
    return Claim(key, claim, paper, paper_figure, f"not measured ({why})", NOT_MEASURED, rule)


# ----------------------------------------------------------------------------- comparisons -> verdict


def decide(
    key: str, comps: Sequence[R.Comparison], results: Sequence[S.TestResult], direction: str, metric: str,
    unit: str = "points",
) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """Holm-adjust the comparisons' p-values, give each its verdict, and the claim's verdict."""
    adjusted = S.holm([r.p for r in results])
    tests = []
    for comp, res, p_adj in zip(comps, results, adjusted, strict=True):
        tests.append({"key": key, "comparison": comp.label, "kind": comp.kind, "metric": metric,
                      "direction": direction, **res.row(), "unit": unit, "p_holm": p_adj,
                      "verdict": S.pair_verdict(res, direction, p_adj)})  # fmt: skip
    return S.claim_verdict([t["verdict"] for t in tests]), tests


def _ours(tests: Sequence[Mapping[str, Any]], values: Mapping[str, str]) -> str:
    """Our figures per comparison and its verdict (the effect, CI and p are the row's own columns)."""
    return "; ".join(f"{values.get(t['comparison'], t['comparison']).rstrip(';')} ({t['verdict']})" for t in tests)


def _rule(metric: str, direction: str, test: str) -> str:
    rel = ">" if direction == "higher" else "<"
    return (f"{metric}: constrained {rel} its counterpart (C vs standard, ADV+C vs ADV; controls where present); "
            f"{test}; per comparison: holds if the 95% CI excludes 0 on the paper's side and Holm-adjusted p < 0.05, "
            "does not hold if it excludes 0 on the other side with adjusted p < 0.05, else inconclusive")  # fmt: skip


def paired_claim(
    key: str, claim: str, paper: str, fig: str, metric: str, direction: str, per_variant: Mapping[str, np.ndarray],
    roles: Mapping[str, str], binary: bool = False, pairs: Sequence[tuple[str, str]] = R.PAPER_PAIRS,
) -> Claim:  # fmt: skip
    """A claim on a per-image metric of variants measured on the same images (``per_variant``: aligned arrays)."""
    test = "exact McNemar + paired bootstrap CI" if binary else "paired bootstrap (10,000 resamples)"
    rule = _rule(metric, direction, test)
    comps = [c for c in R.comparisons(roles, pairs) if c.a in per_variant and c.b in per_variant]
    if not comps:
        return not_measured(key, claim, paper, fig, rule, "no pair of the paper's roles among the variants")
    test_fn: Callable[..., S.TestResult] = S.mcnemar if binary else S.paired_bootstrap
    results = [test_fn(per_variant[c.a], per_variant[c.b]) for c in comps]
    unit = "points" if binary else "value"
    verdict, tests = decide(key, comps, results, direction, metric, unit)
    fmt = (lambda v: pct(np.mean(v))) if binary else (lambda v: num(np.nanmean(v)))  # noqa: E731
    values = {c.label: f"{c.a} {fmt(per_variant[c.a])} vs {c.b} {fmt(per_variant[c.b])};" for c in comps}
    return Claim(key, claim, paper, fig, _ours(tests, values), verdict, rule, tests)


def seeded_claim(
    key: str, claim: str, paper: str, fig: str, metric: str, df: pd.DataFrame, value: str,
    roles: Mapping[str, str], pairs: Sequence[tuple[str, str]] = R.PAPER_PAIRS, direction: str = "higher",
) -> Claim:  # fmt: skip
    """A claim on one number per training seed (``df``: variant, seed, ``value``), by Welch's t-test."""
    rule = _rule(metric, direction, "Welch t-test over seeds")
    comps = [c for c in R.comparisons(roles, pairs) if {c.a, c.b} <= set(df["variant"])]
    if not comps:
        return not_measured(key, claim, paper, fig, rule, "no pair of the paper's roles among the variants")
    get = lambda v: df.loc[df["variant"] == v, value].astype(float).to_numpy()  # noqa: E731
    results = [S.welch(get(c.a), get(c.b)) for c in comps]
    verdict, tests = decide(key, comps, results, direction, metric)
    sd = lambda v: float(np.std(get(v), ddof=1)) if len(get(v)) > 1 else None  # noqa: E731
    values = {c.label: f"{c.a} {pct(get(c.a).mean(), sd(c.a))} vs {c.b} {pct(get(c.b).mean(), sd(c.b))};"
              for c in comps}  # fmt: skip
    return Claim(key, claim, paper, fig, _ours(tests, values), verdict, rule, tests)


# ----------------------------------------------------------------------------- helpers on the per-image tables


def per_variant(df: pd.DataFrame, value: str, by: Sequence[str] = ("image",)) -> dict[str, np.ndarray]:
    """variant -> ``value`` aligned on ``by`` (the images every variant has, in order)."""
    wide = df.pivot_table(index=list(by), columns="variant", values=value, aggfunc="mean", sort=True).dropna()
    return {str(v): wide[v].to_numpy(float) for v in wide.columns}


def part(results: Results, experiment: str, name: str | None = None) -> pd.DataFrame | None:
    parts = results.get(experiment) or {}
    df = parts.get(name or experiment)
    return df if df is not None and len(df) else None


# ----------------------------------------------------------------------------- the claims


def claim_discontinuity(results: Results, roles: Mapping[str, str]) -> Claim:
    """Section 2, Figs. 1-2: for the baseline, most anchors have a perturbed copy outranked by a same-class image."""
    key, claim, paper = "discontinuity", "Standard models are semantically discontinuous", "2.2, Figs. 1-2"
    rule = ("baseline: share of anchors with at least one perturbed copy (any kind, level) that a same-class test "
            "image outranks (is nearer by DS); holds if its Clopper-Pearson 95% CI lies above 50%, does not hold if "
            "below, else inconclusive")  # fmt: skip
    exist, base = part(results, "neighbourhood_rank", "existence"), R.with_role(roles, R.BASELINE)
    if exist is None or base is None or base not in set(exist["variant"]):
        return not_measured(key, claim, paper, FIGURE_SHORT["fig2"], rule, "no neighbourhood ranks for the baseline")
    row = exist.set_index("variant").loc[base]
    res = S.proportion(int(row["outranked_anchors"]), int(row["n_anchors"]))
    verdict = HOLDS if res.ci_low > 0.5 else FAILS if res.ci_high < 0.5 else INCONCLUSIVE
    test = {"key": key, "comparison": base, "kind": "paper", "metric": "share of anchors outranked",
            "direction": "higher", **res.row(), "unit": "share", "p_holm": res.p, "verdict": verdict}  # fmt: skip
    others = ", ".join(f"{v} {pct(r['share'])}" for v, r in exist.set_index("variant").iterrows() if v != base)
    ours = (f"{base}: {pct(res.effect)} [{pct(res.ci_low)}, {pct(res.ci_high)}] of {res.n_images} anchors have a "
            f"copy outranked, among a median {int(row['median_candidates'])} same-class candidates"
            + (f"; {others}" if others else ""))  # fmt: skip
    return Claim(key, claim, paper, FIGURE_SHORT["fig2"], ours, verdict, rule, [test])


def claim_continuity(results: Results, roles: Mapping[str, str]) -> Claim:
    """Fig. 3: the constrained models have the smaller DS (per image: level-1 DS summed over the kinds)."""
    key, claim, paper = "continuity", "The continuity constraint lowers DS under colour perturbations", "4.2, Fig. 3"
    df = part(results, "continuity", "per_image")
    metric = "per-image level-1 DS summed over the kinds"
    if df is None:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig3"], _rule(metric, "lower", "paired bootstrap"),
                            "no per-image DS")  # fmt: skip
    level1 = df[df["level"] == 1].groupby(["variant", "image"], sort=False)["ds"].sum().reset_index()
    return paired_claim(key, claim, paper, FIGURE_SHORT["fig3"], metric, "lower", per_variant(level1, "ds"), roles)


def _alpha_ends(alpha_df: pd.DataFrame, col: str) -> tuple[float, float, np.ndarray, np.ndarray]:
    lo, hi = alpha_df["alpha"].min(), alpha_df["alpha"].max()
    pick = lambda a: alpha_df.loc[alpha_df["alpha"] == a, col].astype(float).to_numpy()  # noqa: E731
    return lo, hi, pick(lo), pick(hi)


def claim_alpha_continuity(results: Results, roles: Mapping[str, str] | None = None) -> Claim:
    key, claim, paper = "alpha_continuity", "A larger alpha gives a more continuous model", "4.2, Fig. 4 (right)"
    rule = ("level-1 DS sum at the largest alpha minus at the smallest, over seeds: Welch t-test; holds if the 95% "
            "CI lies below 0 and p < 0.05, does not hold if above and p < 0.05, else inconclusive")  # fmt: skip
    df = part(results, "alpha_sweep")
    if df is None or df["alpha"].nunique() < 2:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig4_right"], rule, "fewer than two alphas")
    lo, hi, a, b = _alpha_ends(df, "ds_level1_sum")
    res = S.welch(b, a)
    comp = R.Comparison(f"alpha {hi:g}", f"alpha {lo:g}")
    verdict, tests = decide(key, [comp], [res], "lower", "level-1 DS sum", "value")
    rho = float(df.groupby("alpha")["ds_level1_sum"].mean().reset_index().corr(method="spearman").iloc[0, 1])
    ours = _ours(tests, {comp.label: f"DS sum {num(b.mean())} vs {num(a.mean())};"}) + f"; Spearman rho {rho:.2f}"
    return Claim(key, claim, paper, FIGURE_SHORT["fig4_right"], ours, verdict, rule, tests)


def claim_alpha_accuracy(results: Results, roles: Mapping[str, str] | None = None, tolerance: float = 0.05) -> Claim:
    key, claim, paper = "alpha_accuracy", "A larger alpha costs only a little accuracy", "4.2, Fig. 4 (left)"
    rule = (
        f"accuracy at the largest alpha minus at the smallest, over seeds (Welch CI): holds if the CI lies above "
        f"-{100 * tolerance:g} points (a small cost at most), does not hold if it lies below, else inconclusive"
    )
    df = part(results, "alpha_sweep")
    if df is None or df["alpha"].nunique() < 2:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig4_left"], rule, "fewer than two alphas")
    lo, hi, a, b = _alpha_ends(df, "test_acc")
    res = S.welch(b, a)
    comp = R.Comparison(f"alpha {hi:g}", f"alpha {lo:g}")
    _, tests = decide(key, [comp], [res], "higher", "test accuracy")
    ok = math.isfinite(res.ci_low) and res.ci_low > -tolerance
    bad = math.isfinite(res.ci_high) and res.ci_high < -tolerance
    verdict = HOLDS if ok else FAILS if bad else INCONCLUSIVE
    tests[0]["verdict"] = verdict
    ours = _ours(tests, {comp.label: f"accuracy {pct(b.mean())} vs {pct(a.mean())};"})
    return Claim(key, claim, paper, FIGURE_SHORT["fig4_left"], ours, verdict, rule, tests)


def claim_probe(results: Results, roles: Mapping[str, str], probe: str) -> Claim:
    """Figs. 6/8/10: the constrained models lose more accuracy on semantics-destroying probes."""
    fig = PROBE_FIGURES[probe]
    key, paper = f"probe_{probe}", f"4.3, Fig. {fig[3:]}"
    claim = f"Constrained models rely less on non-semantic cues ({probe.replace('_', ' ')})"
    metric = f"per-image share of the {probe.replace('_', ' ')} levels classified correctly (clean excluded)"
    df = part(results, "probes", "per_image")
    if df is None or probe not in set(df["probe"]):
        return not_measured(key, claim, paper, FIGURE_SHORT[fig], _rule(metric, "lower", "paired bootstrap"),
                            "probe not run")  # fmt: skip
    sub = df[(df["probe"] == probe) & (df["level_label"] != "clean")]
    return paired_claim(key, claim, paper, FIGURE_SHORT[fig], metric, "lower", per_variant(sub, "correct"), roles)


def _table2_text(a: str, b: str) -> str:
    t = PAPER["table2"]
    return "; ".join(f"{net}: {a} {t[net][a]['adv']:.2f}% vs {b} {t[net][b]['adv']:.2f}%"
                     for net in ("ResNet18 / CIFAR-100", "ResNet50 / ImageNet"))  # fmt: skip


def claim_robustness(
    results: Results, roles: Mapping[str, str], pair: tuple[str, str], strongest: bool = False
) -> Claim:
    """Table 2: ``pair`` (roles) under the paper's PGD-10 or, with ``strongest``, the per-image worst case."""
    names = paper_names()
    a, b = names[pair[0]], names[pair[1]]
    attack = "worst case over PGD-10, APGD-CE and APGD-T" if strongest else "PGD-10 (eps 8/255, step 2/255)"
    key = "robustness_strongest" if strongest else f"robustness_{a}_vs_{b}"
    claim = (f"{a} is more robust than {b} under the strongest attack we ran" if strongest
             else f"{a} is more robust than {b} under PGD-10")  # fmt: skip
    paper = "4.4, Table 2 (re-checked)" if strongest else "4.4, Table 2"
    experiment, column = ("attack_audit", "worst") if strongest else ("robustness", "pgd10")
    df = part(results, experiment, "per_image")
    if df is None:
        return not_measured(key, claim, paper, _table2_text(a, b), _rule(f"robust accuracy, {attack}", "higher",
                            "exact McNemar"), f"{experiment} not run")  # fmt: skip
    return paired_claim(key, claim, paper, _table2_text(a, b), f"robust accuracy, {attack}", "higher",
                        per_variant(df, column), roles, binary=True, pairs=[pair])  # fmt: skip


def claim_mask_share(results: Results, roles: Mapping[str, str], method: str, label: str) -> Claim:
    """Figs. 11-13, measured: the constrained models put more of their attribution on the object."""
    key, claim = f"interpretability_{method}", f"Constrained models' {label} maps concentrate on the object"
    paper, fig, metric = "4.5, Figs. 11-13", FIGURE_SHORT["fig11_13"], f"{label}: per-image share inside the mask"
    df = part(results, "attributions", "per_image")
    if df is None or method not in set(df["method"]):
        return not_measured(key, claim, paper, fig, _rule(metric, "higher", "paired bootstrap"), f"{label} not run")
    sub = df[df["method"] == method]
    if not np.isfinite(sub["mask_share"].astype(float)).any():
        return not_measured(key, claim, paper, fig, _rule(metric, "higher", "paired bootstrap"),
                            "the data set has no object masks")  # fmt: skip
    return paired_claim(key, claim, paper, fig, metric, "higher", per_variant(sub, "mask_share"), roles)


def claim_transfer(results: Results, roles: Mapping[str, str], target: str | None) -> Claim:
    """Table 3: the constrained models fine-tune to a higher accuracy (``target`` None: no transfer results)."""
    df = part(results, "transfer")
    kind = str(df.loc[df["target"] == target, "kind"].iloc[0]) if df is not None and "kind" in df and \
        target in set(df["target"]) else "transfer"  # fmt: skip
    key, paper = (f"transfer_{target}" if target else "transfer"), "4.6, Table 3"
    claim = f"Constrained models transfer better (target {target}: {kind})" if target else \
        "Constrained models transfer better"  # fmt: skip
    t3 = PAPER["table3"]
    fig = "C > standard and ADV+C >= ADV on CIFAR-10, SVHN, MNIST; " + "; ".join(
        f"{tg}: {t3['C'][tg]:.2f} vs {t3['standard'][tg]:.2f}, {t3['ADV+C'][tg]:.2f} vs {t3['ADV'][tg]:.2f}%"
        for tg in t3["targets"])  # fmt: skip
    if df is None or target not in set(df["target"]):
        return not_measured(key, claim, paper, fig, _rule("test accuracy", "higher", "Welch"), "transfer not run")
    return seeded_claim(key, claim, paper, fig, f"test accuracy after fine-tuning on {target}",
                        df[df["target"] == target], "test_acc", roles)  # fmt: skip


def claim_fairness(results: Results, roles: Mapping[str, str]) -> Claim:
    """Table 4: C is less misled by the colour bias than standard."""
    key, claim, paper = "fairness", "The continuity constraint reduces a colour bias", "4.7, Table 4"
    fig = f"C {PAPER['table4']['C']:.2f}% vs standard {PAPER['table4']['standard']:.2f}%"
    df = part(results, "fairness")
    if df is None:
        return not_measured(key, claim, paper, fig, _rule("test accuracy", "higher", "Welch"), "fairness not run")
    return seeded_claim(key, claim, paper, fig, "accuracy on the colour-flipped test split", df, "test_acc", roles,
                        pairs=[(R.CONSTRAINED, R.BASELINE)])  # fmt: skip


def evaluate_claims(results: Results, roles: Mapping[str, str], decided: bool = True) -> list[Claim]:
    """Every claim from the experiments' tables (experiment -> part -> table); missing ones give "not measured".

    With ``decided=False`` (quick mode) every measured claim's verdict reads "not decided at quick scale".
    """
    from analysis.attributions import METHOD_REGISTRY

    claims = [claim_discontinuity(results, roles), claim_continuity(results, roles),
              claim_alpha_continuity(results), claim_alpha_accuracy(results),
              *[claim_probe(results, roles, p) for p in PROBE_FIGURES],
              claim_robustness(results, roles, (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL)),
              claim_robustness(results, roles, (R.CONSTRAINED, R.BASELINE)),
              claim_robustness(results, roles, (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL), strongest=True),
              *[claim_mask_share(results, roles, m.name, m.label)
                for m in METHOD_REGISTRY.values() if m.in_report]]  # fmt: skip
    transfer = part(results, "transfer")
    targets = list(dict.fromkeys(transfer["target"])) if transfer is not None else [None]
    claims += [claim_transfer(results, roles, t) for t in targets]
    claims.append(claim_fairness(results, roles))
    if not decided:
        for c in claims:
            if c.verdict != NOT_MEASURED:
                c.verdict = QUICK_VERDICT
                for t in c.tests:
                    t["verdict"] = QUICK_VERDICT
    return claims


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """claims.csv: one row per claim (CLAIM_COLUMNS)."""
    return pd.DataFrame([c.row() for c in claims], columns=CLAIM_COLUMNS)


def tests_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """claim_tests.csv: one row per comparison of every claim (TEST_COLUMNS)."""
    return pd.DataFrame([t for c in claims for t in c.tests], columns=TEST_COLUMNS)


def alpha_summary(alpha_df: pd.DataFrame, acc_col: str = "test_acc") -> pd.DataFrame:
    """Per alpha: mean and sd (ddof=1; NaN for one seed) of accuracy and level-1 DS sum over seeds."""
    return (alpha_df.groupby("alpha")
            .agg(acc_mean=(acc_col, "mean"), acc_sd=(acc_col, "std"), ds_mean=("ds_level1_sum", "mean"),
                 ds_sd=("ds_level1_sum", "std"), n_seeds=("seed", "nunique"))
            .reset_index().sort_values("alpha"))  # fmt: skip
