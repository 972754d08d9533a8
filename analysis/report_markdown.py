"""REPORT.md: the header, the claims, Tables 2-4, the differences from the paper and what each experiment ran."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from analysis import report_sections as sec
from analysis.claims import CHECKPOINT_NOTE, Claim, claims_frame, tests_frame
from analysis.experiments.registry import EXPERIMENTS, Context
from analysis.experiments.settings import estimate_cpu_s
from analysis.formatting import md_table, pct
from analysis.network_cost import zoo_cost_scale
from analysis.paper import PAPER
from analysis.statistics import VERDICT_RULE
from models.roles import OTHER
from models.roles import paper_name as role_paper_name
from models.version import git_commit, package_version

Status = dict[str, Any]


def paper_name(ctx: Context, variant: str) -> str | None:
    """The paper's name for the role ``variant`` plays (None for a control or another model)."""
    return role_paper_name(ctx.roles.get(variant, OTHER))


def header(ctx: Context, status: Status) -> str:
    head = [f"# Semantic continuity report: `{ctx.zoo.manifest.get('name', ctx.zoo.path.name)}`", "",
            f"Zoo `{ctx.zoo.path}` ({', '.join(f'{v} ({r})' for v, r in ctx.roles.items())}), data set "
            f"`{ctx.dataset}`, mode **{ctx.settings.mode}**, written "
            f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} by Semantic Continuity Lab {package_version()}"
            f", code {git_commit()}.", "",
            f"Paper: {PAPER['source']}. The paper's numbers are in `analysis.paper.PAPER`; where the paper gives none "
            "(its figures), its stated claim is quoted. Results files are listed in `summary.json`.", ""]  # fmt: skip
    failed = [n for n, s in status.items() if s["status"] == "failed"]
    if failed:
        head += [f"**Failed experiments:** {', '.join(failed)} (see summary.json for the errors).", ""]
    if ctx.settings.mode == "quick":
        head += ["**Quick mode: not deciding claims.** Tiny subsets, one seed and very short training runs: a check "
                 "that the pipeline works, not evidence for or against the paper; every verdict reads 'not decided "
                 "at quick scale'.", ""]  # fmt: skip
    return "\n".join(head)


def section_claims(claims: Sequence[Claim]) -> str:
    df = claims_frame(claims)
    tally = ", ".join(f"{n} {v}" for v, n in df["verdict"].value_counts().items())
    show = df[["claim", "paper", "paper_figure", "ours", "effect_ci", "test", "p", "n", "scope", "verdict",
               "control_verdict", "secondary", "secondary_verdict", "rule"]].rename(
        columns={"paper_figure": "paper's figure", "effect_ci": "effect [95% CI]", "verdict": "holds? (paper's pairs)",
                 "control_verdict": "holds? (controls)", "secondary": "unconfounded / secondary forms",
                 "secondary_verdict": "holds? (secondary forms)", "rule": "rule (in analysis/claims.py)"})  # fmt: skip
    for col in ("holds? (paper's pairs)", "holds? (controls)", "holds? (secondary forms)"):
        show[col] = show[col].map(lambda v: f"**{v}**")
    text = ("Each verdict comes from the rule in the last column, applied in code (`analysis.claims`, "
            "`analysis.statistics`) to the per-image or per-seed results below: the effect is the constrained "
            "variant minus its counterpart with its 95% CI; p-values are Holm-adjusted within each claim and across "
            f"every comparison of the report ({len(tests_frame(claims))} comparisons), and the verdict uses the "
            "latter. The count above and the first verdict column read the paper's pairs alone; the controls and "
            f"the secondary forms have their own columns. With {CHECKPOINT_NOTE}. `claim_tests.csv` lists every "
            "comparison as numbers, `claim_seeds.csv` every comparison seed by seed.")  # fmt: skip
    return "\n".join(["## Claims", "", f"Verdicts (paper's pairs): {tally}. {text}", "",
                      f"**The verdict rule** (`analysis.statistics.VERDICT_RULE`): {VERDICT_RULE}", "",
                      md_table(show), ""])  # fmt: skip


def _paper_cells(t2: dict[str, Any], name: str | None) -> dict[str, str]:
    out = {}
    for net in ("ResNet18 / CIFAR-100", "ResNet50 / ImageNet"):
        for col in ("clean", "adv"):
            out[f"paper {net} {col}"] = f"{t2[net][name][col]:.2f}%" if name in t2[net] else "-"
    return out


