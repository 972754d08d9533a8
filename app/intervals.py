"""The pages' curves with their 95% CIs (``analysis.curve_intervals``), cached per table: bootstrapping every
point of a 6-variant continuity table takes a few seconds, once per server and result file."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from analysis.curve_intervals import CURVE_RESAMPLES, accuracy_cis, image_cis, seed_cis

__all__ = ["CURVE_RESAMPLES", "accuracy_cis", "per_image_cis", "seed_cis"]


@st.cache_data(max_entries=16, show_spinner="Bootstrapping the curves' 95% CIs...")
def per_image_cis(summary: pd.DataFrame, per_image: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """``analysis.curve_intervals.image_cis`` of the shown variants only, cached by the tables' contents."""
    if "variant" in keys and "variant" in summary and "variant" in per_image:
        per_image = per_image[per_image["variant"].isin(set(summary["variant"]))]
    return image_cis(summary, per_image, tuple(keys), value)
