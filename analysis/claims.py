"""The paper's claims, tested on our measurements: each with its effect, 95% CI, test, p-value, n and verdicts.

Every claim compares variants by their **roles** (``analysis.roles``): the paper's pairs (constrained vs its
unconstrained counterpart: C vs standard, ADV+C vs ADV) and, when the zoo has them, the controls that isolate the
constraint (C vs standard+jitter or C-control, ADV+C vs ADV-mixed). The claim's ``verdict`` (the headline count)
comes from the paper's pairs alone; ``control_verdict`` from the controls alone; ``secondary_verdict`` from the
paper's pairs on the unconfounded or secondary form of the metric (probes on the images both models classify
correctly when clean, DS normalised by the variant's same-class logit spread, discontinuity at level 1 without hue,
alpha at its two ends).

Tests (``analysis.statistics``): per-image results of two variants on the same images -> exact McNemar
(correctness) or a paired bootstrap (continuous); with a ``seed`` column (one checkpoint per variant and seed),
the two-level paired bootstrap (seeds, then images), each seed's own test kept as a per-seed verdict; one number per
training seed -> Welch's t-test; a "costs little" claim -> a non-inferiority test. Every comparison's p is
Holm-adjusted within its claim (``p_holm``) and across every comparison of the report (``p_holm_all``, what the
verdict uses; a claim built alone is its own report). The rule is ``statistics.VERDICT_RULE``, stated once.

``scope``: "about the training method" with >= 3 independently trained seeds per variant, "about these
checkpoints" otherwise. In quick mode every measured claim reads "not decided at quick scale".
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
CLAIM_COLUMNS = ["key", "claim", "paper", "paper_figure", "ours", "effect_ci", "test", "p", "n", "seeds_per_variant",
                 "scope", "verdict", "control_verdict", "secondary", "secondary_verdict", "rule"]  # fmt: skip
TEST_COLUMNS = ["key", "comparison", "kind", "form", "primary", "metric", "direction", "decision", "null", "effect",
                "ci_low", "ci_high", "unit", "test", "p", "p_holm", "p_holm_all", "n_images", "n_seeds", "n",
                "verdict"]  # fmt: skip
SEED_COLUMNS = ["key", "comparison", "kind", "form", "seed", "effect", "ci_low", "ci_high", "unit", "test", "p",
                "p_holm", "n_images", "verdict"]  # fmt: skip
PROBE_FIGURES = {"channel_translation": "fig6", "randomised_centre": "fig8", "sliding_puzzle": "fig10"}
PAPER_KIND, CONTROL_KIND = "paper", "control"
PLAIN = "plain"
CLEAN_CORRECT = "both clean-correct"
NORMALISED = "normalised by the same-class logit spread"
LEVEL1_NO_HUE = "level 1 without hue"
ENDS = "largest vs smallest alpha"
BOTH_BLENDED = "both blended (halfway to the baseline's clean accuracy)"
TREND = "trend over the whole sweep"
DIFFERENCE, NONINFERIORITY = "difference", "non-inferiority"
CHECKPOINT_NOTE = (f"one checkpoint per variant and seed: a verdict speaks {S.SCOPE_METHOD} only with >= "
                   f"{S.MIN_METHOD_SEEDS} independently trained seeds per variant, otherwise {S.SCOPE_CHECKPOINTS} "
                   "(column `scope`)")  # fmt: skip

Results = Mapping[str, Mapping[str, pd.DataFrame]]
#: A per-image metric of one variant: one checkpoint's aligned values, or seed -> that seed's aligned values.
Sample = np.ndarray | Mapping[int, np.ndarray]


@dataclass
class Claim:
    """One claim: what the paper says, what we measured, the tests behind the verdicts and the rule.

    ``verdict``: the paper's pairs (primary form); ``control_verdict``: the controls; ``secondary_verdict``: the
    paper's pairs on the secondary forms. ``seeds``: independently trained seeds per variant behind the verdict
    (None: not measured). ``per_seed``: each seed's own comparisons (SEED_COLUMNS).
    """

    key: str
    claim: str
    paper: str
    paper_figure: str
    ours: str
    verdict: str
    rule: str
    tests: list[dict[str, Any]] = field(default_factory=list)
    seeds: int | None = None
    control_verdict: str = NOT_MEASURED
    secondary_verdict: str = NOT_MEASURED
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    #: writes ``ours`` from the decided tests (``rescore`` calls it after every re-decision)
    render: Callable[[Claim], str] | None = field(default=None, repr=False, compare=False)

    @property
    def scope(self) -> str:
        return "-" if self.seeds is None else S.scope(self.seeds)

    def row(self) -> dict[str, Any]:
        """The claims.csv row: the tests summarised as text (``claim_tests.csv`` has them as numbers)."""
        main = [t for t in self.tests if t.get("primary", True)]
        extra = [t for t in self.tests if not t.get("primary", True)]
        effect = "; ".join(f"{_label(t)}: {interval(t['effect'], t['ci_low'], t['ci_high'], t.get('unit', 'points'))}"
                           for t in main)  # fmt: skip
        tests = "; ".join(dict.fromkeys(t["test"].split(" (")[0] for t in self.tests))
        p = "; ".join(f"{_label(t, form=True)}: {_p_text(t)}" for t in self.tests)
        n = _n_summary(self.tests)
        secondary = "; ".join(
            f"{t['form']}: {_label(t)} {interval(t['effect'], t['ci_low'], t['ci_high'], t.get('unit', 'points'))} "
            f"({t['verdict']})" for t in extra)  # fmt: skip
        return {"key": self.key, "claim": self.claim, "paper": self.paper, "paper_figure": self.paper_figure,
                "ours": self.ours, "effect_ci": effect or "-", "test": tests or "-", "p": p or "-", "n": n or "-",
                "seeds_per_variant": self.seeds, "scope": self.scope, "verdict": self.verdict,
                "control_verdict": self.control_verdict, "secondary": secondary or "-",
                "secondary_verdict": self.secondary_verdict, "rule": self.rule}  # fmt: skip

    def document(self) -> dict[str, Any]:
        """The claims.json entry: the row plus every test and every per-seed comparison."""
        return {**self.row(), "tests": [_jsonable(t) for t in self.tests],
                "per_seed": [_jsonable(t) for t in self.per_seed]}  # fmt: skip


def _label(t: Mapping[str, Any], form: bool = False) -> str:
    """The comparison, "(control)" for a control, and with ``form`` the secondary form it is measured on."""
    text = f"{t['comparison']} (control)" if t.get("kind") == CONTROL_KIND else str(t["comparison"])
    return f"{text} [{t['form']}]" if form and not t.get("primary", True) else text


def _p_text(t: Mapping[str, Any]) -> str:
    what = "non-inferiority " if t.get("decision") == NONINFERIORITY else ""
    return (f"{what}{p_value(t['p'])} (Holm in claim {p_value(t.get('p_holm'))[2:]}, across report "
            f"{p_value(t.get('p_holm_all'))[2:]})")  # fmt: skip


def _n_text(t: Mapping[str, Any]) -> str:
    """n as seeds x images ("1 seed x 1000 images" for one checkpoint per variant; "5 seed(s)" for per-seed
    numbers)."""
    images, seeds = t.get("n_images"), t.get("n_seeds")
    images = int(images) if images is not None and np.isfinite(images) else None
    seeds = int(seeds) if seeds is not None and np.isfinite(seeds) else None
    if images is None:
        return f"{seeds} seed(s)" if seeds else "-"
    return f"{seeds or 1} seed{'(s)' if (seeds or 1) > 1 else ''} x {images} images"


def _n_summary(tests: Sequence[Mapping[str, Any]]) -> str:
    """A claim's n: its primary comparisons' n, then the secondary forms' as one range of images where only the
    image counts differ (the images both models classify correctly when clean differ per comparison): "3 seed(s)
    x 1000 images; secondary forms: 3 seed(s) x 654-845 images", not six "seeds x images" in a row."""
    texts = lambda rows: list(dict.fromkeys(t.get("n") or _n_text(t) for t in rows))  # noqa: E731
    main = texts([t for t in tests if t.get("primary", True)])
    extra = [t for t in tests if not t.get("primary", True) and (t.get("n") or _n_text(t)) not in main]
    images = [t.get("n_images") for t in extra]
    seeds = {t.get("n_seeds") for t in extra}
    if len(texts(extra)) < 2 or len(seeds) != 1 or not all(i is not None and np.isfinite(i) for i in images):
        return "; ".join(dict.fromkeys([*main, *texts(extra)]))
    lo, hi = int(min(images)), int(max(images))
    stub = _n_text({**extra[0], "n_images": lo}).removesuffix(f"{lo} images")
    return "; ".join([*main, f"secondary forms: {stub}{lo}-{hi} images"])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def not_measured(key: str, claim: str, paper: str, paper_figure: str, rule: str, why: str) -> Claim:
    return Claim(key, claim, paper, paper_figure, f"not measured ({why})", NOT_MEASURED, rule)


