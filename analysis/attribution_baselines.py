"""Reference images ("baselines") for path attributions: black, blurred, uniform noise (and white, black+white).

Integrated Gradients integrates from a baseline to the image, and GradientSHAP averages over a set of baselines, so
the map says what made the score differ *from that baseline*. A black baseline calls dark pixels unimportant; a
blurred copy keeps the colours and removes the detail; uniform noise is a reference with no structure
(Sturmfels, Lundberg & Lee 2020, "Visualizing the impact of feature attribution baselines", Distill).

:func:`baseline_images` builds them, pure and deterministic (the noise from its own seeded generator, the blur a
Gaussian of ``sigma`` = side / 16 pixels per channel); :func:`baseline_options` turns a baseline name into the
option the registered method already takes (IG's ``baseline``, GradientSHAP's ``baselines``), so the choice goes
through ``explain`` with nothing re-implemented.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from analysis.attribution_defaults import side_of

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINE",
    "PAIR_BASELINES",
    "baseline_images",
    "baseline_options",
    "baseline_parameter",
    "blur_sigma",
    "named_baselines",
]

#: The baselines one image can be explained from, in the order the dashboard offers them.
BASELINES = ("black", "blurred", "uniform noise")
DEFAULT_BASELINE = "black"  # IG's default (pixels 0)
#: Names that stand for a distribution of two baselines (GradientSHAP's own default: black and white).
PAIR_BASELINES = ("black and white",)
_KNOWN = (*BASELINES, "white", *PAIR_BASELINES)


def blur_sigma(input_shape: int | tuple[int, ...]) -> float:
    """The blurred baseline's Gaussian sigma in pixels: side / 16 (2 px at 32 px, 14 px at 224 px), so the blur
    removes about the same share of the detail at any input size."""
    return side_of(input_shape) / 16.0


def baseline_images(name: str, images: torch.Tensor, seed: int = 0, sigma: float | None = None) -> torch.Tensor:
    """The baseline ``name`` for each image of ``images`` (N, C, H, W) in [0, 1], on their device and dtype.

    ``black`` zeros; ``white`` ones; ``blurred`` each image blurred by a Gaussian of ``sigma`` pixels (None:
    :func:`blur_sigma`) on each channel (``scipy.ndimage.gaussian_filter``, edges reflected); ``uniform noise``
    U[0, 1) pixels from a generator seeded with ``seed`` (the same noise for every call with the same seed and
    shape); ``black and white`` (2, C, H, W), GradientSHAP's distribution. Unknown names: ValueError."""
    if name not in _KNOWN:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(_KNOWN)}")
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    like = {"device": images.device, "dtype": images.dtype}
    if name == "black":
        return torch.zeros_like(images)
    if name == "white":
        return torch.ones_like(images)
    if name == "black and white":
        shape = (1, *images.shape[1:])
        return torch.cat([torch.zeros(shape, **like), torch.ones(shape, **like)])
    if name == "uniform noise":
        gen = torch.Generator().manual_seed(int(seed))
        return torch.rand(tuple(images.shape), generator=gen, dtype=torch.float64).to(**like)
    s = float(blur_sigma(tuple(images.shape[1:])) if sigma is None else sigma)
    pixels = images.detach().cpu().double().numpy()
    blurred = ndimage.gaussian_filter(pixels, sigma=(0.0, 0.0, s, s), mode="reflect")
    return torch.from_numpy(np.clip(blurred, 0.0, 1.0)).to(**like)


def baseline_parameter(function: Callable[..., Any]) -> str | None:
    """Which keyword a method takes a baseline *image* by: ``baseline`` (one per image, IG) or ``baselines`` (a set,
    GradientSHAP); None when it takes none. Only a parameter annotated to take a tensor counts (Occlusion's
    ``baseline`` is the fill value of its patch, a number)."""
    params = inspect.signature(function).parameters
    return next((p for p in ("baseline", "baselines") if p in params and "Tensor" in str(params[p].annotation)), None)


def baseline_options(function: Callable[..., Any], name: str, images: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """The options that make ``function`` (a registered method's) start from baseline ``name`` for ``images``:
    ``{"baseline": (N, C, H, W)}`` for IG, ``{"baselines": ...}`` for GradientSHAP (one image's baseline, or the
    black and white pair), ``{}`` for a method that takes no baseline. GradientSHAP samples its baselines per image,
    so it is given the first image's (``images`` is one image there, as on the saliency page)."""
    parameter = baseline_parameter(function)
    if parameter is None:
        return {}
    if parameter == "baseline" and name in PAIR_BASELINES:
        raise ValueError(f"baseline {name!r} is a set of baselines; this method integrates from one")
    base = baseline_images(name, images, seed)
    if parameter == "baselines" and name not in PAIR_BASELINES:
        base = base[:1]
    return {parameter: base}


def named_baselines(function: Callable[..., Any], options: dict[str, Any], images: torch.Tensor) -> dict[str, Any]:
    """``options`` with a baseline given by name (``{"baseline": "blurred"}`` or ``{"baselines": ...}``: hashable,
    so it can be part of a cache key) replaced by the tensor :func:`baseline_options` builds for ``images``;
    ``seed`` in ``options`` seeds the noise. Options without a named baseline come back unchanged."""
    out = dict(options)
    names = [k for k in ("baseline", "baselines") if isinstance(out.get(k), str)]
    for key in names:
        name = out.pop(key)
        out.update(baseline_options(function, name, images, int(out.get("seed", 0))))
    return out
