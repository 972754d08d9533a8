"""Train one variant: ``python -m models.train --variant C --dataset fashion-mnist-m --epochs 6``.

One readable loop (nanoGPT style): a ``TrainConfig`` dataclass, saved in every checkpoint; the data held in
memory as tensors, or with ``--stream`` an image folder read from disk batch by batch (``models.batches``); a learning
rate that is a pure function of the step (so resume needs no scheduler state);
atomic checkpoints every ``checkpoint_every`` steps and at each epoch end. Ctrl-C or SIGTERM only *requests* a
stop: the loop saves at the next step boundary and exits, and ``--resume`` continues bit-identically on the CPU.
Setting a run up (settings, checkpoints, data, model, optimiser: the ``Run``) is in ``models.train_setup``.

Several processes: ``torchrun --nproc_per_node N -m models.train ...`` runs DistributedDataParallel (NCCL on
GPUs, gloo on CPUs); rank 0 evaluates and writes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from models.batches import (
    augment_batch,
    clean_accuracy,
    is_streamed,
    recalibrate_batchnorm,
    robust_accuracy,
    split_train_val,
    streamed_epoch,
)
from models.checkpoints import atomic_torch_save, make_checkpoint, network_spec
from models.devices import DistInfo, init_distributed, pick_device
from models.memory_format import memory_format
from models.networks import unwrap_model
from models.objectives import ADVERSARIAL_VARIANTS, LossOutput, get_objective
from models.runs import (
    CONFIG_FILE,
    FINAL_FILE,
    RESUME_FILE,
    TrainingInterrupted,
    _Stop,
    holds_run_lock,
    signals_deferred,
)
from models.train_config import PRESETS, TrainConfig, lr_at, warmup_steps
from models.train_setup import Run, TrainData, load_init_weights, load_split, restore, setup_run

# Re-exported for existing importers: FINAL_FILE, RESUME_FILE, pick_device, DistInfo, init_distributed, PRESETS,
# _Stop and _signals_deferred now live in models.runs, models.devices and models.train_config; split_train_val,
# augment_batch and recalibrate_batchnorm in models.batches; load_init_weights in models.train_setup.
_signals_deferred = signals_deferred
REEXPORTED = (FINAL_FILE, PRESETS, DistInfo, init_distributed, pick_device, _Stop, lr_at, warmup_steps,
              split_train_val, augment_batch, recalibrate_batchnorm, load_init_weights)  # fmt: skip

CHANCE_MARGIN = 0.05  # a run ending within this many points (as a fraction) of chance is flagged


def next_batch(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's next training batch. In memory: a slice of a permutation drawn from ``run.gen`` at each epoch
    start. Streamed: the next batch of the epoch's loader, which (re)starts at an epoch start or after a resume."""
    cfg, pos = run.cfg, run.step % run.steps_per_epoch
    if is_streamed(run.train_set):
        if pos == 0 or run.batches is None:
            run.batches = streamed_epoch(
                run.train_set, cfg.batch_size, seed=cfg.seed, epoch=run.step // run.steps_per_epoch, start=pos,
                rank=run.dist.rank, world_size=run.dist.world_size, device=run.device, num_workers=cfg.num_workers,
            )  # fmt: skip
        return next(run.batches)
    if pos == 0:
        run.perm = torch.randperm(len(run.train_set), generator=run.gen)
    lo = (pos * run.dist.world_size + run.dist.rank) * cfg.batch_size
    idx = run.perm[lo : lo + cfg.batch_size]
    return run.train_set.images[idx], run.train_set.labels[idx]


def train_step(run: Run) -> LossOutput:
    """One optimiser step on the next batch."""
    cfg = run.cfg
    x, y = next_batch(run)
    if cfg.augment:
        x = augment_batch(x, run.gen)
    x = x.to(run.device, non_blocking=True).contiguous(memory_format=memory_format(bool(cfg.channels_last)))
    y = y.to(run.device, non_blocking=True)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, run.total_steps, cfg)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=cfg.amp and run.device.type == "cuda"):
        result = get_objective(cfg.variant)(run.model, x, y, cfg.objective(), generator=run.gen)
    run.optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    run.optimizer.step()
    run.step += 1
    run.seen += len(y) * run.dist.world_size
    result.stats["acc"] = (result.logits.argmax(1) == y).float().mean().item()
    return result