def no_pair_reason(pairs: Sequence[tuple[str, str]], roles: Mapping[str, str]) -> str:
    """Why a claim on the role ``pairs`` is not measured: which roles would measure it, and the command that
    fine-tunes the missing ones from the zoo's baseline (``models.train_zoo --from``, ``models.imported_recipe``)."""
    names = paper_names()
    needed = " or ".join(f"{a} vs {b} ({names.get(a, a)} vs {names.get(b, b)})" for a, b in pairs)
    present = set(roles.values())
    wanted = {r for pair in pairs for r in pair}
    lacking = [name for role, name in names.items() if role in wanted and role not in present]  # registry order
    if not lacking:
        return f"no pair of the paper's roles among the measured variants; {needed} would measure it"
    base = R.with_role(roles, R.BASELINE)
    tuned = [v for v in lacking if v != names.get(R.BASELINE)]
    source = f"<{base}'s checkpoint>" if base else "<a baseline checkpoint: import one with models.import_model>"
    command = f"`python -m models.train_zoo --from {source} --variants {' '.join(tuned)} --out <zoo>`" if tuned \
        else ""  # fmt: skip
    how = f", which {command} fine-tunes from the baseline" if command else ""
    lacks = ", ".join(lacking)
    return f"no pair of the paper's roles among the variants: {needed} would measure it; the zoo lacks {lacks}{how}"


# ----------------------------------------------------------------------------- comparisons -> verdicts


def test_row(
    key: str, comp: R.Comparison, res: S.TestResult, direction: str, metric: str, unit: str = "points",
    form: str = PLAIN, primary: bool = True, null: float = 0.0, decision: str = DIFFERENCE,
) -> dict[str, Any]:  # fmt: skip
    """One comparison of a claim as a claim_tests.csv row, decided on its own p (``rescore`` adjusts it)."""
    row = {"key": key, "comparison": comp.label, "kind": comp.kind, "form": form, "primary": primary,
           "metric": metric, "direction": direction, "decision": decision, "null": null, **res.row(),
           "unit": unit}  # fmt: skip
    row["n"] = _n_text(row)
    row.update(p_holm=res.p, p_holm_all=res.p, verdict=_verdict(row, res.p))
    return row


def _seed_row(key: str, comp: R.Comparison, form: str, seed: int, res: S.TestResult, direction: str,
              unit: str) -> dict[str, Any]:  # fmt: skip
    return {"key": key, "comparison": comp.label, "kind": comp.kind, "form": form, "seed": int(seed),
            "direction": direction, "decision": DIFFERENCE, "null": 0.0, **res.row(), "unit": unit,
            "p_holm": res.p, "verdict": INCONCLUSIVE}  # fmt: skip


def _verdict(t: Mapping[str, Any], p_adjusted: float) -> str:
    """``statistics.VERDICT_RULE`` on one comparison row with its adjusted p."""
    res = S.TestResult(t["effect"], t["ci_low"], t["ci_high"], t["p"], t["test"])
    if t.get("decision") == NONINFERIORITY:
        return S.noninferiority_verdict(res, abs(float(t["null"])), t["direction"], p_adjusted)
    return S.pair_verdict(res, t["direction"], p_adjusted, null=float(t.get("null", 0.0)))


