"""Fairness: the colour-bias experiment (paper 4.7, Table 4)."""

import pandas as pd
import streamlit as st

from app import components, exports, figures
from app.choices import only, variant_choice

ctx = components.context()
st.title("Fairness: colour bias")
st.markdown(
    "The colour-bias set (paper 4.7): grayscale objects on a coloured background, 95% red / 5% blue in training "
    "and the reverse in test. A model that learned the *object* keeps its accuracy on the (mostly blue) test set; "
    "one that learned the *colour* does not. Higher test accuracy, and a smaller red-blue gap, = less bias."
)
components.require_zoo(ctx)
components.zoo_header(ctx)
results, _ = components.results_or_quick(ctx, None, "Fairness")
shown = set()
name, summary = components.pick(results, None, "", {"variant", "test_acc_mean"}, "fairness")
name_runs, runs = components.pick(results, None, "", {"variant", "test_acc", "test_acc_red", "test_acc_blue"},
                                  "fairness")  # fmt: skip
chosen = variant_choice([*(summary["variant"] if summary is not None else []),
                         *(runs["variant"] if runs is not None else [])], key="fair_variants")  # fmt: skip
summary, runs = only(summary, chosen), only(runs, chosen)
if summary is not None:
    shown.add(name)
    parts = [("test_acc", "all test images"), ("test_acc_red", "red background (minority)"),
             ("test_acc_blue", "blue background (majority)")]  # fmt: skip
    long = pd.concat(
        [pd.DataFrame({"variant": summary["variant"], "subset": label, "acc": summary[f"{col}_mean"],
                       "sd": summary.get(f"{col}_sd")}) for col, label in parts if f"{col}_mean" in summary]
    )  # fmt: skip
    exports.chart(figures.grouped_bars(long, "subset", "acc", error="sd", y_title="Test accuracy (%)"), "fair_bars",
                  "fairness", long, exports.provenance(ctx, name, error_bars="sd over seeds"))  # fmt: skip
    components.show_table(summary, name)  # accuracies in %, seed counts as counts (app.tables.is_accuracy)
name = name_runs
if runs is not None:
    shown.add(name)
    if summary is None:
        cols = ["test_acc", "test_acc_red", "test_acc_blue"]
        means = runs.groupby("variant", sort=False, as_index=False)[cols].mean()
        exports.chart(figures.accuracy_bars(means, {"test_acc": "all", "test_acc_red": "red",
                                                    "test_acc_blue": "blue"}), "fair_bars", "fairness", means,
                      exports.provenance(ctx, name_runs, values="mean over seeds"))  # fmt: skip
    with st.expander("Every training run"):
        components.show_table(runs, name)
components.report_status(results, "fairness")
if summary is None and runs is None:
    st.info("No fairness results yet (the report's colour-bias experiment writes them).")
components.other_files(results, ("fairness", "bias"), shown)
