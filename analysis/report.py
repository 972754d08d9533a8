"""Run every experiment for a zoo and write results (JSON + CSV), figures (PNG) and ``REPORT.md``.

    python -m analysis.report --zoo assets/zoo/default --out reports/default [--quick] [--seeds 3]
                              [--skip transfer,fairness] [--only continuity,probes] [--set n_images=500]

Experiments (``EXPERIMENTS``, in order): continuity (DS, Fig. 3), alpha_sweep (Fig. 4: short C fine-tunes of the
zoo's standard checkpoint at several alphas, one per seed), neighbourhood_rank (section 2), probes (Figs. 6, 8,
10), robustness (Table 2), eps_sweep, attack_audit (stronger attacks + gradient-masking warnings), attributions
(IG / GradCAM / LIME mask share and deletion/insertion AUC), stability (attribution maps under Table 1
perturbations), embeddings (neighbour ranks of perturbed copies, Fig. 2 as numbers; the projections themselves are
the dashboard's), transfer (Table 3), fairness (Table 4).

Output folder::

    REPORT.md           Tables 1-4 and Figs. 3, 4, 6, 8, 10 beside the paper's numbers / claims, the claims table,
                        settings and elapsed time per experiment
    summary.json        what the dashboard reads: the path of every file below (relative to this folder), status,
                        settings and elapsed seconds per experiment
    claims.csv/.json    the claims table (analysis.claims): claim | paper's figure | ours | verdict | rule
    results/<experiment>.csv   the experiment's tidy table (plus results/<experiment>_<part>.csv for extra parts)
    results/<experiment>.json  {experiment, title, paper, settings, elapsed_s, tables: {part: rows}, notes}
    figures/*.png       matplotlib (Agg) figures

An earlier report in the output folder is replaced as a whole (results of experiments skipped this time do not
linger). Training runs (alpha sweep, transfer, fairness) go to ``--work-dir`` (default: a temporary folder deleted
at the end), never into the output folder. ``--quick`` runs the same pipeline on small subsets, one seed and tiny
training runs; ``--set key=value`` overrides any field of ``Settings``. Every experiment prints its elapsed wall and
CPU time; a failing experiment is recorded (status "failed", its claims "not measured") and the others still run;
the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from analysis import claims as claims_mod  # noqa: E402
from analysis.claims import PAPER, PROBE_FIGURES, alpha_summary, evaluate_claims  # noqa: E402
from analysis.transfer import keep_threads, memo_loader, registered_dataset, seeded_subset, summarise  # noqa: E402
from models.checkpoints import CheckpointError, Zoo, git_commit, load_model, load_zoo  # noqa: E402
from models.data import ImageDataset, load_dataset  # noqa: E402
from models.evaluation import accuracy  # noqa: E402
from models.perturbations import KINDS, TABLE1  # noqa: E402
from models.train import FINAL_FILE, TrainConfig, pick_device  # noqa: E402

VARIANT_COLOURS = {"standard": "#1f77b4", "C": "#2ca02c", "ADV": "#ff7f0e", "ADV+C": "#d62728"}


# ----------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Sizes and lengths of every experiment (recorded in each results JSON). Defaults: the full run."""

    mode: str = "full"
    seeds: tuple[int, ...] = (0, 1, 2)  # training experiments: one run per seed
    subset_seed: int = 0  # which test images form the evaluation subset
    batch_size: int = 256  # inference / attack batch
    train_batch_size: int = 128
    # continuity (DS), probes, neighbourhood rank: the first n_images of a seeded permutation of the test split
    n_images: int = 1000
    rank_anchors: int = 100
    # robustness (the first k images of the same subset)
    pgd_images: int = 1000
    eps_images: int = 200
    eps_values_255: tuple[float, ...] = (0, 1, 2, 4, 8, 16)
    audit_images: int = 64
    audit_steps: tuple[int, ...] = (10, 20, 50)
    audit_restarts: int = 2
    # attributions
    attr_images: int = 64
    attr_methods: tuple[str, ...] = ("integrated_gradients", "gradcam", "lime")
    ig_steps: int = 50
    lime_samples: int = 300
    deletion_steps: int = 16
    stability_images: int = 12
    stability_methods: tuple[str, ...] = ("integrated_gradients", "gradcam")
    stability_levels: tuple[int, ...] = (1, 2, 4)
    # embeddings: neighbour ranks of the perturbed copies of a few anchors among same-class test images
    embed_anchors: int = 20
    embed_same_class: int = 200
    # alpha sweep: C fine-tuned from the zoo's standard checkpoint
    alphas: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0)
    alpha_epochs: float = 1.0
    alpha_preset: str = "paper"  # Adam, constant lr, no warm-up: the paper's fine-tuning optimiser ...
    alpha_lr: float = 1e-4  # ... at 10x its lr 1e-5, as the runs are short (SGD lr 0.01 collapses C's accuracy)
    alpha_batch_size: int = 64
    alpha_train_limit: int = 3000
    alpha_val_size: int = 500
    alpha_eval_images: int = 500  # DS is measured on the first k images of the evaluation subset
    # transfer (Table 3)
    transfer_targets: tuple[str, ...] = ("digits", "fashion-mnist")
    transfer_epochs: float = 1.5
    transfer_min_steps: int = 40
    transfer_train_limit: int = 3000
    transfer_test_limit: int = 2000
    # fairness (Table 4)
    fairness_source: str = "fashion-mnist"
    fairness_epochs: float = 2.0
    fairness_train_limit: int = 3000
    fairness_test_limit: int = 2000
    fairness_width: int = 16
    fairness_pgd_steps: int = 3
    fairness_preset: str = "paper"  # Adam, constant lr: with SGD (lr 0.05 or 0.01) C barely learns in a short run
    fairness_lr: float = 1e-3
    warmup_steps: int = 10  # of every short training run (the presets' 50-100 would never finish)


FULL = Settings()
QUICK = dataclasses.replace(
    FULL,
    mode="quick",
    seeds=(0,),
    n_images=256,
    rank_anchors=20,
    pgd_images=64,
    eps_images=32,
    eps_values_255=(0, 2, 8),
    audit_images=16,
    audit_steps=(10, 20),
    audit_restarts=2,
    attr_images=8,
    ig_steps=16,
    lime_samples=100,
    deletion_steps=8,
    stability_images=4,
    stability_methods=("gradcam",),
    stability_levels=(1, 4),
    embed_anchors=1,
    embed_same_class=50,
    alphas=(0.0, 1.0),
    alpha_epochs=1.0,
    alpha_train_limit=512,
    alpha_val_size=64,
    alpha_eval_images=256,
    transfer_epochs=1.0,
    transfer_min_steps=4,
    transfer_train_limit=256,
    transfer_test_limit=256,
    fairness_source="digits",
    fairness_epochs=1.0,
    fairness_train_limit=384,
    fairness_test_limit=360,
    fairness_width=8,
    fairness_pgd_steps=2,
    warmup_steps=2,
)

