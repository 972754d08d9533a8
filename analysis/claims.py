"""The paper's published numbers and claims, and explicit rules that decide whether each claim holds on our data.

``PAPER`` holds every number the paper's text gives (Tables 1-4) and the qualitative statement behind each figure
(Figs. 2-4, 6, 8, 10-13 carry no numbers in the text), each with its source. Each ``claim_*`` function takes the
tidy DataFrame of one experiment and returns a ``Claim``: the claim, the paper's figure, our figure, the verdict
and the rule that produced it, written out. Rules compare means; where training is repeated over seeds the means
are over seeds, and a difference no larger than the combined seed standard deviation decides nothing: such a pair
is marked "within seed noise", and a claim whose every pair is within noise is "inconclusive". Verdicts: "holds",
"partly" (some of the compared pairs), "does not hold", "inconclusive", "not measured".

Pairs: the paper compares each constrained model with its unconstrained counterpart, C with standard and ADV+C with
ADV (``PAIRS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PAPER_SOURCE = (
    "Wu, Sang, Zhao, Chen: 'An Experimental Study of Semantic Continuity for Deep Learning Models' "
    "(text in shared/paper/semantic-continuity-paper.txt)"
)

PAIRS: tuple[tuple[str, str], ...] = (("C", "standard"), ("ADV+C", "ADV"))

HOLDS, PARTLY, FAILS, NOT_MEASURED = "holds", "partly", "does not hold", "not measured"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, NOT_MEASURED)

#: Every number the paper's text gives, with where it stands. Accuracies in percent.
PAPER: dict[str, Any] = {
    "source": PAPER_SOURCE,
    "table1": {
        "source": "section 4.2, Table 1: parameters of the perturbation levels",
        "levels": {
            1: {"brightness": 16, "contrast": 1.25, "saturation": 1.25, "hue": 0.1},
            2: {"brightness": 32, "contrast": 1.50, "saturation": 1.50, "hue": 0.2},
            3: {"brightness": 48, "contrast": 1.75, "saturation": 1.75, "hue": 0.3},
            4: {"brightness": 64, "contrast": 2.0, "saturation": 2.0, "hue": 0.4},
        },
    },
    "table2": {
        "source": "section 4.4, Table 2: clean and PGD accuracy (%); PGD eps 8 px, step 2 px, 10 iterations",
        "ResNet18 / CIFAR-100": {
            "standard": {"clean": 66.99, "adv": 9.34},
            "C": {"clean": 67.01, "adv": 16.01},
            "ADV": {"clean": 63.80, "adv": 44.30},
            "ADV+C": {"clean": 59.62, "adv": 54.04},
        },
        "ResNet50 / ImageNet": {
            "standard": {"clean": 73.42, "adv": 0.49},
            "C": {"clean": 72.01, "adv": 0.94},
            "ADV": {"clean": 55.43, "adv": 8.25},
            "ADV+C": {"clean": 50.66, "adv": 32.55},
        },
    },
    "table3": {
        "source": "section 4.6, Table 3: test accuracy (%) of the CIFAR-100 ResNet18s fine-tuned on each target",
        "targets": ("cifar10", "svhn", "mnist"),
        "standard": {"cifar10": 84.61, "svhn": 94.25, "mnist": 99.32},
        "C": {"cifar10": 84.78, "svhn": 94.60, "mnist": 99.37},
        "ADV": {"cifar10": 85.17, "svhn": 94.66, "mnist": 99.50},
        "ADV+C": {"cifar10": 86.40, "svhn": 94.90, "mnist": 99.50},
    },
    "table4": {
        "source": "section 4.7, Table 4 (the text calls it 'Table 3'): test accuracy (%) on Colorful MNIST, "
        "95% red backgrounds in training, 95% blue in test",
        "standard": 96.01,
        "C": 97.54,
    },
    "figures": {
        "fig2": "section 2.2, Figs. 1-2 (ResNet50, ImageNet val): 'the perturbated samples are not the closest "
        "samples to the original sample in the representation space'",
        "fig3": "section 4.2, Fig. 3 (ResNet18, CIFAR-100; referenced as 'Fig. LABEL:fig:diff_result'): 'the DS of "
        "the model with semantic continuity constraints is smaller than that of the original model'",
        "fig4": "section 4.2, Fig. 4 (ResNet18, CIFAR-100): 'as alpha increases, the accuracy of the model decreases "
        "slightly, but the semantic continuity of the model is significantly improved' (continuity = sum of DS "
        "over the four kinds at level 1); the paper settles on alpha = 1.0",
        "fig6": "section 4.3.1, Fig. 6 (cited as 'Table 6'): 'the models with semantic continuity constraints are "
        "sensitive to the semantic perturbation' (lower accuracy on RGB-channel-translated images)",
        "fig8": "section 4.3.2, Fig. 8 (cited as 'Table 8'): 'the accuracy of the semantic-continuity-constrained "
        "model has been more affected' by randomising the centre area",
        "fig10": "section 4.3.3, Fig. 10 (cited as 'Table 10'; Figs. 9 and 10 share a caption): 'rapid decline in the "
        "classification accuracy of the re-spliced image of the model with continuity constraints'",
        "fig11_13": "section 4.5, Figs. 11-13 (IG, GradCAM, LIME; examples only): C and ADV+C attributions are "
        "'smoother and more concentrated in the recognized object' than those of standard and ADV",
    },
}


#: The paper's figure for each figure-based claim, short enough for the claims table (full quotes in PAPER).
FIGURE_SHORT = {
    "fig2": "Figs. 1-2, no numbers: perturbed copies 'are not the closest samples to the original'",
    "fig3": "Fig. 3, no numbers: constrained models' DS 'is smaller than that of the original model'",
    "fig4_right": "Fig. 4 right, no numbers: continuity 'significantly improved' as alpha grows",
    "fig4_left": "Fig. 4 left, no numbers: accuracy 'decreases slightly' as alpha grows",
    "fig6": "Fig. 6, no numbers: constrained models more sensitive (lower accuracy)",
    "fig8": "Fig. 8, no numbers: constrained models 'more affected' (lower accuracy)",
    "fig10": "Fig. 10, no numbers: 'rapid decline' of the constrained models' accuracy",
    "fig11_13": "Figs. 11-13, examples only: constrained maps 'more concentrated in the recognized object'",
}


@dataclass
class Claim:
    """One row of the claims table."""

    key: str
    claim: str
    paper: str  # where in the paper
    paper_figure: str  # the paper's number or statement
    ours: str
    verdict: str
    rule: str
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["details"] = _jsonable(d["details"])
        return d


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def not_measured(key: str, claim: str, paper: str, paper_figure: str, rule: str, why: str) -> Claim:
    return Claim(key, claim, paper, paper_figure, f"not measured ({why})", NOT_MEASURED, rule)


# ----------------------------------------------------------------------------- formatting


def pct(x: float, sd: float | None = None) -> str:
    """``41.2%`` or ``41.2 ± 0.8%``."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if sd is None or not np.isfinite(sd):
        return f"{100 * x:.1f}%"
    return f"{100 * x:.1f} ± {100 * sd:.1f}%"


