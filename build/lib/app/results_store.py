"""Precomputed results of a zoo (the report's folder, read and cached until a file changes) and the quick
on-demand versions of the report's experiments computed in this server (kept for every session)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.zoo_cache import ROOT, ZooHandle, get_dataset
from models.data import ImageDataset

RESULTS_ROOT = ROOT / "assets" / "results"

# ----------------------------------------------------------------------------- precomputed results


@dataclass
class Results:
    """Tables (CSV) and documents (JSON) found in a results folder.

    The layout written by ``python -m analysis.report``: ``summary.json`` (status, settings and files of
    every experiment), ``claims.csv``/``claims.json``, ``REPORT.md``, ``results/<experiment>.csv`` (plus
    ``results/<experiment>_<part>.csv``) and ``results/<experiment>.json`` (settings, notes, tables).
    Tables are found by their columns, so other layouts with the same tidy tables work too.
    """

    folder: Path | None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        doc = self.documents.get("summary.json")
        return doc if isinstance(doc, dict) else {}

    def experiment(self, name: str) -> dict[str, Any]:
        """The report's record of one experiment: status (ok / failed / skipped), notes, settings, elapsed time."""
        record = dict((self.summary.get("experiments") or {}).get(name) or {})
        doc = self.documents.get(f"results/{name}.json") or self.documents.get(f"{name}.json")
        if isinstance(doc, dict):
            for key in ("notes", "settings", "title", "paper", "mode", "elapsed_s"):
                if key in doc:
                    record.setdefault(key, doc[key])
        return record

    @property
    def report_markdown(self) -> str | None:
        path = self.folder / "REPORT.md" if self.folder else None
        try:
            return path.read_text() if path and path.is_file() else None
        except OSError:
            return None

    def find(self, columns: set[str], name_hint: str | None = None) -> tuple[str, pd.DataFrame] | tuple[None, None]:
        """The first table having all ``columns`` (preferring names containing ``name_hint``)."""
        matches = [(n, df) for n, df in self.tables.items() if columns <= set(df.columns)]
        if name_hint:
            matches.sort(key=lambda item: name_hint not in item[0])
        return matches[0] if matches else (None, None)

    def named(self, *hints: str) -> dict[str, Any]:
        """Tables (and JSON documents that are not tables) whose file name contains one of ``hints``.

        A JSON file beside a CSV of the same name (the report writes both) and the report's
        per-experiment metadata are left out: they repeat the CSV.
        """
        found: dict[str, Any] = {}
        stems = {n.rsplit(".", 1)[0] for n in self.tables if n.endswith(".csv")}
        for n, obj in {**self.tables, **self.documents}.items():
            if n.endswith(".json") and (n.rsplit(".", 1)[0] in stems or n == "summary.json"):
                continue
            if any(h in Path(n).name.lower() for h in hints):
                found.setdefault(n, obj)
        return found


def results_folders(handle: ZooHandle) -> list[Path]:
    """Where a zoo's precomputed results may live, in order: assets/results/<zoo name>/, reports/<zoo name>/
    (the report command's default), <zoo folder>/results/. The zoo name is the manifest's, then the folder's."""
    names = list(dict.fromkeys([handle.name, Path(handle.path).name]))
    folders = [RESULTS_ROOT / n for n in names] + [ROOT / "reports" / n for n in names]
    folders.append(Path(handle.path) / "results")
    return list(dict.fromkeys(folders))


def report_command(handle: ZooHandle) -> str:
    out = RESULTS_ROOT / handle.name
    try:
        out_text = str(out.relative_to(Path.cwd()))
    except ValueError:
        out_text = str(out)
    return f"python -m analysis.report --zoo {handle.path} --out {out_text}"


def _folder_stamp(folder: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.suffix in (".csv", ".json")))


@st.cache_data(max_entries=16, show_spinner=False)
def _read_results(folder: str, stamp: tuple) -> Results:
    res = Results(Path(folder))
    for path in sorted(Path(folder).rglob("*")):
        name = str(path.relative_to(folder))
        try:
            if path.suffix == ".csv":
                res.tables[name] = pd.read_csv(path)
            elif path.suffix == ".json":
                doc = json.loads(path.read_text())
                res.documents[name] = doc
                if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
                    res.tables[name] = pd.DataFrame(doc)
        except Exception as exc:  # a broken file is reported on the page, not raised
            res.problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return res


