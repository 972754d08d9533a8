"""How result tables read on the dashboard: one column -> label mapping and the percent rule (no Streamlit here).

``column_label`` names a column for people ("test_clean_acc" -> "Clean accuracy (test)"); ``is_accuracy`` says
which columns are accuracies in [0, 1], the only ones shown in percent (a count such as ``n_seeds_test_acc`` is
not, although its name contains "acc"). ``display_table`` applies both to a DataFrame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pandas as pd

from analysis.formatting import finite, interval, p_number

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
    "pgd_acc": "PGD-10 accuracy",
    "below_pgd10": "Below PGD-10",
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
    "effect_ci": "Effect [95% CI]",
    "test": "Test",
    "p": "p",
    "p_holm": "Holm p",
    "n_images": "Images",
    "comparison": "Comparison",
    "comparison_kind": "Paper pair or control",
    "metric": "Metric",
    "direction": "Direction",
    "unit": "Unit",
    "effect": "Effect",
    "ci_low": "CI low",
    "ci_high": "CI high",
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


# ----------------------------------------------------------------------------- the claims and their comparisons

_COUNT = re.compile(r"(\d+)\s+(images?|seed)")


def counts_of(n_text: object) -> tuple[int | None, int | None]:
    """(images, seeds) named in a claims.csv ``n`` cell such as "1000 images" or "3 seed(s)" (the largest of
    each when several comparisons are listed; None where the cell names none)."""
    images = [int(k) for k, unit in _COUNT.findall(str(n_text)) if unit.startswith("image")]
    seeds = [int(k) for k, unit in _COUNT.findall(str(n_text)) if unit == "seed"]
    return (max(images) if images else None), (max(seeds) if seeds else None)


def claim_p_text(tests: pd.DataFrame) -> str:
    """One claim's p-values as text, per comparison: ``C vs standard: 2.0e-04 (Holm 8.0e-04)``."""
    return "; ".join(f"{r.comparison}: {p_number(r.p)} (Holm {p_number(r.p_holm)})" for r in tests.itertuples())


def claims_view(claims: pd.DataFrame, tests: pd.DataFrame | None = None) -> pd.DataFrame:
    """claims.csv as the page's compact table: key, verdict, images and seeds as numbers in their own columns,
    claim, effect and CI, p (from the comparisons, in :func:`analysis.formatting.p_number`'s notation, when they
    are there), our figures, then the test, the paper's section and figure and the rule."""
    df = claims.copy()
    if tests is not None and {"key", "comparison", "p", "p_holm"} <= set(tests.columns) and "key" in df:
        by_key = {k: claim_p_text(g) for k, g in tests.groupby("key", sort=False)}
        df["p"] = [by_key.get(k, p) for k, p in zip(df["key"], df.get("p", [""] * len(df)), strict=True)]
    if "n" in df:
        counts = [counts_of(n) for n in df["n"]]
        df["n_images"] = pd.array([c[0] for c in counts], dtype="Int64")
        df["n_seeds"] = pd.array([c[1] for c in counts], dtype="Int64")
        df = df.drop(columns="n")
    first = ["key", "verdict", "n_images", "n_seeds", "claim", "effect_ci", "p", "ours", "test", "paper",
             "paper_figure", "rule"]  # fmt: skip
    return df[[c for c in first if c in df] + [c for c in df.columns if c not in first]]


def comparisons_view(tests: pd.DataFrame) -> pd.DataFrame:
    """claim_tests.csv as the page shows it: key, comparison, effect with its 95% CI as one text, p and Holm p
    as text (:func:`analysis.formatting.p_number`), images and seeds as integers, verdict; then whether it is
    one of the paper's pairs or a control, metric,
    direction and test."""
    df = tests.rename(columns={"kind": "comparison_kind"})  # "kind" is a perturbation's elsewhere
    units = df["unit"] if "unit" in df else pd.Series("points", index=df.index)
    if {"effect", "ci_low", "ci_high"} <= set(df.columns):
        rows = zip(df["effect"], df["ci_low"], df["ci_high"], units, strict=True)
        df["effect_ci"] = [interval(e, lo, hi, "points" if u == "points" else "value") for e, lo, hi, u in rows]
    for col in ("p", "p_holm"):
        if col in df:
            df[col] = [p_number(v) for v in df[col]]
    for col in ("n_images", "n_seeds"):
        if col in df:
            df[col] = pd.array([int(v) if finite(v) else None for v in df[col]], dtype="Int64")
    first = ["key", "comparison", "effect_ci", "p", "p_holm", "n_images", "n_seeds", "verdict", "comparison_kind",
             "metric", "direction", "test"]  # fmt: skip
    return df[[c for c in first if c in df]]


def filter_comparisons(view: pd.DataFrame, keys: Sequence[str] = (), text: str = "") -> pd.DataFrame:
    """The comparisons of the chosen claims (``keys``; none = all) whose row contains ``text`` (any column,
    case-insensitive; blank = all)."""
    shown = view[view["key"].isin(list(keys))] if keys else view
    needle = text.strip().lower()
    if needle:
        hit = [needle in " ".join(map(str, row)).lower() for row in shown.itertuples(index=False)]
        shown = shown[pd.Series(hit, index=shown.index, dtype=bool)]
    return shown