#: Planned CPU seconds per experiment of the full run on the default zoo (width-16 ResNet18, fashion-mnist-m) with
#: ONE torch thread. CPU time is what can be measured on this shared machine (the report records it per experiment
#: as ``cpu_s``); alone on the 2-core CPU a single-threaded run takes about that long in wall time, a two-threaded
#: one about 1.7x less. Unit costs measured with process CPU time at one thread: inference ~500 img/s (with the
#: Table 1 perturbations ~600 forwards/s), PGD-10 ~31 img/s, IG (50 steps) 0.19 s/image, LIME 0.36 s per 300
#: samples, GradCAM 3 ms/image; training ~324 (standard), ~156 (C), ~105 (ADV, 3-step PGD), ~82 (ADV+C) img/s.
#: Total 2,600 s: about 43 min on one core, about 26 min on two, inside the 45-minute goal.
FULL_BUDGET_S: dict[str, int] = {
    "continuity": 120,  # 1000 images x 17 passes x 4 variants = 68k forwards
    "alpha_sweep": 330,  # 5 alphas x 3 seeds: 2500 images x 1 epoch of C (16 s) + evaluation and checkpoints
    "neighbourhood_rank": 20,  # 1000 images + 100 anchors x 16 perturbations, x 4 variants
    "probes": 100,  # 1000 images x 12 passes x 4 variants
    "robustness": 140,  # PGD-10 on 1000 images x 4 variants
    "eps_sweep": 140,  # 5 radii x 200 images x 4 variants
    "attack_audit": 310,  # 64 images x 4 variants x 360 PGD steps ((10+20+50) x 2 losses + 2 restarts x 50 x 2)
    "attributions": 200,  # 64 images x 4 variants x (IG 50 steps + GradCAM + LIME 300) + deletion/insertion
    "stability": 130,  # 12 images x 13 maps (clean + 4 kinds x 3 levels) x (IG + GradCAM) x 4 variants
    "embeddings": 40,  # 20 anchors x 217 images x 4 variants
    "transfer": 480,  # 4 variants x 3 seeds x (digits: 40 steps; fashion-mnist: 2800 images x 1.5 epochs)
    "fairness": 620,  # 3 seeds x 4 variants from scratch, 2800 images x 2 epochs, test on 2000
}


def parse_overrides(settings: Settings, pairs: Sequence[str]) -> Settings:
    """Apply ``key=value`` overrides (tuples as comma lists, ``none`` for None) to ``settings``."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"--set {pair!r}: expected key=value with key one of {', '.join(fields)}")
        current = getattr(settings, key)
        if text.strip().lower() == "none":
            changes[key] = None
        elif isinstance(current, tuple):
            kind = type(current[0]) if current else str
            changes[key] = tuple(kind(t) for t in text.split(",") if t.strip())
        elif isinstance(current, bool):
            changes[key] = text.lower() in ("1", "true", "yes", "on")
        else:
            changes[key] = type(current)(text)
    return dataclasses.replace(settings, **changes)


# ----------------------------------------------------------------------------- context and experiment registry


@dataclass
class Context:
    """What every experiment gets: the zoo, the data, the settings and where to write."""

    zoo: Zoo
    settings: Settings
    out: Path
    work_dir: Path
    device: torch.device
    dataset: str
    data_root: str | None
    test: ImageDataset  # the zoo data set's whole test split
    eval: ImageDataset  # the evaluation subset (n_images of a seeded permutation of the test split)
    roots: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # main table of each finished experiment

    @property
    def models(self) -> dict[str, torch.nn.Module]:
        return self.zoo.models

    def first(self, n: int) -> ImageDataset:
        return self.eval.subset(torch.arange(min(n, len(self.eval))))


@dataclass
class Output:
    """An experiment's results: tables (the first is the main one), notes for the report, figures written."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    paper: str
    run: Callable[[Context], Output]
    settings: tuple[str, ...]  # the Settings fields it uses
    uses: tuple[str, ...] | None = None  # the zoo variants whose weights it reads (None: all of them)


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, title: str, paper: str, settings: tuple[str, ...], uses: tuple[str, ...] | None = None):
    def register(fn: Callable[[Context], Output]) -> Callable[[Context], Output]:
        EXPERIMENTS[name] = Experiment(name, title, paper, fn, settings, uses)
        return fn

    return register


# ----------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _colour(variant: str) -> str | None:
    return VARIANT_COLOURS.get(variant)


