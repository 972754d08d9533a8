"""The paper's claims, and what this zoo's measurements say about each."""

import pandas as pd
import streamlit as st

from app import components
from app.tables import display_table

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
FIRST = ["verdict", "claim", "ours", "effect_ci", "test", "p", "n", "paper_figure", "paper", "rule", "key"]
TESTS_FILE = "claim_tests"  # one row per comparison behind a verdict (effect, 95% CI, test, p, n)


def badge(verdict: object) -> str:
    """The verdict's text badge, e.g. ``HOLDS`` ('?' for an unknown verdict)."""
    return VERDICT_BADGES.get(str(verdict).strip().lower(), (str(verdict).upper() or "?", "gray"))[0]


def with_badges(df: pd.DataFrame) -> pd.DataFrame:
    """Verdict first (as a text badge), then the claim, our figure and the paper's; human column names."""
    df = df[[c for c in FIRST if c in df] + [c for c in df.columns if c not in FIRST]].copy()
    for col in ("verdict", "holds", "supported", "status"):
        if col in df:
            df[col] = [badge(v) for v in df[col]]
            break
    return display_table(df, percent_columns=())


def verdict_counts(df: pd.DataFrame) -> None:
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
        lines.append(f"- :{colour}-badge[{text}] **{r['claim']}**{ours}")
    st.markdown("\n".join(lines))


tests_table = next((o for n, o in found.items() if TESTS_FILE in n and isinstance(o, pd.DataFrame)), None)
found = {n: o for n, o in found.items() if TESTS_FILE not in n}
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
            st.caption("Verdicts follow each claim's rule (last column) applied to this zoo's measurements.")
            shown = with_badges(table)
            st.table(shown.set_index("Verdict") if "Verdict" in shown else shown)  # all rows and columns, wrapped
            st.caption(f"Source: `{name}`")
            if tests_table is not None:
                with st.expander("Every comparison behind the verdicts: effect, 95% CI, test, p (Holm), n"):
                    st.table(with_badges(tests_table))
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
        with st.expander("REPORT.md"):
            st.download_button("Download REPORT.md", text, file_name="REPORT.md", mime="text/markdown")
            st.markdown(text)
components.other_files(results, ("claim",), set(found))
