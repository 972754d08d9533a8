"""Fairness (paper 4.7, Table 4): the colour-bias experiment.

The paper's "Colorful MNIST" puts digits on a coloured background, red behind 95% of the training images and blue
behind the other 5%, and the reverse in test; a model that learned the background colour instead of the shape
loses accuracy on the (mostly blue) test set. The paper reports ResNet18 96.01% and ResNet18C 97.54%.

Here the set is ``models.data``'s ``colour-bias`` (``out = g + (1 - g) * background``, red (1,0,0) / blue (0,0,1),
exactly ``round((1 - 0.95) * n)`` minority images) over Fashion-MNIST garments or scikit-learn digits (``source``). Each
variant is trained **from scratch** on the colour-biased training split (``models.train.train``; preset "scratch" by
default, the report uses Adam: for short runs SGD leaves C near chance) and scored on the test split, overall and
per background colour. The colour of each test image is read from its
pixels (``background_colours``), not assumed from the generator.

Training settings of the adversarial variants follow the CPU zoo recipe (``models.recipes.RECIPES``): PGD with
``pgd_steps`` = 3 steps of 2.5*eps/3 at eps 8/255; C uses the per-sample colour jitter of ``models.perturbations``.

Two designs (``DESIGNS``), run with the same variants, seeds and settings: ``paper`` (the set above: the colour is
independent of the label, so it is a background shift with nothing to learn from it) and ``shortcut``
(``colour-bias-shortcut``: 95% of each class on its own colour in training, colours independent of the label in
test; ``test_acc_on_colour`` / ``test_acc_off_colour`` split its test images by whether their colour is their
class's training colour).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.run_rows import normalised, store_row, stored_row
from analysis.transfer import run_identity, run_training
from models.data import COLOUR_BIAS_COLOURS, DATASETS, ImageDataset
from models.datasets.colour_bias import shortcut_colour_index
from models.evaluation import predict_logits
from models.objectives import VARIANTS
from models.safe_output import OutputInUse, folder_lock
from models.train import TrainConfig
from models.train_setup import validation_count

T = TypeVar("T")

FAIRNESS_COLUMNS = [
    "variant", "seed", "test_acc", "test_acc_red", "test_acc_blue", "n_red", "n_blue", "val_acc", "n_train", "n_val",
    "train_seconds", "design", "test_acc_on_colour", "test_acc_off_colour", "n_on_colour",
]  # fmt: skip
SOURCES = ("fashion-mnist", "digits")
#: design -> its data set: the paper's (colour independent of the label) and the shortcut one
DESIGNS = {"paper": "colour-bias", "shortcut": "colour-bias-shortcut"}
EPS = 8 / 255


def background_colours(images: torch.Tensor) -> np.ndarray:
    """Name of each image's background colour (a key of ``COLOUR_BIAS_COLOURS``), read from its pixels.

    An image ``g + (1 - g) * c`` has, per channel, mean ``m + (1 - m) * c`` (m = the mean of g); subtracting the
    smallest channel mean leaves ``(1 - m) * (c - min c)``, whose direction is the colour's. The nearest colour by
    cosine similarity wins.
    """
    means = images.double().mean(dim=(2, 3))  # (N, 3)
    direction = means - means.min(dim=1, keepdim=True).values
    names = list(COLOUR_BIAS_COLOURS)
    refs = torch.tensor([COLOUR_BIAS_COLOURS[n] for n in names], dtype=torch.float64)
    refs = refs - refs.min(dim=1, keepdim=True).values
    sims = torch.nn.functional.normalize(direction, dim=1) @ torch.nn.functional.normalize(refs, dim=1).T
    return np.asarray(names)[sims.argmax(1).numpy()]


def check_design(design: str) -> str:
    """``design`` if it is one of ``DESIGNS``, else ValueError naming them."""
    if design not in DESIGNS:
        raise ValueError(f"colour-bias design must be one of {', '.join(DESIGNS)}, got {design!r}")
    return design


def colour_bias_loader(
    source: str, train_limit: int | None = None, test_limit: int | None = None, design: str = "paper"
):
    """A loader ``(split) -> ImageDataset`` of the colour-bias set of ``design`` over ``source`` (the first
    ``train_limit`` / ``test_limit`` images of each split; the colours are assigned within them), each split loaded
    once."""
    if source not in SOURCES:
        raise ValueError(f"colour-bias source must be one of {', '.join(SOURCES)}, got {source!r}")
    name = DATASETS[DESIGNS[check_design(design)]]
    cache: dict[str, ImageDataset] = {}

    def load(split: str) -> ImageDataset:
        if split not in cache:
            limit = train_limit if split == "train" else test_limit
            cache[split] = name(split, None, source=source, **({"limit": limit} if limit else {}))
        return cache[split]

    return load


def fairness_table(
    variants: Sequence[str] = ("standard", "C", "ADV", "ADV+C"),
    source: str = "fashion-mnist",
    epochs: float = 2.0,
    train_limit: int | None = 3000,
    width: int = 16,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | os.PathLike = "runs/fairness",
    progress: bool = False,
    *,
    test_limit: int | None = None,
    network: str = "resnet18-cifar",
    preset: str = "scratch",
    lr: float | None = None,
    schedule: str | None = None,
    warmup_steps: int | None = None,
    batch_size: int = 128,
    val_size: int = 200,
    alpha: float = 1.0,
    pgd_steps: int = 3,
    pgd_step: float | None = None,
    device: str = "auto",
    threads: int | None = 1,
    design: str = "paper",
) -> pd.DataFrame:
    """Train each variant from scratch on the colour-bias training split, per seed, and score it (Table 4).

    ``train_limit`` / ``test_limit`` keep the first n images of each split (the colours are assigned 95/5 within
    them). ``preset`` (default "scratch": SGD, lr 0.05, cosine, 100 warm-up steps) can be adjusted with ``lr``,
    ``schedule`` ("constant" or "cosine") and ``warmup_steps`` (short runs need fewer warm-up steps). Runs go to
    ``out_dir/<variant>/seed-<seed>``; a run already there under the same settings (finished, or interrupted) is
    reused or resumed, not retrained (``analysis.transfer.run_training(reuse=True)``), so a stopped experiment
    continues where it was and several processes can share one ``out_dir``: a run another process is training is
    left for last, then waited for and its row taken (``when_free``), so they never train one run twice. Each
    scored run also leaves its row (``ROW_FILE``, with what it was computed from): a run whose row is there is
    neither retrained nor rescored, even when its checkpoints are gone, so only those small files need to outlive
    a session.
    ``val_acc`` is the accuracy at the end of training on ``val_size`` images held out of the (95% red) training
    split: the training distribution (with ``val_size=0``, on the training images themselves). ``threads`` fixes
    torch's thread count during each run, so the same command, seeds and thread count give the same numbers.

    ``design`` (``DESIGNS``): "paper" (runs in ``out_dir``) or "shortcut" (runs in ``out_dir/shortcut``), the same
    settings otherwise.

    Columns: variant, seed, test_acc, test_acc_red, test_acc_blue (NaN when a colour is absent), n_red, n_blue
    (test images per background colour), val_acc, n_train and n_val (the images trained on and held out, as
    ``models.train`` split them), train_seconds, design, and for the shortcut design test_acc_on_colour /
    test_acc_off_colour / n_on_colour (test images on their class's training colour, or not; NaN / 0 for the
    paper's, whose red / blue columns are NaN / 0 for the shortcut's).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    out_dir = Path(out_dir) / ("shortcut" if check_design(design) == "shortcut" else "")
    loader = colour_bias_loader(source, train_limit, test_limit, design)
    test = loader("test")
    labels = test.labels.numpy()
    if design == "paper":
        colours = background_colours(test.images)
    else:  # the loader's seed (0): each test image's colour index, drawn independently of its label
        on_colour = shortcut_colour_index(labels, "test", 0, len(test.classes)) == labels
        colours = np.where(on_colour, "on", "off")
    train_set = loader("train")
    n_val = validation_count(len(train_set), val_size)
    split = {"n_train": len(train_set) - n_val, "n_val": n_val}
    jobs = [(v, seed) for v in variants for seed in seeds]
    rows: dict[int, dict[str, Any]] = {}
    busy: dict[int, TrainConfig] = {}  # runs another process is training in the shared folder: taken at the end
    for done, (variant, seed) in enumerate(jobs, 1):
        if progress:
            print(f"[fairness {done}/{len(jobs)}] {variant}, seed {seed}", flush=True)
        cfg = TrainConfig(
            variant=variant, dataset=DESIGNS[design], network=network, width=width, epochs=epochs,
            batch_size=batch_size, preset=preset, lr=lr, schedule=schedule, warmup_steps=warmup_steps, alpha=alpha,
            pgd_eps=EPS, pgd_steps=pgd_steps, val_size=val_size,
            pgd_step=pgd_step if pgd_step is not None else 2.5 * EPS / max(1, pgd_steps), eval_pgd_subset=0,
            eval_test=False, seed=int(seed), device=device,
            out=str(out_dir / variant / f"seed-{seed}"), num_threads=threads,
        )  # fmt: skip
        score = functools.partial(_scored_row, cfg, train_set, test, design, colours, labels, progress)
        try:
            rows[done] = score()
        except OutputInUse:
            print(f"[fairness] {variant}, seed {seed}: another process is training it in {cfg.out}; its row is "
                  "taken when it ends", flush=True)  # fmt: skip
            busy[done] = cfg
    for done, cfg in busy.items():  # wait for the other process, then take its row (or train what it left)
        score = functools.partial(_scored_row, cfg, train_set, test, design, colours, labels, progress)
        rows[done] = when_free(cfg.out, score, WAIT_POLL_S)
    return pd.DataFrame([{**rows[i], **split, "design": design} for i in sorted(rows)], columns=FAIRNESS_COLUMNS)


