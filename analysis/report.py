"""Run every experiment for a zoo and write results (JSON + CSV), figures (PNG) and ``REPORT.md``.

    python -m analysis.report --zoo assets/zoo/default --out reports/default [--quick] [--seeds 5]
                              [--skip transfer,fairness] [--only continuity,probes] [--set n_images=500]

Experiments (``analysis.experiments.EXPERIMENTS``, in order): continuity (DS, Fig. 3), alpha_sweep (Fig. 4),
neighbourhood_rank (section 2), probes (Figs. 6, 8, 10), robustness (Table 2, PGD-10), eps_sweep, attack_audit
(PGD-10, APGD-CE, APGD-T: the per-image worst case), attributions (mask share, deletion/insertion), stability,
embeddings, transfer (Table 3), fairness (Table 4). Modules: ``analysis.experiments`` (settings, registry,
runners), ``analysis.results_store`` (the results folder: write, reuse, resume, read), ``analysis.report_figures``
and ``analysis.report_markdown`` / ``analysis.report_sections`` (REPORT.md), ``analysis.claims`` and
``analysis.statistics`` (the verdicts). This module is the driver and the command line.

An earlier report in the output folder is never deleted: a rerun without ``--resume`` moves it aside to
``<out>.old-<timestamp>`` and writes a new one; ``--resume`` keeps the results still valid for the zoo's
checkpoints and settings and runs only what is missing; a reused result's missing figure is drawn again from its
stored tables, and ``--resume --redraw`` draws all of them again with the current figure code (nothing is
recomputed: ``analysis.experiments.drawing``). One report at a time writes a folder.
Training runs go to ``--work-dir`` (default: a temporary folder deleted at the end); in a kept ``--work-dir`` the
colour-bias experiment loads the runs already finished there under the same settings and resumes a stopped one,
so an interrupted experiment loses at most the steps since the last checkpoint, and several processes can share
the folder (a run another one is training is waited for, not repeated). Every scored colour-bias, transfer and
alpha-sweep run also leaves a small row file (``analysis.run_rows``) from which a rerun takes it even when its
checkpoints are gone. With ``--zoo-seeds`` a non-primary seed's runs go to ``<work-dir>/seeds/<seed>``.
``--quick`` runs the same pipeline on small subsets, one seed and tiny training runs, and decides no claim. A
failing experiment is recorded (status "failed") and the others still run; the exit status is 1 if any failed.
Ctrl-C or SIGTERM stops the report: every finished experiment is already on disk,
summary.json records the interruption, and the command exits 130; rerun it with ``--resume`` to run only what is
missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from analysis import claims as claims_mod
from analysis.experiments import EXPERIMENTS, FULL, QUICK, Context, Settings, estimate_cpu_s, parse_overrides
from analysis.experiments.registry import ExperimentSkipped
from analysis.experiments.settings import with_seeds
from analysis.network_cost import zoo_cost_scale
from analysis.paper import PAPER
from analysis.report_markdown import write_report
from analysis.results_store import (
    FORMAT,
    clear_previous,
    dump_json,
    figures_missing,
    holds_report,
    redraw_experiment,
    remove_experiment,
    reuse_experiment,
)
from analysis.results_store import write_experiment as _write_experiment
from analysis.roles import zoo_roles
from analysis.seed_report import seed_work_dir
from analysis.settings_check import check_settings
from analysis.transfer import seeded_subset
from models.checkpoints import CheckpointError, git_commit, load_zoo, read_zoo_manifest
from models.cli import EXIT_INTERRUPTED
from models.data import load_dataset
from models.devices import pick_device
from models.errors import LabError
from models.safe_output import describe_os_error, folder_lock, move_aside

__all__ = ["EXPERIMENTS", "FULL", "QUICK", "Context", "Settings", "clear_previous", "main", "parse_overrides",
           "run_report"]  # fmt: skip
Log = Callable[[str], None]


def build_context(
    zoo_path: str | Path, out: str | Path, settings: Settings, work_dir: Path, device: str = "auto",
    data_root: str | None = None, roots: dict[str, str] | None = None, progress: bool = True,
    allow_nan: bool = False, zoo_seed: int | None = None,
) -> Context:  # fmt: skip
    """Load the zoo (the checkpoints of training seed ``zoo_seed`` when given, ``models.replicas``) and its data
    set's test split; the evaluation subset is a seeded permutation's first n."""
    dev = pick_device(device)
    zoo = load_zoo(zoo_path, device=dev, allow_nan=allow_nan, seed=zoo_seed)
    if not zoo.entries:
        raise ValueError(f"zoo {zoo_path} has no variants")
    config = next(iter(zoo.entries.values())).meta.get("config", {})
    dataset = zoo.dataset.get("name") or config.get("dataset")
    if not dataset:
        raise ValueError(f"zoo {zoo_path} does not say which data set it was trained on")
    root = data_root or config.get("data_root")
    test = load_dataset(dataset, "test", root, image_size=config.get("image_size"))
    return Context(
        zoo,
        settings,
        Path(out),
        work_dir,
        dev,
        dataset,
        root,
        test,
        seeded_subset(test, settings.n_images, settings.subset_seed),
        dict(roots or {}),
        progress,
    )


def keep_previous_report(out: Path, log: Log) -> Path | None:
    """Move an earlier report in ``out`` (a folder whose summary.json says it is one) aside to
    ``<out>.old-<timestamp>``, so that a rerun without ``--resume`` neither deletes it nor mixes with it; returns
    where it went (None: there was no report)."""
    if not holds_report(out):
        return None
    kept = move_aside(out)
    log(f"[report] the previous report in {out} is kept as {kept} (nothing is deleted; --resume would reuse it)")
    return kept


def _reuse(ctx: Context, selected: list[str], log: Log, redraw: bool = False) -> tuple[dict[str, Any], list[str]]:
    """``--resume``: take every still-valid stored result; drop stale ones that will not be rerun. A reused
    result's figures are drawn again from its tables where one is missing, and all of them with ``redraw``."""
    status: dict[str, Any] = {}
    for name, exp in EXPERIMENTS.items():
        found = reuse_experiment(ctx, exp)
        if found is not None:
            ctx.results[name], status[name] = found
            log(f"[report] {name}: reusing the earlier result (same checkpoints and settings)")
            if exp.draw is not None and (redraw or figures_missing(ctx.out, status[name])):
                drawn = redraw_experiment(ctx, exp, ctx.results[name], status[name])
                log(f"[report] {name}: drew {len(drawn)} figure(s) again from its stored tables")
    remaining = [n for n in selected if n not in ctx.results]
    for name in EXPERIMENTS:
        if name not in ctx.results and name not in remaining:  # stale: it would lie about the current zoo
            remove_experiment(ctx.out, name)
    return status, remaining


