"""The four training variants as loss functions: ``standard``, ``C``, ``ADV``, ``ADV+C``.

Reductions, everywhere in this project:

* cross-entropy is averaged over the images of the batch;
* the distance score ``DS(x, x') = ||F(x') - F(x)||^2`` is **summed over classes**
  and **averaged over images** (paper eq. 1-2). Summing over classes means alpha
  is not rescaled by the class count: alpha=1 on 10 classes and on 100 classes
  weighs each logit's squared change the same.

C and ADV+C compute F(x) and F(P(x)) in one forward pass of the concatenated
batch (so BatchNorm sees both halves together, as in logit pairing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from models.networks import unwrap_model
from models.perturbations import pgd_attack, random_colour_jitter


@dataclass
class ObjectiveConfig:
    """Hyper-parameters of the variants' losses."""

    alpha: float = 1.0  # weight of the continuity term (C, ADV+C)
    pgd_eps: float = 8 / 255  # L-inf radius of training attacks
    pgd_step: float = 2 / 255  # step size of training attacks
    pgd_steps: int = 10  # iterations of training attacks


@dataclass
class LossOutput:
    """A variant's loss for one batch, the clean logits, and scalar statistics."""

    loss: torch.Tensor
    logits: torch.Tensor  # logits of the clean images (for training accuracy)
    stats: dict[str, float] = field(default_factory=dict)


def distance_score(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Per-image DS (paper eq. 2): squared L2 of the logit difference, summed over classes. (N,)"""
    return (logits_b - logits_a).pow(2).sum(dim=1)


def _paired_forward(model: nn.Module, x: torch.Tensor, x_pert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of x and x_pert from one forward pass of the concatenated batch."""
    logits = model(torch.cat([x, x_pert]))
    return logits[: x.shape[0]], logits[x.shape[0] :]


def _attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator) -> torch.Tensor:
    """Training-time PGD, on the bare module (a DDP wrapper must not see input-only backward passes)."""
    return pgd_attack(
        unwrap_model(model), x, y, eps=cfg.pgd_eps, step_size=cfg.pgd_step, steps=cfg.pgd_steps, generator=generator
    )


def standard_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator=None
) -> LossOutput:
    """Cross-entropy on clean images (mean over the batch)."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    return LossOutput(loss, logits, {"ce": loss.item()})


def continuity_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator=None
) -> LossOutput:
    """C: ``CE(F(x), y) + alpha * mean_i DS(x_i, P(x_i))``, P a per-sample colour jitter.

    CE is taken on the clean half only (the paper's eq. 5: the original loss plus
    the continuity term).
    """
    x_pert = random_colour_jitter(x, generator=generator)
    clean, pert = _paired_forward(model, x, x_pert)
    ce = F.cross_entropy(clean, y)
    ds = distance_score(clean, pert).mean()
    return LossOutput(ce + cfg.alpha * ds, clean, {"ce": ce.item(), "ds": ds.item()})


def adversarial_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator=None
) -> LossOutput:
    """ADV: cross-entropy on PGD adversarial examples only (Madry et al.), mean over the batch.

    The returned logits are those of the adversarial images.
    """
    x_adv = _attack(model, x, y, cfg, generator)
    logits = model(x_adv)
    loss = F.cross_entropy(logits, y)
    return LossOutput(loss, logits, {"ce_adv": loss.item()})


def adversarial_pairing_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator=None
) -> LossOutput:
    """ADV+C, adversarial logit pairing (Kannan et al. 2018):

    ``(CE(F(x), y) + CE(F(x_adv), y)) / 2 + alpha * mean_i DS(x_i, x_adv_i)``,
    i.e. CE on the mixed clean+adversarial batch (each half a mean over images)
    plus the continuity term with P = PGD.
    """
    x_adv = _attack(model, x, y, cfg, generator)
    clean, adv = _paired_forward(model, x, x_adv)
    ce_clean, ce_adv = F.cross_entropy(clean, y), F.cross_entropy(adv, y)
    ds = distance_score(clean, adv).mean()
    loss = 0.5 * (ce_clean + ce_adv) + cfg.alpha * ds
    return LossOutput(loss, clean, {"ce": ce_clean.item(), "ce_adv": ce_adv.item(), "ds": ds.item()})


LossFn = Callable[..., LossOutput]

VARIANTS: dict[str, LossFn] = {
    "standard": standard_loss,
    "C": continuity_loss,
    "ADV": adversarial_loss,
    "ADV+C": adversarial_pairing_loss,
}
ADVERSARIAL_VARIANTS = frozenset({"ADV", "ADV+C"})


def get_objective(variant: str) -> LossFn:
    """The loss function of a registered variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]
