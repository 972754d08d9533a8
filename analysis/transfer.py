"""Transfer (paper 4.6, Table 3): fine-tune each trained variant on a target data set and report its test accuracy.

The paper fine-tunes its four CIFAR-100 ResNet18s on CIFAR-10, SVHN and MNIST and finds the continuity-constrained
ones a little more accurate. Here each variant's checkpoint initialises ``models.train.train`` on the target's
training split (``variant="standard"``: plain cross-entropy, every layer trained); the classification head is
re-initialised (``fresh_head=True``, the usual transfer practice; with ``fresh_head=False`` it is kept when the
class counts agree, and re-initialised by ``models.train.load_init_weights`` when they differ). The fine-tuned
network is then scored on the target's test split (the first ``test_limit`` images of a seeded permutation, or
all of them).

Built-in targets need no files (``digits``, ``fashion-mnist``); on-disk ones are named through ``roots``
(``{"cifar10": "/data/cifar"}``, ``{"svhn": ...}``, ``{"mnist": ...}``), and every name in ``roots`` is a target.

Each target's splits are loaded once per call (``registered_dataset`` + ``memo_loader``: the training runs read the
in-memory copy through a temporary alias in ``models.data.DATASETS``, removed again when the call returns).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from models.checkpoints import (
    ZOO_MANIFEST,
    Zoo,
    ZooEntry,
    atomic_torch_save,
    load_checkpoint,
    load_model,
    read_zoo_manifest,
)
from models.data import DATASETS, ImageDataset, load_dataset
from models.evaluation import accuracy
from models.train import FINAL_FILE, TrainConfig, pick_device, train

TRANSFER_COLUMNS = ["variant", "target", "seed", "test_acc", "n_train", "n_test", "epochs", "train_seconds"]
DEFAULT_TARGETS: tuple[str, ...] = ("digits", "fashion-mnist")

_REGISTRY_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- shared helpers (fairness, report)


def variant_paths(source: Zoo | Mapping[str, Any] | str | os.PathLike) -> dict[str, Path]:
    """Checkpoint path of each variant, from a loaded ``Zoo``, a zoo folder, or a mapping variant -> path/ZooEntry."""
    if isinstance(source, Zoo):
        return {v: Path(e.path) for v, e in source.entries.items()}
    if isinstance(source, Mapping):
        return {v: Path(p.path if isinstance(p, ZooEntry) else p) for v, p in source.items()}
    folder = Path(source)
    if (folder / ZOO_MANIFEST).is_file():
        return {v: folder / item["file"] for v, item in read_zoo_manifest(folder)["variants"].items()}
    raise TypeError(f"expected a Zoo, a zoo folder or a mapping variant -> checkpoint path, got {source!r}")


def memo_loader(
    base: str | Callable[..., ImageDataset],
    root: str | os.PathLike | None = None,
    limits: Mapping[str, int | None] | None = None,
    **kwargs: Any,
) -> Callable[..., ImageDataset]:
    """A loader for ``models.data.DATASETS`` that loads each split once and then serves it from memory.

    ``base`` is a registered data set name or a function ``(split, root, **kwargs) -> ImageDataset``; ``limits``
    maps a split to the number of images kept (the first n); ``kwargs`` go to the base loader (e.g.
    ``source="digits"`` for colour-bias). The returned loader ignores the keyword arguments ``load_dataset`` adds
    (cache_dir, seed, image_size): the data are whatever the first call loaded.
    """
    cache: dict[str, ImageDataset] = {}
    limits = dict(limits or {})

    def loader(split: str = "train", _root: Any = None, **_: Any) -> ImageDataset:
        if split not in cache:
            fn = DATASETS[base] if isinstance(base, str) else base
            data = fn(split, root, **kwargs)
            n = limits.get(split)
            cache[split] = data if not n or n >= len(data) else data.subset(torch.arange(n))
        return cache[split]

    return loader


@contextlib.contextmanager
def registered_dataset(name: str, loader: Callable[..., ImageDataset]) -> Iterator[str]:
    """Register ``loader`` as data set ``name`` for the duration of the block (so ``train`` can load it by name),
    then remove it: the registry other code iterates over is left as it was."""
    with _REGISTRY_LOCK:
        if name in DATASETS:
            raise ValueError(f"data set name {name!r} is already registered")
        DATASETS[name] = loader
    try:
        yield name
    finally:
        with _REGISTRY_LOCK:
            DATASETS.pop(name, None)


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


def run_training(cfg: TrainConfig, progress: bool = False) -> tuple[dict[str, Any], torch.nn.Module, float]:
    """``train(cfg)``, then load the finished model; returns (metrics, model in eval mode, seconds).

    Without ``progress`` the training loop's own printing (per-epoch JSON lines, the --init notice) is swallowed.
    """
    t0 = time.perf_counter()
    quiet = contextlib.nullcontext() if progress else _silenced()
    with keep_threads(), quiet:
        metrics = train(cfg, progress=progress)
    seconds = time.perf_counter() - t0
    if metrics.get("interrupted"):
        raise RuntimeError(f"training in {cfg.out} was interrupted")
    model, _ = load_model(Path(cfg.out) / FINAL_FILE, pick_device(cfg.device))
    return metrics, model, seconds


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _headless_copy(path: Path, out: Path) -> Path:
    """A copy of checkpoint ``path`` without the classification head, so fine-tuning starts with a fresh head."""
    ckpt = load_checkpoint(path)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("head.")}
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
) -> pd.DataFrame:
    """Fine-tune every variant on every target, once per seed, and score it on the target's test split (Table 3).

    ``targets`` are registered data set names; ``roots`` maps on-disk data sets to their folders and adds each of
    them to ``targets``. A run trains ``epochs`` over the first ``train_limit`` training images (minus a seeded
    validation split of ``val_size``, used only for the per-epoch log) with ``preset`` (default "finetune": SGD,
    lr 0.01, cosine; ``lr`` and ``warmup_steps`` override it) and writes to
    ``out_dir/<target>/<variant>/seed-<seed>``.
    ``min_steps`` raises the epochs of a small target so that a run takes at least that many optimiser steps.

    Columns: variant, target, seed, test_acc (in [0, 1]), n_train (images trained on), n_test, epochs (as run),
    train_seconds.
    """
    paths = variant_paths(zoo_or_models_with_paths)
    if variants is not None:
        paths = {v: paths[v] for v in variants}
    roots = dict(roots or {})
    all_targets = list(dict.fromkeys([*targets, *roots]))
    out_dir = Path(out_dir)
    specs = {v: load_checkpoint(p)["network"] for v, p in paths.items()}
    rows = []
    total = len(all_targets) * len(paths) * len(seeds)
    done = 0
    for target in all_targets:
        root = roots.get(target)
        test = seeded_subset(load_dataset(target, "test", root), test_limit)
        alias = f"{target}@transfer-{os.getpid()}-{id(rows)}"
        with registered_dataset(alias, memo_loader(target, root)):
            n_train = min(train_limit or 10**12, len(DATASETS[alias]("train")))
            n_train -= min(val_size, n_train // 5) if val_size else 0
            run_epochs = max(float(epochs), min_steps / math.ceil(n_train / batch_size))
            for variant, path in paths.items():
                init = path
                if fresh_head:
                    (out_dir / target / variant).mkdir(parents=True, exist_ok=True)
                    init = _headless_copy(path, out_dir / target / variant / "init-without-head.pt")
                for seed in seeds:
                    done += 1
                    if progress:
                        print(f"[transfer {done}/{total}] {variant} -> {target}, seed {seed}", flush=True)
                    cfg = TrainConfig(
                        variant="standard",
                        dataset=alias,
                        network=specs[variant]["name"],
                        width=specs[variant].get("width"),
                        epochs=run_epochs,
                        batch_size=batch_size,
                        preset=preset,
                        lr=lr,
                        warmup_steps=warmup_steps,
                        train_limit=train_limit,
                        val_size=val_size,
                        eval_test=False,
                        eval_pgd_subset=0,
                        seed=int(seed),
                        device=device,
                        out=str(out_dir / target / variant / f"seed-{seed}"),
                        init=str(init),
                    )
                    metrics, model, seconds = run_training(cfg, progress=progress)
                    rows.append(
                        {
                            "variant": variant,
                            "target": target,
                            "seed": int(seed),
                            "test_acc": accuracy(model, test.images, test.labels),
                            "n_train": int(n_train),
                            "n_test": len(test),
                            "epochs": round(run_epochs, 4),
                            "train_seconds": round(seconds, 2),
                        }
                    )
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def summarise(df: pd.DataFrame, value: str = "test_acc", by: Sequence[str] = ("variant", "target")) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; NaN for a single seed) and count of ``value`` over seeds, per ``by``."""
    out = df.groupby(list(by), sort=False)[value].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": f"{value}_mean", "std": f"{value}_sd", "count": "n_seeds"})
