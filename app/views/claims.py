"""The paper's claims, and what this zoo's measurements say about each."""

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import report_bundle
from analysis.results_store import ACROSS_SEEDS
from app import components
from app.tables import claims_view, comparisons_view, display_table, filter_comparisons

ctx = components.context()
st.title("Claims")
st.markdown(
    "The paper's claims about semantically continuous models (C, ADV+C) against the standard ones, and whether "
    "the measurements on this zoo support them. The verdicts come from the report; where it has not been run, the "
    "table lists the claims and the page that measures each."
)
components.require_zoo(ctx)
components.zoo_header(ctx)
results, _ = components.results_or_quick(ctx, None, "Claims")
found = results.named("claim")
# Verdicts as text badges (no emoji: they render as empty boxes on machines without an emoji font).
VERDICT_BADGES = {"holds": ("HOLDS", "green"), "partly": ("PARTLY", "orange"),
                  "does not hold": ("DOES NOT HOLD", "red"), "inconclusive": ("INCONCLUSIVE", "gray"),
                  "not measured": ("NOT MEASURED", "gray"),
                  "not decided at quick scale": ("NOT DECIDED AT QUICK SCALE", "gray"),
                  "true": ("HOLDS", "green"), "yes": ("HOLDS", "green"), "supported": ("HOLDS", "green"),
                  "false": ("DOES NOT HOLD", "red"), "no": ("DOES NOT HOLD", "red")}  # fmt: skip
TESTS_FILE = "claim_tests"  # one row per comparison behind a verdict (effect, 95% CI, test, p, n)
PER_SEED_FILE = "claims_per_seed.csv"  # in across_seeds/: each training seed's own claims
SEEDS_FILE = "claim_seeds"  # every comparison seed by seed (a zoo with replicas)
VERDICT_COLUMNS = ("verdict", "control_verdict", "secondary_verdict")  # paper's pairs, controls, secondary forms
ROW_PX = 35  # st.dataframe's row height: tables sized to show every row without an inner scroll bar
# Column widths (px) of the compact tables: the key (pinned) and every number fit a 1280 px screen; long text
# columns are narrow and read in full by hovering or double-clicking a cell (and in the claim list above).
TEXT_HELP = "Long text: hover over a cell, or double-click it, to read it in full."
CLAIM_WIDTHS = {"Key": 170, "Images": 70, "Seeds": 60, "Claim": 190, "Effect [95% CI]": 200, "p": 170,
                "This zoo": 240, "Test": 120, "Paper section": 90, "Paper's figure": 140, "Rule": 140,
                "Control verdict": 120, "Secondary verdict": 120, "Scope": 150, "Secondary": 200}  # fmt: skip
COMPARISON_WIDTHS = {"Key": 140, "Comparison": 135, "Effect [95% CI]": 165, "p": 62, "Holm p": 62, "Images": 56,
                     "Seeds": 48, "Verdict": 105, "Paper pair or control": 90, "Metric": 200, "Direction": 80,
                     "Test": 200}  # fmt: skip


def badge(verdict: object) -> str:
    """The verdict's text badge, e.g. ``HOLDS`` ('?' for an unknown verdict)."""
    return VERDICT_BADGES.get(str(verdict).strip().lower(), (str(verdict).upper() or "?", "gray"))[0]


def with_badges(df: pd.DataFrame) -> pd.DataFrame:
    """The verdict columns (the paper's pairs', the controls', the secondary forms') as text badges, human column
    names."""
    df = df.copy()
    for col in ("verdict", "holds", "supported", "status"):
        if col in df:
            df[col] = [badge(v) for v in df[col]]
            break
    for col in VERDICT_COLUMNS[1:]:
        if col in df:
            df[col] = [badge(v) for v in df[col]]
    return display_table(df, percent_columns=())


def column_config(shown: pd.DataFrame, widths: dict[str, int]) -> dict:
    """Pixel widths, the key pinned, counts as integers, long text columns with a tooltip on the header."""
    config = {}
    for label in shown.columns:
        width = widths.get(label)
        if label in ("Images", "Seeds"):  # counts as text: "–" where a test has none (not "None")
            config[label] = st.column_config.TextColumn(label, width=width, alignment="right")
        else:
            long = width is not None and width <= 240 and label not in ("Key", "p", "Holm p", "Verdict", "Seeds")
            config[label] = st.column_config.TextColumn(label, width=width, pinned=label == "Key" or None,
                                                        help=TEXT_HELP if long else None)  # fmt: skip
    return config


def compact_table(shown: pd.DataFrame, widths: dict[str, int], key: str, index: bool = False) -> None:
    """A st.dataframe tall enough for every row, the key column pinned."""
    shown = shown.assign(**{c: ["–" if pd.isna(v) else str(int(v)) for v in shown[c]]
                            for c in ("Images", "Seeds") if c in shown})  # fmt: skip
    st.dataframe(shown, hide_index=not index, width="stretch", height=ROW_PX * (len(shown) + 1) + 3,
                 column_config=column_config(shown, widths), key=key)  # fmt: skip


