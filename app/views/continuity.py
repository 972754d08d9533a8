"""Continuity curves: DS against perturbation level per variant (paper Fig. 3) and the neighbourhood rank."""

import streamlit as st

from app import components, figures
from app.choices import only, variant_choice

ctx = components.context()
st.title("Continuity curves")
st.markdown(
    "How far each variant's logits move under the colour perturbations of Table 1, level by level "
    "(paper Fig. 3), and how often another image of the same class is nearer than the perturbed copy "
    "(paper section 2)."
)
components.require_zoo(ctx)
components.zoo_header(ctx)
results, quick = components.results_or_quick(ctx, "continuity", "Continuity curves")
shown = set()

st.subheader("Distance score against level")
name, ds_df = components.pick(results, quick, "continuity", {"variant", "kind", "level", "ds_mean"}, "continuity")
name_r, rank_df = components.pick(results, quick, "neighbourhood_rank",
                                  {"variant", "kind", "level", "share_closer_mean"}, "rank")  # fmt: skip
chosen = variant_choice([*(ds_df["variant"] if ds_df is not None else []),
                         *(rank_df["variant"] if rank_df is not None else [])], key="cont_variants")  # fmt: skip
ds_df, rank_df = only(ds_df, chosen), only(rank_df, chosen)
if ds_df is not None:
    shown.add(name)
    log_y = st.toggle("Logarithmic DS axis", value=True, key="cont_log")
    st.plotly_chart(figures.ds_curves(ds_df, log_y=log_y), key="cont_ds")
    st.caption(components.DS_CAPTION + " Mean over test images; lines per variant, panels per perturbation kind.")
    level1 = ds_df[ds_df["level"] == 1].groupby("variant", sort=False)["ds_mean"].sum()
    if len(level1):
        st.plotly_chart(figures.metric_bars(level1.to_dict(), "DS at level 1, summed over kinds", "DS",
                                            log_y=True), key="cont_l1")  # fmt: skip
    components.report_status(results, "continuity")
    with st.expander("Table"):
        components.show_table(ds_df, name)
else:
    st.info("No DS table yet.")

st.subheader("Neighbourhood rank")
name = name_r
if rank_df is not None:
    shown.add(name)
    st.plotly_chart(figures.line_panels(rank_df, "level", "share_closer_mean", panel="kind", percent=True,
                                        y_title="Same-class images nearer (%)"), key="cont_rank")  # fmt: skip
    st.caption(
        "For seeded anchor images x_A: the share of other same-class images x_B with DS(x_A, x_B) < "
        "DS(x_A, P(x_A)). 0% = the perturbed copy is the anchor's nearest neighbour (continuous); 100% = every "
        "other image of the class is nearer."
    )
    components.report_status(results, "neighbourhood_rank")
    with st.expander("Table"):
        components.show_table(rank_df, name)
else:
    st.info("No neighbourhood-rank table yet.")

name, alpha_df = components.pick(results, None, "", {"alpha", "ds_level1_sum"}, "alpha")
if alpha_df is not None:
    shown.add(name)
    st.subheader("Effect of α (paper Fig. 4)")
    st.caption("C fine-tuned at several α (mean over seeds): a larger α buys continuity (lower DS) with accuracy.")
    means = alpha_df.groupby("alpha", as_index=False).mean(numeric_only=True).assign(series="C")
    means["α"] = [f"{a:g}" for a in means["alpha"]]  # a categorical axis: α = 0 has no place on a log axis
    acc = "test_acc" if "test_acc" in means else "test_clean_acc"
    cols = st.columns(2)
    for col, (y, title, percent) in zip(cols, (("ds_level1_sum", "DS level 1 (sum of kinds)", False),
                                               (acc, "Test accuracy (%)", True)), strict=True):  # fmt: skip
        if y in means:
            col.plotly_chart(figures.line_panels(means, "alpha", y, colour="series", x_labels="α", y_title=title,
                                                 percent=percent, x_title="α"), key=f"cont_alpha_{y}")  # fmt: skip
    components.report_status(results, "alpha_sweep")
    with st.expander("Table"):
        components.show_table(alpha_df, name)
components.other_files(results, ("continuity", "rank", "alpha"), shown)
