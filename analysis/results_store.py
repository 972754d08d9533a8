"""The report's results folder: writing each experiment (CSV + JSON), reusing still-valid results (``--resume``),
clearing an earlier report, and reading a folder back (``read_results``; ``read_folder``: every table and document
of a folder as :class:`Results`, what the dashboard reads). ``run_quick`` runs a group of the registry's experiments
with its ``QUICK`` settings on a loaded zoo (the dashboard's quick results).

Layout::

    summary.json                 status, settings, what ran, files and elapsed time per experiment
    claims.csv / claims.json     one row per claim; claim_tests.csv one row per comparison
    results/<experiment>.csv     the main table; results/<experiment>_<part>.csv for the other parts, where a
                                 per-image part (named per_*) is gzip-compressed: results/<experiment>_per_image.csv.gz
    results/<experiment>.json    {experiment, settings, ran, notes, tables (parts not named per_*), files, inputs}
    figures/*.png
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from analysis.experiments import EXPERIMENTS, QUICK, Settings
from analysis.experiments.registry import Context, Experiment, Output
from analysis.roles import zoo_roles
from models.checkpoints import Zoo, git_commit
from models.data import ImageDataset

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


#: How a results table may be stored: plain CSV, or gzip-compressed CSV (the per-image parts, which grow with the
#: variants and images to several MiB each; pandas reads both by the suffix).
TABLE_SUFFIXES = (".csv", ".csv.gz")


def csv_name(experiment: str, part: str, first: bool) -> str:
    return experiment if first else f"{experiment}_{part}"


def table_file(experiment: str, part: str, first: bool) -> str:
    """The file name of one part of an experiment: ``<name>.csv``, or ``<name>.csv.gz`` for a per-image part."""
    return csv_name(experiment, part, first) + (".csv.gz" if part.startswith("per_") else ".csv")


def is_table_file(name: str | Path) -> bool:
    """Whether ``name`` is a stored results table (``.csv`` or ``.csv.gz``)."""
    return str(name).endswith(TABLE_SUFFIXES)


def table_stem(name: str) -> str:
    """``results/x.csv`` and ``results/x.csv.gz`` -> ``results/x`` (anything else loses its last suffix)."""
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0]


def write_table(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV at ``path``; gzip-compressed when the name ends in ``.csv.gz``, with neither a timestamp nor a
    file name in the gzip header, so that the same table always gives the same bytes (a rerun changes no tracked
    file)."""
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(df.to_csv(index=False).encode(), mtime=0))
    else:
        df.to_csv(path, index=False)


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
        name = table_file(exp.name, part, i == 0)
        write_table(df, res / name)
        files["csv"].append(f"results/{name}")
        files["parts"][part] = f"results/{name}"
    files["figures"] = [str(Path(p).relative_to(ctx.out)) for p in output.figures]
    settings = {k: getattr(ctx.settings, k) for k in exp.settings}
    doc = {"inputs": experiment_inputs(ctx, exp), "experiment": exp.name, "title": exp.title, "paper": exp.paper,
           "mode": ctx.settings.mode, "zoo": str(ctx.zoo.path), "dataset": ctx.dataset, "settings": settings,
           "ran": output.ran, "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu, 2), "notes": output.notes,
           "tables": {p: records(df) for p, df in output.tables.items() if not p.startswith("per_")},
           "files": files, "git_commit": git_commit()}  # fmt: skip
    dump_json(doc, res / f"{exp.name}.json")
    return {"status": "ok", "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu, 2), "files": files,
            "notes": output.notes, "settings": settings, "ran": output.ran,
            "git_commit": doc["git_commit"]}  # fmt: skip


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
    needed = [*files.get("csv", []), *([] if exp.draw is not None else files.get("figures", []))]
    if not same or not all((ctx.out / f).is_file() for f in needed):  # a missing figure that can be drawn: redraw
        return None
    try:
        parts = _read_parts(ctx.out, files)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    entry = {"status": "ok", "reused": True, "elapsed_s": doc.get("elapsed_s"), "cpu_s": doc.get("cpu_s"),
             "files": files, "notes": doc.get("notes", []), "settings": doc.get("settings", {}),
             "ran": doc.get("ran", {}), "git_commit": doc.get("git_commit")}  # fmt: skip
    return parts, entry


