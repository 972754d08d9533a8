"""REPORT.md sections on continuity, section 2 and the probes (the claims, tables 1-4 and settings are in
``analysis.report_markdown``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.claims import PROBE_FIGURES, alpha_summary
from analysis.experiments.registry import Context
from analysis.formatting import md_table, num, pct
from analysis.gradcam_resolution import MIN_SIDE, GradcamResolution, coarse_variants, mark_table
from analysis.paper import PAPER
from models.perturbations import KIND_REGISTRY

Status = dict[str, Any]


def figure_md(status: Status, name: str, stem: str) -> str:
    figs = [f for f in status.get(name, {}).get("files", {}).get("figures", []) if Path(f).stem.startswith(stem)]
    return "\n".join(f"![{Path(f).stem}]({f})" for f in figs)


def missing(status: Status, name: str) -> str | None:
    st = status.get(name, {"status": "skipped"})
    if st["status"] == "ok":
        return None
    left_out = f"left out: {st['left_out']}" if st.get("left_out") else None
    why = next((f" ({w})" for w in (st.get("error"), st.get("reason"), left_out) if w), "")
    return f"*Not available: experiment `{name}` {st['status']}{why}*"


def ran_text(status: Status, name: str) -> str:
    """What the experiment actually ran, as recorded (``Output.ran``)."""
    ran = status.get(name, {}).get("ran") or {}
    return "; ".join(f"{k} {v}" for k, v in ran.items() if not isinstance(v, dict))


def section_table1() -> str:
    """Table 1 from ``KIND_REGISTRY``: our levels beside the paper's ("-" for a kind the paper lacks)."""
    rows = []
    for level in range(1, 5):
        row: dict[str, Any] = {"level": level}
        same = True
        for name, kind in KIND_REGISTRY.items():
            paper = kind.paper_levels[level - 1] if kind.paper_levels else None
            row[f"paper {name}"] = "-" if paper is None else f"{paper:g}"
            row[f"ours {name}"] = f"{kind.levels[level - 1]:g}"
            same &= paper is None or np.isclose(float(paper), float(kind.levels[level - 1]))
        row["same"] = "yes" if same else "**no**"
        rows.append(row)
    extra = [k for k, kind in KIND_REGISTRY.items() if kind.paper_levels is None]
    note = f" Kinds the paper does not have: {', '.join(extra)}." if extra else ""
    return ("## Table 1: perturbation levels\n\n" + md_table(pd.DataFrame(rows)) + "\n\nBrightness is additive on "
            "the 0..255 scale (`clamp(x + k/255, 0, 1)`); contrast, saturation and hue are torchvision's factors "
            f"(`models.perturbations.KIND_REGISTRY`).{note} Source: {PAPER['table1']['source']}.\n")  # fmt: skip


def section_continuity(ctx: Context, status: Status) -> str:
    out = ["## Figure 3: semantic continuity (DS)", "", f"**Paper:** {PAPER['figures']['fig3']}", ""]
    if (m := missing(status, "continuity")) is not None:
        return "\n".join([*out, m, ""])
    ds = ctx.results["continuity"]["continuity"]
    rows = []
    for variant, g in ds.groupby("variant", sort=False):
        r: dict[str, Any] = {"variant": variant}
        for kind in dict.fromkeys(g["kind"]):
            for level in (1, 4):
                cell = g[(g["kind"] == kind) & (g["level"] == level)]
                if len(cell):
                    r[f"{kind} L{level}"] = num(cell["ds_mean"].iloc[0])
        r["sum L1"] = num(g[g["level"] == 1]["ds_mean"].sum())
        if "ds_normalised_mean" in g:  # beside the raw DS: on the variant's own logit scale (issue 23)
            r["sum L1 / same-class spread"] = num(g[g["level"] == 1]["ds_normalised_mean"].sum())
            r["same-class spread"] = num(g["spread"].iloc[0])
        rows.append(r)
    out += [f"**Ours** (mean DS over {int(ds['n'].iloc[0])} test images; L1 / L4 = level 1 / 4):", "",
            md_table(pd.DataFrame(rows)), "", figure_md(status, "continuity", "fig3"), ""]  # fmt: skip
    return "\n".join(out)