def run_one(ctx: Context, name: str, log: Log) -> dict[str, Any]:
    """Run experiment ``name``, write its files, keep its tables in ``ctx.results``; its summary entry."""
    exp = EXPERIMENTS[name]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        output = exp.run(ctx)
    except ExperimentSkipped as exc:  # does not apply to this zoo: the reason goes into the report
        log(f"[report] {name} skipped: {exc}")
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # one experiment's failure must not lose the others
        elapsed = time.perf_counter() - t0
        log(f"[report] {name} FAILED after {elapsed:.1f} s: {type(exc).__name__}: {exc}")
        return {"status": "failed", "elapsed_s": round(elapsed, 2), "cpu_s": round(time.process_time() - c0, 2),
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}  # fmt: skip
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    ctx.results[name] = dict(output.tables)
    log(f"[report] {name} done in {elapsed:.1f} s ({cpu:.1f} s CPU)")
    return _write_experiment(ctx, exp, output, elapsed, cpu)


def write_claims(ctx: Context) -> list[claims_mod.Claim]:
    """claims.csv, claims.json, claim_tests.csv and claim_seeds.csv from the finished experiments."""
    claims = claims_mod.evaluate_claims(ctx.results, ctx.roles, decided=ctx.settings.mode != "quick")
    claims_mod.claims_frame(claims).to_csv(ctx.out / "claims.csv", index=False)
    claims_mod.tests_frame(claims).to_csv(ctx.out / "claim_tests.csv", index=False)
    claims_mod.seeds_frame(claims).to_csv(ctx.out / "claim_seeds.csv", index=False)  # each seed's own comparisons
    dump_json({"source": PAPER["source"], "mode": ctx.settings.mode, "note": claims_mod.CHECKPOINT_NOTE,
               "columns": claims_mod.CLAIM_COLUMNS, "test_columns": claims_mod.TEST_COLUMNS,
               "claims": [c.document() for c in claims]}, ctx.out / "claims.json")  # fmt: skip
    return claims