def _over(tests: Sequence[Mapping[str, Any]], kind: str, primary: bool) -> str:
    return S.claim_verdict([t["verdict"] for t in tests if t["kind"] == kind and bool(t["primary"]) == primary])


def rescore(claims: Sequence[Claim], method: str = S.REPORT_ADJUSTMENT) -> list[Claim]:
    """Adjust every comparison's p within its claim (``p_holm``) and across all ``claims`` (``p_holm_all``, by
    ``method``), decide each comparison on ``p_holm_all`` (``statistics.VERDICT_RULE``) and each claim's verdicts:
    ``verdict`` over the paper's pairs, ``control_verdict`` over the controls, ``secondary_verdict`` over the
    paper's pairs on the secondary forms. Per-seed comparisons are Holm-adjusted within their claim and seed."""
    for c in claims:
        for t, p in zip(c.tests, S.holm([t["p"] for t in c.tests]), strict=True):
            t["p_holm"] = p
        by_seed: dict[int, list[dict[str, Any]]] = {}
        for t in c.per_seed:
            by_seed.setdefault(t["seed"], []).append(t)
        for rows in by_seed.values():
            for t, p in zip(rows, S.holm([t["p"] for t in rows]), strict=True):
                t["p_holm"], t["verdict"] = p, _verdict(t, p)
    tests = [t for c in claims for t in c.tests]
    for t, p in zip(tests, S.adjust([t["p"] for t in tests], method), strict=True):
        t["p_holm_all"], t["verdict"] = p, _verdict(t, p)
    for c in claims:
        if c.tests:
            c.verdict = _over(c.tests, PAPER_KIND, True)
            c.control_verdict = _over(c.tests, CONTROL_KIND, True)
            c.secondary_verdict = _over(c.tests, PAPER_KIND, False)
        if c.render is not None:
            c.ours = c.render(c)
    return list(claims)


def _finish(claim: Claim) -> Claim:
    """A claim decided on its own (its comparisons are the whole family); ``evaluate_claims`` re-decides it
    across the report."""
    return rescore([claim])[0]


def _ours(tests: Sequence[Mapping[str, Any]], values: Mapping[str, str]) -> str:
    """Our figures per comparison and its verdict (the effect, CI and p are the row's own columns)."""
    return "; ".join(f"{values.get(t['comparison'], t['comparison']).rstrip(';')} ({t['verdict']})"
                     for t in tests if t.get("primary", True))  # fmt: skip


def _rule(metric: str, direction: str, test: str, null: str = "0") -> str:
    rel = ">" if direction == "higher" else "<"
    return (f"{metric}: constrained {rel} its counterpart (the paper's pairs C vs standard, ADV+C vs ADV give the "
            f"verdict; the controls their own); {test}; null value {null}; decided by the verdict rule "
            "(statistics.VERDICT_RULE)")  # fmt: skip


def _mean(sample: Sample) -> float:
    if isinstance(sample, Mapping):
        return float(np.mean([np.nanmean(v) for v in sample.values()]))
    return float(np.nanmean(sample))


def _n_seeds(sample: Sample) -> int:
    return len(sample) if isinstance(sample, Mapping) else 1


def _compare(a: Sample, b: Sample, binary: bool) -> tuple[S.TestResult, list[tuple[int, S.TestResult]]]:
    """One checkpoint each: exact McNemar (``binary``) or the paired bootstrap. Seed -> values: the two-level
    paired bootstrap over the common seeds (seed s of a with seed s of b), and each seed's own test."""
    one = S.mcnemar if binary else S.paired_bootstrap
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        return one(np.asarray(a), np.asarray(b)), []
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two variants share no seed")
    res = S.two_level_paired_bootstrap({s: a[s] for s in seeds}, {s: b[s] for s in seeds})
    if binary:
        res.test = f"two-level paired bootstrap of correctness, seeds then images ({S.N_RESAMPLES:,} resamples)"
    return res, [(s, one(np.asarray(a[s]), np.asarray(b[s]))) for s in seeds]


Secondary = Mapping[str, Any]  # form -> (comparison -> (Sample, Sample) or None)


def paired_claim(
    key: str, claim: str, paper: str, fig: str, metric: str, direction: str, per_variant: Mapping[str, Sample],
    roles: Mapping[str, str], binary: bool = False, pairs: Sequence[tuple[str, str]] = R.PAPER_PAIRS,
    secondary: Secondary | None = None,
) -> Claim:  # fmt: skip
    """A claim on a per-image metric of variants measured on the same images (``per_variant``: aligned arrays,
    or seed -> aligned arrays). ``secondary``: form -> a function of a comparison giving its two samples on that
    form (e.g. the images both classify correctly when clean), or None where it cannot."""
    test = ("exact McNemar + paired bootstrap CI" if binary else "paired bootstrap (10,000 resamples)") + \
        "; with seeds: two-level paired bootstrap (seeds, then images)"  # fmt: skip
    rule = _rule(metric, direction, test)
    comps = [c for c in R.comparisons(roles, pairs) if c.a in per_variant and c.b in per_variant]
    if not comps:
        return not_measured(key, claim, paper, fig, rule, no_pair_reason(pairs, roles))
    unit = "points" if binary else "value"
    tests, seeds = [], []
    for c in comps:
        res, per = _compare(per_variant[c.a], per_variant[c.b], binary)
        tests.append(test_row(key, c, res, direction, metric, unit))
        seeds += [_seed_row(key, c, PLAIN, s, r, direction, unit) for s, r in per]
    for form, samples in (secondary or {}).items():
        for c in comps:
            got = samples(c)
            if got is None:
                continue
            res, per = _compare(got[0], got[1], False)
            tests.append(test_row(key, c, res, direction, f"{metric}, {form}", "value", form, primary=False))
            seeds += [_seed_row(key, c, form, s, r, direction, "value") for s, r in per]
    fmt = (lambda v: pct(_mean(v))) if binary else (lambda v: num(_mean(v)))  # noqa: E731
    values = {c.label: f"{c.a} {fmt(per_variant[c.a])} vs {c.b} {fmt(per_variant[c.b])};" for c in comps}
    n_seeds = min(min(_n_seeds(per_variant[c.a]), _n_seeds(per_variant[c.b])) for c in comps if c.kind == PAPER_KIND) \
        if any(c.kind == PAPER_KIND for c in comps) else None  # fmt: skip
    return _finish(Claim(key, claim, paper, fig, "", NOT_MEASURED, rule, tests, n_seeds, per_seed=seeds,
                         render=lambda c: _ours(c.tests, values)))  # fmt: skip