def fig_continuity(ds: pd.DataFrame, path: Path) -> str:
    """Fig. 3: mean DS against the perturbation level, one panel per kind, one line per variant (log scale)."""
    kinds = list(dict.fromkeys(ds["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 3.0), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for variant, g in ds[ds["kind"] == kind].groupby("variant", sort=False):
            ax.plot(g["level"], g["ds_mean"], "o-", label=variant, color=_colour(variant))
        ax.set_yscale("log", nonpositive="mask")
        ax.set_title(kind)
        ax.set_xlabel("level (Table 1)")
        ax.set_xticks(sorted(ds["level"].unique()))
    axes[0][0].set_ylabel("mean DS (log)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Fig. 3: distance score under non-semantic perturbations")
    fig.tight_layout()
    return _save(fig, path)


def fig_alpha(alpha_df: pd.DataFrame, path: Path) -> str:
    """Fig. 4: accuracy (left) and level-1 DS sum (right) against alpha, mean ± sd over seeds."""
    s = alpha_summary(alpha_df)
    x = np.arange(len(s))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.0))
    a1.errorbar(x, 100 * s["acc_mean"], yerr=100 * s["acc_sd"].fillna(0), fmt="o-", capsize=3)
    a1.set_ylabel("test accuracy (%)")
    a2.errorbar(x, s["ds_mean"], yerr=s["ds_sd"].fillna(0), fmt="o-", capsize=3, color="#2ca02c")
    a2.set_ylabel("sum of level-1 DS (4 kinds)")
    for ax in (a1, a2):
        ax.set_xticks(x, [f"{a:g}" for a in s["alpha"]])
        ax.set_xlabel("alpha")
    fig.suptitle(f"Fig. 4: C fine-tuned at several alphas ({int(s['n_seeds'].max())} seed(s))")
    fig.tight_layout()
    return _save(fig, path)


def fig_probe(probes: pd.DataFrame, probe: str, path: Path, number: str) -> str:
    """Figs. 6/8/10: accuracy against the probe level (clean first), one line per variant."""
    df = probes[probes["probe"] == probe]
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for variant, g in df.groupby("variant", sort=False):
        ax.plot(range(len(g)), 100 * g["accuracy"], "o-", label=variant, color=_colour(variant))
        labels = list(g["level_label"])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel(probe.replace("_", " "))
    ax.legend(fontsize=8)
    ax.set_title(f"Fig. {number}: {probe.replace('_', ' ')}")
    return _save(fig, path)


def fig_eps(eps: pd.DataFrame, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for variant, g in eps.groupby("variant", sort=False):
        ax.plot(g["eps_255"], 100 * g["accuracy"], "o-", label=variant, color=_colour(variant))
    ax.set_xlabel("PGD-10 radius eps (x/255)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("Robust accuracy against eps")
    return _save(fig, path)


def fig_bars(summary: pd.DataFrame, value: str, group: str | None, path: Path, title: str) -> str:
    """Bars of ``value`` mean ± sd per variant (grouped by ``group`` when given)."""
    groups = list(dict.fromkeys(summary[group])) if group else [None]
    variants = list(dict.fromkeys(summary["variant"]))
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(groups), 3.2))
    for i, variant in enumerate(variants):
        rows = [summary[(summary["variant"] == variant) & ((summary[group] == g) if group else True)] for g in groups]
        means = [100 * r[f"{value}_mean"].iloc[0] if len(r) else np.nan for r in rows]
        sds = [100 * np.nan_to_num(r[f"{value}_sd"].iloc[0]) if len(r) else 0 for r in rows]
        ax.bar(np.arange(len(groups)) + i * width, means, width, yerr=sds, capsize=2, label=variant,
               color=_colour(variant))  # fmt: skip
    ax.set_xticks(np.arange(len(groups)) + width * (len(variants) - 1) / 2, [str(g) if g else "" for g in groups])
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


# ----------------------------------------------------------------------------- experiments


@experiment("continuity", "Distance score under Table 1 perturbations", "4.2, Fig. 3", ("n_images", "batch_size"))
def run_continuity(ctx: Context) -> Output:
    from analysis.continuity import ds_table

    ds = ds_table(ctx.models, ctx.eval.images, batch_size=ctx.settings.batch_size, progress=ctx.progress)
    return Output({"continuity": ds}, figures=[fig_continuity(ds, ctx.out / "figures" / "fig3_continuity.png")])


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Swallow stdout and stderr when ``enabled``: the training loop's JSON lines, and the progress bars of
    libraries that draw them whatever they are told (lime)."""
    if not enabled:
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _zoo_train_config(ctx: Context) -> tuple[dict[str, Any], Path]:
    """The standard variant's network spec and checkpoint path."""
    if "standard" not in ctx.zoo.entries:
        raise ValueError("the zoo has no standard variant to fine-tune from")
    entry = ctx.zoo.entries["standard"]
    return entry.meta["network"], Path(entry.path)


@experiment(
    "alpha_sweep",
    "Accuracy and continuity against alpha",
    "4.2, Fig. 4",
    ("alphas", "seeds", "alpha_epochs", "alpha_preset", "alpha_lr", "alpha_batch_size", "alpha_train_limit",
     "alpha_val_size", "alpha_eval_images"),
    uses=("standard",),
)  # fmt: skip
def run_alpha_sweep(ctx: Context) -> Output:
    from analysis.continuity import alpha_sweep

    s = ctx.settings
    spec, init = _zoo_train_config(ctx)
    out_dir = ctx.work_dir / "alpha_sweep"
    alias = f"{ctx.dataset}@report-alpha-{os.getpid()}"
    with registered_dataset(alias, memo_loader(ctx.dataset, ctx.data_root, {"train": s.alpha_train_limit})):
        base = TrainConfig(
            variant="C", dataset=alias, network=spec["name"], width=spec.get("width"), epochs=s.alpha_epochs,
            batch_size=s.alpha_batch_size, preset=s.alpha_preset, lr=s.alpha_lr,
            train_limit=s.alpha_train_limit, val_size=s.alpha_val_size, eval_test=False, eval_pgd_subset=0,
            device=str(ctx.device), out=str(out_dir),
        )  # fmt: skip
        with keep_threads(), _quiet(not ctx.progress):
            df = alpha_sweep(s.alphas, base, out_dir, init=str(init), progress=ctx.progress, seeds=s.seeds,
                             eval_images=ctx.first(s.alpha_eval_images).images)  # fmt: skip
    accs = []
    for alpha, seed in zip(df["alpha"], df["seed"], strict=True):
        model, _ = load_model(out_dir / f"alpha-{alpha:g}-seed-{seed}" / FINAL_FILE, ctx.device)
        accs.append(accuracy(model, ctx.eval.images, ctx.eval.labels, ctx.settings.batch_size))
    df["test_acc"] = accs
    notes = [f"C fine-tuned from the zoo's standard checkpoint for {s.alpha_epochs:g} epoch(s) on the first "
             f"{s.alpha_train_limit} training images ({s.alpha_val_size} held out), batch {s.alpha_batch_size}, preset "
             f"{s.alpha_preset} at lr {s.alpha_lr:g} (the paper fine-tunes with Adam at 1e-5; a short run needs a "
             f"larger step, and SGD at 0.01 collapses the accuracy of a short C run); test_acc on the "
             f"{len(ctx.eval)}-image evaluation subset, DS on its first {min(s.alpha_eval_images, len(ctx.eval))} "
             "images."]  # fmt: skip
    return Output({"alpha_sweep": df}, notes, [fig_alpha(df, ctx.out / "figures" / "fig4_alpha.png")])


@experiment("neighbourhood_rank", "Same-class images nearer than a perturbed copy", "2.2, Figs. 1-2",
            ("n_images", "rank_anchors"))  # fmt: skip
def run_neighbourhood_rank(ctx: Context) -> Output:
    from analysis.continuity import neighbourhood_rank_table

    df = neighbourhood_rank_table(ctx.models, ctx.eval.images, ctx.eval.labels, n_anchors=ctx.settings.rank_anchors,
                                  batch_size=ctx.settings.batch_size, progress=ctx.progress)  # fmt: skip
    return Output({"neighbourhood_rank": df})


@experiment("probes", "Semantic probes", "4.3, Figs. 6, 8, 10", ("n_images", "batch_size"))
def run_probes(ctx: Context) -> Output:
    from analysis.probes import probe_table

    df = probe_table(ctx.models, ctx.eval.images, ctx.eval.labels, batch_size=ctx.settings.batch_size,
                     progress=ctx.progress)  # fmt: skip
    figs = [fig_probe(df, p, ctx.out / "figures" / f"{f}_{p}.png", f[3:]) for p, f in PROBE_FIGURES.items()]
    return Output({"probes": df}, figures=figs)


@experiment("robustness", "Clean and PGD-10 accuracy", "4.4, Table 2", ("pgd_images", "batch_size"))
def run_robustness(ctx: Context) -> Output:
    from analysis.robustness import robustness_table

    data = ctx.first(ctx.settings.pgd_images)
    df = robustness_table(ctx.models, data.images, data.labels, batch_size=ctx.settings.batch_size,
                          progress=ctx.progress)  # fmt: skip
    df["n_images"] = len(data)
    return Output({"robustness": df}, [f"PGD-10, eps 8/255, step 2/255, random start, on {len(data)} test images"])


@experiment("eps_sweep", "PGD-10 accuracy against eps", "4.4 (extension)", ("eps_images", "eps_values_255"))
def run_eps_sweep(ctx: Context) -> Output:
    from analysis.robustness import eps_sweep

    data = ctx.first(ctx.settings.eps_images)
    df = eps_sweep(ctx.models, data.images, data.labels, tuple(e / 255 for e in ctx.settings.eps_values_255),
                   batch_size=ctx.settings.batch_size, progress=ctx.progress)  # fmt: skip
    df["n_images"] = len(data)
    return Output({"eps_sweep": df}, figures=[fig_eps(df, ctx.out / "figures" / "eps_sweep.png")])


@experiment("attack_audit", "Stronger attacks and gradient-masking warnings", "4.4 (check)",
            ("audit_images", "audit_steps", "audit_restarts"))  # fmt: skip
def run_attack_audit(ctx: Context) -> Output:
    from analysis.robustness import attack_audit, masking_warnings

    data = ctx.first(ctx.settings.audit_images)
    df = attack_audit(ctx.models, data.images, data.labels, steps_list=ctx.settings.audit_steps,
                      restarts=ctx.settings.audit_restarts, batch_size=ctx.settings.batch_size,
                      progress=ctx.progress)  # fmt: skip
    df["n_images"] = len(data)
    warnings = masking_warnings(df)
    return Output({"attack_audit": df}, warnings or ["no sign of gradient masking (PGD-10 is as strong as the rest)"])


@experiment("attributions", "Attribution quality: mask share, deletion / insertion", "4.5, Figs. 11-13",
            ("attr_images", "attr_methods", "ig_steps", "lime_samples", "deletion_steps"))  # fmt: skip
def run_attributions(ctx: Context) -> Output:
    from analysis.attributions import attribution_quality

    s = ctx.settings
    data = ctx.first(s.attr_images)
    has_masks = data.masks is not None
    masks = data.masks if has_masks else torch.ones(len(data), 1, *data.images.shape[-2:], dtype=torch.bool)
    options = {"integrated_gradients": {"n_steps": s.ig_steps}, "lime": {"num_samples": s.lime_samples}}
    frames = []
    for variant, model in tqdm(ctx.models.items(), desc="attributions", disable=not ctx.progress, unit="variant"):
        with _quiet(not ctx.progress):  # lime draws a progress bar per image whatever it is told
            frames.append(attribution_quality({variant: model}, data.images, data.labels, masks.numpy(),
                                              methods=s.attr_methods, method_options=options,
                                              steps=s.deletion_steps))  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    notes = [f"maps explain the true label of {len(data)} test images; mask share = positive attribution inside the "
             "object mask / all positive attribution; AUCs of the target's softmax probability as the top-ranked "
             f"pixels are deleted (lower = more faithful) or inserted (higher = more faithful), {s.deletion_steps} "
             "steps"]  # fmt: skip
    if not has_masks:
        df["mask_share"] = np.nan
        notes.append("the data set has no object masks: mask share not measured")
    return Output({"attributions": df}, notes)


@experiment("stability", "Attribution stability under Table 1 perturbations", "4.5 (extension)",
            ("stability_images", "stability_methods", "stability_levels", "ig_steps"))  # fmt: skip
def run_stability(ctx: Context) -> Output:
    from analysis.attributions import stability

    s = ctx.settings
    data = ctx.first(s.stability_images)
    frames = []
    jobs = [(v, m) for v in ctx.models for m in s.stability_methods]
    for variant, method in tqdm(jobs, desc="stability", disable=not ctx.progress, unit="map set"):
        opts = {"n_steps": s.ig_steps} if method == "integrated_gradients" else {}
        df = stability(method, ctx.models[variant], data.images, data.labels, levels=s.stability_levels, **opts)
        df.insert(0, "method", method)
        df.insert(0, "variant", variant)
        frames.append(df)
    return Output({"stability": pd.concat(frames, ignore_index=True)},
                  [f"Spearman correlation between the map of a clean image and of its perturbed copy (true label), "
                   f"{len(data)} images"])  # fmt: skip


@experiment("embeddings", "Neighbour ranks of perturbed copies in logit space", "2.2, Fig. 2",
            ("embed_anchors", "embed_same_class"))  # fmt: skip
def run_embeddings(ctx: Context) -> Output:
    from analysis.embeddings import embed_logits, neighbour_ranks, visualize_set

    s = ctx.settings
    gen = torch.Generator().manual_seed(s.subset_seed + 1)
    anchors = torch.randperm(len(ctx.test), generator=gen)[: s.embed_anchors].tolist()
    frames = []
    for anchor in tqdm(anchors, desc="embeddings", disable=not ctx.progress, unit="anchor"):
        images, meta = visualize_set(ctx.test.images, ctx.test.labels, anchor, n_same_class=s.embed_same_class)
        for variant, logits in embed_logits(ctx.models, images).items():
            df = neighbour_ranks(logits, meta)
            df.insert(0, "anchor", anchor)
            df.insert(0, "variant", variant)
            frames.append(df)
    return Output({"embeddings": pd.concat(frames, ignore_index=True)},
                  ["rank 1: the perturbed copy is the anchor's nearest neighbour (by DS) among same-class test "
                   "images; the PCA / t-SNE / UMAP projections are on the dashboard"])  # fmt: skip


@experiment("transfer", "Fine-tuning each variant on other data sets", "4.6, Table 3",
            ("transfer_targets", "seeds", "transfer_epochs", "transfer_min_steps", "transfer_train_limit",
             "transfer_test_limit", "warmup_steps", "train_batch_size"))  # fmt: skip
def run_transfer(ctx: Context) -> Output:
    from analysis.transfer import transfer_table

    s = ctx.settings
    df = transfer_table(ctx.zoo, targets=s.transfer_targets, roots=ctx.roots, epochs=s.transfer_epochs,
                        train_limit=s.transfer_train_limit, seeds=s.seeds, out_dir=ctx.work_dir / "transfer",
                        progress=ctx.progress, test_limit=s.transfer_test_limit, warmup_steps=s.warmup_steps,
                        min_steps=s.transfer_min_steps, batch_size=s.train_batch_size,
                        device=str(ctx.device))  # fmt: skip
    summary = summarise(df)
    fig = fig_bars(summary, "test_acc", "target", ctx.out / "figures" / "table3_transfer.png", "Table 3: transfer")
    notes = [f"each variant's checkpoint, head re-initialised, fine-tuned with cross-entropy (all layers, preset "
             f"finetune) on the first {s.transfer_train_limit} training images of each target; at least "
             f"{s.transfer_min_steps} steps; test accuracy on {s.transfer_test_limit} test images"]  # fmt: skip
    return Output({"transfer": df, "summary": summary}, notes, [fig])


@experiment("fairness", "Colour-bias experiment", "4.7, Table 4",
            ("fairness_source", "seeds", "fairness_epochs", "fairness_train_limit", "fairness_test_limit",
             "fairness_width", "fairness_pgd_steps", "fairness_preset", "fairness_lr", "train_batch_size"),
            uses=())  # fmt: skip
def run_fairness(ctx: Context) -> Output:
    from analysis.fairness import fairness_table

    s = ctx.settings
    df = fairness_table(source=s.fairness_source, epochs=s.fairness_epochs, train_limit=s.fairness_train_limit,
                        width=s.fairness_width, seeds=s.seeds, out_dir=ctx.work_dir / "fairness",
                        progress=ctx.progress, test_limit=s.fairness_test_limit, preset=s.fairness_preset,
                        lr=s.fairness_lr, batch_size=s.train_batch_size, pgd_steps=s.fairness_pgd_steps,
                        device=str(ctx.device))  # fmt: skip
    summary = pd.concat([summarise(df, col, by=("variant",)).rename(columns={"n_seeds": f"n_seeds_{col}"})
                         .set_index("variant") for col in ("test_acc", "test_acc_red", "test_acc_blue")],
                        axis=1).reset_index()  # fmt: skip
    fig = fig_bars(summary, "test_acc", None, ctx.out / "figures" / "table4_fairness.png", "Table 4: colour bias")
    notes = [f"width-{s.fairness_width} resnet18-cifar trained from scratch (preset {s.fairness_preset}, lr "
             f"{s.fairness_lr:g}) for {s.fairness_epochs:g} epochs on the first {s.fairness_train_limit} colour-bias "
             f"{s.fairness_source} training images (95% red backgrounds); tested on the first {s.fairness_test_limit} "
             "test images (95% blue)"]  # fmt: skip
    return Output({"fairness": df, "summary": summary}, notes, [fig])


# ----------------------------------------------------------------------------- writing results


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", double_precision=10))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _dump(obj: Any, path: Path) -> None:
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def _clean(obj: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def experiment_inputs(ctx: Context, exp: Experiment) -> dict[str, str]:
    """The sha256 of each zoo checkpoint ``exp`` reads: a stored result is reusable only while these are unchanged."""
    variants = ctx.zoo.manifest.get("variants", {})
    used = list(variants) if exp.uses is None else [v for v in exp.uses if v in variants]
    return {v: str(variants[v].get("sha256")) for v in used}


def reuse_experiment(ctx: Context, exp: Experiment) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """An earlier result of ``exp`` in ``ctx.out`` computed from the same checkpoints, data set, mode and settings.

    Returns its main table and summary entry, or None when there is none or anything it depended on changed.
    """
    path = ctx.out / "results" / f"{exp.name}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    settings = {k: getattr(ctx.settings, k) for k in exp.settings}
    same = (
        doc.get("inputs") == experiment_inputs(ctx, exp)
        and doc.get("mode") == ctx.settings.mode
        and doc.get("dataset") == ctx.dataset
        and all(_clean(doc.get("settings", {}).get(k)) == _clean(v) for k, v in settings.items())
    )
    files = doc.get("files", {})
    if not same or not all((ctx.out / f).is_file() for f in [*files.get("csv", []), *files.get("figures", [])]):
        return None
    tables = doc.get("tables") or {}
    main = pd.DataFrame(next(iter(tables.values()))) if tables else pd.DataFrame()
    entry = {"status": "ok", "reused": True, "elapsed_s": doc.get("elapsed_s"), "cpu_s": doc.get("cpu_s"),
             "files": files, "notes": doc.get("notes", []), "settings": doc.get("settings", {})}  # fmt: skip
    return main, entry


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


def write_experiment(ctx: Context, exp: Experiment, output: Output, elapsed: float, cpu: float) -> dict[str, Any]:
    """results/<name>.csv (+ one CSV per extra part) and results/<name>.json; returns the summary entry."""
    res = ctx.out / "results"
    res.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"csv": [], "json": f"results/{exp.name}.json", "figures": []}
    for i, (part, df) in enumerate(output.tables.items()):
        name = exp.name if i == 0 else f"{exp.name}_{part}"
        df.to_csv(res / f"{name}.csv", index=False)
        files["csv"].append(f"results/{name}.csv")
    files["figures"] = [str(Path(p).relative_to(ctx.out)) for p in output.figures]
    settings = {k: getattr(ctx.settings, k) for k in exp.settings}
    settings.update(output.settings)
    doc = {
        "inputs": experiment_inputs(ctx, exp),
        "experiment": exp.name,
        "title": exp.title,
        "paper": exp.paper,
        "mode": ctx.settings.mode,
        "zoo": str(ctx.zoo.path),
        "dataset": ctx.dataset,
        "settings": settings,
        "elapsed_s": round(elapsed, 2),
        "cpu_s": round(cpu, 2),  # process CPU time: on a shared machine, what the wall time would be alone
        "notes": output.notes,
        "tables": {part: _records(df) for part, df in output.tables.items()},
        "files": files,
    }
    _dump(_clean(doc), res / f"{exp.name}.json")
    return {"status": "ok", "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu, 2), "files": files,
            "notes": output.notes, "settings": settings}  # fmt: skip


# ----------------------------------------------------------------------------- REPORT.md


def md_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (values as given; format before)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines)


