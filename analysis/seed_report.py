"""The report over a zoo's training seeds: one report per seed, then the claims on their results pooled.

A zoo with replicas (``models.replicas``) holds several independently trained checkpoints per variant. Each
seed's checkpoints get a whole report of their own (the primary seed in ``out``, seed ``s`` in
``out/seeds/<s>``; each resumable like any report). Their per-image tables are then pooled with a ``seed``
column naming the training seed, so the claims resample seeds, then images within seeds (``analysis.claims``),
and say "about the training method" only with enough seeds. A training experiment's table, whose runs already
carry a ``seed``, gets the zoo's seed as ``source_seed`` instead (see :func:`_with_seed`).

    scl-report --zoo-seeds 0 1 2       # or: python -m analysis.report --zoo-seeds all

writes ``out/across_seeds/`` (claims.csv, claim_tests.csv, claim_seeds.csv, claims_per_seed.csv) and a section
"Across training seeds" at the end of ``out/REPORT.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import claims as claims_mod
from analysis.results_store import ACROSS_SEEDS, SEED_REPORTS, read_results
from models.checkpoints import read_zoo_manifest
from models.replicas import common_seeds, variant_replicas, zoo_seeds
from models.roles import ADVERSARIAL, ADVERSARIAL_CONSTRAINED, BASELINE, CONSTRAINED

PAPER_ROLES = (BASELINE, CONSTRAINED, ADVERSARIAL, ADVERSARIAL_CONSTRAINED)

__all__ = [
    "ACROSS",
    "paper_variants",
    "pooled_results",
    "report_folders",
    "resolve_seeds",
    "seeds_lacking",
    "unfinished",
    "write_across_seeds",
    "zoo_independent",
]

ACROSS = ACROSS_SEEDS  # the folder, inside the report folder, of the pooled claims
SECTION = "## Across training seeds"


def paper_variants(manifest: Mapping[str, Any]) -> list[str]:
    """The zoo's variants in the paper's four roles (all of them when none is), whose seeds a report must share."""
    variants = list(manifest["variants"])
    paper = [v for v in variants if manifest["variants"][v].get("role") in PAPER_ROLES]
    return paper or variants


def seeds_lacking(manifest: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, list[int]]:
    """Variant -> the ones of ``seeds`` it has no checkpoint for (a control trained on fewer seeds), if any."""
    have = zoo_seeds(dict(manifest))
    lacking = {v: [s for s in seeds if s not in have.get(v, [])] for v in manifest["variants"]}
    return {v: missing for v, missing in lacking.items() if missing}


def resolve_seeds(zoo: str | Path, asked: Sequence[str]) -> tuple[list[int], int]:
    """The seeds to report on (``all``: the seeds every variant in the paper's four roles has) and the zoo's
    primary seed. A control with fewer seeds is measured on those it has (``load_zoo(seed=...)`` leaves it out of
    the others), so its verdicts rest on fewer seeds (``seeds_lacking``) and the paper's four need not wait for it.

    Raises ValueError for a seed a paper variant lacks, or when fewer than two seeds remain."""
    manifest = read_zoo_manifest(zoo)
    shared = common_seeds(manifest, paper_variants(manifest))
    variants = list(manifest["variants"])
    primary = variant_replicas(manifest, variants[0])[0].seed if variants else 0
    if list(asked) == ["all"]:
        seeds = shared
    else:
        try:
            seeds = sorted({int(s) for s in asked})
        except ValueError as exc:
            raise ValueError(f"--zoo-seeds {' '.join(asked)}: give seed numbers or 'all'") from exc
        missing = [s for s in seeds if s not in shared]
        if missing:
            raise ValueError(
                f"--zoo-seeds: not every variant of {zoo} in the paper's roles has seed(s) {missing} (shared: {shared})"
            )
    if len(seeds) < 2:
        raise ValueError(
            f"--zoo-seeds: {zoo} holds {len(shared)} seed(s) shared by its variants in the paper's roles ({shared}); "
            "pooling needs two "
            "or more (train them with `python -m models.train_zoo --out ZOO --seeds 1 2`)"
        )
    return seeds, primary


def zoo_independent() -> list[str]:
    """The experiments that read no checkpoint of the zoo (the colour bias: it trains its own networks from
    scratch). They come out the same for every training seed of the zoo, so they run once, in the primary seed's
    report, and are pooled once: stacking a copy per zoo seed would count one set of runs as several independent
    replications (their own training seeds are the replication)."""
    from analysis.experiments import EXPERIMENTS

    return [name for name, exp in EXPERIMENTS.items() if exp.uses is not None and len(exp.uses) == 0]


def unfinished(out: str | Path) -> list[str]:
    """What a report folder (with its seeds' reports under ``seeds/``, as ``--zoo-seeds`` writes them) has still to
    run: experiments neither finished nor skipped for a stated reason, as ``name`` or ``name (seed N)``. An
    experiment run once in the primary seed's report (:func:`zoo_independent`) is not missing from the others;
    a folder without a readable summary.json is ``(no report)``."""
    out = Path(out)
    once = set(zoo_independent())
    left: list[str] = []
    seeds = [p for p in (out / SEED_REPORTS).glob("*") if p.is_dir() and not p.name.startswith(".")]  # no lock
    for folder in [out, *sorted(seeds, key=lambda p: p.name)]:
        label = "" if folder == out else f" (seed {folder.name})"
        try:
            done = json.loads((folder / "summary.json").read_text())["experiments"]
        except (OSError, ValueError, KeyError, TypeError):
            left.append(f"(no report){label}")
            continue
        for name, entry in done.items():
            finished = entry.get("status") == "ok" or (entry.get("status") == "skipped" and entry.get("reason"))
            if not finished and not (label and name in once):
                left.append(f"{name}{label}")
    return left


def report_folders(out: str | Path, seeds: Sequence[int], primary: int) -> dict[int, Path]:
    """Seed -> its report folder: ``out`` for the primary seed, ``out/seeds/<seed>`` for the others."""
    out = Path(out)
    return {s: out if s == primary else out / SEED_REPORTS / str(s) for s in seeds}


def seed_work_dir(work_dir: str | Path | None, seed: int | None, primary: int | None) -> Path | None:
    """Where the report of zoo seed ``seed`` keeps its training runs: ``work_dir`` for the primary seed (or a
    one-zoo report), ``work_dir/seeds/<seed>`` for the others, so that each seed's fine-tunes (from its own
    checkpoints) keep their own folders and scored rows instead of overwriting another seed's; None stays None
    (a temporary folder)."""
    if work_dir is None or seed is None or seed == primary:
        return None if work_dir is None else Path(work_dir)
    return Path(work_dir) / SEED_REPORTS / str(seed)


RUN_STRIDE = 10_000  # a training experiment's run id across zoo seeds: zoo seed * RUN_STRIDE + its own seed


def _with_seed(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``table`` of the report on the zoo's checkpoints of training seed ``seed``, marked with it.

    A measurement's table (no ``seed`` column) gets ``seed`` = the zoo's training seed, the top level of the
    claims' bootstrap. A training experiment's table (alpha sweep, transfer, colour bias: its own runs, one
    ``seed`` each, fine-tuned from that zoo seed's checkpoint) gets ``source_seed`` = the zoo's training seed
    (the independent checkpoints the claims count) and keeps each run distinct: ``repeat_seed`` is its own seed,
    ``seed`` becomes ``source_seed * RUN_STRIDE + repeat_seed``. (The colour bias reads no zoo checkpoint: it is
    pooled once, unmarked; see :func:`zoo_independent`.)"""
    if "seed" not in table.columns:
        return table.assign(seed=seed)
    own = table["seed"].astype(int)
    return table.assign(repeat_seed=own, source_seed=seed, seed=seed * RUN_STRIDE + own)


def pooled_results(folders: Mapping[int, Path], primary: int | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """Experiment -> part -> the seeds' tables stacked with a ``seed`` column, for the experiments (and parts)
    finished in every seed's report; a zoo-independent experiment (:func:`zoo_independent`) once, as the
    ``primary`` seed's report (default: the first folder's) has it."""
    per_seed = {seed: read_results(folder)[1] for seed, folder in folders.items()}
    names = set.intersection(*(set(r) for r in per_seed.values())) if per_seed else set()
    pooled: dict[str, dict[str, pd.DataFrame]] = {}
    first = next(iter(per_seed.values()), {})
    own = per_seed.get(primary, first) if primary is not None else first
    independent = set(zoo_independent())
    for name in [n for n in first if n in names or n in independent]:  # the report's order
        if name in independent:
            if name in own:
                pooled[name] = dict(own[name])
            continue
        parts = set.intersection(*(set(r[name]) for r in per_seed.values()))
        pooled[name] = {
            part: pd.concat([_with_seed(r[name][part], s) for s, r in per_seed.items()], ignore_index=True)
            for part in first[name]
            if part in parts
        }
    return pooled


def _per_seed_claims(folders: Mapping[int, Path]) -> pd.DataFrame:
    frames = []
    for seed, folder in folders.items():
        path = folder / "claims.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(training_seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_across_seeds(
    out: str | Path,
    folders: Mapping[int, Path],
    roles: Mapping[str, str],
    decided: bool,
    log: Callable[[str], None] = lambda msg: None,
) -> list[Any]:
    """Pool the seeds' results, decide the claims on them, write ``out/across_seeds/`` and the REPORT.md section;
    returns the pooled claims."""
    out = Path(out)
    primary = next((s for s, p in folders.items() if Path(p) == out), None)
    pooled = pooled_results(folders, primary)
    claims = claims_mod.evaluate_claims(pooled, roles, decided=decided)
    target = out / ACROSS
    target.mkdir(parents=True, exist_ok=True)
    frame = claims_mod.claims_frame(claims)
    frame.to_csv(target / "claims.csv", index=False)
    claims_mod.tests_frame(claims).to_csv(target / "claim_tests.csv", index=False)
    if hasattr(claims_mod, "seeds_frame"):
        claims_mod.seeds_frame(claims).to_csv(target / "claim_seeds.csv", index=False)
    _per_seed_claims(folders).to_csv(target / "claims_per_seed.csv", index=False)
    report = out / "REPORT.md"
    if report.is_file():
        text = report.read_text()
        text = text.split("\n" + SECTION + "\n")[0].rstrip("\n") + "\n\n" + section_markdown(frame, folders, out)
        report.write_text(text)
    log(f"[report] claims across {len(folders)} training seeds in {target}")
    return claims


def section_markdown(frame: pd.DataFrame, folders: Mapping[int, Path], out: Path) -> str:
    """The REPORT.md section: which seeds were pooled, where each seed's report is, and the pooled claims."""
    seeds = sorted(folders)
    shown = [c for c in ("claim", "verdict", "paper_verdict", "control_verdict", "scope", "seeds_per_variant", "n")
             if c in frame.columns]  # fmt: skip
    lines = [
        SECTION,
        "",
        f"The zoo's checkpoints of training seeds {', '.join(map(str, seeds))} were each measured by a whole report "
        "("
        + ", ".join(
            f"seed {s}: " + ("this folder" if p == out else f"`{p.relative_to(out)}/`") for s, p in folders.items()
        )
        + "); "
        "their per-image results pooled with the seed as the top level of the bootstrap give these verdicts "
        f"(files in `{ACROSS}/`; each seed's own verdicts in `{ACROSS}/claims_per_seed.csv`).",
        "",
    ]
    once = zoo_independent()
    if once:
        lines += [
            f"Run once, in the primary seed's report, and pooled once: {', '.join(once)} (it reads no checkpoint of "
            "the zoo, training its own networks from scratch, so each zoo seed would repeat the same runs; its own "
            "training seeds are its replication).",
            "",
        ]
    if shown and len(frame):
        lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
        for _, row in frame.iterrows():
            lines.append("| " + " | ".join(str(row[c]).replace("|", "/") for c in shown) + " |")
    return "\n".join(lines) + "\n"