def write_summary(
    ctx: Context, status: dict[str, Any], total: float, cpu: float, interrupted: bool = False
) -> dict[str, Any]:
    """summary.json: the run's settings, environment and each experiment's status; ``interrupted`` marks a report
    stopped before its end (it then has no REPORT.md or claims)."""
    import dataclasses

    trained_with = {v: (e.card.get("config") or {}).get("seed") for v, e in ctx.zoo.entries.items()}
    summary = {"format": FORMAT, "zoo": str(ctx.zoo.path), "dataset": ctx.dataset, "mode": ctx.settings.mode,
               "training_seeds": trained_with,
               "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "git_commit": git_commit(),
               "device": str(ctx.device), "torch_threads": torch.get_num_threads(), "host": platform.node(),
               "elapsed_s": round(total, 2), "cpu_s": round(cpu, 2), "roles": ctx.roles,
               "estimate_cpu_s": estimate_cpu_s(ctx.settings, ctx.roles, len(ctx.test), zoo_cost_scale(ctx.zoo)),
               "paths_relative_to": "this file's folder", "report": "REPORT.md",
               "claims": {"csv": "claims.csv", "json": "claims.json", "tests_csv": "claim_tests.csv"},
               "settings": dataclasses.asdict(ctx.settings), "experiments": status,
               "paper": {k: v for k, v in PAPER.items() if k != "figures"}}  # fmt: skip
    if interrupted:
        summary["interrupted"] = True
    dump_json(summary, ctx.out / "summary.json")
    return summary


