"""The variant chooser of the result pages: the paper's four by default, the zoo's other variants on offer."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import streamlit as st

from models.objectives import PAPER_VARIANTS


def variant_choice(names: Iterable[str], key: str) -> list[str]:
    """The variants to draw. Only the paper's four: all of them, no widget; others too: a multiselect whose default
    is the paper's four (every name when none of them is present)."""
    names = [str(n) for n in dict.fromkeys(names)]
    paper = [n for n in names if n in PAPER_VARIANTS]
    if len(paper) == len(names):
        return names
    return st.multiselect("Variants", names, default=paper or names, key=key,
                          help="The paper's four by default; controls (e.g. standard+jitter, ADV-mixed) and other "
                               "variants of this zoo can be added.")  # fmt: skip


def only(df: pd.DataFrame | None, variants: list[str]) -> pd.DataFrame | None:
    """``df``'s rows of the chosen variants (``df`` unchanged when it has no variant column)."""
    if df is None or "variant" not in df:
        return df
    return df[df["variant"].astype(str).isin(variants)]