def num(x: float, sd: float | None = None) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    text = f"{x:.3g}"
    return text if sd is None or not np.isfinite(sd) else f"{text} ± {sd:.2g}"


# ----------------------------------------------------------------------------- pairwise rules


@dataclass
class Stat:
    """A mean with its spread (sd over seeds, or None for one measurement) and how many it summarises."""

    mean: float
    sd: float | None = None
    n: int = 1


def stats_by_variant(df: pd.DataFrame, value: str, seed_col: str = "seed") -> dict[str, Stat]:
    """Per variant: the mean of ``value`` over rows (seeds), its sample sd (None for one row) and the count."""
    out = {}
    for variant, g in df.groupby("variant", sort=False):
        vals = g[value].astype(float).to_numpy()
        vals = vals[np.isfinite(vals)]
        if len(vals) == 0:
            continue
        out[str(variant)] = Stat(float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else None, len(vals))
    return out


def compare_pairs(
    values: Mapping[str, Stat],
    better: str,
    pairs: Sequence[tuple[str, str]] = PAIRS,
    fmt=pct,
) -> tuple[str, str, dict[str, Any]]:
    """Verdict over ``pairs`` (constrained, baseline): the constrained variant must be ``better`` ("higher" or
    "lower") than its baseline. holds = every measured pair; partly = some; does not hold = none.

    Returns (verdict, our figure as text, details). A pair whose difference is no larger than the combined seed
    standard deviation is "within seed noise": it supports nothing, so a claim can at best partly hold while one
    is, and is "inconclusive" when all are.
    """
    if better not in ("higher", "lower"):
        raise ValueError("better must be 'higher' or 'lower'")
    parts, results, details = [], [], {}
    for a, b in pairs:
        if a not in values or b not in values:
            continue
        va, vb = values[a], values[b]
        ok = va.mean > vb.mean if better == "higher" else va.mean < vb.mean
        noise = None
        if va.sd is not None and vb.sd is not None:
            noise = math.sqrt(va.sd**2 + vb.sd**2)
        within = noise is not None and abs(va.mean - vb.mean) <= noise
        results.append(None if within else ok)
        parts.append(
            f"{a} {fmt(va.mean, va.sd)} vs {b} {fmt(vb.mean, vb.sd)}" + (" (within seed noise)" if within else "")
        )
        details[f"{a} vs {b}"] = {"a": va.mean, "b": vb.mean, "a_sd": va.sd, "b_sd": vb.sd, "ok": ok,
                                  "within_noise": within, "n": [va.n, vb.n]}  # fmt: skip
    if not results:
        return NOT_MEASURED, "not measured (variants missing)", details
    if all(r is None for r in results):
        verdict = INCONCLUSIVE
    else:
        verdict = HOLDS if all(results) else FAILS if not any(results) else PARTLY
    seeds = {v.n for v in values.values()}
    suffix = f" (mean ± sd over {max(seeds)} seeds)" if max(seeds) > 1 else ""
    return verdict, "; ".join(parts) + suffix, details


