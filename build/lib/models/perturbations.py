"""Non-semantic perturbations P(x): the paper's colour perturbations (Table 1) and PGD.

All functions take and return float pixels in [0, 1], NCHW.

* ``KIND_REGISTRY``: one :class:`Kind` per perturbation (levels, unit, paper values, jitter range,
  functions); ``register_kind`` adds one, and everything that loops over ``KINDS`` picks it up.
* ``perturb(images, kind, level)``: the fixed, deterministic evaluation
  perturbations of Table 1. Brightness is *additive* on the 0..255 scale,
  ``clamp(x + k/255, 0, 1)``; contrast, saturation and hue use torchvision's
  ``adjust_contrast`` / ``adjust_saturation`` / ``adjust_hue`` factors.
* ``random_colour_jitter(images)``: the training-time P of the C variant, drawn
  per sample (torchvision's ``ColorJitter`` draws one factor for a whole batch).
* ``pgd_attack(model, images, labels)``: L-inf PGD with random start, sign steps,
  projection and clamping; the model is attacked in eval mode, its mode restored,
  and only input gradients are taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import _functional_tensor as _FT  # rgb->hsv, shared with adjust_hue
from torchvision.transforms import functional as TF

from models.registry import FieldView, NameView, register

MAX_LEVEL = 4


@dataclass(frozen=True)
class Kind:
    """One non-semantic perturbation: its Table 1 levels, how to apply it, and its training jitter.

    ``levels`` are the parameter at levels 1..4 in the kind's own units (``unit`` formats one, e.g.
    ``"+{:g}/255"``); ``paper_levels`` are the paper's published values (None for a kind the paper does
    not have). ``apply(images, value)`` is the fixed, deterministic evaluation perturbation;
    ``apply_per_sample(images, values)`` takes one value per image (N,) and is what the C variant's
    training jitter draws from ``jitter`` (a (low, high) range in the same units as ``apply_per_sample``'s
    values), or None when the kind is not part of the jitter.
    """

    name: str
    levels: tuple[float, ...]
    unit: str
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    apply_per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    jitter: tuple[float, float] | None = None
    paper_levels: tuple[float, ...] | None = None
    description: str = ""

    def label(self, level: int) -> str:
        """Human label of a level, e.g. ``brightness +32/255`` (``original`` for level 0)."""
        return "original" if level == 0 else f"{self.name} {self.unit.format(self.levels[level - 1])}"


KIND_REGISTRY: dict[str, Kind] = {}
KINDS: Sequence[str] = NameView(KIND_REGISTRY)  # names, in registration order (a live view)
TABLE1: Mapping[str, tuple[float, ...]] = FieldView(KIND_REGISTRY, lambda k: k.levels)  # levels 1..4 per kind
# Ranges of the per-sample training jitter: they cover Table 1 in both directions.
JITTER_RANGES: Mapping[str, tuple[float, float]] = FieldView(
    KIND_REGISTRY, lambda k: k.jitter, keep=lambda k: k.jitter is not None
)


def register_kind(kind: Kind, replace: bool = False) -> Kind:
    """Add a perturbation kind: it then reaches evaluation, the jitter (if it has a range), the report and app."""
    if len(kind.levels) != MAX_LEVEL:
        raise ValueError(f"a kind needs {MAX_LEVEL} levels, {kind.name!r} has {len(kind.levels)}")
    return register(KIND_REGISTRY, kind.name, kind, replace)


def get_kind(kind: str) -> Kind:
    """The registered kind called ``kind``."""
    _check_kind(kind)
    return KIND_REGISTRY[kind]


def level_value(kind: str, level: int) -> float:
    """The Table 1 parameter of ``kind`` at ``level`` (1..4), in the table's units."""
    _check_kind(kind)
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in 1..{MAX_LEVEL}, got {level}")
    return TABLE1[kind][level - 1]


def _check_kind(kind: str) -> None:
    if kind not in KIND_REGISTRY:
        raise ValueError(f"unknown perturbation kind {kind!r}; known: {', '.join(KINDS)}")


@torch.no_grad()
def perturb(images: torch.Tensor, kind: str, level: int) -> torch.Tensor:
    """Apply the Table 1 perturbation ``kind`` at ``level`` (0 = identity) to a batch.

    Deterministic; computed without gradients (``adjust_hue`` refuses inputs that
    require grad).
    """
    _check_kind(kind)
    if level == 0:
        return images.clone()
    return KIND_REGISTRY[kind].apply(images.detach(), level_value(kind, level))


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (N,1,H,W), the same weights as torchvision."""
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """``clamp(ratio*a + (1-ratio)*b)`` with a per-sample ratio (N,), as torchvision's _blend."""
    r = ratio.view(-1, 1, 1, 1)
    return (r * a + (1.0 - r) * b).clamp(0.0, 1.0)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


