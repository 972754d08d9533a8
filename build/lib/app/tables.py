"""How result tables read on the dashboard: one column -> label mapping and the percent rule (no Streamlit here).

``column_label`` names a column for people ("test_clean_acc" -> "Clean accuracy (test)"); ``is_accuracy`` says
which columns are accuracies in [0, 1], the only ones shown in percent (a count such as ``n_seeds_test_acc`` is
not, although its name contains "acc"). ``display_table`` applies both to a DataFrame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

COLUMN_LABELS: dict[str, str] = {
    "variant": "Variant",
    "objective": "Objective",
    "target": "Target data set",
    "seed": "Seed",
    "kind": "Perturbation",
    "level": "Level",
    "level_label": "Level (name)",
    "probe": "Probe",
    "method": "Method",
    "anchor": "Anchor",
    "rank": "Neighbour rank",
    "n_candidates": "Candidates",
    "alpha": "α",
    "test_clean_acc": "Clean accuracy (test)",
    "val_clean_acc": "Clean accuracy (validation)",
    "test_pgd10_acc": "PGD-10 accuracy (test)",
    "test_acc": "Accuracy (test)",
    "val_acc": "Accuracy (validation)",
    "test_acc_red": "Accuracy, red background (test)",
    "test_acc_blue": "Accuracy, blue background (test)",
    "clean_acc": "Clean accuracy",
    "robust_acc": "Robust accuracy",
    "accuracy": "Accuracy",
    "ds_level1_sum": "DS level 1 (sum of kinds)",
    "ds_mean": "DS (mean)",
    "ds_std": "DS (sd)",
    "ds_median": "DS (median)",
    "share_closer_mean": "Share of same-class images nearer (mean)",
    "share_closer_std": "Share of same-class images nearer (sd)",
    "n": "Images",
    "n_anchors": "Anchors",
    "n_seeds": "Seeds",
    "n_train": "Training images",
    "n_test": "Test images",
    "n_red": "Red images",
    "n_blue": "Blue images",
    "epochs": "Epochs",
    "train_seconds": "Training time (s)",
    "elapsed_s": "Time (s)",
    "eps": "ε",
    "eps_255": "ε (/255)",
    "steps": "Steps",
    "verdict": "Verdict",
    "claim": "Claim",
    "ours": "This zoo",
    "paper": "Paper section",
    "paper_figure": "Paper's figure",
    "rule": "Rule",
    "key": "Key",
}
_SUFFIXES = {"mean": "mean", "sd": "sd", "std": "sd", "median": "median"}
_ACCURACY = re.compile(r"(^|_)(acc|accuracy)($|_)")


def is_accuracy(column: str) -> bool:
    """True for accuracy columns (values in [0, 1], shown in %): the name has the token ``acc`` or ``accuracy``
    and is not a count (``n_...``)."""
    name = str(column).lower()
    return bool(_ACCURACY.search(name)) and not name.startswith("n_")


def column_label(column: str) -> str:
    """The human name of a result column: the mapping, then ``<column>_<mean|sd|median>`` and ``n_seeds_<column>``
    from it, then the column with spaces for underscores; " (%)" is added to accuracy columns."""
    name = str(column)
    label = COLUMN_LABELS.get(name)
    if label is None:
        head, _, tail = name.rpartition("_")
        if head and tail in _SUFFIXES and head in COLUMN_LABELS:
            label = f"{COLUMN_LABELS[head]}, {_SUFFIXES[tail]}"
        elif name.startswith("n_seeds_") and name[8:] in COLUMN_LABELS:
            label = f"Seeds, {COLUMN_LABELS[name[8:]].lower()}"
        elif name.startswith("ds_level1_"):
            label = f"DS level 1, {name[10:]}"
        else:
            label = name.replace("_", " ")
            label = label[:1].upper() + label[1:]
    return f"{label} (%)" if is_accuracy(name) else label


def display_table(df: pd.DataFrame, percent_columns: Iterable[str] | None = None) -> pd.DataFrame:
    """``df`` as the dashboard shows it: accuracy columns x100 (``percent_columns`` overrides the rule), columns
    renamed by ``column_label``. The values are rounded for reading; the CSV keeps them all."""
    shown = df.copy()
    percent = set(percent_columns) if percent_columns is not None else {c for c in shown.columns if is_accuracy(c)}
    for c in shown.columns:
        if c in percent and pd.api.types.is_numeric_dtype(shown[c]):
            shown[c] = (shown[c] * 100).round(2)
    labels: dict[str, str] = {}
    for c in shown.columns:
        label = column_label(c).removesuffix(" (%)") + (" (%)" if c in percent else "")
        labels[c] = label if label not in labels.values() else f"{label} [{c}]"  # names stay unique
    return shown.rename(columns=labels)