def evaluate(run: Run) -> dict[str, Any]:
    """Validation row for the history: clean accuracy, and PGD accuracy on a subset for adversarial variants."""
    cfg, bare = run.cfg, unwrap_model(run.model)
    eval_set = run.val_set if run.val_set is not None else run.train_set
    row: dict[str, Any] = {
        "epoch": round(run.step / run.steps_per_epoch, 3),
        "step": run.step,
        "val_clean_acc": clean_accuracy(bare, eval_set, cfg.num_workers),
    }
    if cfg.variant in ADVERSARIAL_VARIANTS and cfg.eval_pgd_subset:
        sub = eval_set.subset(torch.arange(min(cfg.eval_pgd_subset, len(eval_set))))
        attack = {"eps": cfg.pgd_eps, "step_size": cfg.eval_pgd_step, "steps": cfg.eval_pgd_steps, "seed": cfg.seed}
        row["val_pgd_acc"] = robust_accuracy(bare, sub, num_workers=cfg.num_workers, **attack)
    return row


def save(run: Run, final_metrics: dict[str, Any] | None = None) -> None:
    """Write the resume checkpoint (the state at this step boundary), or with ``final_metrics`` the finished model.

    Only rank 0 writes. A stop signal during the write waits until the file is complete, then requests a stop.
    """
    if not run.dist.is_main:
        return
    final = final_metrics is not None
    state = {
        "optimizer": run.optimizer.state_dict(),
        "generator": run.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": run.step,
        "perm": run.perm,
        "history": run.history,
    }
    metrics = final_metrics if final else (run.history[-1] if run.history else {})
    ckpt = make_checkpoint(
        run.model,
        variant=run.cfg.variant,
        network=network_spec(run.cfg.network, run.num_classes, run.cfg.width, **run.network_options),
        config=asdict(run.cfg),
        dataset=run.data_info,
        metrics={**metrics, "history": run.history} if final else metrics,
        training_state=None if final else state,
    )
    with signals_deferred(reraise=False) as pending:
        atomic_torch_save(ckpt, run.out / (FINAL_FILE if final else RESUME_FILE))
    for signum in pending:
        run.stop.request_signal(signum)


def _stop_requested(run: Run) -> bool:
    """True on every rank when any rank was asked to stop (checked between steps only)."""
    flag = bool(run.stop)
    if run.dist.world_size > 1:
        t = torch.tensor([float(flag)], device=run.device if run.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flag = bool(t.item())
    return flag


def _loop(run: Run, progress: bool) -> bool:
    """Train until the last step or a stop request; returns True when stopped early (state saved)."""
    cfg = run.cfg
    bar = tqdm(
        total=run.total_steps,
        initial=run.step,
        disable=not (progress and run.dist.is_main),
        unit="step",
        desc=f"{cfg.variant} {cfg.dataset}",
        dynamic_ncols=True,
    )
    saved_at, run.t0 = None, time.perf_counter()
    try:
        while run.step < run.total_steps and not _stop_requested(run):
            result = train_step(run)
            img_s = run.seen / (time.perf_counter() - run.t0)
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss.item():.3f}", acc=f"{result.stats['acc']:.3f}", img_s=f"{img_s:.0f}")
            epoch_end = run.step % run.steps_per_epoch == 0 or run.step == run.total_steps
            if epoch_end and run.dist.is_main:
                row = {**evaluate(run), "train_loss": round(result.loss.item(), 5), "images_per_s": round(img_s, 1)}
                run.history.append(row)
                bar.write(json.dumps(row))
            if epoch_end or run.step % cfg.checkpoint_every == 0:
                save(run)
                saved_at = run.step
            if cfg.stop_after_steps and cfg.stop_after_steps <= run.step < run.total_steps:
                run.stop.request("stop_after_steps")
    finally:
        bar.close()
    if run.step < run.total_steps:
        if saved_at != run.step:
            save(run)
        return True
    return False