def seeded_claim(
    key: str, claim: str, paper: str, fig: str, metric: str, df: pd.DataFrame, value: str,
    roles: Mapping[str, str], pairs: Sequence[tuple[str, str]] = R.PAPER_PAIRS, direction: str = "higher",
    trained_seeds: int | None = None,
) -> Claim:  # fmt: skip
    """A claim on one number per training seed (``df``: variant, seed, ``value``), by Welch's t-test.

    ``trained_seeds``: independently trained checkpoints per variant behind the numbers (default: the seeds, each
    a training run of the compared variants; a fine-tune repeated from one source checkpoint is 1)."""
    rule = _rule(metric, direction, "Welch t-test over seeds")
    comps = [c for c in R.comparisons(roles, pairs) if {c.a, c.b} <= set(df["variant"])]
    if not comps:
        return not_measured(key, claim, paper, fig, rule, no_pair_reason(pairs, roles))
    get = lambda v: df.loc[df["variant"] == v, value].astype(float).to_numpy()  # noqa: E731
    tests = [test_row(key, c, S.welch(get(c.a), get(c.b)), direction, metric) for c in comps]
    sd = lambda v: float(np.std(get(v), ddof=1)) if len(get(v)) > 1 else None  # noqa: E731
    values = {c.label: f"{c.a} {pct(get(c.a).mean(), sd(c.a))} vs {c.b} {pct(get(c.b).mean(), sd(c.b))};"
              for c in comps}  # fmt: skip
    seeds = trained_seeds if trained_seeds is not None else int(df["seed"].nunique()) if "seed" in df else 1
    return _finish(Claim(key, claim, paper, fig, "", NOT_MEASURED, rule, tests, seeds,
                         render=lambda c: _ours(c.tests, values)))  # fmt: skip


# ----------------------------------------------------------------------------- helpers on the per-image tables


def per_variant(df: pd.DataFrame, value: str, by: Sequence[str] = ("image",)) -> dict[str, Sample]:
    """variant -> ``value`` aligned on ``by`` (the images every variant has, in order). With a ``seed`` column:
    variant -> seed -> ``value`` aligned within that seed on the images every variant of that seed has."""
    if "seed" not in df.columns or "seed" in by:
        wide = df.pivot_table(index=list(by), columns="variant", values=value, aggfunc="mean", sort=True).dropna()
        return {str(v): wide[v].to_numpy(float) for v in wide.columns}
    out: dict[str, dict[int, np.ndarray]] = {}
    for seed, g in df.groupby("seed", sort=True):
        wide = g.pivot_table(index=list(by), columns="variant", values=value, aggfunc="mean", sort=True)
        wide = wide.dropna(axis=1, how="all").dropna()
        for v in wide.columns:
            out.setdefault(str(v), {})[int(seed)] = wide[v].to_numpy(float)
    return dict(out)


def part(results: Results, experiment: str, name: str | None = None) -> pd.DataFrame | None:
    parts = results.get(experiment) or {}
    df = parts.get(name or experiment)
    return df if df is not None and len(df) else None


def _seed_cols(df: pd.DataFrame) -> list[str]:
    return ["seed"] if "seed" in df.columns else []


# ----------------------------------------------------------------------------- the claims


def _share_result(any_outranked: pd.DataFrame) -> S.TestResult:
    """The share of anchors outranked (``any_outranked``: anchor, outranked[, seed]) against 1/2: Clopper-Pearson
    with one seed, else the two-level bootstrap (seeds, then anchors) of outranked - 1/2, shifted back."""
    if "seed" not in any_outranked.columns or any_outranked["seed"].nunique() < 2:
        ok = any_outranked["outranked"].astype(bool)
        return S.proportion(int(ok.sum()), len(ok))
    groups = {int(s): g["outranked"].astype(float).to_numpy() - 0.5 for s, g in any_outranked.groupby("seed")}
    res = S.two_level_bootstrap(groups)
    return S.TestResult(res.effect + 0.5, res.ci_low + 0.5, res.ci_high + 0.5, res.p, res.test, res.n_images,
                        res.n_seeds)  # fmt: skip


def _outranked(per_anchor: pd.DataFrame, keep: pd.Series | None = None) -> pd.DataFrame:
    sub = per_anchor if keep is None else per_anchor[keep]
    by = [*_seed_cols(sub), "anchor"]
    return (sub.groupby(by)["n_closer"].max() > 0).rename("outranked").reset_index()