def verdict_counts(df: pd.DataFrame) -> None:
    """The headline count: the verdicts of the paper's pairs (the controls have their own column)."""
    if "verdict" not in df:
        return
    counts = df["verdict"].astype(str).str.strip().str.lower().value_counts()
    labels = (  # analysis.claims.VERDICTS
        ("holds", "Claims that hold"),
        ("partly", "Partly hold"),
        ("does not hold", "Do not hold"),
        ("inconclusive", "Inconclusive"),
        ("not measured", "Not measured"),
        ("not decided at quick scale", "Not decided (quick)"),
    )
    for col, (verdict, label) in zip(st.columns(len(labels)), labels, strict=True):
        col.metric(label, int(counts.get(verdict, 0)))


def claim_list(df: pd.DataFrame) -> None:
    """Each claim on its own line with a coloured text badge: readable in full at any width."""
    if "verdict" not in df or "claim" not in df:
        return
    lines = []
    for _, r in df.iterrows():
        text, colour = VERDICT_BADGES.get(str(r["verdict"]).strip().lower(), (badge(r["verdict"]), "gray"))
        ours = f" — {r['ours']}" if "ours" in df and isinstance(r["ours"], str) else ""
        key = f" (`{r['key']}`)" if "key" in df and isinstance(r["key"], str) else ""
        lines.append(f"- :{colour}-badge[{text}] **{r['claim']}**{key}{ours}")
    st.markdown("\n".join(lines))


def rules(df: pd.DataFrame) -> None:
    """Each claim's rule and the paper's figure, in full."""
    if "rule" not in df:
        return
    with st.expander("The rule behind each verdict, and what the paper's figure says"):
        for _, r in df.iterrows():
            figure = f"  \n*Paper:* {r['paper_figure']}" if isinstance(r.get("paper_figure"), str) else ""
            st.markdown(f"**{r.get('key', r.get('claim', ''))}**: {r['rule']}{figure}")


def comparisons(tests: pd.DataFrame) -> None:
    """Every comparison behind the verdicts, filterable by claim and by text."""
    view = comparisons_view(tests)
    with st.expander(f"Every comparison behind the verdicts ({len(view)}): effect, 95% CI, p, Holm p, n",
                     expanded=False):  # fmt: skip
        c1, c2 = st.columns([2, 1])
        keys = c1.multiselect("Claims", list(dict.fromkeys(view["key"])), key="claims_filter_keys",
                              placeholder="every claim")  # fmt: skip
        text = c2.text_input("Contains", key="claims_filter_text", placeholder="e.g. ADV-mixed, McNemar")
        shown = filter_comparisons(view, keys, text)
        st.caption(f"{len(shown)} of {len(view)} comparisons. p-values below 0.001 in scientific notation; Holm p: "
                   "adjusted over the comparisons of one claim; the verdict uses the p adjusted across every "
                   "comparison of the report (`p_holm_all` in the CSV).")  # fmt: skip
        compact_table(with_badges(shown), COMPARISON_WIDTHS, key="claims_comparisons")


def report_document(folder: Path, text: str) -> None:
    """REPORT.md with its figures in place, and the report to download: a zip with its figures, or one file
    with the figures embedded."""
    # REPORT.md's wide Markdown tables scroll inside themselves instead of widening the page
    st.html("<style>[data-testid='stExpander'] [data-testid='stMarkdownContainer'] table "
            "{display: block; max-width: 100%; overflow-x: auto;}</style>")  # fmt: skip
    with st.expander("REPORT.md"):
        d1, d2 = st.columns(2)
        d1.download_button("Download the report (zip: REPORT.md, claims, figures/)", report_bundle.report_zip(folder),
                           file_name=f"{folder.name}-report.zip", mime="application/zip",
                           key="claims_download_zip")  # fmt: skip
        d2.download_button("Download REPORT.md (figures embedded)", report_bundle.inline_figures(text, folder),
                           file_name="REPORT.md", mime="text/markdown", key="claims_download_md")  # fmt: skip
        for part in report_bundle.split_report(text):
            if part.path is None:
                st.markdown(part.text)
                continue
            file = report_bundle.figure_file(folder, part.path)
            if file is None:
                st.caption(f"Figure `{components.md_escape(part.path)}` is not in the results folder.")
            else:
                st.image(str(file), caption=part.alt or file.stem)


