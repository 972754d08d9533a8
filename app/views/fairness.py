"""Fairness: the colour-bias experiment (paper 4.7, Table 4)."""

import pandas as pd
import streamlit as st

from app import components, exports, figures, public
from app.choices import only, variant_choice

RUN_COLUMNS = {"variant", "test_acc", "test_acc_red", "test_acc_blue"}
SHORTCUT_COLUMNS = {"variant", "test_acc", "test_acc_on_colour", "test_acc_off_colour"}
SHORTCUT_PARTS = [("test_acc", "all test images"), ("test_acc_on_colour", "on its class's training colour"),
                  ("test_acc_off_colour", "off its class's training colour")]  # fmt: skip


def is_shortcut(name: str, df: pd.DataFrame) -> bool:
    """Whether a run table is the shortcut design's (its file name, or its ``design`` column, says so)."""
    return "shortcut" in name or ("design" in df and bool((df["design"] == "shortcut").all()))


def design_table(results, columns: set[str], shortcut: bool = False) -> tuple[str | None, pd.DataFrame | None]:
    """A colour-bias table with these columns, of one design: the paper's (colour independent of the label) or the
    shortcut one. Only files named for the experiment count: transfer's summary has the same columns."""
    for name, df in results.tables.items():
        if columns <= set(df.columns) and "fairness" in name and is_shortcut(name, df) == shortcut:
            return name, df
    return None, None


def seed_means(runs: pd.DataFrame, parts: list[tuple[str, str]]) -> pd.DataFrame:
    """Per variant and part, the mean and sd over seeds (long form, for grouped bars and their CSV)."""
    grouped = runs.groupby("variant", sort=False)
    return pd.concat([pd.DataFrame({"variant": grouped[col].mean().index, "subset": label,
                                    "acc": grouped[col].mean().to_numpy(), "sd": grouped[col].std().to_numpy(),
                                    "seeds": grouped[col].count().to_numpy()})
                      for col, label in parts if col in runs], ignore_index=True)  # fmt: skip


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
name, summary = design_table(results, {"variant", "test_acc_mean"})
name_runs, runs = design_table(results, RUN_COLUMNS)
name_shortcut, shortcut = design_table(results, SHORTCUT_COLUMNS, shortcut=True)
chosen = variant_choice([*(summary["variant"] if summary is not None else []),
                         *(runs["variant"] if runs is not None else []),
                         *(shortcut["variant"] if shortcut is not None else [])], key="fair_variants")  # fmt: skip
summary, runs, shortcut = only(summary, chosen), only(runs, chosen), only(shortcut, chosen)
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
if shortcut is not None and len(shortcut):
    shown.add(name_shortcut)
    st.subheader("Shortcut design")
    st.markdown(
        "The same shapes, variants, seeds and settings, but with a shortcut to learn: in training 95% of each "
        "class's images lie on that class's own background colour; in test the colour is independent of the class. "
        "A model that took the shortcut is accurate on the test images whose colour is their class's training colour "
        "and not on the others: a smaller gap between the two = less reliance on the colour."
    )
    long = seed_means(shortcut, SHORTCUT_PARTS)
    exports.chart(figures.grouped_bars(long, "subset", "acc", error="sd", y_title="Test accuracy (%)"),
                  "fair_shortcut_bars", "fairness_shortcut", long,
                  exports.provenance(ctx, name_shortcut, design="shortcut", error_bars="sd over seeds"))  # fmt: skip
    with st.expander("Every training run (shortcut design)"):
        components.show_table(shortcut, name_shortcut)
components.report_status(results, "fairness")
if summary is None and runs is None and shortcut is None:
    record = (results.experiment("fairness") or {}) if results.folder is not None else {}
    if record.get("status") == "skipped":
        estimate = (results.summary.get("estimate_cpu_s") or {}).get("fairness")
        cost = f", about {estimate / 3600:.1f} h on one CPU thread with this report's settings" if estimate else ""
        command = (f"python -m analysis.report --zoo {ctx.handle.path} --out {results.folder} --resume "
                   "--only fairness")  # fmt: skip
        st.info(f"This report left the colour bias out. It trains its own networks{cost}; to add it to these "
                f"results (every other experiment is kept):\n\n```\n{public.redact(command)}\n```")  # fmt: skip
    else:
        st.info("No fairness results yet (the report's colour-bias experiment writes them).")
components.other_files(results, ("fairness", "bias"), shown)