def _p(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.1f}%"


def _ms(mean: float, sd: float | None) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.1f}%" if sd is None or not np.isfinite(sd) else f"{100 * mean:.1f} ± {100 * sd:.1f}%"


def _figure_md(status: dict[str, Any], name: str, stem: str) -> str:
    figs = [f for f in status.get(name, {}).get("files", {}).get("figures", []) if Path(f).stem.startswith(stem)]
    return "\n".join(f"![{Path(f).stem}]({f})" for f in figs)


def _missing(status: dict[str, Any], name: str) -> str | None:
    st = status.get(name, {"status": "skipped"})
    if st["status"] == "ok":
        return None
    why = f" ({st['error']})" if st.get("error") else ""
    return f"*Not available: experiment `{name}` {st['status']}{why}*"


def section_table1() -> str:
    rows = []
    for level, paper in PAPER["table1"]["levels"].items():
        ours = {k: TABLE1[k][level - 1] for k in KINDS}
        same = all(math.isclose(float(paper[k]), float(ours[k])) for k in KINDS)
        rows.append([level, *(f"{paper[k]:g}" for k in KINDS), *(f"{ours[k]:g}" for k in KINDS),
                     "yes" if same else "**no**"])  # fmt: skip
    df = pd.DataFrame(rows, columns=["level", *(f"paper {k}" for k in KINDS), *(f"ours {k}" for k in KINDS), "same"])
    return ("## Table 1: perturbation levels\n\n" + md_table(df) + "\n\nBrightness is additive on the 0..255 scale "
            "(`clamp(x + k/255, 0, 1)`); contrast, saturation and hue are torchvision's factors (DESIGN section 3). "
            f"Source: {PAPER['table1']['source']}.\n")  # fmt: skip


