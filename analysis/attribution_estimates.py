"""How long an attribution will take at this input size, and whether that makes it "slow" (opt-in in a page).

:func:`estimate` multiplies the network's measured per-sample seconds (:func:`analysis.network_cost.sample_times`:
a timed forward+backward and no-grad forward of 2-32 samples, measured once per network and input size) by the number of
samples the method runs with its options at that size:

* ``integrated_gradients``: ``n_images * (n_steps + 2)`` forward+backward samples (the 2: captum's delta);
* ``gradcam`` and the other CAMs that read gradients, ``saliency``: ``n_images`` forward+backward samples;
* ``smoothgrad`` / ``gradient_shap``: ``n_images * nt_samples`` / ``n_images * n_samples`` forward+backward samples;
* ``lime``: ``n_images * num_samples`` forwards;
* ``occlusion``: ``n_images * (patch positions + 1)`` forwards; ``scorecam``: ``n_images * (channels of its layer
  + 1)`` forwards;
* any other registered method: ``n_images`` forward+backward samples (a lower bound).

:func:`samples_per_image` gives those counts for one image; the report's CPU estimate
(:func:`analysis.experiments.settings.estimate_cpu_s`) multiplies them by its measured rates.

The estimate is rough (the probe is one pass; batching is a little faster per sample, other load slower) and
meant for a decision, not a promise: a method is ``slow`` when the estimate exceeds ``SLOW_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from analysis.attribution_methods import _gradcam_layer
from analysis.attribution_methods_field import occlusion_geometry
from analysis.attributions import get_method, model_lock
from analysis.network_cost import sample_times

__all__ = ["SCORECAM_CHANNELS", "SLOW_SECONDS", "Estimate", "estimate", "samples_per_image"]

SLOW_SECONDS = 5.0
SCORECAM_CHANNELS = 128  # the channels of a width-16 ResNet18's layer4: ScoreCAM's count when no model is at hand


def samples_per_image(
    method: str, options: dict[str, Any], input_shape: tuple[int, ...], channels: int = SCORECAM_CHANNELS
) -> tuple[int, int]:
    """(forward+backward samples, forward-only samples) that ``method`` runs per image with ``options`` at
    ``input_shape`` (C, H, W); ``channels``: those of ScoreCAM's layer (see the module docstring)."""
    if method == "integrated_gradients":
        return int(options["n_steps"]) + 2, 0
    if method == "lime":
        return 0, int(options["num_samples"])
    if method == "smoothgrad":
        return int(options["nt_samples"]), 0
    if method == "gradient_shap":
        return int(options["n_samples"]), 0
    if method == "occlusion":
        return 0, occlusion_geometry(input_shape, options.get("window"), options.get("stride"))[2] + 1
    if method == "scorecam":
        return 0, int(channels) + 1
    return 1, 0


def _layer_channels(model: nn.Module, input_shape: tuple[int, ...], layer: Any) -> int:
    """Channels of the layer the CAMs read (one no-grad forward on zeros)."""
    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    _, module = _gradcam_layer(model, x, layer)
    seen: list[int] = []
    hook = module.register_forward_hook(lambda _m, _i, out: seen.append(int(out.shape[1])))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    return seen[0] if seen else SCORECAM_CHANNELS


@dataclass(frozen=True)
class Estimate:
    """A method's expected wall time for ``n_images`` at ``input_shape``, and whether that is over the threshold."""

    method: str
    input_shape: tuple[int, ...]
    n_images: int
    seconds: float
    slow: bool
    threshold_s: float
    options: dict[str, Any]


def estimate(
    method: str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    n_images: int = 1,
    threshold_s: float = SLOW_SECONDS,
    **options: Any,
) -> Estimate:
    """Estimated seconds of ``method`` on ``n_images`` of ``input_shape`` (C, H, W) with ``options`` (unset ones:
    the registered defaults fitted to the input size). Measures the network once (under its lock)."""
    shape = tuple(int(s) for s in input_shape)
    opts = get_method(method).options(input_size=shape, **options)
    with model_lock(model):
        cost = sample_times(model, shape)
        channels = _layer_channels(model, shape, opts.get("layer")) if method == "scorecam" else SCORECAM_CHANNELS
    backward, forward = samples_per_image(method, opts, shape, channels)
    seconds = n_images * (backward * cost.backward_s + forward * cost.forward_s)
    return Estimate(method, shape, int(n_images), float(seconds), seconds > threshold_s, float(threshold_s), opts)
