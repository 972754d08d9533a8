"""Integrated Gradients, GradCAM and LIME behind one interface.

One verb::

    explain(method, model, images, targets=None, **options) -> Explanation

``images`` are pixels in [0, 1], (N, 3, H, W) (normalisation lives inside the
model); ``targets`` are class indices (N,), or None for the model's predicted
class. ``Explanation.maps`` is a float32 array (N, H, W) on the CPU (float64 for a
``.double()`` model): IG summed over channels (signed), GradCAM upsampled to the
input (>= 0), LIME the weight of each pixel's segment (signed). ``METHOD_REGISTRY`` holds one :class:`Method` per name
(function, label, signed, default options); ``register_method`` adds one, and the report, claims and
dashboard loop over everything registered. Drawing is not done here; the quality metrics (mask share,
deletion / insertion, stability) are in :mod:`analysis.attribution_quality`.

Methods (in :mod:`analysis.attribution_methods`, registered here): ``integrated_gradients``, ``gradcam``,
``lime``; from :mod:`analysis.attribution_methods_field` (``in_report=False``: offered, not in the report) captum's
Saliency, SmoothGrad, GradientSHAP, Occlusion and pytorch-grad-cam's GradCAM++, HiResCAM, LayerCAM, ScoreCAM.
Each chunks its work to a memory budget and reports progress / honours a stop request between
chunks (options ``memory_budget``, ``progress``, ``should_stop``; see that module).

Concurrency: captum attaches hooks to the model while it attributes (GradCAM's
forward hook on ``gradcam_layer`` fires on *every* forward through that layer,
from any thread), and ``eval_mode`` flips and restores ``model.training``. Two
threads explaining with one shared model (the dashboard serves concurrent users
from one loaded zoo) could therefore read each other's activations or leave the
model in the wrong mode. ``explain`` and ``deletion_insertion`` (in ``analysis.attribution_quality``) hold a per-model
re-entrant lock (``model_lock(model)``, a ``WeakKeyDictionary`` keyed by the
unwrapped module, so locks vanish with their models) for the whole computation,
and run the model in eval mode. Any other code that runs forwards on a model
that may be being explained at the same time should hold the same lock::

    with model_lock(model):
        logits = predict_logits(model, images)

Different models attribute in parallel; one model serialises its callers.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from analysis.attribution_defaults import fitted_options
from analysis.attribution_methods import (
    SEGMENTATIONS,
    _as_targets,
    _device,
    _dtype,
    gradcam,
    integrated_gradients,
    lime,
)
from analysis.attribution_methods_field import FIELD_METHODS
from models.networks import unwrap_model
from models.perturbations import eval_mode
from models.registry import FieldView, register

__all__ = [
    "Explanation",
    "Method",
    "METHOD_REGISTRY",
    "METHODS",
    "get_method",
    "register_method",
    "SEGMENTATIONS",
    "explain",
    "model_lock",
    "integrated_gradients",
    "gradcam",
    "lime",
]


@dataclass
class Explanation:
    """One method's maps (N, H, W) on the CPU, the class explained per image (N,), and method extras.

    ``maps`` are float32 (float64 for a double-precision model).
    """

    maps: np.ndarray
    method: str
    targets: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- locking

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that guards attribution (and any other forward) on ``model``.

    Keyed by the unwrapped module (DDP / torch.compile wrappers share their inner
    module's lock), held weakly: the lock goes when the model goes.
    """
    key = unwrap_model(model)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
        return lock