def pooled_or_own(found: dict) -> dict:
    """A report over several training seeds (``--zoo-seeds``) has two sets of claims: pooled over the seeds
    (``across_seeds/``, the seed as the top level of the bootstrap) and its own checkpoints'. The reader picks one
    (pooled first); each seed's own verdicts side by side below."""
    pooled = {n: o for n, o in found.items() if n.startswith(f"{ACROSS_SEEDS}/")}
    if not pooled:
        return found
    per_seed = pooled.pop(f"{ACROSS_SEEDS}/{PER_SEED_FILE}", None)
    choice = st.radio("Verdicts", ["pooled", "own"], horizontal=True, key="claims_scope",
                      format_func=lambda c: {"pooled": "pooled over every training seed",
                                             "own": "this report's checkpoints alone"}[c])  # fmt: skip
    if choice == "own":
        return {n: o for n, o in found.items() if not n.startswith(f"{ACROSS_SEEDS}/")}
    st.caption("Each claim tested on every training seed's results at once: the seed is the top level of the "
               "bootstrap (seeds, then images), n reads seeds x images, and a verdict is about the training method "
               "with >= 3 seeds per variant.")  # fmt: skip
    if isinstance(per_seed, pd.DataFrame) and {"key", "training_seed", "verdict"} <= set(per_seed.columns):
        wide = per_seed.pivot_table(index="key", columns="training_seed", values="verdict", aggfunc="first")
        wide.columns = [f"seed {c}" for c in wide.columns]
        with st.expander(f"Each training seed's own verdicts ({wide.shape[1]} seeds)"):
            st.dataframe(wide.reset_index(), hide_index=True, width="stretch", key="claims_per_seed")
    return pooled


found = pooled_or_own(found)
tests_name, tests_table = next(((n, o) for n, o in found.items() if TESTS_FILE in n and isinstance(o, pd.DataFrame)),
                               (None, None))  # fmt: skip
seeds_name, seeds_table = next(((n, o) for n, o in found.items() if SEEDS_FILE in n and isinstance(o, pd.DataFrame)),
                               (None, None))  # fmt: skip
found = {n: o for n, o in found.items() if TESTS_FILE not in n and SEEDS_FILE not in n}
if found:
    tables = {n: o for n, o in found.items() if isinstance(o, pd.DataFrame)}
    if tables:  # the report writes claims.csv and claims.json: show the table once
        found = {n: o for n, o in found.items() if isinstance(o, pd.DataFrame) or not n.endswith("claims.json")}
    for name, obj in found.items():
        table = obj if isinstance(obj, pd.DataFrame) else None
        if isinstance(obj, dict) and isinstance(obj.get("claims"), list):
            table = pd.DataFrame(obj["claims"])
        if table is not None:
            verdict_counts(table)
            claim_list(table)
            st.caption("Verdicts follow each claim's rule (below the table) applied to this zoo's measurements: "
                       "Verdict from the paper's pairs (the count above), Control verdict from the controls, "
                       "Secondary verdict from the unconfounded forms of the metric. Images and Seeds: how many "
                       "test images, or training seeds, the tests compare; Scope: about the training method only "
                       "with >= 3 seeds per variant.")  # fmt: skip
            shown = with_badges(claims_view(table, tests_table))
            compact_table(shown.set_index("Verdict") if "Verdict" in shown else shown, CLAIM_WIDTHS,
                          key="claims_table", index="Verdict" in shown)  # fmt: skip
            st.caption(f"Source: `{name}`")
            rules(table)
            if tests_table is not None:
                comparisons(tests_table)
            if seeds_table is not None and len(seeds_table):
                with st.expander(f"Every comparison seed by seed ({len(seeds_table)})"):
                    st.dataframe(with_badges(seeds_table), hide_index=True, width="stretch", key="claims_seeds")
        else:
            st.json(obj, expanded=False)
else:
    st.info("No claims table in the results folder yet: the paper's claims, not yet checked on this zoo:")
    claims = pd.DataFrame(
        [
            ("Standard models are semantically discontinuous: perturbed copies land far from the original",
             "2, Fig. 1-2", "Neighbourhood embeddings, Continuity curves"),
            ("The continuity constraint (C) lowers DS under colour perturbations", "4.1, Fig. 3", "Continuity curves"),
            ("Continuous models rely less on non-semantic information (channel shifts, pixel shuffles, tiles)",
             "4.3, Fig. 6-10", "Semantic probes"),
            ("C improves adversarial robustness; ADV+C is the most robust", "4.4, Table 2", "Robustness"),
            ("Continuous models give cleaner, more object-focused saliency maps", "4.5, Fig. 11-12",
             "Saliency side by side"),
            ("Continuous models transfer better to other data sets", "4.6", "Transfer"),
            ("Continuous models are less affected by a colour bias in the training data", "4.7", "Fairness"),
        ],
        columns=["claim", "paper", "measured on page"],
    )  # fmt: skip
    claims.insert(0, "Verdict", "NOT MEASURED")
    st.table(claims.set_index("Verdict"))
if results.folder is not None:
    text = results.report_markdown
    mode = results.summary.get("mode")
    if mode:
        info = results.summary
        st.caption(f"Report mode **{mode}**, created {info.get('created', '?')}, {info.get('elapsed_s', '?')} s, "
                   f"code {info.get('git_commit', '?')}.")  # fmt: skip
    experiments = results.summary.get("experiments") or {}
    if experiments:
        status = pd.DataFrame([{"experiment": n, "status": r.get("status"), "elapsed_s": r.get("elapsed_s"),
                                "error": r.get("error", "")} for n, r in experiments.items()])  # fmt: skip
        with st.expander("Experiments of the report"):
            st.dataframe(status, hide_index=True, width="stretch")
    if text:
        report_document(Path(results.folder), text)
components.other_files(results, ("claim",), set(found) | {tests_name, seeds_name})