def _scored_row(
    cfg: TrainConfig,
    train_set: ImageDataset,
    test: ImageDataset,
    design: str,
    colours: np.ndarray,
    labels: np.ndarray,
    progress: bool,
) -> dict[str, Any]:
    """One run's row: stored earlier (``ROW_FILE``), else trained (or reused, resumed) and scored, and stored.
    OutputInUse when another process is training this run in the same folder."""
    identity = _row_identity(cfg, train_set, test, design)
    row = stored_row(cfg.out, identity, ROW_FILE)
    if row is None:
        metrics, model, seconds = run_training(cfg, progress=progress, data=train_set, reuse=True)
        row = _fairness_row(cfg.variant, cfg.seed, metrics, model, seconds, test, colours, labels)
        store_row(cfg.out, identity, row, ROW_FILE)
    elif progress:
        print(f"[fairness] {cfg.variant}, seed {cfg.seed}: scored earlier ({Path(cfg.out) / ROW_FILE})", flush=True)
    return row


WAIT_POLL_S = 10.0  # how often a run another process is training is looked at again


def when_free(folder: str | os.PathLike, work: Callable[[], T], poll_s: float = WAIT_POLL_S) -> T:
    """``work()`` under ``folder``'s lock, waiting (polling every ``poll_s`` seconds) while another live process
    holds it: so that processes sharing a work folder take each other's finished runs instead of failing."""
    while True:
        try:
            with folder_lock(folder, "colour-bias run"):
                return work()
        except OutputInUse:
            time.sleep(poll_s)