def section_table2(ctx: Context, status: Status) -> str:
    t2 = PAPER["table2"]
    out = ["## Table 2: adversarial robustness", "", f"Paper: {t2['source']}.", ""]
    rob, audit = ctx.results.get("robustness", {}), ctx.results.get("attack_audit", {})
    main, ens = rob.get("robustness"), audit.get("summary")
    rows = []
    for v in ctx.roles:
        r = {"variant": v, **_paper_cells(t2, paper_name(ctx, v))}
        if main is not None and v in set(main["variant"]):
            m = main.set_index("variant").loc[v]
            r["ours clean"], r["ours PGD-10"] = pct(m["clean_acc"]), pct(m["pgd_acc"])
        if ens is not None and v in set(ens["variant"]):
            e = ens.set_index("variant").loc[v]
            r.update({"ours PGD-10 + APGD-CE (cumulative)": pct(e["apgd_ce_acc"]),
                      "ours PGD-10 + APGD-CE + APGD-T (cumulative)": pct(e["apgd_t_acc"]),
                      "ours worst case": pct(e["worst_acc"])})  # fmt: skip
        rows.append(r)
    out += [md_table(pd.DataFrame(rows).fillna("n/a")), ""]
    n = [f"{name}: {sec.ran_text(status, name)}" for name in ("robustness", "attack_audit") if name in ctx.results]
    out += [("Ours, on the same test images for every column (" + "; ".join(n) + "). Worst case: an image counts "
             "as robust only if PGD-10, APGD-CE and APGD-T (DLR, targeted) all fail on it. The APGD columns are "
             "cumulative: each attack runs only on the images every earlier one left correct, so they are not "
             "each attack alone on all images.") if n else
            (sec.missing(status, "robustness") or ""), ""]  # fmt: skip
    if "attack_audit" in ctx.results:
        out += ["### Attack strength (facts, and warnings only where a check fails)", "",
                *[f"- {w}" for w in status["attack_audit"]["notes"]], ""]  # fmt: skip
    if (eps := ctx.tables.get("eps_sweep")) is not None:
        piv = eps.pivot_table(index="variant", columns="eps_255", values="accuracy", sort=False)
        piv.columns = [f"{c:g}/255" for c in piv.columns]
        out += [f"### Accuracy against the PGD-10 radius ({int(eps['n_images'].iloc[0])} test images)", "",
                md_table(piv.map(pct).reset_index()), "", *[f"- {w}" for w in status["eps_sweep"]["notes"]], "",
                sec.figure_md(status, "eps_sweep", "eps"), ""]  # fmt: skip
    if (trade := ctx.results.get("tradeoff")) is not None:  # issue 23: robustness at matched clean accuracy
        from analysis.tradeoff import matched_display

        curves = trade["tradeoff"].assign(clean_acc=lambda d: d["clean_acc"].map(pct),
                                          robust_acc=lambda d: d["robust_acc"].map(pct))  # fmt: skip
        matched = [md_table(matched_display(trade["matched"]))] if "matched" in trade else []
        out += ["### Robustness at matched clean accuracy (weight interpolation from the baseline)", "",
                md_table(curves), "", *matched, "",
                *[f"- {w}" for w in status["tradeoff"]["notes"]], "", sec.figure_md(status, "tradeoff", "tradeoff"),
                ""]  # fmt: skip
    return "\n".join(out)


def section_attributions(ctx: Context, status: Status) -> str:
    out = ["## Section 4.5: interpretability (Figs. 11-13, measured)", "", f"**Paper:** {PAPER['figures']['fig11_13']}",
           ""]  # fmt: skip
    coarse = sec.coarse_gradcam(ctx) if {"attributions", "stability"} & set(ctx.tables) else {}
    if (df := ctx.tables.get("attributions")) is not None:
        t = df.copy()
        for col in ("mask_share", "deletion_auc", "insertion_auc"):
            t[col] = t[col].map(lambda v: "n/a" if pd.isna(v) else f"{v:.3f}")
        out += ["**Ours**:", "", md_table(sec.mark_gradcam(t, coarse)), "", *status["attributions"]["notes"], ""]
    else:
        out += [sec.missing(status, "attributions") or "", ""]
    if (st := ctx.tables.get("stability")) is not None:
        piv = st.groupby(["variant", "method", "level"], sort=False)["spearman_mean"].mean().unstack("level")
        piv.columns = [f"level {c}" for c in piv.columns]
        out += ["Attribution stability (Spearman correlation of clean vs perturbed maps, mean over kinds; 1 = "
                "unchanged):", "", md_table(sec.mark_gradcam(piv.map(lambda v: f"{v:.3f}").reset_index(), coarse)),
                ""]  # fmt: skip
    return "\n".join([*out, *sec.gradcam_notes(coarse)])


