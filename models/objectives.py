"""The training variants as loss functions: the paper's ``standard``, ``C``, ``ADV``, ``ADV+C`` and three controls.

``VARIANT_REGISTRY`` holds one :class:`Variant` per name (loss, objective, help, colour, role);
``register_variant`` adds one. The controls isolate one term each: ``C-control`` (C without the continuity term,
on C's path: fine-tuned from standard for C's epochs), ``standard+jitter`` (the same loss trained from scratch on
standard's recipe: "standard+jitter (scratch)", not matched to C's path) and ``ADV-mixed`` (ADV+C without the
pairing term).

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

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from models.networks import unwrap_model
from models.perturbations import pgd_attack, random_colour_jitter
from models.registry import FieldView, NameSet, register


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


def jitter_augmented_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator=None
) -> LossOutput:
    """standard+jitter, the control for C: ``(CE(F(x), y) + CE(F(P(x)), y)) / 2``, no DS term.

    The same images, the same per-sample jitter P and the same paired forward as C, so the only
    difference from C is the continuity term: it separates "the constraint" from "exposure to the
    perturbation".
    """
    x_pert = random_colour_jitter(x, generator=generator)
    clean, pert = _paired_forward(model, x, x_pert)
    ce_clean, ce_pert = F.cross_entropy(clean, y), F.cross_entropy(pert, y)
    return LossOutput(0.5 * (ce_clean + ce_pert), clean, {"ce": ce_clean.item(), "ce_jitter": ce_pert.item()})


def mixed_adversarial_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ObjectiveConfig, generator=None
) -> LossOutput:
    """ADV-mixed, the control for ADV+C (Kannan et al.'s baseline): ``(CE(F(x), y) + CE(F(x_adv), y)) / 2``.

    ADV+C with alpha = 0: the same mixed clean/adversarial batch and paired forward, no pairing term.
    """
    x_adv = _attack(model, x, y, cfg, generator)
    clean, adv = _paired_forward(model, x, x_adv)
    ce_clean, ce_adv = F.cross_entropy(clean, y), F.cross_entropy(adv, y)
    return LossOutput(0.5 * (ce_clean + ce_adv), clean, {"ce": ce_clean.item(), "ce_adv": ce_adv.item()})


LossFn = Callable[..., LossOutput]


@dataclass(frozen=True)
class Variant:
    """One training variant: its loss, how it is described, and how it is drawn.

    ``role`` says what the variant is for in the paper's claims (``baseline``, ``constrained``,
    ``adversarial``, ``adversarial+constrained``, or a control such as ``baseline+jitter``); ``control_of``
    names the variant it isolates a term of; ``paper`` marks the paper's four. ``colour`` is the one
    colour of the variant in every chart (dashboard and report figures).
    """

    name: str
    loss: LossFn
    objective: str
    help: str
    colour: str
    adversarial: bool = False
    role: str = "other"
    paper: bool = False
    control_of: str | None = None


VARIANT_REGISTRY: dict[str, Variant] = {}
VARIANTS: Mapping[str, LossFn] = FieldView(VARIANT_REGISTRY, lambda v: v.loss)  # name -> loss (a live view)
ADVERSARIAL_VARIANTS: Set[str] = NameSet(VARIANT_REGISTRY, lambda v: v.adversarial)
PAPER_VARIANTS: Sequence[str] = ("standard", "C", "ADV", "ADV+C")
FALLBACK_COLOURS = ("#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF", "#1F77B4")


def register_variant(variant: Variant, replace: bool = False) -> Variant:
    """Add a training variant: train, the zoo, the report and the dashboard then know it."""
    return register(VARIANT_REGISTRY, variant.name, variant, replace)


def get_variant(name: str) -> Variant | None:
    """The registered variant called ``name``, or None (a zoo may hold imported models of any name)."""
    return VARIANT_REGISTRY.get(name)


def variant_colour(name: str, order: Sequence[str] = ()) -> str:
    """The one colour of variant ``name``; an unregistered name gets a fallback by its position in ``order``."""
    known = VARIANT_REGISTRY.get(name)
    if known is not None:
        return known.colour
    others = [n for n in order if n not in VARIANT_REGISTRY]
    index = others.index(name) if name in others else len(others)
    return FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)]


def get_objective(variant: str) -> LossFn:
    """The loss function of a registered variant."""
    if variant not in VARIANT_REGISTRY:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANT_REGISTRY)}")
    return VARIANT_REGISTRY[variant].loss


for _variant in (
    Variant("standard", standard_loss, "CE(F(x), y)", "Cross-entropy only: the baseline.", "#636EFA",
            role="baseline", paper=True),
    Variant("C", continuity_loss, "CE(F(x), y) + α·DS(x, P(x)), P = per-sample colour jitter",
            "Cross-entropy plus the continuity term α·DS(x, P(x)) for colour perturbations P.", "#00A86B",
            role="constrained", paper=True),
    Variant("ADV", adversarial_loss, "CE(F(x_adv), y), x_adv = PGD(x)",
            "Adversarial training: cross-entropy on PGD examples (Madry et al.).", "#EF8B00",
            adversarial=True, role="adversarial", paper=True),
    Variant("ADV+C", adversarial_pairing_loss, "(CE(F(x), y) + CE(F(x_adv), y))/2 + α·DS(x, x_adv)",
            "Adversarial logit pairing: mixed clean/PGD cross-entropy plus α·DS(x, x_adv).", "#AB63FA",
            adversarial=True, role="adversarial+constrained", paper=True),
    Variant("standard+jitter", jitter_augmented_loss, "(CE(F(x), y) + CE(F(P(x)), y))/2, P as in C, no DS",
            "Control for C, trained from scratch on standard's recipe: the same colour jitter as augmentation, "
            "without the continuity term.", "#19A7CE", role="baseline+jitter", control_of="C"),
    Variant("C-control", jitter_augmented_loss, "(CE(F(x), y) + CE(F(P(x)), y))/2, P as in C, no DS, on C's path",
            "Matched control for C: fine-tuned from standard for C's epochs like C, with C's colour jitter as "
            "augmentation and no continuity term.", "#0B6E4F", role="baseline+jitter-finetuned", control_of="C"),
    Variant("ADV-mixed", mixed_adversarial_loss, "(CE(F(x), y) + CE(F(x_adv), y))/2, α = 0",
            "Control for ADV+C (Kannan et al.'s baseline): mixed clean/PGD cross-entropy, no pairing term.",
            "#D62728", adversarial=True, role="adversarial-mixed", control_of="ADV+C"),
):  # fmt: skip
    register_variant(_variant)