MethodFn = Callable[..., tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class Method:
    """One attribution method: its function, how it is labelled and drawn, and its default options.

    ``function(model, images, targets, **options) -> (maps (N, H, W), extras)`` runs under ``explain``'s
    lock and eval mode. ``signed`` maps have evidence for and against the class (a diverging colour
    scale); unsigned ones are >= 0. ``settings`` maps an option name to the name of the report or
    dashboard setting that sets it (e.g. ``{"n_steps": "ig_steps"}``). ``slow`` methods are off by
    default in interactive views (:func:`analysis.attribution_estimates.estimate` says whether a method is slow
    at a given input size). ``defaults`` are the values at the lab's 32-px inputs; ``options(input_size=...)``
    replaces the size-dependent ones by :func:`analysis.attribution_defaults.fitted_options`.
    ``in_report`` methods are measured by the report and its claims; ``default_on`` ones are ticked on the saliency
    page (:attr:`selected_by_default`); ``cost`` says what an image costs.
    """

    name: str
    function: MethodFn
    label: str
    signed: bool
    defaults: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    slow: bool = False
    in_report: bool = True  # measured by the report's experiments and claims (False: offered in the dashboard only)
    default_on: bool = True  # ticked by default on the saliency page (slow methods never are)
    cost: str = ""  # what one image costs, in forwards and backwards (shown beside the method)

    @property
    def selected_by_default(self) -> bool:
        """Whether interactive views compute this method without being asked: ``default_on`` and not ``slow``."""
        return self.default_on and not self.slow

    def options(
        self, settings: Mapping[str, Any] | Any = None, *, input_size: int | tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """The method's options: defaults (fitted to ``input_size``, a side or a (C, H, W) shape, when given), then
        values read from ``settings`` (a mapping or an object with attributes named as in ``self.settings``), then
        ``overrides``."""
        opts = dict(self.defaults)
        if input_size is not None:
            opts.update(fitted_options(self.name, input_size))
        for option, key in self.settings.items():
            value = settings.get(key) if isinstance(settings, Mapping) else getattr(settings, key, None)
            if value is not None:
                opts[option] = value
        opts.update(overrides)
        return opts


METHOD_REGISTRY: dict[str, Method] = {}
METHODS: Mapping[str, MethodFn] = FieldView(METHOD_REGISTRY, lambda m: m.function)  # name -> function (live view)


def register_method(method: Method, replace: bool = False) -> Method:
    """Add an attribution method: ``explain``, the report, the claims and the dashboard then offer it."""
    return register(METHOD_REGISTRY, method.name, method, replace)


def get_method(name: str) -> Method:
    """The registered method called ``name``."""
    if name not in METHOD_REGISTRY:
        raise ValueError(f"unknown attribution method {name!r}; known: {', '.join(METHOD_REGISTRY)}")
    return METHOD_REGISTRY[name]


register_method(
    Method("integrated_gradients", integrated_gradients, "Integrated Gradients", signed=True,
           defaults={"n_steps": 50}, settings={"n_steps": "ig_steps"})
)  # fmt: skip
register_method(Method("gradcam", gradcam, "GradCAM", signed=False))
register_method(
    Method("lime", lime, "LIME", signed=True, defaults={"num_samples": 1000, "seed": 0},
           settings={"num_samples": "lime_samples", "seed": "seed"}, slow=True)
)  # fmt: skip
# captum's and pytorch-grad-cam's (analysis.attribution_methods_field): offered, not in the report
for _spec in FIELD_METHODS:
    register_method(Method(**_spec))


def explain(
    method: str,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | int | None = None,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s score for ``targets`` (None: its predicted class) on ``images`` (N,3,H,W) in [0,1].

    ``options`` go to the method (see ``METHODS``). Thread-safe: holds
    ``model_lock(model)`` and runs the model in eval mode (its mode is restored).
    """
    fn = get_method(method).function
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    device = _device(model)
    x = images.detach().to(device, _dtype(model))
    with model_lock(model), eval_mode(model), torch.enable_grad():
        if targets is None:
            with torch.no_grad():
                t = model(x).argmax(1)
        else:
            t = _as_targets(targets, len(x), device)
        maps, extras = fn(model, x, t, **options)
    maps = np.asarray(maps)
    if maps.dtype != np.float64:  # float32, or float64 for a double-precision model
        maps = maps.astype(np.float32)
    return Explanation(maps, method, t.cpu().numpy(), extras)