def section_table3(ctx: Context, status: Status) -> str:
    t3 = PAPER["table3"]
    out = ["## Table 3: transfer", "", f"Paper: {t3['source']}.", ""]
    parts = ctx.results.get("transfer")
    summary = parts.get("summary") if parts else None
    rows = []
    for v in ctx.roles:
        name = paper_name(ctx, v)
        r = {"variant": v, **{f"paper {t}": f"{t3[name][t]:.2f}%" if name in t3 else "-" for t in t3["targets"]}}
        if summary is not None:
            for t in dict.fromkeys(summary["target"]):
                s = summary[(summary["variant"] == v) & (summary["target"] == t)]
                r[f"ours {t}"] = pct(s["test_acc_mean"].iloc[0], s["test_acc_sd"].iloc[0]) if len(s) else "n/a"
        rows.append(r)
    out += [md_table(pd.DataFrame(rows)), ""]
    if parts:
        out += [
            f"Ours: mean ± sd over seeds; {status['transfer']['notes'][0]}. A target with the zoo's own classes is "
            "a domain-shift test, not a transfer to a new task; the paper's targets (CIFAR-10, SVHN, MNIST) can "
            "be named with `--root cifar10=PATH` etc.",
            "",
            sec.figure_md(status, "transfer", "table3"),
            "",
        ]
    else:
        out += [sec.missing(status, "transfer") or "", ""]
    return "\n".join(out)


def section_table4(ctx: Context, status: Status) -> str:
    t4 = PAPER["table4"]
    out = ["## Table 4: colour bias (fairness)", "", f"Paper: {t4['source']}.", ""]
    df = ctx.tables.get("fairness")
    rows = []
    for v in dict.fromkeys(df["variant"]) if df is not None else ctx.roles:
        g = df[df["variant"] == v] if df is not None else None
        name = paper_name(ctx, v) or v
        r = {"variant": v, "paper Colorful MNIST": f"{t4[name]:.2f}%" if name in t4 else "-"}
        if g is not None and len(g):
            sd = lambda c, g=g: float(g[c].std(ddof=1)) if len(g) > 1 else None  # noqa: E731
            for col, label in (
                ("test_acc", "ours test"),
                ("test_acc_red", "ours red bg"),
                ("test_acc_blue", "ours blue bg"),
                ("val_acc", "ours in-distribution val"),
            ):
                r[label] = pct(float(g[col].mean()), sd(col))  # fmt: skip
        rows.append(r)
    out += [md_table(pd.DataFrame(rows)), ""]
    shortcut = ctx.results.get("fairness", {}).get("shortcut")
    if shortcut is not None and len(shortcut):  # issue 23: the same runs on a set where colour predicts the class
        cols = (("test_acc", "test"), ("test_acc_on_colour", "on its class's colour"),
                ("test_acc_off_colour", "on another colour"), ("val_acc", "in-distribution val"))  # fmt: skip
        cell = lambda g, c: pct(float(g[c].mean()), float(g[c].std(ddof=1)) if len(g) > 1 else None)  # noqa: E731
        short = [{"variant": v, **{label: cell(g, c) for c, label in cols}}
                 for v, g in shortcut.groupby("variant", sort=False)]  # fmt: skip
        out += ["**Shortcut design** (`colour-bias-shortcut`, the same variants, seeds and settings): 95% of each "
                "class's training images on the class's own background colour, test colours independent of the "
                "label (claim `fairness_shortcut`):", "", md_table(pd.DataFrame(short)), ""]  # fmt: skip
    if df is not None:
        notes = ". ".join(status["fairness"]["notes"])
        out += [f"Ours: mean ± sd over {df['seed'].nunique()} seed(s); {notes}.", "",
                sec.figure_md(status, "fairness", "table4"), ""]  # fmt: skip
    else:
        out += [sec.missing(status, "fairness") or "", ""]
    return "\n".join(out)