def section_continuity(ctx: Context, status: dict[str, Any]) -> str:
    out = ["## Figure 3: semantic continuity (DS)", "", f"**Paper:** {PAPER['figures']['fig3']}", ""]
    if (m := _missing(status, "continuity")) is not None:
        return "\n".join([*out, m, ""])
    ds = ctx.tables["continuity"]
    piv = ds.pivot_table(index="variant", columns=["kind", "level"], values="ds_mean", sort=False)
    rows = []
    for variant in piv.index:
        r = {"variant": variant}
        for kind in KINDS:
            if (kind, 1) in piv.columns:
                r[f"{kind} L1"] = f"{piv.loc[variant, (kind, 1)]:.3g}"
            if (kind, 4) in piv.columns:
                r[f"{kind} L4"] = f"{piv.loc[variant, (kind, 4)]:.3g}"
        r["sum L1"] = f"{ds[(ds['variant'] == variant) & (ds['level'] == 1)]['ds_mean'].sum():.3g}"
        rows.append(r)
    out += [f"**Ours** (mean DS over {int(ds['n'].iloc[0])} test images; L1 / L4 = level 1 / 4):", "",
            md_table(pd.DataFrame(rows)), "", _figure_md(status, "continuity", "fig3"), ""]  # fmt: skip
    return "\n".join(out)


def section_alpha(ctx: Context, status: dict[str, Any]) -> str:
    out = ["## Figure 4: accuracy and continuity against alpha", "", f"**Paper:** {PAPER['figures']['fig4']}", ""]
    if (m := _missing(status, "alpha_sweep")) is not None:
        return "\n".join([*out, m, ""])
    s = alpha_summary(ctx.tables["alpha_sweep"])
    rows = [{"alpha": f"{r.alpha:g}", "test accuracy": _ms(r.acc_mean, r.acc_sd),
             "level-1 DS sum": f"{r.ds_mean:.3g}" + ("" if not np.isfinite(r.ds_sd) else f" ± {r.ds_sd:.2g}"),
             "seeds": int(r.n_seeds)} for r in s.itertuples()]  # fmt: skip
    out += ["**Ours** (mean ± sd over seeds):", "", md_table(pd.DataFrame(rows)), "",
            *status["alpha_sweep"]["notes"], "", _figure_md(status, "alpha_sweep", "fig4"), ""]  # fmt: skip
    return "\n".join(out)


