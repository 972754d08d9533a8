"""Faithfulness by ROAD (Rong et al. 2022): the report's ``road`` results (``analysis.road`` through pytorch-grad-cam's
metrics), per variant and method the mean score with its bootstrap 95% CI, and the paired comparisons between the
variants on the same images; a quick version for a few test images when the zoo has no report results."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import components, exports, figures, public, results_store, sanity_flags
from app.choices import only, variant_choice
from models.objectives import variant_colour

SCORES = {
    "combined": "Combined, (LeRF - MoRF) / 2 (higher = more faithful)",
    "morf": "Most relevant first, MoRF (lower = more faithful)",
    "lerf": "Least relevant first, LeRF (higher = more faithful)",
}
SUMMARY_COLUMNS = {"variant", "method", "score", "mean", "ci_low", "ci_high"}
PAIRED_COLUMNS = {"method", "score", "comparison", "effect", "ci_low", "ci_high", "p_holm"}


def ci_bars(summary: pd.DataFrame, variants: list[str], y_title: str) -> go.Figure:
    """One group of bars per method, one bar per variant, with its 95% CI as (asymmetric) error bars."""
    fig = go.Figure()
    for v in variants:
        d = summary[summary["variant"].astype(str) == v]
        fig.add_trace(go.Bar(x=[figures.method_label(m) for m in d["method"]], y=d["mean"], name=v,
                             marker_color=variant_colour(v, variants),
                             error_y=dict(type="data", symmetric=False, array=d["ci_high"] - d["mean"],
                                          arrayminus=d["mean"] - d["ci_low"], thickness=1.2)))  # fmt: skip
    fig.update_layout(barmode="group", height=360, margin=dict(l=0, r=0, t=30, b=0), legend=figures.SIDE_LEGEND,
                      yaxis_title=y_title, xaxis_title="Method")  # fmt: skip
    return fig


ctx = components.context()
st.title("Faithfulness (ROAD)")
st.markdown(
    "Does a map rank the pixels the **model** relies on? ROAD removes a share of the pixels in the map's order and "
    "fills them by noisy linear imputation (no sharp holes for the model to react to), then measures the change "
    "of the target's softmax probability, averaged over the shares: removing the *most* relevant first (MoRF) "
    "should make it drop fast, the *least* relevant first (LeRF) slowly (Rong et al. 2022)."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
results, quick = components.results_or_quick(ctx, "road", "ROAD")
name, summary = components.pick(results, quick, "road", SUMMARY_COLUMNS, "road")
paired_name, paired = components.pick(results, quick, "road_paired", PAIRED_COLUMNS, "road")
components.report_status(results, "road")
if summary is None:
    if results.folder is not None:  # a report without ROAD: it adds the missing experiments
        st.info("**No ROAD results yet** in this zoo's report. Add them with\n\n"
                f"```\n{public.redact(results_store.report_command(handle))} --resume\n```")  # fmt: skip
    st.stop()

methods = list(dict.fromkeys(summary["method"].astype(str)))
sanity_flags.warn_flagged(handle, methods)  # a method whose maps survive randomisation (sanity checks)
chosen = variant_choice(summary["variant"], key="road_variants")
score = st.selectbox("Score", [s for s in SCORES if s in set(summary["score"])], format_func=SCORES.get,
                     key="road_score")  # fmt: skip
shown = only(summary[summary["score"] == score], chosen)
n = f"{int(shown['n_images'].min())}-{int(shown['n_images'].max())}" if "n_images" in shown and len(shown) else "?"
exports.chart(ci_bars(shown, chosen, SCORES[score].split(" (")[0]), "road_bars", f"road_{score}", shown,
              exports.provenance(ctx, name, score=score, variants=", ".join(chosen),
                                 ci="percentile bootstrap 95% CI over images"))  # fmt: skip
st.caption(f"Mean over {n} test images per method with its percentile bootstrap 95% CI. The change of the "
           "target's probability is negative when removing pixels lowers it.")  # fmt: skip

st.subheader("Paired comparisons between the variants")
if paired is None:
    st.info("No paired comparisons in these results.")
else:
    rows = paired[paired["score"] == score]
    st.markdown("Difference a - b on the same images with its paired-bootstrap 95% CI; *better* names the variant "
                "the CI puts ahead in the score's faithful direction (– when the CI spans 0).")  # fmt: skip
    components.show_table(rows, paired_name)
    exports.csv_download(rows, f"road_paired_{score}", exports.provenance(ctx, paired_name, score=score,
                         test="paired bootstrap, Holm-adjusted within a method and score"),
                         key="road_paired_csv")  # fmt: skip
with st.expander("Every score"):
    components.show_table(only(summary, chosen), name)
