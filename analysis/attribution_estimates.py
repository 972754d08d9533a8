"""How long an attribution will take at this input size, and whether that makes it "slow" (opt-in in a page).

:func:`estimate` multiplies the network's measured per-sample seconds (:func:`analysis.network_cost.sample_times`:
a timed forward+backward and no-grad forward of 2-32 samples, measured once per network and input size) by the number of
samples the method runs with its options at that size:

* ``integrated_gradients``: ``n_images * (n_steps + 2)`` forward+backward samples (the 2: captum's delta);
* ``gradcam``: ``n_images`` forward+backward samples;
* ``lime``: ``n_images * num_samples`` forwards;
* any other registered method: ``n_images`` forward+backward samples (a lower bound).

The estimate is rough (the probe is one pass; batching is a little faster per sample, other load slower) and
meant for a decision, not a promise: a method is ``slow`` when the estimate exceeds ``SLOW_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from analysis.attributions import get_method, model_lock
from analysis.network_cost import sample_times

__all__ = ["SLOW_SECONDS", "Estimate", "estimate"]

SLOW_SECONDS = 5.0


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
    if method == "integrated_gradients":
        seconds = n_images * (int(opts["n_steps"]) + 2) * cost.backward_s
    elif method == "lime":
        seconds = n_images * int(opts["num_samples"]) * cost.forward_s
    else:
        seconds = n_images * cost.backward_s
    return Estimate(method, shape, int(n_images), float(seconds), seconds > threshold_s, float(threshold_s), opts)