def section_alpha(ctx: Context, status: Status) -> str:
    out = ["## Figure 4: accuracy and continuity against alpha", "", f"**Paper:** {PAPER['figures']['fig4']}", ""]
    if (m := missing(status, "alpha_sweep")) is not None:
        return "\n".join([*out, m, ""])
    s = alpha_summary(ctx.results["alpha_sweep"]["alpha_sweep"])
    rows = [{"alpha": f"{r.alpha:g}", "test accuracy": pct(r.acc_mean, r.acc_sd),
             "level-1 DS sum": num(r.ds_mean, r.ds_sd), "seeds": int(r.n_seeds)} for r in s.itertuples()]  # fmt: skip
    out += ["**Ours** (mean ± sd over seeds):", "", md_table(pd.DataFrame(rows)), "",
            *status["alpha_sweep"]["notes"], "", figure_md(status, "alpha_sweep", "fig4"), ""]  # fmt: skip
    return "\n".join(out)


def section_rank(ctx: Context, status: Status) -> str:
    out = ["## Section 2: semantic discontinuity (Figs. 1-2 as numbers)", "", f"**Paper:** {PAPER['figures']['fig2']}",
           ""]  # fmt: skip
    parts = ctx.results.get("neighbourhood_rank")
    if parts is None:
        return "\n".join([*out, missing(status, "neighbourhood_rank") or "", ""])
    exist, df = parts.get("existence"), parts["neighbourhood_rank"]
    if exist is not None and len(exist):
        t = pd.DataFrame(
            {
                "variant": exist["variant"],
                "anchors with a copy outranked": [
                    f"{pct(r.share)} [{pct(r.ci_low)}, {pct(r.ci_high)}]" for r in exist.itertuples()
                ],
                "anchors": exist["n_anchors"],
                "median same-class candidates": exist["median_candidates"],
            }
        )
        out += ["**Existence** (the paper's claim): share of anchors with at least one perturbed copy (any kind and "
                "level) that a same-class test image outranks, i.e. is nearer to the anchor by DS; Clopper-Pearson "
                "95% CI:", "", md_table(t), ""]  # fmt: skip
    cells = df.assign(cell=[f"{num(r.share_closer_mean)} [{num(r.share_closer_ci_low)}, {num(r.share_closer_ci_high)}]"
                            for r in df.itertuples()])  # fmt: skip
    piv = cells.pivot_table(index="variant", columns=["kind", "level"], values="cell", aggfunc="first", sort=False)
    piv.columns = [f"{k} L{lvl}" for k, lvl in piv.columns]
    out += ["**Pool-size-free statistic**: share of same-class images nearer than the copy (0 = the copy is the "
            "nearest), mean over anchors with a bootstrap 95% CI, per kind and level:", "",
            md_table(piv.reset_index()), "", *status["neighbourhood_rank"].get("notes", []), ""]  # fmt: skip
    if (emb := ctx.tables.get("embeddings")) is not None:
        g = emb.groupby("variant", sort=False)
        summ = pd.DataFrame(
            {
                "perturbed copies": g.size(),
                "rank > 1": g["rank"].apply(lambda r: pct((r > 1).mean(), None, 0)),
                "median rank": g["rank"].median(),
                "candidates": g["n_candidates"].max(),
            }
        ).reset_index()
        out += [f"Neighbour ranks of the perturbed copies of {emb['anchor'].nunique()} anchor(s) among same-class "
                "test images (rank 1 = nearest; the dashboard's embeddings page):", "", md_table(summ), ""]  # fmt: skip
    return "\n".join(out)


