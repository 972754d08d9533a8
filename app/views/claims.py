"""The paper's claims, and what this zoo's measurements say about each."""

import pandas as pd
import streamlit as st

from app import components

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
VERDICT_ICONS = {"holds": "✅", "partly": "🟡", "does not hold": "❌", "inconclusive": "➖", "not measured": "⏳",
                 "true": "✅", "yes": "✅", "supported": "✅", "false": "❌", "no": "❌", "unknown": "❔"}  # fmt: skip


FIRST = ["verdict", "claim", "ours", "paper_figure", "paper", "rule", "key"]


def with_icons(df: pd.DataFrame) -> pd.DataFrame:
    """Verdict first (with an icon), then the claim, our figure and the paper's."""
    df = df[[c for c in FIRST if c in df] + [c for c in df.columns if c not in FIRST]].copy()
    for col in ("verdict", "holds", "supported", "status"):
        if col in df:
            df.insert(0, "", [VERDICT_ICONS.get(str(v).strip().lower(), "") for v in df[col]])
            break
    return df


def verdict_counts(df: pd.DataFrame) -> None:
    if "verdict" not in df:
        return
    counts = df["verdict"].astype(str).str.strip().str.lower().value_counts()
    labels = (  # analysis.claims.VERDICTS
        ("holds", "hold"),
        ("partly", "partly hold"),
        ("does not hold", "do not hold"),
        ("inconclusive", "are within seed noise"),
        ("not measured", "are not measured"),
    )
    for col, (verdict, label) in zip(st.columns(len(labels)), labels, strict=True):
        col.metric(f"{VERDICT_ICONS[verdict]} Claims that {label}", int(counts.get(verdict, 0)))


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
            st.caption("Verdicts follow each claim's rule (last columns) applied to this zoo's measurements.")
            components.show_table(with_icons(table), name)
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
    claims.insert(0, "", "⏳")
    st.dataframe(claims, hide_index=True, width="stretch")
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
        with st.expander("REPORT.md"):
            st.download_button("Download REPORT.md", text, file_name="REPORT.md", mime="text/markdown")
            st.markdown(text)
components.other_files(results, ("claim",), set(found))