def differences_from_paper(ctx: Context) -> str:
    diffs = []
    for entry in ctx.zoo.entries.values():
        diffs = entry.card.get("differences_from_paper") or diffs
    lines = ["## Differences from the paper", "",
             f"- Zoo `{ctx.zoo.path}` (recipe `{ctx.zoo.manifest.get('recipe')}`), data set `{ctx.dataset}`; the "
             "paper uses CIFAR-100 ResNet18s and ImageNet ResNet50s.", *[f"- zoo: {d}" for d in diffs],
             f"- Image-level tests use {CHECKPOINT_NOTE}; only the colour bias trains from scratch per seed, while "
             "the alpha sweep and transfer repeat over seeds only the fine-tune from one source checkpoint, so they "
             "too speak about these checkpoints.",
             "- Figures have no numbers in the paper's text: their rows compare with the paper's stated direction.",
             "- The alpha sweep fine-tunes briefly from the zoo's baseline on a subset (Adam at lr 1e-4; paper: Adam "
             "1e-5 for an unstated length).",
             "- Robust accuracy is also reported as the worst case over PGD-10, APGD-CE and APGD-T (the paper: PGD-10 "
             "only).",
             "- Paper typos noted: section 4.7 cites 'Table 3' for Table 4; sections 4.3.1-4.3.3 cite 'Table 6/8/10' "
             "for Figs. 6/8/10; Figs. 9 and 10 share a caption."]  # fmt: skip
    return "\n".join(lines) + "\n"


def short_commit(commit: str | None) -> str:
    """A commit as the settings table shows it: 10 hex digits, '-dirty' kept; '-' when not recorded."""
    if not commit or commit == "unknown":
        return "-"
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")


def settings_section(ctx: Context, status: Status, total: float) -> str:
    estimate = estimate_cpu_s(ctx.settings, ctx.roles, len(ctx.test), zoo_cost_scale(ctx.zoo))
    rows = [{"experiment": name, "status": (st := status.get(name, {"status": "skipped"}))["status"],
             "elapsed (s)": f"{st['elapsed_s']:.1f}" if st.get("elapsed_s") is not None else "-",
             "CPU (s)": f"{st['cpu_s']:.1f}" if st.get("cpu_s") is not None else "-",
             "estimate (CPU s, 1 thread)": f"{estimate.get(name, 0):.0f}",
             "ran": sec.ran_text(status, name) or "-",
             "code": short_commit(st.get("git_commit"))} for name in EXPERIMENTS]  # fmt: skip
    return "\n".join([
        "## Settings and elapsed time: what ran", "",
        f"Mode `{ctx.settings.mode}`, evaluation subset: {len(ctx.eval)} of {len(ctx.test)} test images (seed "
        f"{ctx.settings.subset_seed}); device {ctx.device}, {torch.get_num_threads()} torch thread(s) (training runs: "
        f"{ctx.settings.train_threads}); total {total:.0f} s. The 'ran' column is what each experiment recorded it "
        "actually ran (images, epochs, steps, seeds), not the requested settings (those are in summary.json); "
        "'code' is the commit each result was computed on (a result reused by --resume keeps its own). The "
        f"estimate is the plan for these settings on one thread: {sum(estimate.values()):.0f} CPU s in all.",
        "", md_table(pd.DataFrame(rows)), ""])  # fmt: skip


def write_report(ctx: Context, status: Status, claims: Sequence[Claim], total: float) -> str:
    parts = [
        header(ctx, status),
        section_claims(claims) + sec.gradcam_claims_note(ctx, claims),
        sec.section_table1(),
        sec.section_continuity(ctx, status),
        sec.section_alpha(ctx, status),
        sec.section_rank(ctx, status),
        sec.section_probes(ctx, status),
        section_table2(ctx, status),
        section_attributions(ctx, status),
        sec.section_road(ctx, status),
        sec.section_sanity(ctx, status),
        sec.section_map_continuity(ctx, status),
        section_table3(ctx, status),
        section_table4(ctx, status),
        differences_from_paper(ctx),
        settings_section(ctx, status, total),
    ]
    text = "\n".join(parts)
    (ctx.out / "REPORT.md").write_text(text)
    return text
