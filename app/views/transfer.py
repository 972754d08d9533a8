"""Transfer: fine-tuning each variant on a target data set (paper 4.6, Table 3)."""

import streamlit as st

from app import components, exports, figures
from app.choices import only, variant_choice

ctx = components.context()
st.title("Transfer")
st.markdown(
    "Each variant's checkpoint is fine-tuned on other data sets (paper 4.6, Table 3): a model that learned "
    "semantic rather than colour features should transfer better. Bars: test accuracy on each target after "
    "fine-tuning, mean over seeds (error bars: standard deviation)."
)
components.require_zoo(ctx)
components.zoo_header(ctx)
results, _ = components.results_or_quick(ctx, None, "Transfer")
shown = set()
name, summary = components.pick(results, None, "", {"variant", "target", "test_acc_mean"}, "transfer")
name_runs, runs = components.pick(results, None, "", {"variant", "target", "test_acc"}, "transfer")
chosen = variant_choice([*(summary["variant"] if summary is not None else []),
                         *(runs["variant"] if runs is not None else [])], key="transfer_variants")  # fmt: skip
summary, runs = only(summary, chosen), only(runs, chosen)
if summary is not None:
    shown.add(name)
    exports.chart(figures.grouped_bars(summary, "target", "test_acc_mean", error="test_acc_sd",
                                       y_title="Test accuracy (%)"), "transfer_bars", "transfer", summary,
                  exports.provenance(ctx, name, error_bars="sd over seeds"))  # fmt: skip
    components.show_table(summary, name)
name = name_runs
if runs is not None:
    shown.add(name)
    if summary is None:
        means = runs.groupby(["target", "variant"], sort=False, as_index=False)["test_acc"].mean()
        exports.chart(figures.grouped_bars(means, "target", "test_acc"), "transfer_bars", "transfer", means,
                      exports.provenance(ctx, name_runs, values="mean over seeds"))  # fmt: skip
    with st.expander("Every fine-tuning run"):
        components.show_table(runs, name)
components.report_status(results, "transfer")
if summary is None and runs is None:
    st.info("No transfer results yet (the report's transfer experiment writes them).")
components.other_files(results, ("transfer",), shown)
