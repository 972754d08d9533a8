"""Transfer (paper 4.6, Table 3): fine-tune each trained variant on a target data set and report its test accuracy.

The paper fine-tunes its four CIFAR-100 ResNet18s on CIFAR-10, SVHN and MNIST and finds the continuity-constrained
ones a little more accurate. Here each variant's checkpoint initialises ``models.train.train`` on the target's
training split (``variant="standard"``: plain cross-entropy, every layer trained); the classification head is
re-initialised (``fresh_head=True``, seeded by the run's seed, the usual transfer practice; with
``fresh_head=False`` it is kept when the class counts agree, and re-initialised by
``models.train.load_init_weights`` when they differ). The fine-tuned network is then scored on the target's
test split (the first ``test_limit`` images of a seeded permutation, or all of them).

Built-in targets need no files (``digits``, ``fashion-mnist``); on-disk ones are named through ``roots``
(``{"cifar10": "/data/cifar"}``, ``{"svhn": ...}``, ``{"mnist": ...}``), and every name in ``roots`` is a target.

Each target's splits are loaded once per call and handed to ``models.train.train(cfg, data=...)`` in memory.

A target with the source's classes (``fashion-mnist`` for a zoo trained on ``fashion-mnist-m``: the same garments
with the backgrounds removed) is not a transfer to a new task but a **domain-shift** test; the ``kind`` column
says which (``target_kind``). Runs use a fixed number of torch threads (``threads``, default 1): the same command,
seeds and thread count give the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from analysis.run_rows import normalised, store_row, stored_row
from models.checkpoints import (
    ZOO_MANIFEST,
    CheckpointError,
    Zoo,
    ZooEntry,
    atomic_torch_save,
    load_checkpoint,
    load_model,
    read_zoo_manifest,
    sha256_file,
    zoo_member,
)
from models.data import ImageDataset, load_dataset
from models.evaluation import accuracy
from models.train import FINAL_FILE, RESUME_FILE, TrainConfig, pick_device, train
from models.train_config import small_set_batch_size
from models.train_setup import training_data

TRANSFER_COLUMNS = ["variant", "target", "kind", "seed", "test_acc", "n_train", "n_test", "epochs", "train_seconds"]
TIMING_FILE = "timing.json"  # training seconds of a run made by run_training, kept across resumes
TRANSFER, DOMAIN_SHIFT = "transfer (new classes)", "domain shift (same classes)"
DEFAULT_TARGETS: tuple[str, ...] = ("digits", "fashion-mnist")

# ----------------------------------------------------------------------------- shared helpers (fairness, report)


def target_kind(target_classes: Sequence[str], source_classes: Sequence[str] | None) -> str:
    """``DOMAIN_SHIFT`` when the target has the source's classes (same names, same order), else ``TRANSFER``."""
    same = source_classes is not None and list(target_classes) == list(source_classes)
    return DOMAIN_SHIFT if same else TRANSFER


def variant_paths(source: Zoo | Mapping[str, Any] | str | os.PathLike) -> dict[str, Path]:
    """Checkpoint path of each variant, from a loaded ``Zoo``, a zoo folder, or a mapping variant -> path/ZooEntry."""
    if isinstance(source, Zoo):
        return {v: Path(e.path) for v, e in source.entries.items()}
    if isinstance(source, Mapping):
        return {v: Path(p.path if isinstance(p, ZooEntry) else p) for v, p in source.items()}
    folder = Path(source)
    if (folder / ZOO_MANIFEST).is_file():
        return {v: zoo_member(folder, item.get("file"), v) for v, item in read_zoo_manifest(folder)["variants"].items()}
    raise TypeError(f"expected a Zoo, a zoo folder or a mapping variant -> checkpoint path, got {source!r}")


def seeded_subset(data: ImageDataset, limit: int | None, seed: int = 0) -> ImageDataset:
    """``limit`` images of ``data`` drawn by a seeded permutation (kept in data set order), or all of them."""
    if not limit or limit >= len(data):
        return data
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:limit]
    return data.subset(perm.sort().values)