def _pair_rule(metric: str, better: str) -> str:
    rel = ">" if better == "higher" else "<"
    return f"{metric}: C {rel} standard and ADV+C {rel} ADV (holds: both; partly: one; does not hold: neither)"


# ----------------------------------------------------------------------------- the claims


def claim_discontinuity(ranks: pd.DataFrame | None) -> Claim:
    """Section 2, Figs. 1-2: for the standard model a perturbed copy is usually not the original's nearest
    same-class neighbour. ``ranks``: ``analysis.embeddings.neighbour_ranks`` rows with a variant column."""
    key, claim, paper = "discontinuity", "Standard models are semantically discontinuous", "2.2, Figs. 1-2"
    rule = "standard: more than half of the perturbed copies (anchors x kinds x levels) have neighbour rank > 1"
    if ranks is None or ranks.empty or "standard" not in set(ranks["variant"]):
        return not_measured(key, claim, paper, FIGURE_SHORT["fig2"], rule, "no neighbour ranks for standard")
    shares = {}
    for variant, g in ranks.groupby("variant", sort=False):
        shares[variant] = float((g["rank"] > 1).mean())
    share = shares["standard"]
    n = int((ranks["variant"] == "standard").sum())
    median = float(ranks.loc[ranks["variant"] == "standard", "rank"].median())
    others = ", ".join(f"{v} {s:.0%}" for v, s in shares.items() if v != "standard")
    ours = f"standard: {share:.0%} of {n} perturbed copies are outranked by a same-class image (median rank " \
           f"{median:g})" + (f"; {others}" if others else "")  # fmt: skip
    return Claim(key, claim, paper, FIGURE_SHORT["fig2"], ours, HOLDS if share > 0.5 else FAILS, rule,
                 {"share_rank_gt_1": shares, "n": n})  # fmt: skip


def claim_continuity(ds: pd.DataFrame | None) -> Claim:
    """Fig. 3: the constrained models have the smaller DS. ``ds``: ``analysis.continuity.ds_table``."""
    key, claim, paper = "continuity", "The continuity constraint lowers DS under colour perturbations", "4.2, Fig. 3"
    rule = _pair_rule("sum over the four kinds of the mean level-1 DS", "lower")
    if ds is None or ds.empty:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig3"], rule, "no DS table")
    level1 = ds[ds["level"] == 1].groupby("variant", sort=False)["ds_mean"].sum()
    values = {v: Stat(float(x)) for v, x in level1.items()}
    verdict, ours, details = compare_pairs(values, "lower", fmt=num)
    cells = []
    for a, b in PAIRS:
        if a in values and b in values:
            pa = ds[ds["variant"] == a].set_index(["kind", "level"])["ds_mean"]
            pb = ds[ds["variant"] == b].set_index(["kind", "level"])["ds_mean"]
            common = pa.index.intersection(pb.index)
            cells.append(f"{a} < {b} in {int((pa[common] < pb[common]).sum())}/{len(common)} kind x level cells")
    ours = f"level-1 DS sum: {ours}" + (f"; {'; '.join(cells)}" if cells else "")
    return Claim(key, claim, paper, FIGURE_SHORT["fig3"], ours, verdict, rule, details)