def figures_missing(out: Path, entry: Mapping[str, Any]) -> bool:
    """Whether any figure a stored result lists (its summary ``entry``) is not on disk."""
    return not all((out / f).is_file() for f in entry.get("files", {}).get("figures", []))


def redraw_experiment(
    ctx: Context, exp: Experiment, parts: Mapping[str, pd.DataFrame], entry: dict[str, Any]
) -> list[str]:
    """Draw a reused result's figures again from its stored tables (``exp.draw``) with the current figure code, and
    record them in results/<name>.json and in ``entry``; returns the figures' paths relative to the report. The
    tables, notes and the commit that computed them stay as they were; the JSON's ``figures_drawn`` names the
    commit whose code drew the figures. A figure the result listed that the current code no longer draws (renamed
    or dropped) is removed from ``figures/``."""
    if exp.draw is None:
        return list(entry.get("files", {}).get("figures", []))
    folder = ctx.out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    figures = [str(Path(p).relative_to(ctx.out)) for p in exp.draw(parts, folder)]
    path = ctx.out / "results" / f"{exp.name}.json"
    doc = json.loads(path.read_text())
    for old in set(doc.get("files", {}).get("figures", [])) - set(figures):  # a figure the current code names
        stale = ctx.out / old  # otherwise (or no longer draws) would stay beside the redrawn ones
        if Path(old).parts[:1] == ("figures",) and ".." not in Path(old).parts:
            stale.unlink(missing_ok=True)
    doc.setdefault("files", {})["figures"] = figures
    doc["figures_drawn"] = {"git_commit": git_commit(), "from": "the stored tables"}
    dump_json(doc, path)
    entry.setdefault("files", {})["figures"] = figures
    return figures


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


def holds_report(out: Path) -> bool:
    """Whether ``out`` holds a report of this format (its summary.json says so); an unreadable one does not count."""
    summary = out / "summary.json"
    try:
        previous = json.loads(summary.read_text()) if summary.is_file() else None
    except (OSError, json.JSONDecodeError):
        previous = None
    return isinstance(previous, dict) and previous.get("format") == FORMAT


def clear_previous(out: Path, log: Callable[[str], None]) -> None:
    """Remove an earlier report's files from ``out`` (only if its summary.json says it is one), so that the folder
    never mixes two runs: results of experiments skipped this time would otherwise linger for the dashboard."""
    if not holds_report(out):
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


# ----------------------------------------------------------------------------- any results folder, read back


@dataclass
class Results:
    """Tables (CSV) and documents (JSON) found in a results folder.

    The layout written by ``python -m analysis.report``: ``summary.json`` (status, settings and files of
    every experiment), ``claims.csv``/``claims.json``, ``REPORT.md``, ``results/<experiment>.csv`` (plus
    ``results/<experiment>_<part>.csv``, ``.csv.gz`` for per-image parts) and ``results/<experiment>.json``
    (settings, notes, tables).
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
        stems = {table_stem(n) for n in self.tables if is_table_file(n)}
        for n, obj in {**self.tables, **self.documents}.items():
            if n.endswith(".json") and (n.rsplit(".", 1)[0] in stems or n == "summary.json"):
                continue
            if any(h in Path(n).name.lower() for h in hints):
                found.setdefault(n, obj)
        return found


def folder_stamp(folder: str | Path) -> tuple:
    """(name, mtime) of every CSV and JSON file of ``folder``'s own (:func:`own_files`): changes whenever a result
    file does."""
    files = [p for p in own_files(folder) if is_table_file(p) or p.suffix == ".json"]
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in files))


def has_results(folder: str | Path) -> bool:
    """Whether ``folder`` is a folder holding at least one CSV or JSON file."""
    folder = Path(folder)
    return folder.is_dir() and any(is_table_file(p) or p.suffix == ".json" for p in folder.rglob("*"))


#: Inside a report over several training seeds (``--zoo-seeds``): each other seed's own report, and the claims
#: pooled over the seeds. A seed's report is not part of the folder's own results.
SEED_REPORTS, ACROSS_SEEDS = "seeds", "across_seeds"


def seed_report_folder(folder: str | Path, seed: int | None) -> Path:
    """The report of training seed ``seed`` inside a report folder (``seeds/<seed>/``), or ``folder`` itself for
    the primary checkpoints (``seed`` None) and for a seed without a report of its own there (a report of the
    primary checkpoints only: the caller says which checkpoints it shows)."""
    folder = Path(folder)
    if seed is None:
        return folder
    own = folder / SEED_REPORTS / str(int(seed))
    return own if has_results(own) else folder


def own_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder``, sorted, except, in a report folder (one with summary.json), the other training
    seeds' reports under ``seeds/``: those are not walked at all (:func:`seed_report_folder` reads one)."""
    folder = Path(folder)
    report = (folder / "summary.json").is_file()
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        if report and Path(root) == folder and SEED_REPORTS in dirs:
            dirs.remove(SEED_REPORTS)
        found += [Path(root) / f for f in files]
    return sorted(found)


