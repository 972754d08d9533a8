"""Precomputed results of a zoo (the report's folder, read by ``analysis.results_store.read_folder`` and cached
until a file changes) and the quick results (``analysis.results_store.run_quick``: the experiment registry with its
QUICK settings) computed in this server and kept for every session. Only finding, caching and locking here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.results_store import (
    QUICK_GROUPS,
    Results,
    folder_stamp,
    has_results,
    quick_size,
    read_folder,
    seed_report_folder,
)
from analysis.service_api import QuickRequest
from app import compute
from app.zoo_cache import ROOT, ZooHandle
from models.assets import results_root

__all__ = ["QUICK_EXPERIMENTS", "QUICK_SIZES", "RESULTS_ROOT", "load_results", "quick_results", "report_command",
           "results_folders", "run_quick"]  # fmt: skip

RESULTS_ROOT = results_root()  # the clone's assets/results, an installed wheel's copy, or under $SCL_ASSETS

# ----------------------------------------------------------------------------- precomputed results


def results_folders(handle: ZooHandle) -> list[Path]:
    """Where a zoo's precomputed results may live, in order: assets/results/<zoo name>/, reports/<zoo name>/
    (the report command's default), <zoo folder>/results/. The zoo name is its folder's, never the manifest's
    ``name`` (a manifest naming ``../../tmp/x`` must not make the dashboard read that folder)."""
    names = [Path(handle.path).name]
    folders = [RESULTS_ROOT / n for n in names] + [ROOT / "reports" / n for n in names]
    folders.append(Path(handle.path) / "results")
    return list(dict.fromkeys(folders))


def report_command(handle: ZooHandle) -> str:
    out = RESULTS_ROOT / Path(handle.path).name
    try:
        out_text = str(out.relative_to(Path.cwd()))
    except ValueError:
        out_text = str(out)
    return f"python -m analysis.report --zoo {handle.path} --out {out_text}"


@st.cache_data(max_entries=16, show_spinner=False)
def _read_results(folder: str, stamp: tuple) -> Results:
    return read_folder(folder)


def load_results(handle: ZooHandle) -> Results:
    """The first results folder that exists, read (cached until a file in it changes); empty Results if none.
    With a training seed chosen (``handle.seed``), that seed's own report inside it (``seeds/<seed>/``, as
    ``--zoo-seeds`` writes it) where there is one; the primary checkpoints' report otherwise."""
    for folder in results_folders(handle):
        if has_results(folder):
            own = seed_report_folder(folder, handle.seed)
            return _read_results(str(own), folder_stamp(own))
    return Results(None)


# ----------------------------------------------------------------------------- quick on-demand experiments

QUICK_EXPERIMENTS = tuple(QUICK_GROUPS)
QUICK_SIZES = {group: quick_size(group) for group in QUICK_GROUPS}  # test images each group reads under QUICK


@st.cache_resource
def _quick_store() -> dict[tuple, dict[str, pd.DataFrame]]:
    """Quick results computed in this server process (shared by all sessions, lost on restart)."""
    return {}


def quick_key(handle: ZooHandle, dataset: tuple, experiment: str, n_images: int) -> tuple:
    return (handle.key, dataset, experiment, int(n_images))


def quick_results(handle: ZooHandle, dataset: tuple, experiment: str, n_images: int) -> dict[str, pd.DataFrame] | None:
    """Quick results computed earlier in this server for these settings, or None."""
    return _quick_store().get(quick_key(handle, dataset, experiment, n_images))


def run_quick(
    handle: ZooHandle,
    dataset: tuple,
    experiment: str,
    n_images: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute (or reuse) the quick results and keep them for every session of this server (``n_images`` is part of
    the key; the registry's QUICK settings say how many images each experiment reads: :data:`QUICK_SIZES`)."""
    key = quick_key(handle, dataset, experiment, n_images)
    store = _quick_store()
    if key not in store:
        store[key] = compute.service(handle).quick(QuickRequest(tuple(dataset), experiment), progress).tables
    return store[key]
