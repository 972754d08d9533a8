"""What one sample costs a network at one input size: memory and time of a forward and of a forward+backward
(and, separately, forward FLOPs). Measured once per (network, input shape, dtype, device) by a probe, then cached.

How it is measured (``measure_cost``), all on the model's own device and dtype, in eval mode:

* ``backward_bytes`` (times ``MARGIN``): the bytes autograd keeps for one sample's backward pass (every tensor
  saved for backward, seen through ``torch.autograd.graph.saved_tensors_hooks``, each storage counted once,
  parameters and buffers excluded) plus the gradient buffers in flight (``BACKWARD_LIVE`` times the largest
  activation) and the input's gradient. This is what grows with the batch in IG and GradCAM; the weights are a
  fixed cost, not per sample.
* ``forward_bytes`` (times ``MARGIN``): a no-grad forward keeps only the tensors in flight: ``FORWARD_LIVE`` times
  the largest activation, plus the input.
* ``backward_s`` / ``forward_s`` (:func:`sample_times`, measured only when asked: estimates need them, the methods
  do not): wall seconds per sample of a forward+backward and of a no-grad forward of 2 to 32 samples
  (``TIMING_BYTES`` worth), the faster of two timed calls each (rough: other load inflates them).

:func:`forward_flops` counts one sample's forward FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` (exact for
convolutions and matrix products; element-wise ops are not counted); :func:`cost_scale` compares them with the
reference network's, for the report's time estimate.

The probe runs forwards on the model: callers that share it across threads hold
``analysis.attributions.model_lock(model)`` (``explain`` already does).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from models.networks import create_network, unwrap_model

__all__ = [
    "SampleCost",
    "SampleTimes",
    "measure_cost",
    "sample_cost",
    "sample_times",
    "measure_times",
    "reference_flops",
    "cost_scale",
    "forward_flops",
    "zoo_cost_scale",
]

BACKWARD_LIVE = 3  # activation-sized gradient buffers alive at once during backward (grad out, grad in, residual)
FORWARD_LIVE = 4  # activation-sized tensors alive at once in a no-grad forward (input, output, residual, workspace)
#: Allocator slack and kernel workspaces on top of the tensors counted. Measured on the 2-core CPU (torchvision,
#: random weights, 224 px, 8 samples): RSS grew 0.99x (resnet50) and 0.91x (resnet18) of the unmargined
#: forward+backward estimate, 1.42x (resnet50) of a no-grad forward estimate with 3 live activations.
MARGIN = 1.2
#: The timed passes run ``TIMING_BYTES // backward_bytes`` samples, clipped to [2, 32]: on a small network one
#: sample's time is mostly per-call overhead (a width-16 CIFAR ResNet18 at 32 px: timing 2 samples made IG's
#: estimate 5x the measured time, 32 samples about 2x, 128 about 1x but a 4x dearer probe), on a large one 2
#: samples already take a second. So estimates of small networks err on the slow side.
TIMING_BYTES, TIMING_MIN, TIMING_MAX = 64 * 2**20, 2, 32
#: The network the report's unit costs were measured on (analysis.experiments.settings): width-16 CIFAR ResNet18.
REFERENCE_NETWORK, REFERENCE_WIDTH, REFERENCE_SHAPE = "resnet18-cifar", 16, (3, 32, 32)


@dataclass(frozen=True)
class SampleCost:
    """Per-sample memory of a network at ``input_shape`` (C, H, W): a forward and a forward+backward, in bytes."""

    input_shape: tuple[int, ...]
    backward_bytes: int
    forward_bytes: int


@dataclass(frozen=True)
class SampleTimes:
    """Per-sample wall seconds of a network at ``input_shape``: a forward+backward and a no-grad forward."""

    input_shape: tuple[int, ...]
    backward_s: float
    forward_s: float
    batch: int  # samples in the timed passes


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, SampleCost]] = weakref.WeakKeyDictionary()
_TIMES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, SampleTimes]] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    device, dtype = torch.device("cpu"), torch.float32
    for p in model.parameters():
        device = p.device
        if p.is_floating_point():
            dtype = p.dtype
            break
    return device, dtype


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_of(n: int, fn: Callable[[], object], device: torch.device, grad: bool) -> float:
    """The fastest of ``n`` timed calls (the first at a new batch size also builds the CPU kernels)."""
    times = []
    for _ in range(n):
        _sync(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(grad):
            fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def measure_cost(model: nn.Module, input_shape: tuple[int, ...]) -> SampleCost:
    """Probe ``model`` on zero-valued samples of ``input_shape`` (C, H, W); see the module docstring."""
    device, dtype = _device_dtype(model)
    shape = tuple(int(s) for s in input_shape)
    fixed = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in fixed:
            saved[ptr] = max(saved.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    def watch(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    handles = [m.register_forward_hook(watch) for m in model.modules()]
    x = torch.zeros((1, *shape), device=device, dtype=dtype, requires_grad=True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        for h in handles:
            h.remove()
        handles = []
        (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
        input_bytes = x.numel() * x.element_size()
        backward_bytes = MARGIN * (sum(saved.values()) + BACKWARD_LIVE * largest[0] + 2 * input_bytes)
        forward_bytes = MARGIN * (FORWARD_LIVE * largest[0] + input_bytes)
        del out, grad
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return SampleCost(shape, int(backward_bytes), int(forward_bytes))


def measure_times(model: nn.Module, input_shape: tuple[int, ...], backward_bytes: int) -> SampleTimes:
    """Time ``model`` on zero-valued samples of ``input_shape``: the faster of two forward+backward and of two no-grad
    forward calls on ``TIMING_BYTES // backward_bytes`` samples (2..32)."""
    device, dtype = _device_dtype(model)
    shape = tuple(int(s) for s in input_shape)
    batch = int(min(TIMING_MAX, max(TIMING_MIN, TIMING_BYTES // max(1, int(backward_bytes)))))
    xb = torch.zeros((batch, *shape), device=device, dtype=dtype, requires_grad=True)
    was_training = model.training
    model.eval()
    try:
        backward_s = _best_of(2, lambda: torch.autograd.grad(model(xb)[:, 0].sum(), xb), device, True) / batch
        forward_s = _best_of(2, lambda: model(xb.detach()), device, False) / batch
    finally:
        model.train(was_training)
    return SampleTimes(shape, backward_s, forward_s, batch)


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one sample of ``input_shape`` (C, H, W), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = _device_dtype(model)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    return int(counter.get_total_flops())


def sample_cost(model: nn.Module, input_shape: tuple[int, ...]) -> SampleCost:
    """The cached :class:`SampleCost` of ``model`` at ``input_shape``, measured on the first call.

    Keyed by the unwrapped module (held weakly: the entry goes with the model), the shape, dtype and device.
    """
    key_model = unwrap_model(model)
    device, dtype = _device_dtype(model)
    key = (tuple(int(s) for s in input_shape), str(dtype), str(device))
    with _GUARD:
        found = _CACHE.get(key_model, {}).get(key)
    if found is not None:
        return found
    cost = measure_cost(model, key[0])
    with _GUARD:
        _CACHE.setdefault(key_model, {})[key] = cost
    return cost


def sample_times(model: nn.Module, input_shape: tuple[int, ...]) -> SampleTimes:
    """The cached :class:`SampleTimes` of ``model`` at ``input_shape``, measured on the first call (after
    :func:`sample_cost`, whose bytes size the timed batch). Only estimates need it: the methods do not time."""
    key_model = unwrap_model(model)
    device, dtype = _device_dtype(model)
    key = (tuple(int(s) for s in input_shape), str(dtype), str(device))
    with _GUARD:
        found = _TIMES.get(key_model, {}).get(key)
    if found is not None:
        return found
    times = measure_times(model, key[0], sample_cost(model, key[0]).backward_bytes)
    with _GUARD:
        _TIMES.setdefault(key_model, {})[key] = times
    return times


_REFERENCE: list[int] = []


def reference_flops() -> int:
    """Forward FLOPs of the reference network (width-16 CIFAR ResNet18, 32x32), counted once."""
    if not _REFERENCE:
        ref = create_network(REFERENCE_NETWORK, 10, width=REFERENCE_WIDTH)
        _REFERENCE.append(forward_flops(ref, REFERENCE_SHAPE))
    return _REFERENCE[0]


_SCALES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, float]] = weakref.WeakKeyDictionary()


def cost_scale(models: list[nn.Module] | tuple[nn.Module, ...], input_shape: tuple[int, ...]) -> float:
    """How many times the reference network's forward FLOPs these networks cost at ``input_shape`` (mean over
    ``models``; 1.0 for none). The report's unit costs were measured on the reference, so its estimate scales
    by this. Cached per model and shape; each new one costs one counted forward."""
    if not models:
        return 1.0
    shape = tuple(int(s) for s in input_shape)
    ratios = []
    for model in models:
        key_model = unwrap_model(model)
        with _GUARD:
            found = _SCALES.get(key_model, {}).get(shape)
        if found is None:
            found = forward_flops(model, shape) / reference_flops()
            with _GUARD:
                _SCALES.setdefault(key_model, {})[shape] = found
        ratios.append(found)
    return float(sum(ratios) / len(ratios))


def zoo_cost_scale(zoo: object) -> float:
    """:func:`cost_scale` of a loaded zoo's networks at its data set's image shape (``zoo.dataset["image_shape"]``;
    1.0 when the zoo does not record it)."""
    shape = (getattr(zoo, "dataset", None) or {}).get("image_shape")
    models = list((getattr(zoo, "models", None) or {}).values())
    return cost_scale(models, tuple(shape)) if shape else 1.0