def alpha_summary(alpha_df: pd.DataFrame, acc_col: str = "test_acc") -> pd.DataFrame:
    """Per alpha: mean and sd (ddof=1; NaN for one seed) of accuracy and level-1 DS sum over seeds."""
    return (
        alpha_df.groupby("alpha")
        .agg(
            acc_mean=(acc_col, "mean"),
            acc_sd=(acc_col, "std"),
            ds_mean=("ds_level1_sum", "mean"),
            ds_sd=("ds_level1_sum", "std"),
            n_seeds=("seed", "nunique"),
        )
        .reset_index()
        .sort_values("alpha")
    )


def claim_alpha_continuity(alpha_df: pd.DataFrame | None, acc_col: str = "test_acc") -> Claim:
    key, claim, paper = "alpha_continuity", "A larger alpha gives a more continuous model", "4.2, Fig. 4 (right)"
    rule = ("level-1 DS sum (mean over seeds) at the largest alpha < at the smallest alpha, and Spearman "
            "rho(alpha, DS sum) < 0")  # fmt: skip
    if alpha_df is None or alpha_df["alpha"].nunique() < 2:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig4_right"], rule, "fewer than two alphas")
    s = alpha_summary(alpha_df, acc_col)
    lo, hi = s.iloc[0], s.iloc[-1]
    rho = float(s["alpha"].rank().corr(s["ds_mean"].rank()))
    ok = hi["ds_mean"] < lo["ds_mean"] and rho < 0
    sd = lambda x: None if not np.isfinite(x) else float(x)  # noqa: E731
    ours = (f"DS sum {num(lo['ds_mean'], sd(lo['ds_sd']))} at alpha {lo['alpha']:g} -> "
            f"{num(hi['ds_mean'], sd(hi['ds_sd']))} at alpha {hi['alpha']:g}; Spearman rho {rho:.2f} over "
            f"{len(s)} alphas, {int(s['n_seeds'].max())} seed(s)")  # fmt: skip
    return Claim(key, claim, paper, FIGURE_SHORT["fig4_right"], ours, HOLDS if ok else FAILS, rule,
                 {"summary": s.to_dict("records"), "spearman": rho})  # fmt: skip


def claim_alpha_accuracy(alpha_df: pd.DataFrame | None, acc_col: str = "test_acc", tolerance: float = 0.05) -> Claim:
    key, claim, paper = "alpha_accuracy", "A larger alpha costs only a little accuracy", "4.2, Fig. 4 (left)"
    rule = (f"accuracy (mean over seeds) at the largest alpha is at most {100 * tolerance:g} points below "
            "the accuracy at the smallest alpha")  # fmt: skip
    if alpha_df is None or alpha_df["alpha"].nunique() < 2:
        return not_measured(key, claim, paper, FIGURE_SHORT["fig4_left"], rule, "fewer than two alphas")
    s = alpha_summary(alpha_df, acc_col)
    lo, hi = s.iloc[0], s.iloc[-1]
    drop = float(lo["acc_mean"] - hi["acc_mean"])
    sd = lambda x: None if not np.isfinite(x) else float(x)  # noqa: E731
    ours = (f"accuracy {pct(lo['acc_mean'], sd(lo['acc_sd']))} at alpha {lo['alpha']:g} -> "
            f"{pct(hi['acc_mean'], sd(hi['acc_sd']))} at alpha {hi['alpha']:g} "
            f"({'drop' if drop >= 0 else 'gain'} of {abs(100 * drop):.1f} points)")  # fmt: skip
    return Claim(key, claim, paper, FIGURE_SHORT["fig4_left"], ours, HOLDS if drop <= tolerance else FAILS, rule,
                 {"drop": drop})  # fmt: skip


PROBE_FIGURES = {"channel_translation": "fig6", "randomised_centre": "fig8", "sliding_puzzle": "fig10"}


def claim_probe(probes: pd.DataFrame | None, probe: str) -> Claim:
    """Figs. 6/8/10: the constrained models lose more accuracy on semantics-destroying probes."""
    fig = PROBE_FIGURES[probe]
    key = f"probe_{probe}"
    claim = f"Constrained models rely less on non-semantic cues ({probe.replace('_', ' ')})"
    paper = f"4.3, Fig. {fig[3:]}"
    rule = _pair_rule(f"mean accuracy over the {probe.replace('_', ' ')} levels (clean excluded)", "lower")
    if probes is None or probes.empty or probe not in set(probes["probe"]):
        return not_measured(key, claim, paper, FIGURE_SHORT[fig], rule, "probe not run")
    df = probes[(probes["probe"] == probe) & (probes["level_label"] != "clean")]
    means = df.groupby("variant", sort=False)["accuracy"].mean()
    clean = probes[(probes["probe"] == probe) & (probes["level_label"] == "clean")].set_index("variant")["accuracy"]
    values = {v: Stat(float(x)) for v, x in means.items()}
    verdict, ours, details = compare_pairs(values, "lower")
    rel = ", ".join(f"{v} keeps {means[v] / clean[v]:.0%} of clean" for v in means.index if clean.get(v, 0) > 0)
    return Claim(key, claim, paper, FIGURE_SHORT[fig], f"{ours}; {rel}", verdict, rule, details)