def run_report(
    zoo_path: str | Path, out: str | Path, settings: Settings = FULL, skip: Sequence[str] = (),
    only: Sequence[str] | None = None, work_dir: str | Path | None = None, device: str = "auto",
    data_root: str | None = None, roots: dict[str, str] | None = None, progress: bool = True,
    log: Log | None = None, resume: bool = False, allow_nan: bool = False, zoo_seed: int | None = None,
    redraw: bool = False, left_out: Mapping[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the selected experiments, write every file, return the summary (also written to summary.json).

    With ``resume`` an earlier report in ``out`` is kept: every experiment whose stored result was computed from
    the same checkpoints, data set and settings is reused, and only the selected ones without such a result run.
    Without it an earlier report is moved aside to ``<out>.old-<timestamp>`` (:func:`keep_previous_report`), never
    deleted. One process at a time writes ``out`` (OutputInUse names the other one's pid). ``zoo_seed``: measure
    the zoo's checkpoints of that training seed (a zoo with replicas) instead of its primary ones. ``redraw``
    (with ``resume``): draw every reused result's figures again from its stored tables with the current code.
    An experiment not selected is recorded as skipped with ``left_out``: why (``left_out``'s text for it, else the
    option that left it out), so that summary.json and REPORT.md say why it is missing.
    """
    left_out = dict(left_out or {})
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    unknown = [n for n in [*skip, *(only or [])] if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    selected = [n for n in EXPERIMENTS if n not in skip and (only is None or n in only)]
    t_start, c_start = time.perf_counter(), time.process_time()
    tmp, ctx, summarised, status = None, None, False, {}
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(folder_lock(out, "report"))  # one report at a time writes ``out``
        tmp = tempfile.mkdtemp(prefix="scl-report-") if work_dir is None else None
        ctx = build_context(zoo_path, out, settings, Path(work_dir or tmp), device, data_root, roots, progress,
                            allow_nan, zoo_seed)  # fmt: skip
        status = {n: {"status": "skipped", "left_out": left_out.get(n) or ("--skip" if n in skip else "--only")}
                  for n in EXPERIMENTS if n not in selected}  # fmt: skip
        if resume:
            reused, selected = _reuse(ctx, selected, log, redraw)
            status.update(reused)
        else:
            keep_previous_report(ctx.out, log)
        ctx.out.mkdir(parents=True, exist_ok=True)
        estimate = estimate_cpu_s(settings, zoo_roles(ctx.zoo), len(ctx.test), zoo_cost_scale(ctx.zoo))
        planned = sum(estimate[n] for n in selected if n in estimate)
        log(f"[report] zoo {ctx.zoo.path} ({', '.join(ctx.zoo.variants)}), data set {ctx.dataset}, mode "
            f"{settings.mode}, {len(selected)} experiment(s), {torch.get_num_threads()} torch thread(s); estimated "
            f"{planned:.0f} CPU s on one thread ({planned / 3600:.1f} h)")  # fmt: skip
        for i, name in enumerate(tqdm(selected, desc="report", unit="experiment", disable=not progress), 1):
            exp = EXPERIMENTS[name]
            log(f"[report] ({i}/{len(selected)}) {name}: {exp.title} (paper {exp.paper}); estimate "
                f"{estimate.get(name, 0):.0f} CPU s")  # fmt: skip
            try:
                status[name] = run_one(ctx, name, log)
            except KeyboardInterrupt:  # Ctrl-C, or models.runs.TrainingInterrupted from a training step
                status[name] = {"status": "interrupted"}
                status.update({n: {"status": "not run"} for n in selected[i:]})
                write_summary(ctx, status, time.perf_counter() - t_start, time.process_time() - c_start,
                              interrupted=True)  # fmt: skip
                summarised = True
                log(f"[report] interrupted during {name}; the {i - 1} experiment(s) finished before it are saved")
                raise
        claims = write_claims(ctx)
        total = time.perf_counter() - t_start
        write_report(ctx, status, claims, total)
        summary = write_summary(ctx, status, total, time.process_time() - c_start)
        log(f"[report] wrote {ctx.out / 'REPORT.md'} and {ctx.out / 'summary.json'} in {total:.1f} s")
        return summary
    except KeyboardInterrupt:  # outside an experiment (while loading, or writing claims): still say so on disk
        if ctx is not None and not summarised and ctx.out.is_dir():
            status.update({n: {"status": "not run"} for n in selected if n not in status})
            write_summary(ctx, status, time.perf_counter() - t_start, time.process_time() - c_start, interrupted=True)
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        stack.close()


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    from models.assets import default_zoo
    from models.cli import make_parser

    parser = make_parser("python -m analysis.report", __doc__.split("\n")[0],
                         epilog="experiments: " + ", ".join(EXPERIMENTS))  # fmt: skip
    parser.add_argument("--zoo", default=str(default_zoo()), help="zoo folder (with zoo.json; the shipped zoo)")
    parser.add_argument("--out", default=None, help="output folder (default reports/<zoo name>)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small subsets, one seed, tiny training runs: checks the pipeline, decides no claim",
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds of every training experiment")
    parser.add_argument("--zoo-seed", type=int, default=None,
                        help="measure the zoo's checkpoints of this training seed (a zoo with replicas; "
                             "default: each variant's primary checkpoint)")  # fmt: skip
    parser.add_argument("--zoo-seeds", nargs="+", default=None, metavar="SEED",
                        help="a report per training seed of the zoo (or 'all'), then the claims on their pooled "
                             "results, seed as the top level of the bootstrap (a zoo with replicas)")  # fmt: skip
    parser.add_argument("--skip", default="", help="comma-separated experiments to leave out")
    parser.add_argument("--only", default="", help="comma-separated experiments to run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Settings field, e.g. --set n_images=500 --set alphas=0,1,3")  # fmt: skip
    parser.add_argument("--work-dir", default=None, help="keep training runs here (default: a temp folder, deleted)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--num-threads", "--threads", dest="threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); --threads is the old name")  # fmt: skip
    parser.add_argument("--data-root", default=None, help="folder of the zoo's on-disk data set (if it has one)")
    parser.add_argument("--root", action="append", default=[], metavar="NAME=PATH",
                        help="an on-disk transfer target, e.g. --root cifar10=/data/cifar (repeatable)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--allow-nan",
        action="store_true",
        help="load checkpoints holding NaN or infinite weights (with a warning) instead of refusing",
    )
    parser.add_argument("--resume", action="store_true",
                        help="keep still-valid earlier results in --out; run only what is missing")  # fmt: skip
    parser.add_argument("--redraw", action="store_true",
                        help="with --resume: draw the reused results' figures again from their stored tables with "
                             "the current figure code (nothing is recomputed)")  # fmt: skip
    return parser


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = QUICK if args.quick else FULL
        if args.seeds is not None:
            settings = with_seeds(settings, args.seeds)
        settings = check_settings(parse_overrides(settings, args.set))
        roots = {}
        for item in args.root:
            name, sep, path = item.partition("=")
            if not sep:
                raise ValueError(f"--root {item!r}: expected NAME=PATH")
            roots[name.strip()] = path.strip()
        if args.threads:
            torch.set_num_threads(args.threads)
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM stops like Ctrl-C
        try:
            out = args.out or f"reports/{Path(args.zoo).name}"
            if args.redraw and not args.resume:
                raise ValueError("--redraw draws a kept report's figures again: give it with --resume")
            if args.zoo_seeds is not None and args.zoo_seed is not None:
                raise ValueError("--zoo-seed and --zoo-seeds: give one of them")
            folders, once, primary = {None: Path(out)}, [], None
            if args.zoo_seeds is not None:
                from analysis.seed_report import report_folders, resolve_seeds, seeds_lacking, zoo_independent

                seeds, primary = resolve_seeds(args.zoo, args.zoo_seeds)
                folders, once = report_folders(out, seeds, primary), zoo_independent()
                for variant, missing in seeds_lacking(read_zoo_manifest(args.zoo), seeds).items():
                    print(f"[report] {variant} has no checkpoint of seed(s) {', '.join(map(str, missing))}: its "
                          "verdicts rest on the seeds it has", file=sys.stderr)  # fmt: skip
            roles: dict[str, str] = {}  # every seed's report's variants (a control may lack some seeds)
            for seed, folder in folders.items():
                skip, left_out = _names(args.skip), {}
                if seed is not None and seed != primary and once:  # the same runs for every zoo seed: run once
                    print(f"[report] seed {seed}: {', '.join(once)} not repeated (it reads no zoo checkpoint; the "
                          f"primary seed's report has it)", file=sys.stderr)  # fmt: skip
                    skip, left_out = [*skip, *once], dict.fromkeys(once, "run once, in the primary seed's report")
                summary = run_report(args.zoo, folder, settings, skip, _names(args.only) or None,
                                     seed_work_dir(args.work_dir, seed, primary), args.device, args.data_root, roots,
                                     progress=not args.no_progress, resume=args.resume, allow_nan=args.allow_nan,
                                     zoo_seed=args.zoo_seed if seed is None else seed,
                                     redraw=args.redraw, left_out=left_out)  # fmt: skip
                roles = {**summary["roles"], **roles}
            if args.zoo_seeds is not None:
                from analysis.seed_report import write_across_seeds

                write_across_seeds(out, folders, roles, decided=settings.mode != "quick",
                                   log=lambda msg: print(msg, file=sys.stderr))  # fmt: skip
        finally:
            signal.signal(signal.SIGTERM, previous)
    except (ValueError, CheckpointError, LabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only or missing folder
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the finished experiments are on disk; --resume runs only the rest
        print("\ninterrupted; rerun with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = [n for n, s in summary["experiments"].items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