@torch.no_grad()
def random_colour_jitter(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> torch.Tensor:
    """Per-sample random brightness, contrast, saturation and hue, in that order.

    Each image draws its own factor per kind uniformly from ``ranges`` (default
    ``JITTER_RANGES``, every registered kind with a jitter range), kinds in registration
    order. Brightness, contrast and saturation are vectorised with torchvision's formulas
    (hue through ``shift_hue``).
    """
    ranges = JITTER_RANGES if ranges is None else ranges
    x = images.detach()
    n, dev = x.shape[0], x.device
    for name, kind in KIND_REGISTRY.items():  # registration order: brightness, contrast, saturation, hue, ...
        if name in ranges and kind.apply_per_sample is not None:
            x = kind.apply_per_sample(x, _uniform(n, *ranges[name], generator, dev))
    return x


_HSV_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)


def shift_hue(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``adjust_hue`` with a per-sample shift (N,), vectorised.

    RGB->HSV is torchvision's own; HSV->RGB uses the closed form
    ``v - v*s*clamp(min(k, 4-k), 0, 1)``, ``k = (n + 6h) mod 6``, which agrees with
    torchvision to float rounding and is several times faster than its masked version.
    """
    h, s, v = _FT._rgb2hsv(images).unbind(1)
    return hsv_to_rgb((h + shifts.view(-1, 1, 1)) % 1.0, s, v)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB: ``h``, ``s``, ``v`` in [0, 1], each (N, ...), give (N, 3, ...) in their dtype.

    The closed form ``v - v*s*clamp(min(k, 4-k), 0, 1)``, ``k = (n + 6h) mod 6``, n = 5, 3, 1
    for R, G, B. Shared by :func:`shift_hue` and the fashion-mnist-m tints.
    """
    offsets = _HSV_OFFSETS.to(h.device, h.dtype).view(1, 3, *([1] * (h.ndim - 1)))
    k = (offsets + h.unsqueeze(1) * 6) % 6
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _brightness(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    return (x + shifts.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def _contrast(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factors)


def _saturation(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x), factors)


# Table 1 of the paper, levels 1..4. Brightness is additive in 0..255 units, ``clamp(x + k/255, 0, 1)``
# (a multiplicative factor of 16 would turn images white); the others are torchvision's factors.
register_kind(
    Kind("brightness", (16.0, 32.0, 48.0, 64.0), "+{:g}/255", lambda x, v: (x + v / 255.0).clamp(0.0, 1.0),
         _brightness, (-64 / 255, 64 / 255), (16.0, 32.0, 48.0, 64.0), "add k/255 to every pixel")
)  # fmt: skip
register_kind(
    Kind("contrast", (1.25, 1.50, 1.75, 2.0), "x{:g}", TF.adjust_contrast, _contrast, (0.5, 2.0),
         (1.25, 1.50, 1.75, 2.0), "blend with the mean grey level (torchvision adjust_contrast)")
)  # fmt: skip
register_kind(
    Kind("saturation", (1.25, 1.50, 1.75, 2.0), "x{:g}", TF.adjust_saturation, _saturation, (0.5, 2.0),
         (1.25, 1.50, 1.75, 2.0), "blend with the greyscale image (torchvision adjust_saturation)")
)  # fmt: skip
register_kind(
    Kind("hue", (0.1, 0.2, 0.3, 0.4), "+{:g}", TF.adjust_hue, lambda x, v: shift_hue(x, v), (-0.4, 0.4),
         (0.1, 0.2, 0.3, 0.4), "rotate the hue (torchvision adjust_hue)")
)  # fmt: skip


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin per image: max wrong logit minus true logit, (N,)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    wrong = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(1)
    return wrong - true


# Per-image attack losses (N,); the attack ascends their sum.
ATTACK_LOSSES = {
    "ce": lambda logits, labels: F.cross_entropy(logits, labels, reduction="none"),
    "margin": margin_loss,
}


def pgd_attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    loss: str = "ce",
    restarts: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD (Madry et al.) on pixels in [0, 1]; returns adversarial images.

    Each step: ``x <- clamp(proj_eps(x + step * sign(grad_x loss)), 0, 1)``. The
    loss is summed over the batch (so each image's gradient is its own). With
    ``restarts > 1`` each image keeps the restart with the highest final loss.
    The model runs in eval mode during the attack and gets its mode back;
    gradients are taken with ``torch.autograd.grad`` on the input only, so no
    parameter ``.grad`` is touched.
    """
    if loss not in ATTACK_LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; known: {', '.join(ATTACK_LOSSES)}")
    loss_fn = ATTACK_LOSSES[loss]
    x0 = images.detach()
    best, best_loss = x0.clone(), torch.full((x0.shape[0],), -float("inf"), device=x0.device)
    with eval_mode(model), torch.enable_grad():
        for _ in range(max(1, restarts)):
            x = x0.clone()
            if random_start:
                noise = torch.rand(x0.shape, generator=generator, device=x0.device)
                x = (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)
            for _ in range(steps):
                x.requires_grad_(True)
                (grad,) = torch.autograd.grad(loss_fn(model(x), labels).sum(), x)
                x = x.detach() + step_size * grad.sign()
                x = torch.min(torch.max(x, x0 - eps), x0 + eps).clamp(0.0, 1.0)
            if restarts <= 1:
                return x.detach()
            with torch.no_grad():
                per_image = loss_fn(model(x), labels)
                better = per_image > best_loss
                best[better], best_loss[better] = x[better], per_image[better]
    return best.detach()