def claim_discontinuity(results: Results, roles: Mapping[str, str]) -> Claim:
    """Section 2, Figs. 1-2: for the baseline, most anchors have a perturbed copy outranked by a same-class image
    (the maximum over every kind and level); secondary: the same at level 1 without hue."""
    key, claim, paper = "discontinuity", "Standard models are semantically discontinuous", "2.2, Figs. 1-2"
    rule = ("baseline: share of anchors with at least one perturbed copy (any kind, level) that a same-class test "
            "image outranks (is nearer by DS); exact binomial test with its Clopper-Pearson CI (seeds: two-level "
            "bootstrap); null value 50% (most anchors); secondary: level-1 copies without hue; decided by the "
            "verdict rule (statistics.VERDICT_RULE)")  # fmt: skip
    exist, per_anchor = part(results, "neighbourhood_rank", "existence"), part(results, "neighbourhood_rank",
                                                                               "per_anchor")  # fmt: skip
    base = R.with_role(roles, R.BASELINE)
    have = set(per_anchor["variant"]) if per_anchor is not None else set(exist["variant"]) if exist is not None \
        else set()  # fmt: skip
    if base is None or base not in have:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig2"], rule, "no neighbourhood ranks for the baseline")
    comp = R.Comparison(base, "50%")
    metric = "share of anchors outranked"
    if per_anchor is not None:
        mine = per_anchor[per_anchor["variant"] == base]
        res = _share_result(_outranked(mine))
        no_hue = (mine["level"] == 1) & (mine["kind"] != "hue")
        tests = [test_row(key, comp, res, "higher", metric, "share", null=0.5)]
        if no_hue.any():
            tests.append(test_row(key, comp, _share_result(_outranked(mine, no_hue)), "higher",
                                  f"{metric}, {LEVEL1_NO_HUE}", "share", LEVEL1_NO_HUE, False, 0.5))  # fmt: skip
        median = int(mine["n_same"].median())
        seeds = int(mine["seed"].nunique()) if "seed" in mine else 1
        per_level = mine[mine["level"] == 1].groupby("kind")["n_closer"].apply(lambda x: (x > 0).mean())
        levels = ", ".join(f"{k} {pct(v)}" for k, v in per_level.items())
    else:
        row = exist.set_index("variant").loc[base]
        res = S.proportion(int(row["outranked_anchors"]), int(row["n_anchors"]))
        tests = [test_row(key, comp, res, "higher", metric, "share", null=0.5)]
        median, seeds, levels = int(row["median_candidates"]), 1, ""
    for t in tests:  # a one-sample test: the comparison is the baseline itself (against the null value 50%)
        t["comparison"] = base
    others = "" if exist is None else ", ".join(f"{v} {pct(r['share'])}" for v, r in
                                                exist.set_index("variant").iterrows() if v != base)  # fmt: skip

    def render(c: Claim) -> str:
        main = c.tests[0]
        ours = (f"{base}: {pct(main['effect'])} [{pct(main['ci_low'])}, {pct(main['ci_high'])}] of anchors have a "
                f"copy outranked (maximum over every kind and level; {main['verdict']}), among a median {median} "
                "same-class candidates")  # fmt: skip
        for t in c.tests[1:]:
            ours += f"; {t['form']}: {pct(t['effect'])} [{pct(t['ci_low'])}, {pct(t['ci_high'])}] ({t['verdict']})"
        ours += f"; level 1 per kind: {levels}" if levels else ""
        return ours + (f"; {others}" if others else "")

    return _finish(Claim(key, claim, paper, FIGURE_SHORT["fig2"], "", NOT_MEASURED, rule, tests, seeds,
                         render=render))  # fmt: skip


def _level1(df: pd.DataFrame, value: str) -> pd.DataFrame:
    by = [*_seed_cols(df), "variant", "image"]
    return df[df["level"] == 1].groupby(by, sort=False)[value].sum().reset_index()


def claim_continuity(results: Results, roles: Mapping[str, str]) -> Claim:
    """Fig. 3: the constrained models have the smaller DS (per image: level-1 DS summed over the kinds); secondary:
    the same DS divided by the variant's same-class logit spread (``ds_normalised``, when measured)."""
    key, claim, paper = "continuity", "The continuity constraint lowers DS under colour perturbations", "4.2, Fig. 3"
    df = part(results, "continuity", "per_image")
    metric = "per-image level-1 DS summed over the kinds"
    if df is None:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig3"], _rule(metric, "lower", "paired bootstrap"),
                            "no per-image DS")  # fmt: skip
    secondary = {}
    if "ds_normalised" in df.columns:
        normalised = per_variant(_level1(df, "ds_normalised"), "ds_normalised")
        secondary[NORMALISED] = lambda c: (normalised[c.a], normalised[c.b]) if {c.a, c.b} <= set(normalised) \
            else None  # fmt: skip
    return paired_claim(key, claim, paper, FIGURE_SHORT["fig3"], metric, "lower",
                        per_variant(_level1(df, "ds"), "ds"), roles, secondary=secondary)  # fmt: skip


def _source_seeds(df: pd.DataFrame) -> int:
    """Independently trained source checkpoints behind a table whose seeds repeat a fine-tune from the zoo's
    checkpoint (alpha sweep, transfer): its ``source_seed`` values, else 1."""
    return int(df["source_seed"].nunique()) if "source_seed" in df.columns else 1