def load_results(handle: ZooHandle) -> Results:
    """The first results folder that exists, read (cached until a file in it changes); empty Results if none."""
    for folder in results_folders(handle):
        if folder.is_dir() and any(p.suffix in (".csv", ".json") for p in folder.rglob("*")):
            return _read_results(str(folder), _folder_stamp(folder))
    return Results(None)


# ----------------------------------------------------------------------------- quick on-demand experiments

QUICK_EXPERIMENTS = ("continuity", "probes", "robustness")
QUICK_SIZES = {"continuity": 256, "probes": 256, "robustness": 64}
# Lighter than the report: the audit keeps its point (more steps, a margin loss, a restart) with fewer attacks.
QUICK_SETTINGS: dict[str, dict[str, Any]] = {
    "neighbourhood_rank": {"n_anchors": 50},
    "eps_sweep": {"eps_values": tuple(e / 255 for e in (0, 2, 4, 8, 16))},
    "attack_audit": {"steps_list": (10, 50), "restarts": 2, "losses": ("ce", "margin")},
}


@st.cache_resource
def _quick_store() -> dict[tuple, dict[str, pd.DataFrame]]:
    """Quick results computed in this server process (shared by all sessions, lost on restart)."""
    return {}


def quick_key(handle: ZooHandle, dataset: tuple, experiment: str, n_images: int) -> tuple:
    return (handle.key, dataset, experiment, int(n_images))


def quick_results(handle: ZooHandle, dataset: tuple, experiment: str, n_images: int) -> dict[str, pd.DataFrame] | None:
    """Quick results computed earlier in this server for these settings, or None."""
    return _quick_store().get(quick_key(handle, dataset, experiment, n_images))


def compute_quick(
    handle: ZooHandle,
    ds: ImageDataset,
    experiment: str,
    n_images: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """A small version of one report experiment on the first ``n_images`` test images (pure)."""
    if experiment not in QUICK_EXPERIMENTS:
        raise ValueError(f"no quick version of {experiment!r}; known: {', '.join(QUICK_EXPERIMENTS)}")
    n = min(int(n_images), len(ds))
    images, labels = ds.images[:n], ds.labels[:n]
    progress = progress or (lambda fraction, text: None)
    parts: dict[str, list[pd.DataFrame]] = {}
    variants = handle.variants
    for i, variant in enumerate(variants):
        progress(i / len(variants), f"{experiment}: {variant} ({i + 1}/{len(variants)})")
        one = {variant: handle.model(variant)}
        with handle.lock(variant):
            if experiment == "continuity":
                from analysis.continuity import ds_table, neighbourhood_rank_table

                parts.setdefault("ds", []).append(ds_table(one, images))
                opts = dict(QUICK_SETTINGS["neighbourhood_rank"])
                opts["n_anchors"] = min(int(opts.get("n_anchors", 50)), n)
                parts.setdefault("neighbourhood_rank", []).append(neighbourhood_rank_table(one, images, labels, **opts))
            elif experiment == "probes":
                from analysis.probes import probe_table

                parts.setdefault("probes", []).append(probe_table(one, images, labels))
            else:
                from analysis.robustness import attack_audit, eps_sweep, robustness_table

                parts.setdefault("robustness", []).append(robustness_table(one, images, labels))
                parts.setdefault("eps_sweep", []).append(eps_sweep(one, images, labels, **QUICK_SETTINGS["eps_sweep"]))
                parts.setdefault("attack_audit", []).append(
                    attack_audit(one, images, labels, **QUICK_SETTINGS["attack_audit"])
                )
    progress(1.0, f"{experiment}: done")
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def run_quick(
    handle: ZooHandle,
    dataset: tuple,
    experiment: str,
    n_images: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute (or reuse) the quick results and keep them for every session of this server."""
    key = quick_key(handle, dataset, experiment, n_images)
    store = _quick_store()
    if key not in store:
        store[key] = compute_quick(handle, get_dataset(*dataset), experiment, n_images, progress)
    return store[key]