def _table2_text(a: str, b: str, col: str) -> str:
    t = PAPER["table2"]
    return "; ".join(f"{net}: {a} {t[net][a][col]:.2f}% vs {b} {t[net][b][col]:.2f}%"
                     for net in ("ResNet18 / CIFAR-100", "ResNet50 / ImageNet"))  # fmt: skip


def claim_robustness(robust: pd.DataFrame | None, pair: tuple[str, str], n_images: int | None = None) -> Claim:
    """Table 2 under the paper's PGD-10: ``pair`` = ("ADV+C", "ADV") or ("C", "standard")."""
    a, b = pair
    key = f"robustness_{a}_vs_{b}"
    claim = (f"{a} is more robust than {b} under PGD-10" if a == "ADV+C"
             else f"{a} has 'a certain defensive effect' over {b} under PGD-10")  # fmt: skip
    rule = f"PGD-10 accuracy (eps 8/255, step 2/255): {a} > {b}"
    paper, fig = "4.4, Table 2", _table2_text(a, b, "adv")
    if robust is None or robust.empty or not {a, b} <= set(robust["variant"]):
        return not_measured(key, claim, paper, fig, rule, "robustness not run")
    values = {v: Stat(float(x), n=1) for v, x in robust.set_index("variant")["pgd_acc"].items()}
    verdict, ours, details = compare_pairs(values, "higher", pairs=[pair])
    if n_images:
        se = max(np.sqrt(values[v].mean * (1 - values[v].mean) / n_images) for v in pair)
        ours += f" on {n_images} test images (binomial s.e. <= {100 * se:.1f} points)"
    return Claim(key, claim, paper, fig, ours, verdict, rule, details)


def claim_robustness_strongest(audit: pd.DataFrame | None, n_images: int | None = None) -> Claim:
    """Table 2 re-checked under the strongest attack of the audit (gradient masking check, DESIGN section 4)."""
    key, claim = "robustness_strongest", "ADV+C is more robust than ADV under the strongest attack we ran"
    rule = "lowest accuracy over all audit attacks (more steps, restarts, margin loss): ADV+C > ADV"
    paper, fig = "4.4, Table 2 (re-checked)", _table2_text("ADV+C", "ADV", "adv")
    if audit is None or audit.empty or not {"ADV+C", "ADV"} <= set(audit["variant"]):
        return not_measured(key, claim, paper, fig, rule, "attack audit not run")
    worst = audit.groupby("variant", sort=False)["accuracy"].min()
    which = audit.loc[audit.groupby("variant", sort=False)["accuracy"].idxmin()].set_index("variant")["attack"]
    values = {v: Stat(float(x)) for v, x in worst.items()}
    verdict, ours, details = compare_pairs(values, "higher", pairs=[("ADV+C", "ADV")])
    ours += f" (attacks: ADV+C {which['ADV+C']}, ADV {which['ADV']}" + (f"; {n_images} images)" if n_images else ")")
    return Claim(key, claim, paper, fig, ours, verdict, rule, details)


ATTRIBUTION_NAMES = {"integrated_gradients": "Integrated Gradients", "gradcam": "GradCAM", "lime": "LIME"}


def claim_mask_share(attr: pd.DataFrame | None, method: str) -> Claim:
    """Figs. 11-13, measured: the constrained models put more of their attribution on the object."""
    name = ATTRIBUTION_NAMES.get(method, method)
    key = f"interpretability_{method}"
    claim = f"Constrained models' {name} maps concentrate on the object"
    paper = "4.5, Figs. 11-13"
    rule = _pair_rule(f"{name}: mean share of positive attribution inside the object mask", "higher")
    fig = FIGURE_SHORT["fig11_13"]
    if attr is None or attr.empty or method not in set(attr["method"]):
        return not_measured(key, claim, paper, fig, rule, f"{name} not run")
    df = attr[attr["method"] == method]
    if not np.isfinite(df["mask_share"].astype(float)).any():
        return not_measured(key, claim, paper, fig, rule, "the data set has no object masks")
    values = {v: Stat(float(x)) for v, x in df.set_index("variant")["mask_share"].items() if np.isfinite(x)}
    verdict, ours, details = compare_pairs(values, "higher")
    n = int(df["n_images"].iloc[0]) if "n_images" in df else None
    return Claim(key, claim, paper, fig, ours + (f" ({n} images)" if n else ""), verdict, rule, details)


