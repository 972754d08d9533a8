"""The report's results folder: writing each experiment (CSV + JSON), reusing still-valid results (``--resume``),
clearing an earlier report, and reading a folder back (``read_results``: what the dashboard can use).

Layout::

    summary.json                 status, settings, what ran, files and elapsed time per experiment
    claims.csv / claims.json     one row per claim; claim_tests.csv one row per comparison
    results/<experiment>.csv     the main table; results/<experiment>_<part>.csv for the other parts
    results/<experiment>.json    {experiment, settings, ran, notes, tables (parts not named per_*), files, inputs}
    figures/*.png
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.experiments.registry import Context, Experiment, Output
from analysis.roles import zoo_roles

FORMAT = "scl-report/1"
REPORT_FILES = ("REPORT.md", "claims.csv", "claims.json", "claim_tests.csv", "summary.json")


def clean_json(obj: Any) -> Any:
    """The one JSON cleaner: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, Paths -> str (recursive)."""
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dump_json(obj: Any, path: Path) -> None:
    """Write ``clean_json(obj)`` atomically."""
    text = json.dumps(clean_json(obj), indent=2, default=str, allow_nan=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", double_precision=10))


def csv_name(experiment: str, part: str, first: bool) -> str:
    return experiment if first else f"{experiment}_{part}"


def experiment_inputs(ctx: Context, exp: Experiment) -> dict[str, str]:
    """The sha256 of each zoo checkpoint ``exp`` reads: a stored result is reusable only while these are unchanged."""
    variants = ctx.zoo.manifest.get("variants", {})
    roles = zoo_roles(ctx.zoo)
    used = list(variants) if exp.uses is None else [v for v in variants if roles.get(v) in exp.uses]
    return {v: str(variants[v].get("sha256")) for v in used}


def write_experiment(ctx: Context, exp: Experiment, output: Output, elapsed: float, cpu: float) -> dict[str, Any]:
    """results/<name>.csv (+ one CSV per extra part) and results/<name>.json; returns the summary entry."""
    res = ctx.out / "results"
    res.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"csv": [], "json": f"results/{exp.name}.json", "figures": [], "parts": {}}
    for i, (part, df) in enumerate(output.tables.items()):
        name = csv_name(exp.name, part, i == 0)
        df.to_csv(res / f"{name}.csv", index=False)
        files["csv"].append(f"results/{name}.csv")
        files["parts"][part] = f"results/{name}.csv"
    files["figures"] = [str(Path(p).relative_to(ctx.out)) for p in output.figures]
    settings = {k: getattr(ctx.settings, k) for k in exp.settings}
    doc = {"inputs": experiment_inputs(ctx, exp), "experiment": exp.name, "title": exp.title, "paper": exp.paper,
           "mode": ctx.settings.mode, "zoo": str(ctx.zoo.path), "dataset": ctx.dataset, "settings": settings,
           "ran": output.ran, "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu, 2), "notes": output.notes,
           "tables": {p: records(df) for p, df in output.tables.items() if not p.startswith("per_")},
           "files": files}  # fmt: skip
    dump_json(doc, res / f"{exp.name}.json")
    return {"status": "ok", "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu, 2), "files": files,
            "notes": output.notes, "settings": settings, "ran": output.ran}  # fmt: skip


def _read_parts(out: Path, files: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    parts = files.get("parts") or {}
    return {part: pd.read_csv(out / path) for part, path in parts.items()}


def reuse_experiment(ctx: Context, exp: Experiment) -> tuple[dict[str, pd.DataFrame], dict[str, Any]] | None:
    """An earlier result of ``exp`` in ``ctx.out`` computed from the same checkpoints, data set, mode and settings:
    its parts and summary entry, or None when there is none or anything it depended on changed."""
    try:
        doc = json.loads((ctx.out / "results" / f"{exp.name}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    settings = {k: getattr(ctx.settings, k) for k in exp.settings}
    same = (
        doc.get("inputs") == experiment_inputs(ctx, exp)
        and doc.get("mode") == ctx.settings.mode
        and doc.get("dataset") == ctx.dataset
        and all(clean_json(doc.get("settings", {}).get(k)) == clean_json(v) for k, v in settings.items())
    )
    files = doc.get("files", {})
    if not same or not all((ctx.out / f).is_file() for f in [*files.get("csv", []), *files.get("figures", [])]):
        return None
    try:
        parts = _read_parts(ctx.out, files)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    entry = {"status": "ok", "reused": True, "elapsed_s": doc.get("elapsed_s"), "cpu_s": doc.get("cpu_s"),
             "files": files, "notes": doc.get("notes", []), "settings": doc.get("settings", {}),
             "ran": doc.get("ran", {})}  # fmt: skip
    return parts, entry


def remove_experiment(out: Path, name: str) -> None:
    """Delete an experiment's stored result and the files it lists."""
    path = out / "results" / f"{name}.json"
    try:
        files = json.loads(path.read_text()).get("files", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        files = {}
    for f in [*files.get("csv", []), *files.get("figures", [])]:
        (out / f).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def clear_previous(out: Path, log: Callable[[str], None]) -> None:
    """Remove an earlier report's files from ``out`` (only if its summary.json says it is one), so that the folder
    never mixes two runs: results of experiments skipped this time would otherwise linger for the dashboard."""
    summary = out / "summary.json"
    try:
        previous = json.loads(summary.read_text()) if summary.is_file() else None
    except (OSError, json.JSONDecodeError):
        previous = None
    if not isinstance(previous, dict) or previous.get("format") != FORMAT:
        return
    for name in ("results", "figures"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)
    log(f"[report] removed the previous report in {out}")


def read_results(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, pd.DataFrame]]]:
    """A report folder read back: (summary.json, experiment -> part -> table) for every experiment that is ok."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    results = {}
    for name, entry in (summary.get("experiments") or {}).items():
        if entry.get("status") == "ok":
            results[name] = _read_parts(folder, entry.get("files", {}))
    return summary, results