def section_rank(ctx: Context, status: dict[str, Any]) -> str:
    out = ["## Section 2: semantic discontinuity (Figs. 1-2 as numbers)", "", f"**Paper:** {PAPER['figures']['fig2']}",
           ""]  # fmt: skip
    if (df := ctx.tables.get("neighbourhood_rank")) is not None:
        piv = df.groupby(["variant", "level"], sort=False)["share_closer_mean"].mean().unstack("level")
        piv.columns = [f"level {c}" for c in piv.columns]
        out += [f"**Ours**, share of same-class test images nearer (by DS) to an anchor than its perturbed copy, mean "
                f"over {int(df['n_anchors'].iloc[0])} anchors and the four kinds (0 = the copy is the nearest):", "",
                md_table(piv.map(lambda v: f"{v:.3f}").reset_index()), ""]  # fmt: skip
    else:
        out += [_missing(status, "neighbourhood_rank") or "", ""]
    if (df := ctx.tables.get("embeddings")) is not None:
        g = df.groupby("variant", sort=False)
        summ = pd.DataFrame({"perturbed copies": g.size(),
                             "rank > 1": g["rank"].apply(lambda r: f"{(r > 1).mean():.0%}"),
                             "median rank": g["rank"].median(),
                             "candidates": g["n_candidates"].max()}).reset_index()  # fmt: skip
        out += ["Neighbour ranks of the perturbed copies (all kinds and levels) of "
                f"{df['anchor'].nunique()} anchor(s) among same-class test images (rank 1 = nearest):", "",
                md_table(summ), ""]  # fmt: skip
    return "\n".join(out)


def section_probes(ctx: Context, status: dict[str, Any]) -> str:
    out = ["## Figures 6, 8, 10: semantic probes", ""]
    if (m := _missing(status, "probes")) is not None:
        return "\n".join([*out, m, ""])
    df = ctx.tables["probes"]
    for probe, fig in PROBE_FIGURES.items():
        sub = df[df["probe"] == probe]
        piv = sub.pivot_table(index="variant", columns="level_label", values="accuracy", sort=False)
        piv = piv[list(dict.fromkeys(sub["level_label"]))]
        out += [f"### Figure {fig[3:]}: {probe.replace('_', ' ')}", "", f"**Paper:** {PAPER['figures'][fig]}", "",
                f"**Ours** (accuracy on {len(ctx.eval)} test images):", "",
                md_table(piv.map(_p).reset_index()), "", _figure_md(status, "probes", fig + "_"), ""]  # fmt: skip
    return "\n".join(out)


def section_table2(ctx: Context, status: dict[str, Any]) -> str:
    out = ["## Table 2: adversarial robustness", "", f"Paper: {PAPER['table2']['source']}.", ""]
    t2 = PAPER["table2"]
    rob = ctx.tables.get("robustness")
    audit = ctx.tables.get("attack_audit")
    variants = list(t2["ResNet18 / CIFAR-100"])
    rows = []
    for v in variants:
        r = {"variant": v}
        for net in ("ResNet18 / CIFAR-100", "ResNet50 / ImageNet"):
            r[f"paper {net} clean"] = f"{t2[net][v]['clean']:.2f}%"
            r[f"paper {net} adv"] = f"{t2[net][v]['adv']:.2f}%"
        if rob is not None and v in set(rob["variant"]):
            rr = rob[rob["variant"] == v].iloc[0]
            r["ours clean"], r["ours PGD-10"] = _p(rr["clean_acc"]), _p(rr["pgd_acc"])
        else:
            r["ours clean"] = r["ours PGD-10"] = "n/a"
        if audit is not None and v in set(audit["variant"]):
            a = audit[audit["variant"] == v]
            worst = a.loc[a["accuracy"].idxmin()]
            r["ours strongest attack"] = f"{_p(worst['accuracy'])} ({worst['attack']})"
        rows.append(r)
    out += [md_table(pd.DataFrame(rows)), ""]
    if rob is not None:
        out += [f"Ours: {status['robustness']['notes'][0]}; 'strongest attack' is the lowest accuracy over the attack "
                f"audit ({int(audit['n_images'].iloc[0]) if audit is not None else 0} images).", ""]  # fmt: skip
    else:
        out += [_missing(status, "robustness") or "", ""]
    if audit is not None:
        piv = audit.pivot_table(index="variant", columns="attack", values="accuracy", sort=False)
        piv = piv[list(dict.fromkeys(audit["attack"]))]
        out += ["### Attack audit (gradient-masking check)", "", md_table(piv.map(_p).reset_index()), "",
                "Masking warnings:", "", *[f"- {w}" for w in status["attack_audit"]["notes"]], ""]  # fmt: skip
    if (eps := ctx.tables.get("eps_sweep")) is not None:
        piv = eps.pivot_table(index="variant", columns="eps_255", values="accuracy", sort=False)
        piv.columns = [f"{c:g}/255" for c in piv.columns]
        out += ["### Accuracy against the PGD-10 radius", "", md_table(piv.map(_p).reset_index()), "",
                _figure_md(status, "eps_sweep", "eps"), ""]  # fmt: skip
    return "\n".join(out)


def section_attributions(ctx: Context, status: dict[str, Any]) -> str:
    out = ["## Section 4.5: interpretability (Figs. 11-13, measured)", "", f"**Paper:** {PAPER['figures']['fig11_13']}",
           ""]  # fmt: skip
    if (df := ctx.tables.get("attributions")) is not None:
        t = df.copy()
        t["mask_share"] = t["mask_share"].map(lambda v: "n/a" if not np.isfinite(v) else f"{v:.3f}")
        t["deletion_auc"] = t["deletion_auc"].map(lambda v: f"{v:.3f}")
        t["insertion_auc"] = t["insertion_auc"].map(lambda v: f"{v:.3f}")
        out += ["**Ours**:", "", md_table(t), "", *status["attributions"]["notes"], ""]
    else:
        out += [_missing(status, "attributions") or "", ""]
    if (st := ctx.tables.get("stability")) is not None:
        piv = st.groupby(["variant", "method", "level"], sort=False)["spearman_mean"].mean().unstack("level")
        piv.columns = [f"level {c}" for c in piv.columns]
        out += ["Attribution stability (Spearman correlation of clean vs perturbed maps, mean over kinds; 1 = "
                "unchanged):", "", md_table(piv.map(lambda v: f"{v:.3f}").reset_index()), ""]  # fmt: skip
    return "\n".join(out)


def section_table3(ctx: Context, status: dict[str, Any]) -> str:
    t3 = PAPER["table3"]
    out = ["## Table 3: transfer", "", f"Paper: {t3['source']}.", ""]
    df = ctx.tables.get("transfer")
    summary = summarise(df) if df is not None else None
    rows = []
    for v in ("standard", "C", "ADV", "ADV+C"):
        r = {"variant": v, **{f"paper {t}": f"{t3[v][t]:.2f}%" for t in t3["targets"]}}
        if summary is not None:
            for t in dict.fromkeys(summary["target"]):
                s = summary[(summary["variant"] == v) & (summary["target"] == t)]
                r[f"ours {t}"] = _ms(s["test_acc_mean"].iloc[0], s["test_acc_sd"].iloc[0]) if len(s) else "n/a"
        rows.append(r)
    out += [md_table(pd.DataFrame(rows)), ""]
    if df is not None:
        out += [f"Ours: mean ± sd over {int(summary['n_seeds'].max())} seed(s); {status['transfer']['notes'][0]}. "
                "Our targets differ from the paper's (no CIFAR-10 / SVHN / MNIST files here; name them with "
                "`--root cifar10=PATH` etc.).", "", _figure_md(status, "transfer", "table3"), ""]  # fmt: skip
    else:
        out += [_missing(status, "transfer") or "", ""]
    return "\n".join(out)