def per_source(df: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> tuple[pd.DataFrame, int | None]:
    """A training experiment's runs pooled over zoo seeds (``source_seed``: the zoo checkpoint each run was
    fine-tuned from), reduced to one row per source checkpoint and ``keys`` (variant, alpha): the mean of its runs,
    with ``seed`` = the source seed. The runs of one source share its checkpoint, so they are not independent
    replications of the training method: counted as such (6 runs of 2 checkpoints as 6 seeds), Welch's and Page's
    tests would overstate the evidence. Returns the table and the fewest runs behind a mean (None: ``df`` has
    fewer than two source seeds and is returned as it is, its seeds the fine-tune's own repeats)."""
    if _source_seeds(df) < 2:
        return df, None
    by = [*keys, "source_seed"]
    runs = int(df.groupby(by).size().min())
    means = df.groupby(by, as_index=False)[list(values)].mean()
    return means.assign(seed=means["source_seed"]), runs


def _with_runs(claim: Claim, runs: int | None) -> Claim:
    """Say in the rule and in each test's n that its seeds are source checkpoints, each the mean of ``runs``
    fine-tune runs (``per_source``); the verdicts are untouched."""
    if runs is not None:
        claim.rule += "; over several zoo seeds the units are the source checkpoints, each one's fine-tune runs " \
            "averaged first"  # fmt: skip
        for t in claim.tests:
            t["n"] = f"{_n_text(t)} (each the mean of {runs} runs)"
    return claim


def _alpha_ends(alpha_df: pd.DataFrame, col: str) -> tuple[float, float, np.ndarray, np.ndarray]:
    lo, hi = alpha_df["alpha"].min(), alpha_df["alpha"].max()
    pick = lambda a: alpha_df.loc[alpha_df["alpha"] == a, col].astype(float).to_numpy()  # noqa: E731
    return lo, hi, pick(lo), pick(hi)


def claim_alpha_continuity(results: Results, roles: Mapping[str, str] | None = None) -> Claim:
    """Fig. 4 right: DS falls as alpha grows, across the whole sweep (Page's L over seeds, when there are >= 3
    alphas and >= 2 seeds; the largest vs the smallest alpha by Welch beside it), else at its two ends."""
    key, claim, paper = "alpha_continuity", "A larger alpha gives a more continuous model", "4.2, Fig. 4 (right)"
    rule = ("level-1 DS sum against alpha over the whole sweep: Page's L trend test with seeds as blocks (two-sided "
            "p), effect the mean per-seed Spearman rho with its bootstrap CI over seeds, null value 0; secondary: "
            "the largest minus the smallest alpha, Welch t-test over seeds; decided by the verdict rule "
            "(statistics.VERDICT_RULE)")  # fmt: skip
    df = part(results, "alpha_sweep")
    if df is None or df["alpha"].nunique() < 2:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig4_right"], rule, "fewer than two alphas")
    sources = _source_seeds(df)
    df, runs = per_source(df, ["alpha"], ["ds_level1_sum"])
    lo, hi, a, b = _alpha_ends(df, "ds_level1_sum")
    ends = R.Comparison(f"alpha {hi:g}", f"alpha {lo:g}")
    trend_ok = df["alpha"].nunique() >= 3 and df["seed"].nunique() >= 2
    tests = []
    if trend_ok:
        from analysis.continuity import alpha_trend_result

        sweep = R.Comparison(f"alpha {lo:g} to {hi:g}", "no trend")
        tests.append(test_row(key, sweep, alpha_trend_result(df), "lower", "Spearman rho of alpha and level-1 DS sum",
                              "value", TREND))  # fmt: skip
    tests.append(test_row(key, ends, S.welch(b, a), "lower", "level-1 DS sum", "value", ENDS, primary=not trend_ok))
    means = df.groupby("alpha")["ds_level1_sum"].mean()
    sweep_text = f"DS sum {' -> '.join(num(v) for v in means)} over alpha {', '.join(f'{x:g}' for x in means.index)}"

    def render(c: Claim) -> str:
        return sweep_text + "".join(f"; {t['form']}: {t['verdict']}" for t in c.tests)

    return _finish(_with_runs(Claim(key, claim, paper, FIGURE_SHORT["fig4_right"], "", NOT_MEASURED, rule, tests,
                                    sources, render=render), runs))  # fmt: skip


def claim_alpha_accuracy(results: Results, roles: Mapping[str, str] | None = None, tolerance: float = 0.05) -> Claim:
    """Fig. 4 left: the largest alpha is non-inferior in accuracy to the smallest within ``tolerance``."""
    key, claim, paper = "alpha_accuracy", "A larger alpha costs only a little accuracy", "4.2, Fig. 4 (left)"
    rule = (f"accuracy at the largest alpha minus at the smallest, over seeds: non-inferiority with margin "
            f"{100 * tolerance:g} points (one-sided Welch t-test of 'the cost is {100 * tolerance:g} points or more', "
            "its p printed; Welch 95% CI); decided by the verdict rule (statistics.VERDICT_RULE)")  # fmt: skip
    df = part(results, "alpha_sweep")
    if df is None or df["alpha"].nunique() < 2:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig4_left"], rule, "fewer than two alphas")
    sources = _source_seeds(df)
    df, runs = per_source(df, ["alpha"], ["test_acc"])
    lo, hi, a, b = _alpha_ends(df, "test_acc")
    comp = R.Comparison(f"alpha {hi:g}", f"alpha {lo:g}")
    res = S.noninferiority(b, a, tolerance, "higher", method="welch")
    tests = [test_row(key, comp, res, "higher", "test accuracy", null=-tolerance, decision=NONINFERIORITY)]
    values = {comp.label: f"accuracy {pct(b.mean())} vs {pct(a.mean())};"}
    return _finish(_with_runs(Claim(key, claim, paper, FIGURE_SHORT["fig4_left"], "", NOT_MEASURED, rule, tests,
                                    sources, render=lambda c: _ours(c.tests, values)), runs))  # fmt: skip


def _conditional_shares(df: pd.DataFrame, probe: str) -> Any:
    """comparison -> the probe's per-image share (clean excluded) of a and b on the images both classify correctly
    when clean (per seed with a ``seed`` column), or None where they were not both probed."""
    from analysis.probes import both_clean_correct

    seeded = "seed" in df.columns
    groups = list(df.groupby("seed", sort=True)) if seeded else [(None, df)]

    def shares(c: R.Comparison) -> tuple[Sample, Sample] | None:
        out_a, out_b = {}, {}
        for seed, g in groups:
            if not {c.a, c.b} <= set(g["variant"]):
                continue
            keep = both_clean_correct(g, c.a, c.b)
            sub = g[(g["probe"] == probe) & (g["level_label"] != "clean") & g["image"].isin(keep)
                    & g["variant"].isin([c.a, c.b])]  # fmt: skip
            if not len(keep) or sub.empty:
                continue
            wide = sub.groupby(["variant", "image"])["correct"].mean().unstack("variant").reindex(keep)
            out_a[seed], out_b[seed] = wide[c.a].to_numpy(float), wide[c.b].to_numpy(float)
        if not out_a:
            return None
        return (out_a, out_b) if seeded else (out_a[None], out_b[None])

    return shares


def claim_probe(results: Results, roles: Mapping[str, str], probe: str) -> Claim:
    """Figs. 6/8/10: the constrained models lose more accuracy on semantics-destroying probes; secondary: on the
    images both compared models classify correctly when clean (plain probe accuracy moves with clean accuracy)."""
    fig = PROBE_FIGURES[probe]
    key, paper = f"probe_{probe}", f"4.3, Fig. {fig[3:]}"
    claim = f"Constrained models rely less on non-semantic cues ({probe.replace('_', ' ')})"
    metric = f"per-image share of the {probe.replace('_', ' ')} levels classified correctly (clean excluded)"
    df = part(results, "probes", "per_image")
    if df is None or probe not in set(df["probe"]):
        return not_measured(key, claim, paper, FIGURE_SHORT[fig], _rule(metric, "lower", "paired bootstrap"),
                            "probe not run")  # fmt: skip
    sub = df[(df["probe"] == probe) & (df["level_label"] != "clean")]
    mine = df[df["probe"] == probe]
    secondary = {CLEAN_CORRECT: _conditional_shares(mine, probe)} if (mine["level_label"] == "clean").any() else {}
    return paired_claim(key, claim, paper, FIGURE_SHORT[fig], metric, "lower", per_variant(sub, "correct"), roles,
                        secondary=secondary)  # fmt: skip


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


def claim_robustness_matched(results: Results, roles: Mapping[str, str]) -> Claim:
    """Issue 23: ADV+C vs ADV robust accuracy (PGD-10) at one clean accuracy, read off both variants' trade-off curves
    along the weight interpolation from the baseline (``analysis.tradeoff``; the control ADV+C vs ADV-mixed too).
    A comparison whose curves do not reach the common clean accuracy is left out ("not comparable"), never
    extrapolated; with none left the claim is not measured."""
    from analysis.tradeoff import LEVEL_RULE, MIDWAY, MIDWAY_RULE, matched_over_seeds, matched_table

    names = paper_names()
    a, b = names[R.ADVERSARIAL_CONSTRAINED], names[R.ADVERSARIAL]
    key, claim = "robustness_matched_clean", f"{a} is more robust than {b} at matched clean accuracy"
    paper = "4.4, Table 2 (matched clean accuracy)"
    metric = "PGD-10 accuracy at the common clean accuracy along the weight interpolation from the baseline"
    rule = _rule(metric, "higher", "paired bootstrap over images of both curves (10,000 resamples); with seeds: "
                 "each seed's own curves and level, two-level bootstrap (seeds, then images)") + \
        f"; {LEVEL_RULE}; secondary, {MIDWAY_RULE}; equal clean accuracy along the interpolation path, not along " \
        "retrained alphas"  # fmt: skip
    df = part(results, "tradeoff", "per_image")
    if df is None:
        return not_measured(key, claim, paper, _table2_text(a, b), rule, "tradeoff not run")
    pairs = [(R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL)]
    comps = [c for c in R.comparisons(roles, pairs) if {c.a, c.b} <= set(df["variant"])]
    if not comps:
        return not_measured(key, claim, paper, _table2_text(a, b), rule, no_pair_reason(pairs, roles))
    seeded = "seed" in df.columns
    tests, values, apart, per_seed, n_seeds = [], {}, [], [], []
    for c, (form, level) in [(c, f) for c in comps for f in ((PLAIN, None), (BOTH_BLENDED, MIDWAY))]:
        primary = form == PLAIN
        if seeded:  # each seed's own curves and level; pooled by the two-level bootstrap
            pooled, each = matched_over_seeds(df, c.a, c.b, level)
            m = pooled.row()
            seeds = [s for s, r in each.items() if r.comparable]
            per_seed += [_seed_row(key, c, form, s, each[s].test_result(), "higher", "points") for s in seeds]
            if m["reason"] and pooled.comparable:
                apart.append(f"{c.label} [{form}]: left out {m['reason']}")
        else:
            m, seeds = matched_table(df, c.a, c.b, level).iloc[0], []
        if m["status"] != "comparable":
            where = "" if primary else f" [{form}]"
            apart.append(f"{c.label}{' (control)' if c.kind == CONTROL_KIND else ''}{where}: not comparable "
                         f"({m['reason']})")  # fmt: skip
            continue
        res = S.TestResult(m["effect"], m["ci_low"], m["ci_high"], m["p"], m["test"], int(m["n_images"]),
                           len(seeds) if seeded else None)  # fmt: skip
        tests.append(test_row(key, c, res, "higher", metric if primary else f"{metric}, {form}", form=form,
                              primary=primary))  # fmt: skip
        if not primary:
            continue
        n_seeds += [len(seeds) if seeded else 1] if c.kind == PAPER_KIND else []
        values[c.label] = (f"{c.a} {pct(m['robust_a'])} (lam {m['lam_a']:.2f}) vs {c.b} {pct(m['robust_b'])} "
                           f"(lam {m['lam_b']:.2f}) at clean {pct(m['level'])};")  # fmt: skip
    if not tests:
        return not_measured(key, claim, paper, _table2_text(a, b), rule, "; ".join(apart))
    extra = "".join(f"; {t}" for t in apart)
    return _finish(Claim(key, claim, paper, _table2_text(a, b), "", NOT_MEASURED, rule, tests,
                         min(n_seeds) if n_seeds else None, per_seed=per_seed,
                         render=lambda cl: _ours(cl.tests, values) + extra))  # fmt: skip


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


def claim_explanation_continuity(results: Results, roles: Mapping[str, str], method: str, label: str) -> Claim:
    """Issue 22: the constrained variants' ``label`` maps move less from the clean image's map under the colour
    perturbations (Table 1's kinds): per image, the Spearman of each perturbed copy's map to the clean map, averaged
    over the kinds and levels measured (an image undefined at all of them is left out); higher holds."""
    key = f"explanation_continuity_{method}"
    claim = f"The constrained variants' {label} explanations change less under colour perturbations"
    paper, fig = "4.5 (extension)", "not in the paper: its continuity argument (Fig. 3) applied to the maps"
    metric = f"{label}: per-image Spearman of the perturbed copy's map to the clean map, mean over kinds and levels"
    df = part(results, "explanation_continuity", "per_image")
    if df is None or method not in set(df["method"]):
        return not_measured(key, claim, paper, fig, _rule(metric, "higher", "paired bootstrap"),
                            f"explanation continuity of {label} not run")  # fmt: skip
    sub = df[(df["method"] == method) & (df["level"] > 0)]
    return paired_claim(key, claim, paper, fig, metric, "higher", per_variant(sub, "spearman"), roles)


def explanation_claims(results: Results, roles: Mapping[str, str]) -> list[Claim]:
    """The explanation-continuity claim of each method measured (of each fast in-report method when none was)."""
    from analysis.attributions import METHOD_REGISTRY

    df = part(results, "explanation_continuity", "per_image")
    fast = [n for n, m in METHOD_REGISTRY.items() if m.in_report and not m.slow]
    methods = list(dict.fromkeys(df["method"])) if df is not None else fast
    labels = {n: m.label for n, m in METHOD_REGISTRY.items()}
    return [claim_explanation_continuity(results, roles, m, labels.get(m, m)) for m in methods]


def claim_transfer(results: Results, roles: Mapping[str, str], target: str | None) -> Claim:
    """Table 3: the constrained models fine-tune to a higher accuracy (``target`` None: no transfer results).

    Its seeds repeat the fine-tune from the zoo's checkpoints, so it speaks about those checkpoints unless the
    table carries a ``source_seed`` column (one zoo checkpoint per seed)."""
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
    sub = df[df["target"] == target]
    sources = _source_seeds(sub)
    sub, runs = per_source(sub, ["variant"], ["test_acc"])
    return _with_runs(seeded_claim(key, claim, paper, fig, f"test accuracy after fine-tuning on {target}", sub,
                                   "test_acc", roles, trained_seeds=sources), runs)  # fmt: skip


FAIRNESS_DESIGNS = {"paper": ("fairness", "the colour-flipped test split (the paper's design: colour independent of "
                              "the label)"),
                    "shortcut": ("fairness_shortcut", "the shortcut design's test split (colour predicts the class "
                                 "in training, not in test)")}  # fmt: skip


def claim_fairness(results: Results, roles: Mapping[str, str], design: str = "paper") -> Claim:
    """Table 4: C is less misled by the colour bias than standard, on the paper's design or the shortcut one
    (``design``: the fairness experiment's main part, or its ``shortcut`` part; a ``design`` column decides where
    there is one)."""
    key, where = FAIRNESS_DESIGNS[design]
    claim = "The continuity constraint reduces a colour bias" + ("" if design == "paper" else " (shortcut design)")
    paper = "4.7, Table 4"
    fig = f"C {PAPER['table4']['C']:.2f}% vs standard {PAPER['table4']['standard']:.2f}%"
    frames = [f if "design" in f.columns else f.assign(design=d) for d, f in
              (("paper", part(results, "fairness")), ("shortcut", part(results, "fairness", "shortcut")))
              if f is not None]  # fmt: skip
    df = pd.concat(frames, ignore_index=True) if frames else None
    df = df[df["design"] == design] if df is not None else None
    if df is None or df.empty:
        return not_measured(key, claim, paper, fig, _rule("test accuracy", "higher", "Welch"),
                            "fairness not run" if design == "paper" else "shortcut design not run")  # fmt: skip
    return seeded_claim(key, claim, paper, fig, f"accuracy on {where}", df, "test_acc", roles,
                        pairs=[(R.CONSTRAINED, R.BASELINE)])  # fmt: skip


def evaluate_claims(results: Results, roles: Mapping[str, str], decided: bool = True) -> list[Claim]:
    """Every claim from the experiments' tables (experiment -> part -> table); missing ones give "not measured".

    Every comparison is then re-decided on Holm across all of them (``rescore``). With ``decided=False`` (quick
    mode) every measured claim's verdicts read "not decided at quick scale".
    """
    from analysis.attributions import METHOD_REGISTRY

    claims = [claim_discontinuity(results, roles), claim_continuity(results, roles),
              claim_alpha_continuity(results), claim_alpha_accuracy(results),
              *[claim_probe(results, roles, p) for p in PROBE_FIGURES],
              claim_robustness(results, roles, (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL)),
              claim_robustness(results, roles, (R.CONSTRAINED, R.BASELINE)),
              claim_robustness(results, roles, (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL), strongest=True),
              claim_robustness_matched(results, roles),
              *[claim_mask_share(results, roles, m.name, m.label)
                for m in METHOD_REGISTRY.values() if m.in_report]]  # fmt: skip
    transfer = part(results, "transfer")
    targets = list(dict.fromkeys(transfer["target"])) if transfer is not None else [None]
    claims += [claim_transfer(results, roles, t) for t in targets]
    claims += [claim_fairness(results, roles, d) for d in FAIRNESS_DESIGNS]
    claims += explanation_claims(results, roles)
    rescore(claims)
    if not decided:
        for c in claims:
            for name in ("verdict", "control_verdict", "secondary_verdict"):
                if getattr(c, name) != NOT_MEASURED:
                    setattr(c, name, QUICK_VERDICT)
            for t in [*c.tests, *c.per_seed]:
                t["verdict"] = QUICK_VERDICT
    return claims


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """claims.csv: one row per claim (CLAIM_COLUMNS)."""
    df = pd.DataFrame([c.row() for c in claims], columns=CLAIM_COLUMNS)
    df["seeds_per_variant"] = df["seeds_per_variant"].astype("Int64")
    return df


def tests_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """claim_tests.csv: one row per comparison of every claim (TEST_COLUMNS)."""
    return pd.DataFrame([t for c in claims for t in c.tests], columns=TEST_COLUMNS)


def seeds_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """claim_seeds.csv: every comparison seed by seed (SEED_COLUMNS; empty without per-seed results)."""
    return pd.DataFrame([t for c in claims for t in c.per_seed], columns=SEED_COLUMNS)


def alpha_summary(alpha_df: pd.DataFrame, acc_col: str = "test_acc") -> pd.DataFrame:
    """Per alpha: mean and sd (ddof=1; NaN for one seed) of accuracy and level-1 DS sum over seeds."""
    return (alpha_df.groupby("alpha")
            .agg(acc_mean=(acc_col, "mean"), acc_sd=(acc_col, "std"), ds_mean=("ds_level1_sum", "mean"),
                 ds_sd=("ds_level1_sum", "std"), n_seeds=("seed", "nunique"))
            .reset_index().sort_values("alpha"))  # fmt: skip
