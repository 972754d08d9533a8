"""Attribution methods that fail the sanity check, flagged on every page that shows them (issue 22).

The verdict is :func:`analysis.sanity_checks.flagged_methods` on the cascading-randomisation results known for the
zoo: the report's (``sanity_checks`` per-image table in its results folder) and those the sanity check page
computed in this session (:func:`record`; they replace the report's rows of the same method). Nothing is computed
here: a method without results is not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import streamlit as st

from app.results_store import load_results
from app.saliency_cache import method_info
from app.zoo_cache import ZooHandle

__all__ = ["SESSION_KEY", "flags", "record", "warn_flagged"]

SESSION_KEY = "sanity_flag_results"  # zoo key -> method -> per-image table of the sanity check page
COLUMNS = {"variant", "method", "step", "layer", "image", "spearman"}


def record(handle: ZooHandle, per_image: pd.DataFrame) -> None:
    """Keep the sanity check page's per-image results (every method in them) for this session's other pages."""
    store = st.session_state.setdefault(SESSION_KEY, {}).setdefault(handle.key, {})
    for method, rows in per_image.groupby("method", sort=False):
        store[str(method)] = rows


def _report_rows(handle: ZooHandle) -> pd.DataFrame | None:
    _, table = load_results(handle).find(COLUMNS, name_hint="sanity_checks")
    return table


def flags(handle: ZooHandle) -> dict[str, str]:
    """method -> why it is flagged, from the report's and this session's sanity-check results for the zoo."""
    from analysis.sanity_checks import flagged_methods  # imports captum: only when a page asks

    session: Mapping[str, pd.DataFrame] = st.session_state.get(SESSION_KEY, {}).get(handle.key, {})
    parts = list(session.values())
    report = _report_rows(handle)
    if report is not None:
        parts.append(report[~report["method"].isin(list(session))])
    parts = [p for p in parts if len(p)]
    return flagged_methods(pd.concat(parts, ignore_index=True)) if parts else {}


def warn_flagged(handle: ZooHandle, methods: Iterable[str]) -> None:
    """A warning for each of ``methods`` (the ones the page shows) that fails the sanity check, by its label."""
    known = flags(handle)
    shown = [m for m in methods if m in known]
    labels = {name: info.label for name, info in method_info().items()} if shown else {}
    for method in shown:
        st.warning(f"**{labels.get(method, method)}** {known[method]}.")