def section_table4(ctx: Context, status: dict[str, Any]) -> str:
    t4 = PAPER["table4"]
    out = ["## Table 4: colour bias (fairness)", "", f"Paper: {t4['source']}.", ""]
    df = ctx.tables.get("fairness")
    rows = []
    for v in ("standard", "C", "ADV", "ADV+C"):
        r = {"variant": v, "paper Colorful MNIST": f"{t4[v]:.2f}%" if v in t4 else "-"}
        if df is not None and v in set(df["variant"]):
            g = df[df["variant"] == v]
            sd = lambda c, g=g: float(g[c].std(ddof=1)) if len(g) > 1 else None  # noqa: E731
            r["ours test"] = _ms(float(g["test_acc"].mean()), sd("test_acc"))
            r["ours red bg"] = _ms(float(g["test_acc_red"].mean()), sd("test_acc_red"))
            r["ours blue bg"] = _ms(float(g["test_acc_blue"].mean()), sd("test_acc_blue"))
            r["ours held-out train split (95% red)"] = _ms(float(g["val_acc"].mean()), sd("val_acc"))
        rows.append(r)
    out += [md_table(pd.DataFrame(rows)), ""]
    if df is not None:
        out += [f"Ours: mean ± sd over {df['seed'].nunique()} seed(s); {status['fairness']['notes'][0]} "
                f"({int(df['n_red'].iloc[0])} red, {int(df['n_blue'].iloc[0])} blue backgrounds).", "",
                _figure_md(status, "fairness", "table4"), ""]  # fmt: skip
    else:
        out += [_missing(status, "fairness") or "", ""]
    return "\n".join(out)


def section_claims(claims: list[claims_mod.Claim]) -> str:
    df = claims_mod.claims_frame(claims)
    verdicts = df["verdict"].value_counts()
    tally = ", ".join(f"{n} {v}" for v, n in verdicts.items())
    show = df[["claim", "paper", "paper_figure", "ours", "verdict", "rule"]].rename(
        columns={"paper_figure": "paper's figure", "verdict": "holds?", "rule": "rule (in analysis/claims.py)"}
    )
    show["holds?"] = show["holds?"].map(lambda v: f"**{v}**")
    return "\n".join(["## Claims", "", f"Verdicts: {tally}. Each verdict comes from the rule in the last column, "
                      "applied in code to the tables below (`analysis.claims`); a difference smaller than the combined "
                      "seed standard deviation is marked 'within seed noise'.", "", md_table(show), ""])  # fmt: skip


def differences_from_paper(ctx: Context) -> str:
    recipe = ctx.zoo.manifest.get("recipe")
    diffs = []
    for entry in ctx.zoo.entries.values():
        diffs = entry.card.get("differences_from_paper") or diffs
    lines = ["## Differences from the paper", "",
             f"- Zoo `{ctx.zoo.path}` (recipe `{recipe}`), data set `{ctx.dataset}`; the paper uses CIFAR-100 "
             "ResNet18s and ImageNet ResNet50s.", *[f"- zoo: {d}" for d in diffs],
             "- Figures have no numbers in the paper's text: their rows compare with the paper's stated direction.",
             "- The alpha sweep fine-tunes briefly from the zoo's standard network on a subset (Adam at lr 1e-4, "
             "paper: Adam 1e-5 for an unstated length); the transfer and colour-bias runs are short too (see the "
             "settings below): their numbers are far below what full training reaches.",
             "- Transfer targets are the data sets available offline (digits, Fashion-MNIST) unless on-disk sets are "
             "named with `--root`; the paper uses CIFAR-10, SVHN and MNIST.",
             "- The colour-bias set draws Fashion-MNIST garments or scikit-learn digits (paper: MNIST) on red/blue; "
             "networks are small and trained briefly from scratch.",
             "- Paper typos noted: section 4.7 cites 'Table 3' for Table 4; sections 4.3.1-4.3.3 cite 'Table 6/8/10' "
             "for Figs. 6/8/10; Figs. 9 and 10 share a caption."]  # fmt: skip
    return "\n".join(lines) + "\n"


def settings_section(ctx: Context, status: dict[str, Any], total: float) -> str:
    rows = []
    for name in EXPERIMENTS:
        st = status.get(name, {"status": "skipped"})
        rows.append(
            {
                "experiment": name,
                "status": st["status"],
                "elapsed (s)": f"{st['elapsed_s']:.1f}" if "elapsed_s" in st else "-",
                "CPU (s)": f"{st['cpu_s']:.1f}" if "cpu_s" in st else "-",
                "full-run budget (CPU s, 1 thread)": FULL_BUDGET_S.get(name, "-"),
                "settings": "; ".join(f"{k}={v}" for k, v in st.get("settings", {}).items()),
            }
        )
    return "\n".join([
        "## Settings and elapsed time", "",
        f"Mode `{ctx.settings.mode}`, seeds {list(ctx.settings.seeds)}, evaluation subset: {len(ctx.eval)} of "
        f"{len(ctx.test)} test images (seed {ctx.settings.subset_seed}); device {ctx.device}, "
        f"{torch.get_num_threads()} torch thread(s); total {total:.0f} s. CPU is the process's CPU time (on a busy "
        "machine the wall time grows, the CPU time hardly). The budget column is the plan for the full run on the "
        f"default zoo: {sum(FULL_BUDGET_S.values())} CPU s in all, about that long in wall time on one free core, "
        "about 1.7x less on two.",
        "", md_table(pd.DataFrame(rows)), ""])  # fmt: skip


def write_report(ctx: Context, status: dict[str, Any], claims: list[claims_mod.Claim], total: float) -> str:
    head = [
        f"# Semantic continuity report: `{ctx.zoo.manifest.get('name', ctx.zoo.path.name)}`",
        "",
        f"Zoo `{ctx.zoo.path}` ({', '.join(ctx.zoo.variants)}), data set `{ctx.dataset}`, mode **{ctx.settings.mode}**"
        f", written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} by code {git_commit()}.",
        "",
        f"Paper: {PAPER['source']}. The paper's numbers are in `analysis.claims.PAPER`; where the paper gives none "
        "(its figures), its stated claim is quoted. Results files are listed in `summary.json`.",
        "",
    ]
    failed = [n for n, s in status.items() if s["status"] == "failed"]
    if failed:
        head += [f"**Failed experiments:** {', '.join(failed)} (see summary.json for the errors).", ""]
    if ctx.settings.mode == "quick":
        head += ["**Quick mode:** tiny subsets, one seed and very short training runs: a check that the pipeline "
                 "works, not evidence for or against the paper.", ""]  # fmt: skip
    parts = [
        "\n".join(head),
        section_claims(claims),
        section_table1(),
        section_continuity(ctx, status),
        section_alpha(ctx, status),
        section_rank(ctx, status),
        section_probes(ctx, status),
        section_table2(ctx, status),
        section_attributions(ctx, status),
        section_table3(ctx, status),
        section_table4(ctx, status),
        differences_from_paper(ctx),
        settings_section(ctx, status, total),
    ]
    text = "\n".join(parts)
    (ctx.out / "REPORT.md").write_text(text)
    return text


# ----------------------------------------------------------------------------- driver