def claim_transfer(transfer: pd.DataFrame | None, target: str) -> Claim:
    """Table 3: the constrained models fine-tune to a higher accuracy."""
    key, claim, paper = f"transfer_{target}", f"Constrained models transfer better (target {target})", "4.6, Table 3"
    t3 = PAPER["table3"]
    fig = "C > standard and ADV+C >= ADV on CIFAR-10, SVHN, MNIST; " + "; ".join(
        f"{tg}: {t3['C'][tg]:.2f} vs {t3['standard'][tg]:.2f}, {t3['ADV+C'][tg]:.2f} vs {t3['ADV'][tg]:.2f}%"
        for tg in t3["targets"]
    )
    rule = _pair_rule(f"test accuracy after fine-tuning on {target} (mean over seeds)", "higher")
    if transfer is None or transfer.empty or target not in set(transfer["target"]):
        return not_measured(key, claim, paper, fig, rule, "transfer not run")
    values = stats_by_variant(transfer[transfer["target"] == target], "test_acc")
    verdict, ours, details = compare_pairs(values, "higher")
    return Claim(key, claim, paper, fig, ours, verdict, rule, details)


def claim_fairness(fair: pd.DataFrame | None) -> Claim:
    """Table 4: C is less misled by the colour bias than standard."""
    key, claim, paper = "fairness", "The continuity constraint reduces a colour bias", "4.7, Table 4"
    fig = f"C {PAPER['table4']['C']:.2f}% vs standard {PAPER['table4']['standard']:.2f}%"
    rule = "test accuracy on the colour-flipped test split (mean over seeds): C > standard"
    if fair is None or fair.empty or not {"C", "standard"} <= set(fair["variant"]):
        return not_measured(key, claim, paper, fig, rule, "fairness not run")
    values = stats_by_variant(fair, "test_acc")
    verdict, ours, details = compare_pairs(values, "higher", pairs=[("C", "standard")])
    if {"ADV+C", "ADV"} <= set(values):
        extra = compare_pairs(values, "higher", pairs=[("ADV+C", "ADV")])[1]
        ours += f"; not claimed by the paper: {extra}"
    return Claim(key, claim, paper, fig, ours, verdict, rule, details)


def evaluate_claims(
    results: Mapping[str, pd.DataFrame | None], n_images: Mapping[str, int] | None = None
) -> list[Claim]:
    """Every claim, from the experiments' tables (missing ones give "not measured" rows).

    ``results`` keys: embeddings (neighbour ranks with a variant column), continuity (ds_table), alpha_sweep (with a
    ``test_acc`` column), probes, robustness, attack_audit, attributions, transfer, fairness.
    """
    n_images = n_images or {}
    get = results.get
    claims = [
        claim_discontinuity(get("embeddings")),
        claim_continuity(get("continuity")),
        claim_alpha_continuity(get("alpha_sweep")),
        claim_alpha_accuracy(get("alpha_sweep")),
        *[claim_probe(get("probes"), p) for p in PROBE_FIGURES],
        claim_robustness(get("robustness"), ("ADV+C", "ADV"), n_images.get("robustness")),
        claim_robustness(get("robustness"), ("C", "standard"), n_images.get("robustness")),
        claim_robustness_strongest(get("attack_audit"), n_images.get("attack_audit")),
        *[claim_mask_share(get("attributions"), m) for m in ATTRIBUTION_NAMES],
    ]
    transfer = get("transfer")
    targets = list(dict.fromkeys(transfer["target"])) if transfer is not None and not transfer.empty else ["(none)"]
    claims += [claim_transfer(transfer, t) for t in targets]
    claims.append(claim_fairness(get("fairness")))
    return claims


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a table (details left out)."""
    return pd.DataFrame([{k: v for k, v in c.row().items() if k != "details"} for c in claims],
                        columns=["key", "claim", "paper", "paper_figure", "ours", "verdict", "rule"])  # fmt: skip
