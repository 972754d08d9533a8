"""Train one variant: ``python -m models.train --variant C --dataset fashion-mnist-m --epochs 6``.

One readable loop (nanoGPT style): a ``TrainConfig`` dataclass, saved in every
checkpoint; the data held in memory as tensors; a learning rate that is a pure
function of the step (so resume needs no scheduler state); atomic checkpoints
every ``checkpoint_every`` steps and at each epoch end; Ctrl-C or SIGTERM saves
and exits, and ``--resume`` continues bit-identically on the CPU.

Several processes: ``torchrun --nproc_per_node N -m models.train ...`` runs
DistributedDataParallel (NCCL on GPUs, gloo on CPUs); rank 0 evaluates and writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from models.checkpoints import atomic_torch_save, load_checkpoint, make_checkpoint, network_spec
from models.data import ImageDataset, load_dataset
from models.evaluation import accuracy, pgd_accuracy
from models.networks import create_network, unwrap_model
from models.objectives import ADVERSARIAL_VARIANTS, ObjectiveConfig, get_objective

RESUME_FILE = "checkpoint.pt"  # latest state, with optimiser and RNG, for --resume
FINAL_FILE = "model.pt"  # weights + card only, written when training completes

# Optimiser presets. lr schedules are pure functions of the step (see lr_at).
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's fine-tuning setting: Adam, lr 1e-5, constant.
    "paper": {"optimizer": "adam", "lr": 1e-5, "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0},
    # From scratch on a CPU: SGD + Nesterov, short warm-up, cosine decay. Converges in a few epochs.
    "scratch": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "schedule": "cosine", "warmup_steps": 100},
    # Fine-tuning a trained network to a new objective in one or two epochs.
    "finetune": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4, "schedule": "cosine", "warmup_steps": 50},
}


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in each checkpoint."""

    variant: str = "standard"
    dataset: str = "fashion-mnist-m"
    data_root: str | None = None  # for on-disk data sets (cifar10, imagefolder, ...)
    cache_dir: str | None = None  # where built data sets are cached
    image_size: int | None = None  # resize (imagefolder default 224)
    network: str = "resnet18-cifar"
    width: int = 16
    epochs: float = 1.0  # fractional epochs allowed (e.g. 0.5)
    batch_size: int = 128
    preset: str = "scratch"
    optimizer: str | None = None  # None: from preset
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None  # constant | cosine
    warmup_steps: int | None = None
    augment: bool = True  # random crop (pad 2) + horizontal flip
    alpha: float = 1.0
    pgd_eps: float = 8 / 255
    pgd_step: float = 2 / 255
    pgd_steps: int = 10  # training attack iterations
    eval_pgd_steps: int = 10  # evaluation attack: the paper's PGD-10
    eval_pgd_step: float = 2 / 255
    eval_pgd_subset: int = 500  # images of the validation split attacked at each epoch end
    val_size: int = 5000  # held out of training for model selection (0: none)
    train_limit: int | None = None  # use only this many training images (quick runs, tests)
    eval_test: bool = True  # report clean test accuracy at the end
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True
    checkpoint_every: int = 200  # steps between resume checkpoints (and each epoch end)
    out: str = "runs/default"
    init: str | None = None  # checkpoint to start from (fine-tuning)
    resume: bool = False
    stop_after_steps: int | None = None  # stop (saving a resume checkpoint) after this many steps: tests
    num_threads: int | None = None  # torch CPU threads (None: torch default)

    def resolved(self) -> TrainConfig:
        """A copy with preset values filled in where fields are None."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        filled = {k: v for k, v in PRESETS[self.preset].items() if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)

    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(alpha=self.alpha, pgd_eps=self.pgd_eps, pgd_step=self.pgd_step, pgd_steps=self.pgd_steps)


# ---------------------------------------------------------------- set-up helpers


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join a torchrun process group if WORLD_SIZE > 1 (NCCL on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def split_train_val(data: ImageDataset, val_size: int, seed: int) -> tuple[ImageDataset, ImageDataset | None]:
    """Carve a seeded validation split out of the training set (never the test set)."""
    if val_size <= 0:
        return data, None
    if val_size >= len(data):
        raise ValueError(f"val_size {val_size} >= training set size {len(data)}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7919))
    return data.subset(perm[val_size:].sort().values), data.subset(perm[:val_size].sort().values)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up, then constant or cosine decay to 0."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - (cfg.warmup_steps or 0)) / max(1, total_steps - (cfg.warmup_steps or 0))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam | sgd)")


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Per-sample random crop (reflect-padded by ``pad``) and horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
    flips = torch.rand(n, generator=gen) < 0.5
    out = torch.stack([padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets)])
    return torch.where(flips.view(-1, 1, 1, 1).to(x.device), out.flip(3), out)


def load_init_weights(model: nn.Module, path: str) -> list[str]:
    """Copy weights from a checkpoint; layers whose shape differs (a new head) keep their init.

    Returns the names of the parameters that were not copied.
    """
    src = load_checkpoint(path)["model"]
    own = model.state_dict()
    kept = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(kept))
    own.update(kept)
    model.load_state_dict(own)
    return skipped


class _Stop(Exception):
    """Raised by the SIGTERM handler so the loop can save and exit cleanly."""


def _raise_stop(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_deferred(reraise: bool = True) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a checkpoint is written, so a Ctrl-C never tears a save in half.

    A signal that arrives meanwhile is remembered and, with ``reraise``, raised as ``_Stop`` once the write is
    done (the loop then saves again and exits). Outside the main thread (where handlers cannot be set) it does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending and reraise:
        raise _Stop(signal.Signals(pending[0]).name)


# ---------------------------------------------------------------- the loop


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one variant; returns the final metrics. Writes into ``cfg.out``."""
    cfg = cfg.resolved()
    get_objective(cfg.variant)  # fail fast on a bad variant name
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    dist_info = init_distributed(device)
    if device.type == "cuda" and dist_info.world_size > 1:
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    resume_path = out / RESUME_FILE

    full = load_dataset(cfg.dataset, "train", cfg.data_root, cache_dir=cfg.cache_dir, seed=0, image_size=cfg.image_size)
    if cfg.train_limit:
        full = full.subset(torch.arange(min(cfg.train_limit, len(full))))
    train_set, val_set = split_train_val(full, min(cfg.val_size, len(full) // 5) if cfg.val_size else 0, cfg.seed)

    torch.manual_seed(cfg.seed)
    model = create_network(cfg.network, full.num_classes, width=cfg.width)
    init_skipped: list[str] = []
    if cfg.init and not cfg.resume:
        init_skipped = load_init_weights(model, cfg.init)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)

    steps_per_epoch = math.ceil(len(train_set) / (cfg.batch_size * dist_info.world_size))
    total_steps = max(1, round(cfg.epochs * steps_per_epoch))
    step, history, perm = 0, [], None
    if cfg.resume:
        if not resume_path.is_file():
            raise FileNotFoundError(f"--resume: no {RESUME_FILE} in {out}; start without --resume")
        ckpt = load_checkpoint(resume_path)
        _check_resume_compatible(ckpt["config"], cfg)
        unwrap_model(model).load_state_dict(ckpt["model"])
        ts = ckpt["training_state"]
        optimizer.load_state_dict(ts["optimizer"])
        gen.set_state(ts["generator"])
        torch.set_rng_state(ts["torch_rng"])
        step, history, perm = ts["step"], list(ts["history"]), ts["perm"]

    if dist_info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = get_objective(cfg.variant)
    objective = cfg.objective()
    use_amp = cfg.amp and device.type == "cuda"

    def save(final_metrics: dict[str, Any] | None = None, stopping: bool = False) -> None:
        """Write the resume checkpoint, or with ``final_metrics`` the finished model.

        Signals wait until the file is written; when already ``stopping`` (or finishing) they are dropped.
        """
        if not dist_info.is_main:
            return
        final = final_metrics is not None
        state = {
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "perm": perm,
            "history": history,
        }
        metrics = final_metrics if final else (history[-1] if history else {})
        ckpt = make_checkpoint(
            model,
            variant=cfg.variant,
            network=network_spec(cfg.network, full.num_classes, cfg.width),
            config=asdict(cfg),
            dataset=full.describe(),
            metrics={**metrics, "history": history} if final else metrics,
            training_state=None if final else state,
        )
        with _signals_deferred(reraise=not (stopping or final)):
            atomic_torch_save(ckpt, out / (FINAL_FILE if final else RESUME_FILE))

    def evaluate(epoch: float) -> dict[str, Any]:
        bare = unwrap_model(model)
        eval_set = val_set or train_set
        row: dict[str, Any] = {
            "epoch": round(epoch, 3),
            "step": step,
            "val_clean_acc": accuracy(bare, eval_set.images, eval_set.labels),
        }
        if cfg.variant in ADVERSARIAL_VARIANTS and cfg.eval_pgd_subset:
            sub = eval_set.subset(torch.arange(min(cfg.eval_pgd_subset, len(eval_set))))
            row["val_pgd_acc"] = pgd_accuracy(
                bare,
                sub.images,
                sub.labels,
                eps=cfg.pgd_eps,
                step_size=cfg.eval_pgd_step,
                steps=cfg.eval_pgd_steps,
                seed=cfg.seed,
            )
        return row

    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        if init_skipped:
            print(f"--init {cfg.init}: kept fresh initialisation for {', '.join(init_skipped)}", file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not (progress and dist_info.is_main),
        unit="step",
        desc=f"{cfg.variant} {cfg.dataset}",
        dynamic_ncols=True,
    )
    model.train()
    t0, seen, interrupted = time.perf_counter(), 0, None
    try:
        while step < total_steps:
            pos = step % steps_per_epoch
            if pos == 0:
                perm = torch.randperm(len(train_set), generator=gen)
            lo = (pos * dist_info.world_size + dist_info.rank) * cfg.batch_size
            idx = perm[lo : lo + cfg.batch_size]
            x = train_set.images[idx]
            y = train_set.labels[idx]
            if cfg.augment:
                x = augment_batch(x, gen)
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                result = loss_fn(model, x, y, objective, generator=gen)
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            optimizer.step()
            step += 1
            seen += len(y) * dist_info.world_size
            acc = (result.logits.argmax(1) == y).float().mean().item()
            bar.update(1)
            bar.set_postfix(
                loss=f"{result.loss.item():.3f}", acc=f"{acc:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}"
            )
            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            if epoch_end and dist_info.is_main:
                row = evaluate(step / steps_per_epoch)
                row["train_loss"] = round(result.loss.item(), 5)
                row["images_per_s"] = round(seen / (time.perf_counter() - t0), 1)
                history.append(row)
                bar.write(json.dumps(row))
            if epoch_end or step % cfg.checkpoint_every == 0:
                save()
            if cfg.stop_after_steps and step >= cfg.stop_after_steps and step < total_steps:
                raise _Stop("stop_after_steps")
    except (KeyboardInterrupt, _Stop) as exc:
        interrupted = exc
        save(stopping=True)
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    if interrupted is not None:
        if dist_info.is_main:
            print(
                f"\ninterrupted at step {step}/{total_steps}; state saved to {resume_path}. "
                f"Continue with the same command plus --resume.",
                file=sys.stderr,
            )
        if dist_info.world_size > 1:
            dist.destroy_process_group()
        return {"interrupted": True, "step": step}

    metrics = dict(history[-1]) if history else {}
    if dist_info.is_main and cfg.eval_test:
        test = load_dataset(
            cfg.dataset, "test", cfg.data_root, cache_dir=cfg.cache_dir, seed=0, image_size=cfg.image_size
        )
        metrics["test_clean_acc"] = accuracy(unwrap_model(model), test.images, test.labels)
    if dist_info.is_main:
        save(final_metrics=metrics)
        save()
        print(json.dumps({"final": metrics}))
    if dist_info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


_RESUME_MAY_DIFFER = {
    "resume",
    "init",
    "epochs",
    "device",
    "stop_after_steps",
    "num_threads",
    "out",
    "checkpoint_every",
}


def _check_resume_compatible(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse to resume a run under a config that would change what is being trained."""
    diffs = [
        f"{k}: saved {saved.get(k)!r} vs now {v!r}"
        for k, v in asdict(cfg).items()
        if k not in _RESUME_MAY_DIFFER and k in saved and saved[k] != v
    ]
    if diffs:
        raise ValueError("--resume with a different configuration: " + "; ".join(diffs))


# ---------------------------------------------------------------- CLI


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One --flag per TrainConfig field (underscores become dashes)."""
    parser = argparse.ArgumentParser(
        prog="python -m models.train",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    casts = {"int": int, "float": float, "str": str, "bool": _parse_bool}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        type_name = str(f.type).replace(" | None", "")
        if f.name == "resume":
            parser.add_argument(flag, action="store_true", help="continue the run saved in --out")
            continue
        parser.add_argument(flag, type=casts.get(type_name, str), default=default, metavar=type_name.upper())
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def config_from_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    args = vars(build_parser().parse_args(argv))
    progress = not args.pop("no_progress")
    return TrainConfig(**args), progress


def main(argv: list[str] | None = None) -> int:
    cfg, progress = config_from_args(argv)
    try:
        result = train(cfg, progress=progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
