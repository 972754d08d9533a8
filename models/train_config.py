"""``TrainConfig``: every setting of a training run, with its help text, allowed values and checks.

Each field becomes one ``--flag`` of ``python -m models.train`` (underscores become dashes); the help, choices
and default shown by ``--help`` come from here. The resolved config is stored in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from models.errors import SettingsError
from models.objectives import VARIANTS, ObjectiveConfig

# Optimiser presets. lr schedules are pure functions of the step (see models.train.lr_at).
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's fine-tuning setting: Adam, lr 1e-5, constant.
    "paper": {"optimizer": "adam", "lr": 1e-5, "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0},
    # From scratch on a CPU: SGD + Nesterov, short warm-up, cosine decay. Converges in a few epochs.
    "scratch": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "schedule": "cosine", "warmup_steps": 100},
    # Fine-tuning a trained network to a new objective in one or two epochs.
    "finetune": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4, "schedule": "cosine", "warmup_steps": 50},
}
WARMUP_MAX_FRACTION = 0.1  # warm-up never takes more than this share of a run's steps
MIN_SHRUNK_BATCH = 16  # --min-epoch-steps never shrinks a batch below this (BatchNorm needs a few images)
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


def _opt(default: Any, help: str, choices: Collection[str] | None = None) -> Any:  # noqa: A002 - argparse's word
    """A dataclass field carrying its ``--help`` text (and allowed values) as metadata."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in each checkpoint."""

    variant: str = _opt("standard", "training objective", VARIANTS)  # a live view: later registrations count
    dataset: str = _opt("fashion-mnist-m", "data set name (see models.data); with in-memory data only a label")
    data_root: str | None = _opt(None, "folder of an on-disk data set (cifar10, imagefolder, ...)")
    cache_dir: str | None = _opt(None, "where built data sets are cached (default $SCL_CACHE_DIR or ~/.cache)")
    image_size: int | None = _opt(None, "resize images to this square size (imagefolder default 224)")
    stream: bool = _opt(False, "read an imagefolder from disk batch by batch (DataLoader workers; larger than memory)")
    num_workers: int | None = _opt(None, "data-loading worker processes with --stream (default: up to 4)")
    network: str = _opt("resnet18-cifar", "network architecture (with --init: must match the checkpoint's)")
    width: int | None = _opt(16, "base width of resnet18-cifar (with --init: must match the checkpoint's)")
    epochs: float = _opt(1.0, "epochs to train; fractions allowed (e.g. 0.5)")
    batch_size: int = _opt(128, "images per step (per process under torchrun)")
    min_epoch_steps: int = _opt(
        0, "shrink a default --batch-size when an epoch would take under half this many steps (0: never)"
    )
    preset: str = _opt("scratch", "optimiser preset filling optimizer/lr/weight-decay/schedule/warm-up", tuple(PRESETS))
    optimizer: str | None = _opt(None, "optimiser (default: from --preset)", OPTIMIZERS)
    lr: float | None = _opt(None, "peak learning rate (default: from --preset)")
    weight_decay: float | None = _opt(None, "weight decay (default: from --preset)")
    schedule: str | None = _opt(None, "learning-rate schedule after warm-up (default: from --preset)", SCHEDULES)
    warmup_steps: int | None = _opt(None, "linear warm-up steps, capped at 10%% of the run (default: from --preset)")
    augment: bool = _opt(True, "random crop (pad 2) and horizontal flip")
    alpha: float = _opt(1.0, "weight of the continuity term (C, ADV+C)")
    pgd_eps: float = _opt(8 / 255, "L-inf radius of the PGD attacks (training and evaluation)")
    pgd_step: float = _opt(2 / 255, "step size of the training attack")
    pgd_steps: int = _opt(10, "iterations of the training attack (ADV, ADV+C)")
    eval_pgd_steps: int = _opt(10, "iterations of the per-epoch validation attack (the paper's PGD-10)")
    eval_pgd_step: float = _opt(2 / 255, "step size of the per-epoch validation attack")
    eval_pgd_subset: int = _opt(500, "validation images attacked at each epoch end (0: none)")
    val_size: int = _opt(5000, "images held out of training for validation, at most a fifth (0: none)")
    train_limit: int | None = _opt(None, "use only the first N training images (quick runs, tests)")
    eval_test: bool = _opt(True, "report clean test accuracy at the end")
    seed: int = _opt(0, "seed of initialisation, data order, augmentation and attacks")
    device: str = _opt("auto", "auto (CUDA when present), cpu, cuda, cuda:N or mps")
    amp: bool = _opt(True, "bf16 autocast (CUDA only)")
    channels_last: bool | None = _opt(
        None, "channels-last memory format (default: where known safe and faster; see models.memory_format)"
    )
    checkpoint_every: int = _opt(200, "steps between resume checkpoints (also written at each epoch end)")
    out: str = _opt("runs/default", "run folder (refused when it holds a run, unless --resume or --force)")
    init: str | None = _opt(None, "checkpoint to fine-tune from; its network is used (a head may be renewed)")
    resume: bool = _opt(False, "continue the run saved in --out")
    stop_after_steps: int | None = _opt(None, "stop (saving a resume checkpoint) after this many steps: tests")
    num_threads: int | None = _opt(None, "CPU threads for torch (0 or unset: torch's default)")

    def resolved(self) -> TrainConfig:
        """A copy with preset values filled in where fields are None."""
        if self.preset not in PRESETS:
            raise SettingsError(f"--preset: unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        filled = {k: v for k, v in PRESETS[self.preset].items() if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)

    def objective(self) -> ObjectiveConfig:
        """The loss hyper-parameters of this run."""
        return ObjectiveConfig(alpha=self.alpha, pgd_eps=self.pgd_eps, pgd_step=self.pgd_step, pgd_steps=self.pgd_steps)

    def validate(self) -> None:
        """Raise SettingsError, naming the flag, for any value outside its range or choices."""
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise SettingsError(f"{_flag(f.name)}: {value!r} is not one of {', '.join(choices)}")
        rules = {
            "epochs": (lambda v: v > 0, "must be > 0"),
            "batch_size": (lambda v: v >= 1, "must be >= 1"),
            "lr": (lambda v: v > 0, "must be > 0"),
            "weight_decay": (lambda v: v >= 0, "must be >= 0"),
            "warmup_steps": (lambda v: v >= 0, "must be >= 0"),
            "alpha": (lambda v: v >= 0, "must be >= 0"),
            "pgd_eps": (lambda v: v >= 0, "must be >= 0"),
            "pgd_step": (lambda v: v > 0, "must be > 0"),
            "pgd_steps": (lambda v: v >= 1, "must be >= 1"),
            "eval_pgd_steps": (lambda v: v >= 1, "must be >= 1"),
            "eval_pgd_step": (lambda v: v > 0, "must be > 0"),
            "eval_pgd_subset": (lambda v: v >= 0, "must be >= 0"),
            "val_size": (lambda v: v >= 0, "must be >= 0"),
            "train_limit": (lambda v: v >= 2, "must be >= 2"),
            "image_size": (lambda v: v >= 8, "must be >= 8"),
            "width": (lambda v: v >= 1, "must be >= 1"),
            "checkpoint_every": (lambda v: v >= 1, "must be >= 1"),
            "stop_after_steps": (lambda v: v >= 1, "must be >= 1"),
            "num_threads": (lambda v: v >= 0, "must be >= 0"),
            "num_workers": (lambda v: v >= 0, "must be >= 0"),
            "min_epoch_steps": (lambda v: v >= 0, "must be >= 0"),
        }
        for name, (ok, rule) in rules.items():
            value = getattr(self, name)
            if value is not None and not ok(value):
                raise SettingsError(f"{_flag(name)} {value!r}: {rule}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def small_set_batch_size(n: int, batch_size: int, min_epoch_steps: int, world_size: int = 1) -> int:
    """The batch size for ``n`` training images: ``batch_size``, unless an epoch would take fewer than half of
    ``min_epoch_steps`` steps; then the largest power of two (at least ``MIN_SHRUNK_BATCH``) giving that many.

    A preset's learning rate and warm-up are tuned for runs of hundreds of steps: 1,150 digits at batch 128 make 9
    steps per epoch, too few for one epoch to learn; at batch 16 (72 steps) it does.
    """
    if min_epoch_steps <= 0 or 2 * math.ceil(n / (batch_size * world_size)) >= min_epoch_steps:
        return batch_size
    fitting = 2 ** math.floor(math.log2(max(1.0, n / (min_epoch_steps * world_size))))
    return min(batch_size, max(MIN_SHRUNK_BATCH, fitting))


def warmup_steps(total_steps: int, cfg: TrainConfig) -> int:
    """The warm-up actually used: ``cfg.warmup_steps``, capped at 10% of the run (short runs still learn)."""
    return min(cfg.warmup_steps or 0, int(WARMUP_MAX_FRACTION * total_steps))


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up, then constant or cosine decay to 0."""
    warm = warmup_steps(total_steps, cfg)
    if warm and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(1, total_steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD with Nesterov momentum 0.9, at ``cfg.lr`` and ``cfg.weight_decay``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


_RESUME_MAY_DIFFER = {
    "channels_last",  # the layout, not what is trained (a resume without the flag keeps the saved one)
    "resume",
    "init",
    "epochs",
    "device",
    "stop_after_steps",
    "num_threads",
    "num_workers",
    "min_epoch_steps",
    "out",
    "checkpoint_every",
}


def check_resume_compatible(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse to resume a run under a config that would change what is being trained."""
    diffs = [
        f"{k}: saved {saved.get(k)!r} vs now {v!r}"
        for k, v in asdict(cfg).items()
        if k not in _RESUME_MAY_DIFFER and k in saved and saved[k] != v
    ]
    if diffs:
        raise SettingsError("--resume with a different configuration: " + "; ".join(diffs))