def section_probes(ctx: Context, status: Status) -> str:
    out = ["## Figures 6, 8, 10: semantic probes", ""]
    if (m := missing(status, "probes")) is not None:
        return "\n".join([*out, m, ""])
    df = ctx.results["probes"]["probes"]
    n = int(df["n_images"].iloc[0]) if "n_images" in df else len(ctx.eval)
    for probe, fig in PROBE_FIGURES.items():
        sub = df[df["probe"] == probe]
        piv = sub.pivot_table(index="variant", columns="level_label", values="accuracy", sort=False)
        piv = piv[list(dict.fromkeys(sub["level_label"]))]
        out += [f"### Figure {fig[3:]}: {probe.replace('_', ' ')}", "", f"**Paper:** {PAPER['figures'][fig]}", "",
                f"**Ours** (accuracy on {n} test images):", "", md_table(piv.map(pct).reset_index()), "",
                figure_md(status, "probes", fig + "_"), ""]  # fmt: skip
    out += [f"- {note}" for note in status["probes"].get("notes", [])] + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- GradCAM's resolution


def coarse_gradcam(ctx: Context) -> dict[str, GradcamResolution]:
    """The zoo's variants whose GradCAM map is below MIN_SIDE x MIN_SIDE at the test images' size."""
    return coarse_variants(ctx.models, int(ctx.test.images.shape[-1]))


def mark_gradcam(table: pd.DataFrame, coarse: dict[str, GradcamResolution]) -> pd.DataFrame:
    """``table`` (with ``variant`` and ``method`` columns) with the GradCAM rows of a coarse variant marked."""
    return mark_table(table, coarse, bold=True)


def gradcam_notes(coarse: dict[str, GradcamResolution]) -> list[str]:
    """One line per coarse variant: its map size and a finer layer; the GradCAM numbers above do not localise."""
    if not coarse:
        return []
    lines = [f"**GradCAM resolution.** Rows marked with a map size read a map smaller than {MIN_SIDE}x{MIN_SIDE}: "
             "too coarse to localise an object, so its mask share and AUCs say little about where the network "
             "looks, and its stability is high by construction (a few numbers per image barely move).", ""]  # fmt: skip
    lines += [f"- `{v}`: {r.caption()}" for v, r in coarse.items()]
    return [*lines, ""]


def gradcam_claims_note(ctx: Context, claims: Sequence[Any]) -> str:
    """A line under the claims when a GradCAM claim rests on coarse maps ('' otherwise)."""
    keys = [c.key for c in claims if "gradcam" in c.key and c.tests]  # measured GradCAM claims only
    coarse = coarse_gradcam(ctx) if keys else {}
    if not coarse:
        return ""
    which = ", ".join(f"`{v}` {r.size} (`{r.layer}`)" for v, r in coarse.items())
    return (f"**GradCAM resolution:** {', '.join(f'`{k}`' for k in keys)} rests on GradCAM maps below "
            f"{MIN_SIDE}x{MIN_SIDE}: {which}; see Section 4.5 for a finer layer.\n")  # fmt: skip


# ----------------------------------------------------------------------------- ROAD, sanity checks, continuity


def _ci_cell(mean: float, lo: float, hi: float) -> str:
    """``mean [low, high]``, 3 significant digits each (ROAD's changes of a probability can be tiny)."""
    return "n/a" if pd.isna(mean) else f"{num(mean)} [{num(lo)}, {num(hi)}]"


def _notes(status: Status, name: str) -> list[str]:
    return [f"- {note}" for note in status.get(name, {}).get("notes", [])]