def build_context(
    zoo_path: str | Path,
    out: str | Path,
    settings: Settings,
    work_dir: Path,
    device: str = "auto",
    data_root: str | None = None,
    roots: dict[str, str] | None = None,
    progress: bool = True,
) -> Context:
    dev = pick_device(device)
    zoo = load_zoo(zoo_path, device=dev)
    if not zoo.entries:
        raise ValueError(f"zoo {zoo_path} has no variants")
    dataset = zoo.dataset.get("name") or next(iter(zoo.entries.values())).meta["config"].get("dataset")
    if not dataset:
        raise ValueError(f"zoo {zoo_path} does not say which data set it was trained on")
    config = next(iter(zoo.entries.values())).meta.get("config", {})
    root = data_root or config.get("data_root")
    test = load_dataset(dataset, "test", root, image_size=config.get("image_size"))
    subset = seeded_subset(test, settings.n_images, settings.subset_seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return Context(zoo, settings, out, work_dir, dev, dataset, root, test, subset, dict(roots or {}), progress)


def clear_previous(out: Path, log: Callable[[str], None]) -> None:
    """Remove an earlier report's files from ``out`` (only if its summary.json says it is one), so that the folder
    never mixes two runs: results of experiments skipped this time would otherwise linger for the dashboard."""
    summary = out / "summary.json"
    try:
        previous = json.loads(summary.read_text()) if summary.is_file() else None
    except (OSError, json.JSONDecodeError):
        previous = None
    if not isinstance(previous, dict) or previous.get("format") != "scl-report/1":
        return
    for name in ("results", "figures"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("REPORT.md", "claims.csv", "claims.json", "summary.json"):
        (out / name).unlink(missing_ok=True)
    log(f"[report] removed the previous report in {out}")


def run_report(
    zoo_path: str | Path,
    out: str | Path,
    settings: Settings = FULL,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    work_dir: str | Path | None = None,
    device: str = "auto",
    data_root: str | None = None,
    roots: dict[str, str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the selected experiments, write every file, return the summary (also written to summary.json).

    With ``resume`` an earlier report in ``out`` is kept: every experiment whose stored result was computed from
    the same checkpoints, data set and settings is reused (selected or not), and only the selected ones without
    such a result run. An interrupted or partial report thus continues where it stopped.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    unknown = [n for n in [*skip, *(only or [])] if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    selected = [n for n in EXPERIMENTS if n not in skip and (only is None or n in only)]
    t_start, c_start = time.perf_counter(), time.process_time()
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="scl-report-")
        work_dir = tmp
    try:
        ctx = build_context(zoo_path, out, settings, Path(work_dir), device, data_root, roots, progress)
        status: dict[str, Any] = {n: {"status": "skipped"} for n in EXPERIMENTS if n not in selected}
        if resume:
            for name, exp in EXPERIMENTS.items():
                found = reuse_experiment(ctx, exp)
                if found is not None:
                    ctx.tables[name], status[name] = found
                    log(f"[report] {name}: reusing the earlier result (same checkpoints and settings)")
            selected = [n for n in selected if n not in ctx.tables]
            for name in EXPERIMENTS:
                if name not in ctx.tables and name not in selected:  # stale: it would lie about the current zoo
                    remove_experiment(ctx.out, name)
        else:
            clear_previous(ctx.out, log)
        log(f"[report] zoo {ctx.zoo.path} ({', '.join(ctx.zoo.variants)}), data set {ctx.dataset}, mode "
            f"{settings.mode}, {len(selected)} experiment(s), {torch.get_num_threads()} torch thread(s)")  # fmt: skip
        for i, name in enumerate(tqdm(selected, desc="report", unit="experiment", disable=not progress), 1):
            exp = EXPERIMENTS[name]
            log(f"[report] ({i}/{len(selected)}) {name}: {exp.title} (paper {exp.paper})")
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                output = exp.run(ctx)
            except Exception as exc:  # one experiment's failure must not lose the others
                elapsed = time.perf_counter() - t0
                status[name] = {"status": "failed", "elapsed_s": round(elapsed, 2),
                                "cpu_s": round(time.process_time() - c0, 2),
                                "error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc()}  # fmt: skip
                log(f"[report] {name} FAILED after {elapsed:.1f} s: {type(exc).__name__}: {exc}")
                continue
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            ctx.tables[name] = next(iter(output.tables.values()))
            status[name] = write_experiment(ctx, exp, output, elapsed, cpu)
            budget = FULL_BUDGET_S.get(name)
            log(
                f"[report] {name} done in {elapsed:.1f} s ({cpu:.1f} s CPU)"
                + (f"; full-run budget {budget} s CPU" if budget else "")
            )
        n_images = {"robustness": min(settings.pgd_images, len(ctx.eval)),
                    "attack_audit": min(settings.audit_images, len(ctx.eval))}  # fmt: skip
        claims = evaluate_claims(ctx.tables, n_images)
        cdf = claims_mod.claims_frame(claims)
        cdf.to_csv(ctx.out / "claims.csv", index=False)
        _dump(_clean({"source": PAPER["source"], "mode": settings.mode, "claims": [c.row() for c in claims]}),
              ctx.out / "claims.json")  # fmt: skip
        total = time.perf_counter() - t_start
        write_report(ctx, status, claims, total)
        summary = {
            "format": "scl-report/1",
            "zoo": str(ctx.zoo.path),
            "dataset": ctx.dataset,
            "mode": settings.mode,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "device": str(ctx.device),
            "torch_threads": torch.get_num_threads(),
            "host": platform.node(),
            "elapsed_s": round(total, 2),
            "cpu_s": round(time.process_time() - c_start, 2),
            "full_run_budget_cpu_s": FULL_BUDGET_S,
            "paths_relative_to": "this file's folder",
            "report": "REPORT.md",
            "claims": {"csv": "claims.csv", "json": "claims.json"},
            "settings": dataclasses.asdict(settings),
            "experiments": status,
            "paper": {k: v for k, v in PAPER.items() if k != "figures"},
        }
        _dump(_clean(summary), ctx.out / "summary.json")
        log(f"[report] wrote {ctx.out / 'REPORT.md'} and {ctx.out / 'summary.json'} in {total:.1f} s")
        return summary
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="experiments: " + ", ".join(EXPERIMENTS))  # fmt: skip
    parser.add_argument("--zoo", default="assets/zoo/default", help="zoo folder (with zoo.json)")
    parser.add_argument("--out", default=None, help="output folder (default reports/<zoo name>)")
    parser.add_argument("--quick", action="store_true", help="small subsets, one seed, tiny training runs")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds for the training experiments")
    parser.add_argument("--skip", default="", help="comma-separated experiments to leave out")
    parser.add_argument("--only", default="", help="comma-separated experiments to run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Settings field, e.g. --set n_images=500 --set alphas=0,1,3")  # fmt: skip
    parser.add_argument("--work-dir", default=None, help="keep training runs here (default: a temp folder, deleted)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--data-root", default=None, help="folder of the zoo's on-disk data set (if it has one)")
    parser.add_argument("--root", action="append", default=[], metavar="NAME=PATH",
                        help="an on-disk transfer target, e.g. --root cifar10=/data/cifar (repeatable)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--resume", action="store_true",
                        help="keep still-valid earlier results in --out; run only what is missing")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        settings = QUICK if args.quick else FULL
        if args.seeds is not None:
            if args.seeds < 1:
                raise ValueError("--seeds must be >= 1")
            settings = dataclasses.replace(settings, seeds=tuple(range(args.seeds)))
        settings = parse_overrides(settings, args.set)
        roots = {}
        for item in args.root:
            name, sep, path = item.partition("=")
            if not sep:
                raise ValueError(f"--root {item!r}: expected NAME=PATH")
            roots[name.strip()] = path.strip()
        if args.threads:
            torch.set_num_threads(args.threads)
        out = args.out or f"reports/{Path(args.zoo).name}"
        summary = run_report(args.zoo, out, settings, _names(args.skip), _names(args.only) or None, args.work_dir,
                             args.device, args.data_root, roots, progress=not args.no_progress,
                             resume=args.resume)  # fmt: skip
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [n for n, s in summary["experiments"].items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
