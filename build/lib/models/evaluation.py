"""Batched inference and accuracy, clean and under PGD: shared by training and analysis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from models.perturbations import eval_mode, pgd_attack


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits (N, classes) on the CPU, computed in eval mode; ``transform`` is applied per batch first."""
    device = device or next(model.parameters()).device
    out = []
    with eval_mode(model):
        for sl in batches(len(images), batch_size):
            x = images[sl].to(device, non_blocking=True)
            if transform is not None:
                x = transform(x)
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Top-1 accuracy in [0, 1]."""
    return correct_per_image(model, images, labels, batch_size, transform).float().mean().item()


def correct_per_image(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per image (bool, CPU): the top-1 prediction equals the label."""
    logits = predict_logits(model, images, batch_size, transform=transform)
    return logits.argmax(1) == torch.as_tensor(labels).cpu()


def pgd_batches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    **attack_kwargs,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """The one per-batch PGD loop: ``(slice, adversarial batch, labels)`` on the model's device, one seeded
    generator for the random starts of all batches (so results do not depend on anything but the seed)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for sl in batches(len(images), batch_size):
        x, y = images[sl].to(device), torch.as_tensor(labels[sl]).to(device)
        yield sl, pgd_attack(model, x, y, eps=eps, step_size=step_size, steps=steps, generator=gen, **attack_kwargs), y


def pgd_correct(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    **attack_kwargs,
) -> torch.Tensor:
    """Per image (bool, CPU): still classified correctly after the seeded white-box PGD attack."""
    out = []
    for _, x_adv, y in pgd_batches(model, images, labels, eps, step_size, steps, batch_size, seed, **attack_kwargs):
        with torch.no_grad(), eval_mode(model):
            out.append((model(x_adv).argmax(1) == y).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def pgd_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    **attack_kwargs,
) -> float:
    """Accuracy on PGD adversarial examples (white box), seeded random start."""
    correct = pgd_correct(model, images, labels, eps, step_size, steps, batch_size, seed, **attack_kwargs)
    return correct.float().sum().item() / max(1, len(images))


def mean_distance_score(
    model: nn.Module,
    images: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 512,
) -> float:
    """Mean over images of DS(x, P(x)) = ||F(P(x)) - F(x)||^2 (summed over classes), P = ``transform``."""
    clean = predict_logits(model, images, batch_size)
    moved = predict_logits(model, images, batch_size, transform=transform)
    return (moved - clean).pow(2).sum(1).mean().item()