def finish(run: Run) -> dict[str, Any]:
    """Precise BatchNorm statistics, test accuracy (data loaded by name only), the final model file, and a
    warning near chance level."""
    cfg = run.cfg
    if run.dist.is_main:
        recalibrate_batchnorm(unwrap_model(run.model), run.train_set, cfg.batch_size, num_workers=cfg.num_workers)
        if run.history:
            run.history[-1].update(evaluate(run), step=run.step)
    metrics = dict(run.history[-1]) if run.history else {}
    if run.dist.is_main and cfg.eval_test and not run.in_memory:
        metrics["test_clean_acc"] = clean_accuracy(unwrap_model(run.model), load_split(cfg, "test"), cfg.num_workers)
    if run.dist.is_main:
        acc_key = "test_clean_acc" if "test_clean_acc" in metrics else "val_clean_acc"
        chance = 1 / run.num_classes
        if acc_key in metrics and metrics[acc_key] < chance + CHANCE_MARGIN:
            metrics["near_chance"] = True
            print(
                f"warning: {acc_key} {100 * metrics[acc_key]:.1f}% is within {100 * CHANCE_MARGIN:.0f} points of "
                f"chance ({100 * chance:.1f}%): this model has barely learned",
                file=sys.stderr,
            )
        save(run, final_metrics=metrics)
        save(run)
        print(json.dumps({"final": metrics}))
    if run.dist.world_size > 1:
        dist.barrier()
    return metrics


@holds_run_lock  # one process at a time writes cfg.out
def train(
    cfg: TrainConfig, progress: bool = True, data: TrainData | None = None, raise_on_interrupt: bool = False
) -> dict[str, Any]:
    """Train (or resume) one variant into ``cfg.out``; returns the final metrics.

    ``data``: the training data instead of ``cfg.dataset`` by name, either one ImageDataset or StreamingImageFolder
    (limited by ``train_limit`` and split by ``val_size`` as usual) or a ready ``(train, val)`` pair (val may be None:
    the history then reports training accuracy); no test split is evaluated then. ``cfg.dataset`` only labels the
    run. A StreamingImageFolder (given, or loaded by name with ``cfg.stream``) is trained and evaluated batch by batch
    from disk; in memory nothing changes.

    SIGINT/SIGTERM stop the run at the next step boundary after saving; it then returns
    ``{"interrupted": True, "step": ...}``, or with ``raise_on_interrupt`` raises :class:`TrainingInterrupted`
    (a KeyboardInterrupt, so an ``except Exception`` in the caller does not swallow it). This function writes into
    ``cfg.out`` whatever it holds; the command line refuses a folder holding a run (see models.runs.claim_out).
    """
    run, resume_ckpt = setup_run(cfg, data)
    if resume_ckpt is not None:
        restore(run, resume_ckpt)
    if run.dist.world_size > 1:
        ids = [run.device.index] if run.device.type == "cuda" else None
        run.model = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
    if run.dist.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / CONFIG_FILE).write_text(json.dumps(asdict(run.cfg), indent=2) + "\n")
    run.model.train()
    try:
        with run.stop.installed():
            stopped = _loop(run, progress)
            metrics = None if stopped else finish(run)
    finally:
        run.batches = None  # a streamed epoch's loader: its worker processes end
        if run.dist.world_size > 1:
            dist.destroy_process_group()
    if stopped:
        if run.dist.is_main:  # with raise_on_interrupt the caller (train_zoo, the report) says how to go on
            hint = "" if raise_on_interrupt else " Continue with the same command plus --resume."
            print(
                f"\nstopped ({run.stop.reason}) at step {run.step}/{run.total_steps}, a step boundary; state "
                f"saved to {run.out / RESUME_FILE}.{hint}",
                file=sys.stderr,
            )
        if raise_on_interrupt:
            raise TrainingInterrupted(run.out, run.step)
        return {"interrupted": True, "step": run.step}
    return metrics


if __name__ == "__main__":  # python -m models.train; the command line (scl-train) is models.train_cli
    from models.train_cli import main

    sys.exit(main())