def section_road(ctx: Context, status: Status) -> str:
    """ROAD per variant and method (mean [95% CI]) and the paired differences between variants."""
    out = ["### Faithfulness by ROAD (most / least relevant first)", ""]
    parts = ctx.results.get("road")
    if parts is None:
        return "\n".join([*out, missing(status, "road") or "", ""])
    summary, paired = parts["road"], parts.get("paired")
    cells = summary.assign(cell=[_ci_cell(r.mean, r.ci_low, r.ci_high) for r in summary.itertuples()])
    piv = cells.pivot_table(index=["variant", "method"], columns="score", values="cell", aggfunc="first", sort=False)
    piv = piv[[c for c in ("morf", "lerf", "combined") if c in piv.columns]]
    n = summary.groupby("method", sort=False)["n_images"].max()
    out += ["Mean over images with its bootstrap 95% CI (MoRF: lower = more faithful; LeRF and combined: higher "
            f"= more faithful); images per method: {', '.join(f'{m} {k}' for m, k in n.items())}:", "",
            md_table(piv.reset_index()), ""]  # fmt: skip
    if paired is not None and len(paired):
        t = paired.assign(**{"difference [95% CI]": [_ci_cell(r.effect, r.ci_low, r.ci_high)
                                                      for r in paired.itertuples()],
                             "p (Holm)": paired["p_holm"].map(lambda p: f"{p:.3g}"),
                             "more faithful": paired["better"]})  # fmt: skip
        out += ["Paired differences between variants on the same images (a - b; paired bootstrap):", "",
                md_table(t[["method", "score", "comparison", "kind", "difference [95% CI]", "p (Holm)", "n_images",
                            "more faithful"]]), ""]  # fmt: skip
    return "\n".join([*out, *_notes(status, "road"), "", figure_md(status, "road", "road"), ""])


def section_sanity(ctx: Context, status: Status) -> str:
    """Cascading randomisation: the curves' figure, the last step's rank correlation per variant and method, and
    the flagged methods."""
    out = ["### Sanity checks: cascading model-parameter randomisation (Adebayo et al. 2018)", ""]
    parts = ctx.results.get("sanity_checks")
    if parts is None:
        return "\n".join([*out, missing(status, "sanity_checks") or "", ""])
    summary = parts["sanity_checks"]
    last = summary[summary["step"] == summary.groupby(["variant", "method"])["step"].transform("max")]
    cells = last.assign(cell=[_ci_cell(r.mean, r.ci_low, r.ci_high) for r in last.itertuples()])
    piv = cells.pivot_table(index=["variant", "method"], columns="metric", values="cell", aggfunc="first",
                            sort=False)  # fmt: skip
    out += ["Similarity to the trained model's map once **every** block is random (mean [95% CI] over images; "
            "near 0 = the map depends on the weights, as it should; the curves per block are in the figure and "
            "`results/sanity_checks.csv`):", "", md_table(piv.reset_index()), ""]  # fmt: skip
    return "\n".join([*out, *_notes(status, "sanity_checks"), "", figure_md(status, "sanity_checks", "sanity"), ""])


def section_map_continuity(ctx: Context, status: Status) -> str:
    """Explanation continuity: per variant and method, the Spearman to the clean map at the smallest and largest
    level of each kind (mean [95% CI]; every level is in the figure and the CSV)."""
    out = ["### Explanation continuity: how far the maps move under Table 1 perturbations", ""]
    parts = ctx.results.get("explanation_continuity")
    if parts is None:
        return "\n".join([*out, missing(status, "explanation_continuity") or "", ""])
    summary = parts["explanation_continuity"]
    rho = summary[
        (summary["metric"] == "spearman") & summary["level"].isin([summary["level"].min(), summary["level"].max()])
    ]
    cells = rho.assign(cell=[_ci_cell(r.mean, r.ci_low, r.ci_high) for r in rho.itertuples()])
    piv = cells.pivot_table(index=["variant", "method"], columns=["kind", "level"], values="cell", aggfunc="first",
                            sort=False)  # fmt: skip
    piv.columns = [f"{k} L{lvl}" for k, lvl in piv.columns]
    out += ["Spearman rank correlation of each variant's map of the perturbed copy to its map of the clean image "
            "(mean [95% CI] over images; 1 = unchanged; L = level, every level in the figure); SSIM and top-10% "
            "overlap are in "
            "`results/explanation_continuity.csv`; the claim (section Claims) tests the per-image mean over kinds "
            "and levels:", "", md_table(piv.reset_index()), ""]  # fmt: skip
    return "\n".join([*out, *_notes(status, "explanation_continuity"), "",
                      figure_md(status, "explanation_continuity", "explanation_continuity"), ""])  # fmt: skip
