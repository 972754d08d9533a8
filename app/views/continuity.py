"""Continuity curves: DS against perturbation level per variant (paper Fig. 3) and the neighbourhood rank, each
point with its 95% CI over the images (or anchors, or seeds) behind it, and every chart's numbers as CSV."""

import streamlit as st

from app import components, exports, figures, intervals
from app.choices import only, variant_choice

ctx = components.context()
st.title("Continuity curves")
st.markdown(
    "How far each variant's logits move under the colour perturbations of Table 1, level by level "
    "(paper Fig. 3), and how often another image of the same class is nearer than the perturbed copy "
    "(paper section 2). Error bars are 95% confidence intervals; the camera icon of a chart saves it as SVG."
)
components.require_zoo(ctx)
components.zoo_header(ctx)
results, quick = components.results_or_quick(ctx, "continuity", "Continuity curves")
shown = set()

st.subheader("Distance score against level")
name, ds_df = components.pick(results, quick, "continuity", {"variant", "kind", "level", "ds_mean"}, "continuity")
name_p, per_image = components.pick(results, quick, "continuity_per_image", {"variant", "kind", "level", "image", "ds"},
                                    "continuity_per_image")  # fmt: skip
name_r, rank_df = components.pick(results, quick, "neighbourhood_rank",
                                  {"variant", "kind", "level", "share_closer_mean"}, "rank")  # fmt: skip
chosen = variant_choice([*(ds_df["variant"] if ds_df is not None else []),
                         *(rank_df["variant"] if rank_df is not None else [])], key="cont_variants")  # fmt: skip
ds_df, rank_df = only(ds_df, chosen), only(rank_df, chosen)
if ds_df is not None:
    shown.add(name)
    if per_image is not None:
        shown.add(name_p)
        ds_df = intervals.per_image_cis(ds_df, per_image, ("variant", "kind", "level"), "ds")
        how = ("Error bars: percentile-bootstrap 95% CI of the mean over the test images "
               f"({intervals.CURVE_RESAMPLES:,} resamples of `{name_p}`).")  # fmt: skip
    else:
        how = ("The stored results have no per-image DS (no `continuity_per_image` table), so no CI is drawn; on a "
               "linear axis the bars are the standard deviation over images.")  # fmt: skip
    log_y = st.toggle("Logarithmic DS axis", value=True, key="cont_log")
    exports.chart(figures.ds_curves(ds_df, log_y=log_y), "cont_ds", "continuity_ds", ds_df,
                  exports.provenance(ctx, name, variants=", ".join(chosen), ci=how))  # fmt: skip
    st.caption(f"{components.DS_CAPTION} Mean over test images; lines per variant, panels per perturbation kind. {how}")
    level1 = ds_df[ds_df["level"] == 1].groupby("variant", sort=False)["ds_mean"].sum()
    if len(level1):
        exports.chart(figures.metric_bars(level1.to_dict(), "DS at level 1, summed over kinds", "DS", log_y=True),
                      "cont_l1", "continuity_ds_level1_sum", level1.reset_index(),
                      exports.provenance(ctx, name, variants=", ".join(chosen)))  # fmt: skip
    components.report_status(results, "continuity")
    with st.expander("Table"):
        components.show_table(ds_df, name)
else:
    st.info("No DS table yet.")

st.subheader("Neighbourhood rank")
name = name_r
if rank_df is not None:
    shown.add(name)
    has_ci = {"share_closer_ci_low", "share_closer_ci_high"} <= set(rank_df.columns)
    exports.chart(figures.line_panels(rank_df, "level", "share_closer_mean", panel="kind", percent=True,
                                      y_title="Same-class images nearer (%)",
                                      ci=("share_closer_ci_low", "share_closer_ci_high") if has_ci else None),
                  "cont_rank", "neighbourhood_rank", rank_df,
                  exports.provenance(ctx, name, variants=", ".join(chosen)))  # fmt: skip
    st.caption(
        "For seeded anchor images x_A: the share of other same-class images x_B with DS(x_A, x_B) < "
        "DS(x_A, P(x_A)). 0% = the perturbed copy is the anchor's nearest neighbour (continuous); 100% = every "
        "other image of the class is nearer. "
        + ("Error bars: the report's bootstrap 95% CI over the anchors." if has_ci
           else "This table has no CI columns, so none is drawn.")
    )  # fmt: skip
    components.report_status(results, "neighbourhood_rank")
    with st.expander("Table"):
        components.show_table(rank_df, name)
else:
    st.info("No neighbourhood-rank table yet.")

name, alpha_df = components.pick(results, None, "", {"alpha", "ds_level1_sum"}, "alpha")
if alpha_df is not None:
    shown.add(name)
    st.subheader("Effect of α (paper Fig. 4)")
    n_seeds = int(alpha_df.groupby("alpha")["seed"].nunique().min()) if "seed" in alpha_df else 1
    st.caption(
        f"C fine-tuned at several α (mean over {n_seeds} seed(s)): a larger α buys continuity (lower DS) with "
        "accuracy. Error bars: Student-t 95% CI over the seeds (the sweep stores one number per seed, not per "
        "image, so the interval is over training runs only"
        + ("; one seed: no interval)." if n_seeds < 2 else ").")
    )  # fmt: skip
    acc = "test_acc" if "test_acc" in alpha_df and alpha_df["test_acc"].notna().any() else "test_clean_acc"
    cols = st.columns(2)
    for col, (y, title, percent) in zip(cols, (("ds_level1_sum", "DS level 1 (sum of kinds)", False),
                                               (acc, "Test accuracy (%)", True)), strict=True):  # fmt: skip
        if y not in alpha_df:
            continue
        means = intervals.seed_cis(alpha_df, ["alpha"], y).assign(series="C")
        means["α"] = [f"{a:g}" for a in means["alpha"]]  # a categorical axis: α = 0 has no place on a log axis
        with col:
            exports.chart(figures.line_panels(means, "alpha", y, colour="series", x_labels="α", y_title=title,
                                              percent=percent, x_title="α", ci=("ci_low", "ci_high")),
                          f"cont_alpha_{y}", f"alpha_sweep_{y}", means.drop(columns=["series", "α"]),
                          exports.provenance(ctx, name, ci="Student-t 95% CI over seeds"))  # fmt: skip
    components.report_status(results, "alpha_sweep")
    with st.expander("Table"):
        components.show_table(alpha_df, name)
components.other_files(results, ("continuity", "rank", "alpha"), shown)