ROW_FILE = "fairness_row.json"  # a scored run's row (analysis.run_rows), kept beside or instead of its checkpoints


def _row_identity(cfg: TrainConfig, train_set: ImageDataset, test: ImageDataset, design: str) -> dict[str, Any]:
    """What a stored row was computed from: the run (``analysis.transfer.run_identity``), the test images, the
    design."""
    config, trained_on = run_identity(cfg, train_set)
    return normalised({"config": config, "trained_on": trained_on, "test": test.describe(), "design": design})


def _fairness_row(
    variant: str,
    seed: int,
    metrics: dict[str, Any],
    model: nn.Module,
    seconds: float,
    test: ImageDataset,
    colours: np.ndarray,
    labels: np.ndarray,
) -> dict[str, Any]:
    """One run's row: test accuracy overall and per background colour (``colours``: red / blue, or on / off the
    class's training colour), validation accuracy, training seconds."""
    correct = predict_logits(model, test.images).argmax(1).numpy() == labels
    row = {"variant": variant, "seed": int(seed), "test_acc": float(correct.mean()),
           "val_acc": float(metrics.get("val_clean_acc", np.nan)), "train_seconds": round(seconds, 2)}  # fmt: skip
    for name in ("red", "blue"):
        sel = colours == name
        row[f"test_acc_{name}"] = float(correct[sel].mean()) if sel.any() else float("nan")
        row[f"n_{name}"] = int(sel.sum())
    for name in ("on", "off"):
        sel = colours == name
        row[f"test_acc_{name}_colour"] = float(correct[sel].mean()) if sel.any() else float("nan")
    row["n_on_colour"] = int((colours == "on").sum())
    return row