@contextlib.contextmanager
def keep_threads() -> Iterator[None]:
    """Restore torch's thread count afterwards (``models.train.train`` sets it and does not restore it)."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_training(
    cfg: TrainConfig, progress: bool = False, data: ImageDataset | None = None, reuse: bool = False
) -> tuple[dict[str, Any], torch.nn.Module, float]:
    """``train(cfg, data=data)``, then load the finished model; returns (metrics, model in eval mode, seconds).

    Without ``progress`` the training loop's own printing (per-epoch JSON lines, the --init notice) is swallowed.
    Ctrl-C / SIGTERM during training raise ``models.runs.TrainingInterrupted`` (a KeyboardInterrupt), never an
    ordinary exception that a caller's ``except Exception`` would record as a failure.

    With ``reuse``, ``cfg.out`` may already hold this very run (the same configuration, up to where it runs and on
    how many threads): a finished one is loaded instead of retrained, an interrupted one is resumed (bit-identical
    on the CPU). So an experiment stopped half-way, or split over several processes sharing one folder, finishes
    with the numbers of one uninterrupted run. A folder holding any other run is trained over from scratch. A run
    with ``cfg.init`` is never reused: the configuration names the initial checkpoint's path, not its content.
    ``seconds`` is the training time over all the calls that made the run (NaN when not recorded).
    """
    out = Path(cfg.out)
    if reuse and cfg.init is None:
        finished = _matching_checkpoint(out / FINAL_FILE, cfg, data)
        if finished is not None:
            model, _ = load_model(out / FINAL_FILE, pick_device(cfg.device))
            return dict(finished["metrics"]), model, _recorded_seconds(out, missing=math.nan)
        cfg = dataclasses.replace(cfg, resume=_matching_checkpoint(out / RESUME_FILE, cfg, data) is not None)
    earlier = _recorded_seconds(out) if cfg.resume else 0.0
    t0 = time.perf_counter()
    quiet = contextlib.nullcontext() if progress else _silenced()
    try:
        with keep_threads(), quiet:
            metrics = train(cfg, progress=progress, data=data, raise_on_interrupt=True)
    finally:
        seconds = earlier + time.perf_counter() - t0
        if out.is_dir():
            (out / TIMING_FILE).write_text(json.dumps({"train_seconds": seconds}) + "\n")
    model, _ = load_model(out / FINAL_FILE, pick_device(cfg.device))
    return metrics, model, seconds


# configuration fields that do not change what a run computes (where it is written, threads, checkpoint cadence)
_REUSE_MAY_DIFFER = {
    "out", "resume", "device", "num_threads", "num_workers", "checkpoint_every", "stop_after_steps",
    "channels_last",  # the memory layout, not what is trained
}  # fmt: skip


def run_identity(
    cfg: TrainConfig, data: ImageDataset | None, without_folders: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What makes two runs the same run: ``cfg`` resolved as training will run it (batch size capped for a small
    set), without the fields of ``_REUSE_MAY_DIFFER``, and the description of the training images selected.
    ``without_folders`` also leaves out where the run is written and the path of its initial checkpoint (for a
    row that stays valid when its work folder moves; the caller then identifies the initial weights by content)."""
    wanted = cfg.resolved()
    train_set, _ = training_data(wanted, data)
    batch = small_set_batch_size(len(train_set), wanted.batch_size, wanted.min_epoch_steps)
    config = dataclasses.asdict(dataclasses.replace(wanted, batch_size=batch))
    dropped = {*_REUSE_MAY_DIFFER, *(("out", "init") if without_folders else ())}
    return {k: v for k, v in config.items() if k not in dropped}, train_set.describe()


