"""Attribution defaults that fit the input: IG steps, LIME samples, segmentation scale and the GradCAM layer.

The lab's defaults were chosen on 32x32 images (``REFERENCE_SIDE``). A forward costs about the input's area, so
at 224 px (49x the pixels) the same settings cost 49x the time and memory; these functions scale them:

* :func:`ig_steps_for`: 50 Gauss-Legendre steps up to 64 px, 32 up to 128 px, 16 above. Gauss-Legendre with k
  nodes is exact for polynomials of degree 2k-1 along the path, so 16 nodes stay accurate for smooth paths; the
  completeness error is reported per image (``extras["delta"]``), so a caller sees when more steps are needed.
* :func:`lime_samples_for`: 1000 samples up to 64 px, 500 up to 128 px, 300 above. The segmentation keeps about
  as many segments at any size (below), and the samples lime needs grow with the segments (its features), not
  with the pixels: 300 samples are >= 5 per feature for up to 60 segments.
* :func:`felzenszwalb_params`: ``scale`` times r, ``sigma`` times sqrt(r), ``min_size`` times r^1.5 for r =
  side / 32 (identical at 32 px). Chosen by measurement on 7 scikit-image photographs (astronaut, chelsea, coffee,
  rocket, cat, hubble_deep_field, immunohistochemistry) centre-cropped and resized to 32 and 224 px: segments
  65/63/68/29/63/31/60 at 32 px vs 83/39/52/28/39/40/42 at 224 px; the 32-px parameters unchanged give
  761-2569 segments at 224 px, parameters scaled with the area give 2-4.
* :func:`gradcam_layer_for`: the network's declared ``gradcam_layer`` unless its map at this input is 1x1 (a
  constant map after upsampling: no spatial information at all); then the last module before the global pooling
  whose map is at least ``min_side`` x ``min_side`` (default 2: "the finest layer whose map is not 1x1"). Deeper
  layers are the more class-specific ones (Selvaraju et al. read the last convolutional layer for that reason),
  so the last one that still has a spatial map wins over an earlier, larger one; ``gradcam`` still warns below
  4x4. For torchvision's resnet18 at 32 px: ``layer4`` is 1x1, so ``layer3`` (2x2) is used. Found by one probe
  forward, cached per (network, input shape).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.networks import _NOT_GRADCAM, unwrap_model

__all__ = [
    "REFERENCE_SIDE",
    "fitted_options",
    "ig_steps_for",
    "lime_samples_for",
    "felzenszwalb_params",
    "gradcam_layer_for",
    "side_of",
]

REFERENCE_SIDE = 32


def side_of(input_shape: int | tuple[int, ...]) -> int:
    """The side of a square with the input's area: ``224`` for ``(3, 224, 224)`` or ``224``."""
    if isinstance(input_shape, int):
        return input_shape
    h, w = input_shape[-2:]
    return int(round(math.sqrt(int(h) * int(w))))


def ig_steps_for(input_shape: int | tuple[int, ...]) -> int:
    """Default IG steps at this input size (see the module docstring)."""
    side = side_of(input_shape)
    return 50 if side <= 64 else 32 if side <= 128 else 16


def lime_samples_for(input_shape: int | tuple[int, ...]) -> int:
    """Default LIME samples at this input size (see the module docstring)."""
    side = side_of(input_shape)
    return 1000 if side <= 64 else 500 if side <= 128 else 300


def felzenszwalb_params(input_shape: int | tuple[int, ...]) -> dict[str, float]:
    """``skimage.segmentation.felzenszwalb`` parameters giving about as many segments as at 32 px."""
    r = side_of(input_shape) / REFERENCE_SIDE
    return {"scale": 20.0 * r, "sigma": 0.5 * math.sqrt(r), "min_size": max(1, int(round(5 * r**1.5)))}


_FITTED: dict[str, Callable[[int | tuple[int, ...]], dict[str, Any]]] = {
    "integrated_gradients": lambda shape: {"n_steps": ig_steps_for(shape)},
    "lime": lambda shape: {"num_samples": lime_samples_for(shape)},
}


def fitted_options(method: str, input_shape: int | tuple[int, ...]) -> dict[str, Any]:
    """The options of ``method`` that depend on the input size, at this size (``{}`` for methods without any)."""
    fn = _FITTED.get(method)
    return fn(input_shape) if fn else {}


_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[str, tuple[int, int]]]] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def _map_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, int]]]:
    """(module name, output map H x W) of every module with a 4D output, in the order they finish, up to the
    global pooling (the last pooling to 1x1); one no-grad probe forward."""
    events: list[tuple[str, tuple[int, int], bool]] = []
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                hw = (int(output.shape[-2]), int(output.shape[-1]))
                events.append((name, hw, isinstance(module, _NOT_GRADCAM)))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    pools = [i for i, (_, hw, skip) in enumerate(events) if skip and hw == (1, 1)]
    end = pools[-1] if pools else len(events)
    return [(name, hw) for name, hw, skip in events[:end] if not skip]


def gradcam_layer_for(
    model: nn.Module, input_shape: tuple[int, ...], min_side: int = 2
) -> tuple[str | None, nn.Module, tuple[int, int]]:
    """The layer GradCAM reads at ``input_shape`` (C, H, W): ``(name or None for the declared one, module, map H x W)``.

    The declared ``model.gradcam_layer`` unless its map is smaller than 2x2; then the last module before the global
    pooling whose map is at least ``min_side`` on both sides (see the module docstring). Cached per network and
    shape; callers sharing the model across threads hold its lock (``explain`` does).
    """
    net = unwrap_model(model)
    key = (tuple(int(s) for s in input_shape), int(min_side))
    with _GUARD:
        found = _LAYERS.get(net, {}).get(key)
    if found is None:
        sizes = _map_sizes(net, key[0])
        declared = net.gradcam_layer
        names = {id(m): n for n, m in net.named_modules()}
        declared_name = names.get(id(declared))
        last = dict(sizes)  # a module that fires more than once keeps its last map
        declared_hw = last.get(declared_name, (0, 0)) if declared_name is not None else (0, 0)
        if min(declared_hw) >= 2 or declared_name is None:
            found = (declared_name or "", declared_hw)
        else:
            finer = [(n, hw) for n, hw in sizes if min(hw) >= min_side]
            found = finer[-1] if finer else (declared_name, declared_hw)
        with _GUARD:
            _LAYERS.setdefault(net, {})[key] = found
    name, hw = found
    module = net.get_submodule(name) if name else net.gradcam_layer
    return (name or None), module, hw
