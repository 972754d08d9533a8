"""Batches for training and evaluation, from data in memory or streamed from an image folder.

In memory (:class:`~models.data.ImageDataset`) a batch is a slice of one tensor. A streamed split
(:class:`~models.datasets.StreamingImageFolder`, ``--stream``) never exists as one tensor: its batches come from
:func:`~models.datasets.make_loader` (worker processes, pinned memory on CUDA), in an order that is a pure function of
the run's seed and the epoch (:func:`epoch_order`), so a resumed run rebuilds the order and starts at the first batch
not yet trained on, without decoding the ones before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from models.data import ImageDataset
from models.datasets import StreamingImageFolder, make_loader
from models.errors import SettingsError
from models.evaluation import accuracy, pgd_accuracy
from models.perturbations import eval_mode, pgd_attack

Data = ImageDataset | StreamingImageFolder
EVAL_BATCH = 512  # images per evaluation batch (clean accuracy, BatchNorm recalibration of a streamed set)
PGD_BATCH = 256  # images per batch of the validation attack


def is_streamed(data: Data | None) -> bool:
    """True for a split read from disk batch by batch."""
    return isinstance(data, StreamingImageFolder)


def split_train_val(data: Data, val_size: int, seed: int) -> tuple[Data, Data | None]:
    """Carve a seeded validation split out of the training set (never the test set); a streamed set stays streamed."""
    if val_size <= 0:
        return data, None
    if val_size >= len(data):
        raise SettingsError(f"--val-size {val_size} >= training set size {len(data)}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7919))
    return data.subset(perm[val_size:].sort().values), data.subset(perm[:val_size].sort().values)


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Per-sample random crop (reflect-padded by ``pad``) and horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
    flips = torch.rand(n, generator=gen) < 0.5
    out = torch.stack([padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets)])
    return torch.where(flips.view(-1, 1, 1, 1).to(x.device), out.flip(3), out)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of a streamed training set in ``epoch``: a permutation seeded by (seed, epoch) alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def streamed_epoch(
    data: StreamingImageFolder,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's ``(images, labels)`` batches of ``epoch`` from batch ``start`` on, read from disk.

    Batch ``p`` of rank ``r`` holds positions ``[(p * world_size + r) * batch_size, ... + batch_size)`` of
    :func:`epoch_order`, as the in-memory loop slices its permutation; only those files are ever decoded.
    """
    order = epoch_order(len(data), seed, epoch)
    steps = math.ceil(len(data) / (batch_size * world_size))
    chunks = [order[(p * world_size + rank) * batch_size :][:batch_size] for p in range(start, steps)]
    mine = torch.cat(chunks) if chunks else order[:0]
    # Every chunk but the last is full, so re-batching the concatenation gives back exactly these batches.
    return iter(make_loader(data.subset(mine), batch_size, shuffle=False, device=device, num_workers=num_workers))


def eval_batches(
    data: Data, batch_size: int, device: str | torch.device = "cpu", num_workers: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` batches in data set order: slices in memory, or a DataLoader over a streamed set."""
    if is_streamed(data):
        yield from make_loader(data, batch_size, shuffle=False, device=device, num_workers=num_workers)
        return
    for lo in range(0, len(data), batch_size):
        yield data.images[lo : lo + batch_size], data.labels[lo : lo + batch_size]


def clean_accuracy(model: nn.Module, data: Data, num_workers: int | None = None) -> float:
    """Top-1 accuracy on ``data`` (a streamed set is read batch by batch)."""
    if not is_streamed(data):
        return accuracy(model, data.images, data.labels)
    device, correct = next(model.parameters()).device, 0
    with torch.no_grad(), eval_mode(model):
        for x, y in eval_batches(data, EVAL_BATCH, device, num_workers):
            correct += int((model(x.to(device, non_blocking=True)).argmax(1).cpu() == y).sum())
    return correct / max(1, len(data))


def robust_accuracy(
    model: nn.Module, data: Data, *, eps: float, step_size: float, steps: int, seed: int, num_workers: int | None = None
) -> float:
    """Accuracy under the seeded PGD attack of :func:`models.evaluation.pgd_accuracy` (streamed: batch by batch,
    one generator for the random starts of all batches, as in memory)."""
    if not is_streamed(data):
        return pgd_accuracy(model, data.images, data.labels, eps=eps, step_size=step_size, steps=steps, seed=seed)
    device, correct = next(model.parameters()).device, 0
    gen = torch.Generator(device=device).manual_seed(seed)
    for x, y in eval_batches(data, PGD_BATCH, device, num_workers):
        x, y = x.to(device), y.to(device)
        x_adv = pgd_attack(model, x, y, eps=eps, step_size=step_size, steps=steps, generator=gen)
        with torch.no_grad(), eval_mode(model):
            correct += int((model(x_adv).argmax(1) == y).sum())
    return correct / max(1, len(data))


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, data: Data, batch_size: int, max_batches: int = 100, num_workers: int | None = None
) -> None:
    """Recompute BatchNorm statistics as exact averages over the first training batches ("precise BN").

    The running averages of a short run still remember the untrained network (after 9 steps at momentum 0.1 they
    are 39% initial values), which sends evaluation accuracy to chance although training accuracy rose.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training, device = model.training, next(model.parameters()).device
    model.train()
    first = data.subset(torch.arange(min(len(data), max_batches * batch_size))) if is_streamed(data) else data
    for i, (x, _) in enumerate(eval_batches(first, batch_size, device, num_workers)):
        if i >= max_batches:
            break
        model(x.to(device))
    model.train(was_training)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