def _matching_checkpoint(path: Path, cfg: TrainConfig, data: ImageDataset | None) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it exists and was trained under ``cfg`` (up to ``_REUSE_MAY_DIFFER``) on the
    training images ``cfg`` and ``data`` select (compared by their description: set, size, classes, source)."""
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError:
        return None
    config, described = run_identity(cfg, data)
    saved = ckpt.get("config", {})
    same = all(saved.get(k) == v for k, v in config.items())
    return ckpt if same and ckpt.get("dataset") == described else None


def _recorded_seconds(out: Path, missing: float = 0.0) -> float:
    """Training seconds recorded in ``out`` by earlier calls of :func:`run_training` (``missing`` when none were;
    NaN if unreadable)."""
    path = out / TIMING_FILE
    if not path.is_file():
        return missing
    try:
        return float(json.loads(path.read_text())["train_seconds"])
    except (ValueError, KeyError, TypeError):
        return math.nan


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _headless_copy(path: Path, out: Path, seed: int = 0) -> Path:
    """A copy of checkpoint ``path`` whose classification head is freshly initialised (seeded), so fine-tuning
    starts with a new head; every other weight is the checkpoint's."""
    from models.networks import create_network

    ckpt = load_checkpoint(path)
    spec = dict(ckpt["network"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = create_network(spec.pop("name"), spec.pop("num_classes"), spec.pop("width", None), **spec)
    heads = {k: v for k, v in fresh.state_dict().items() if k.startswith("head.")}
    ckpt["model"] = {k: heads.get(k, v) for k, v in ckpt["model"].items()}
    ckpt.pop("training_state", None)
    atomic_torch_save(ckpt, out)
    return out


# ----------------------------------------------------------------------------- the experiment


def transfer_table(
    zoo_or_models_with_paths: Zoo | Mapping[str, Any] | str | os.PathLike,
    targets: Sequence[str] = DEFAULT_TARGETS,
    roots: Mapping[str, str | os.PathLike] | None = None,
    epochs: float = 1.0,
    train_limit: int | None = 2000,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | os.PathLike = "runs/transfer",
    progress: bool = False,
    *,
    test_limit: int | None = None,
    preset: str = "finetune",
    lr: float | None = None,
    warmup_steps: int | None = None,
    min_steps: int = 0,
    batch_size: int = 128,
    val_size: int = 200,
    fresh_head: bool = True,
    device: str = "auto",
    variants: Sequence[str] | None = None,
    source_classes: Sequence[str] | None = None,
    threads: int | None = 1,
) -> pd.DataFrame:
    """Fine-tune every variant on every target, once per seed, and score it on the target's test split (Table 3).

    ``targets`` are registered data set names; ``roots`` maps on-disk data sets to their folders and adds each of
    them to ``targets``. A run trains ``epochs`` over the first ``train_limit`` training images (minus a seeded
    validation split of ``val_size``, used only for the per-epoch log) with ``preset`` (default "finetune": SGD,
    lr 0.01, cosine; ``lr`` and ``warmup_steps`` override it) and writes to
    ``out_dir/<target>/<variant>/seed-<seed>``.
    ``min_steps`` raises the epochs of a small target so that a run takes at least that many optimiser steps.

    ``train_limit=None`` trains on the whole training split. ``source_classes`` (the zoo's) decide each target's
    ``kind`` (``target_kind``); ``threads`` fixes torch's thread count during each run (None: leave it).

    Columns: variant, target, kind, seed, test_acc (in [0, 1]), n_train (images trained on), n_test, epochs (as
    run), train_seconds.
    """
    paths = variant_paths(zoo_or_models_with_paths)
    if variants is not None:
        paths = {v: paths[v] for v in variants}
    roots = dict(roots or {})
    all_targets = list(dict.fromkeys([*targets, *roots]))
    specs = {v: load_checkpoint(p)["network"] for v, p in paths.items()}
    settings = dict(batch_size=batch_size, preset=preset, lr=lr, warmup_steps=warmup_steps,
                    train_limit=train_limit, val_size=val_size, eval_test=False, eval_pgd_subset=0, device=device,
                    num_threads=threads)  # fmt: skip
    rows = []
    jobs = [(t, v, s) for t in all_targets for v in paths for s in seeds]
    loaded: dict[str, tuple[ImageDataset, ImageDataset]] = {}
    for done, (target, variant, seed) in enumerate(jobs, 1):
        if target not in loaded:
            loaded[target] = _target_splits(target, roots.get(target), test_limit)
        train_set, test = loaded[target]
        n_train, run_epochs = _run_size(len(train_set), train_limit, val_size, epochs, min_steps, batch_size)
        if progress:
            print(f"[transfer {done}/{len(jobs)}] {variant} -> {target}, seed {seed}", flush=True)
        rows.append(_fine_tune_and_score(paths[variant], specs[variant], target, variant, seed, out_dir, fresh_head,
                                         (train_set, test), n_train, run_epochs, source_classes, progress,
                                         settings))  # fmt: skip
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def _fine_tune_and_score(
    path: Path,
    spec: dict[str, Any],
    target: str,
    variant: str,
    seed: int,
    out_dir: str | os.PathLike,
    fresh_head: bool,
    splits: tuple[ImageDataset, ImageDataset],
    n_train: int,
    run_epochs: float,
    source_classes: Sequence[str] | None,
    progress: bool,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """One run of ``transfer_table``: fine-tune ``variant`` (checkpoint ``path``, network ``spec``) on ``target``
    with ``seed`` in ``out_dir/<target>/<variant>/seed-<seed>`` (``settings``: the TrainConfig fields shared by
    every run), and its row."""
    train_set, test = splits
    run_dir = Path(out_dir) / target / variant
    head_file = run_dir / "init-fresh-head.pt"
    cfg = TrainConfig(variant="standard", dataset=target, network=spec["name"], width=spec.get("width"),
                      epochs=run_epochs, seed=int(seed), out=str(run_dir / f"seed-{seed}"),
                      init=str(head_file if fresh_head else path), **settings)  # fmt: skip
    identity = _run_row_identity(cfg, path, fresh_head, train_set, test, source_classes)
    row = stored_row(cfg.out, identity, ROW_FILE)
    if row is not None:
        if progress:
            print(f"[transfer] {variant} -> {target}, seed {seed}: scored earlier ({Path(cfg.out) / ROW_FILE})",
                  flush=True)  # fmt: skip
        return row
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh_head:
        _headless_copy(path, head_file, seed)
    _, model, seconds = run_training(cfg, progress=progress, data=train_set)
    row = {"variant": variant, "target": target, "kind": target_kind(test.classes, source_classes),
           "seed": int(seed), "test_acc": accuracy(model, test.images, test.labels),
           "n_train": int(n_train), "n_test": len(test), "epochs": round(run_epochs, 4),
           "train_seconds": round(seconds, 2)}  # fmt: skip
    store_row(cfg.out, identity, row, ROW_FILE)
    return row


ROW_FILE = "transfer_row.json"  # a scored fine-tune's row (analysis.run_rows), kept beside or instead of its run


def _run_row_identity(
    cfg: TrainConfig,
    source: Path,
    fresh_head: bool,
    train_set: ImageDataset,
    test: ImageDataset,
    source_classes: Sequence[str] | None,
) -> dict[str, Any]:
    """What a fine-tune's stored row was computed from: the run (``run_identity``, without the folders it was
    written to, so that a moved work folder keeps its rows), the source checkpoint's bytes (a retrained zoo is
    fine-tuned again), whether the head was new, the test images and the classes that decide ``kind``."""
    config, trained_on = run_identity(cfg, train_set, without_folders=True)
    return normalised({"config": config, "trained_on": trained_on, "source_sha256": sha256_file(source),
                       "fresh_head": fresh_head, "test": test.describe(),
                       "source_classes": None if source_classes is None else list(source_classes)})  # fmt: skip


def _target_splits(
    target: str, root: str | os.PathLike | None, test_limit: int | None
) -> tuple[ImageDataset, ImageDataset]:
    """A target's training split, and its test split cut to ``test_limit`` seeded images."""
    return load_dataset(target, "train", root), seeded_subset(load_dataset(target, "test", root), test_limit)


def _run_size(
    n_images: int, train_limit: int | None, val_size: int, epochs: float, min_steps: int, batch_size: int
) -> tuple[int, float]:
    """(images trained on: the first ``train_limit`` minus the validation split, epochs to run: at least
    ``min_steps`` optimiser steps)."""
    n_train = min(train_limit or 10**12, n_images)
    n_train -= min(val_size, n_train // 5) if val_size else 0
    return n_train, max(float(epochs), min_steps / math.ceil(n_train / batch_size))


def summarise(df: pd.DataFrame, value: str = "test_acc", by: Sequence[str] = ("variant", "target")) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; NaN for a single seed) and count of ``value`` over seeds, per ``by``."""
    out = df.groupby(list(by), sort=False)[value].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": f"{value}_mean", "std": f"{value}_sd", "count": "n_seeds"})