def read_folder(folder: str | Path) -> Results:
    """Every CSV and JSON file of ``folder``'s own (:func:`own_files`; a JSON list of records is also a table); a
    broken file is listed in ``problems``, never raised."""
    res = Results(Path(folder))
    for path in own_files(folder):
        name = str(path.relative_to(folder))
        try:
            if is_table_file(path):
                res.tables[name] = pd.read_csv(path)
            elif path.suffix == ".json":
                doc = json.loads(path.read_text())
                res.documents[name] = doc
                if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
                    res.tables[name] = pd.DataFrame(doc)
        except Exception as exc:  # a broken file is reported on the page, not raised
            res.problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return res


# ----------------------------------------------------------------------------- quick results: the registry, QUICK

#: The dashboard's quick groups: one button runs these registry experiments with the QUICK settings.
QUICK_GROUPS: dict[str, tuple[str, ...]] = {
    "continuity": ("continuity", "neighbourhood_rank"),
    "probes": ("probes",),
    "robustness": ("robustness", "eps_sweep", "attack_audit"),
    "road": ("road",),
}


def quick_size(group: str, settings: Settings | None = None) -> int:
    """How many test images a quick group's experiments read under ``settings`` (default: :data:`QUICK`)."""
    settings = settings or QUICK
    if group not in QUICK_GROUPS:
        raise ValueError(f"no quick version of {group!r}; known: {', '.join(QUICK_GROUPS)}")
    if group == "robustness":
        return max(settings.pgd_images, settings.eps_images, settings.audit_images)
    if group == "road":  # the attributions' images: attr_images, or attr_slow_images for LIME / ScoreCAM
        return max(settings.attr_images, settings.attr_slow_images)
    return settings.n_images


def run_quick(
    zoo: Zoo,
    test: ImageDataset,
    dataset: str,
    group: str,
    *,
    settings: Settings | None = None,
    data_root: str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Run a quick group's registry experiments on the first ``settings.n_images`` test images (figures go to a
    temporary folder): part -> table, each experiment's first table under its own name, the others as
    ``<experiment>_<part>`` (the report's CSV names)."""
    names = QUICK_GROUPS.get(group)
    if names is None:
        raise ValueError(f"no quick version of {group!r}; known: {', '.join(QUICK_GROUPS)}")
    settings = settings or QUICK  # looked up now, so a caller (a test) may shrink the module's QUICK
    n = min(quick_size(group, settings), len(test))
    settings = dataclasses.replace(settings, n_images=min(settings.n_images, n), rank_whole_test_split=False)
    progress = progress or (lambda fraction, text: None)
    device = next((p.device for m in zoo.models.values() for p in m.parameters()), torch.device("cpu"))
    out: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory(prefix="scl-quick-") as tmp:
        ctx = Context(zoo, settings, Path(tmp), Path(tmp) / "work", device, dataset, data_root, test,
                      test.subset(torch.arange(n)), progress=False)  # fmt: skip
        for i, name in enumerate(names):
            progress(i / len(names), f"{group}: {name} ({i + 1}/{len(names)})")
            output = EXPERIMENTS[name].run(ctx)
            ctx.results[name] = output.tables
            for j, (part, table) in enumerate(output.tables.items()):
                out[csv_name(name, part, j == 0)] = table
    progress(1.0, f"{group}: done")
    return out
