"""The field's attribution methods, called through their libraries: captum and pytorch-grad-cam.

Each method has the signature of :mod:`analysis.attribution_methods` (``(model, images on the model's device,
targets (N,) long, **options) -> (maps (N, H, W), extras)``), takes ``memory_budget``, ``progress`` and
``should_stop`` as those do, and is registered from :data:`FIELD_METHODS` by :mod:`analysis.attributions` (this
module does not import that one: the import graph has no circles). None is in the report, the claims or the
saliency page's default selection (``in_report=False``, ``default_on=False``): they are offered, not run by default.

captum (``captum.attr``):

* ``saliency``: ``Saliency(abs=True)``, the largest |gradient| over the channels (Simonyan et al. 2014); >= 0.
* ``smoothgrad``: ``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"`` (Smilkov et al. 2017): |gradient|
  averaged over ``nt_samples`` noisy copies (Gaussian, ``stdev`` in pixel units, 0.15 = 15% of the [0, 1] range),
  then the largest over the channels; >= 0.
* ``gradient_shap``: ``GradientShap`` from a black and a white baseline, ``n_samples`` draws; summed over channels,
  signed.
* ``occlusion``: ``Occlusion`` with a ``window`` x ``window`` patch (all channels) moved by ``stride`` and replaced
  by ``baseline``: the drop of the target's score, averaged over the channels (captum gives every channel of a
  pixel the same value); signed.

SmoothGrad and GradientSHAP draw random numbers (torch's and numpy's global generators, which captum uses): each
image is explained under its own seeded generators (``seed``), restored afterwards, so an image's map depends only on
(model, image, target, options).

pytorch-grad-cam (``grad-cam`` on PyPI, ``pytorch_grad_cam``), on the layer GradCAM reads
(:func:`analysis.attribution_methods._gradcam_layer`: ``layer`` option, else
:func:`analysis.attribution_defaults.gradcam_layer_for`): ``gradcam_plusplus`` (GradCAM++), ``hirescam``
(HiResCAM), ``layercam`` (LayerCAM) and ``scorecam`` (ScoreCAM, gradient-free: one forward per channel of the
layer, hence ``slow``, as Occlusion is: one forward per patch position).
The library ReLUs, resizes (OpenCV, bilinear) and min-max scales every map to [0, 1]: maps
are >= 0 and relative per image. ScoreCAM draws a tqdm bar on stderr per image (the library's own).

Cost (``Method.cost``) is said in forwards and backwards per image; the memory budget chunks the work as in
:mod:`analysis.attribution_methods`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from captum.attr import GradientShap, NoiseTunnel, Occlusion, Saliency
from torch import nn

from analysis.attribution_defaults import side_of
from analysis.attribution_methods import _device, _gradcam_layer
from analysis.jobs_protocol import Progress, ShouldStop, check_stop, report
from analysis.memory_budget import memory_budget as resolve_budget
from analysis.memory_budget import samples_that_fit
from analysis.network_cost import sample_cost

__all__ = [
    "CAM_CLASSES",
    "FIELD_METHODS",
    "gradcam_plusplus",
    "gradient_shap",
    "hirescam",
    "layercam",
    "occlusion",
    "occlusion_geometry",
    "saliency",
    "scorecam",
    "seeded",
    "smoothgrad",
]


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's (CPU and ``device``'s) and numpy's global generators seeded with ``seed`` inside, restored after:
    captum draws from both."""
    devices = [device] if device.type == "cuda" else []
    state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _counting_forward(
    model: nn.Module, total: int, what: str, progress: Progress | None, should_stop: ShouldStop | None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[int]]:
    """A forward that asks ``should_stop`` and reports ``done / total`` samples before each call."""
    done = [0]

    def forward(x: torch.Tensor) -> torch.Tensor:
        check_stop(should_stop, what)
        report(progress, done[0] / max(1, total))
        out = model(x)
        done[0] += len(x)
        return out

    return forward, done


def _budget(model: nn.Module, images: torch.Tensor, memory_budget: int | str | None) -> tuple[int, Any]:
    return resolve_budget(_device(model), memory_budget), sample_cost(model, tuple(images.shape[1:]))


def _extras(budget: int, per_sample: int, **more: Any) -> dict[str, Any]:
    return {"memory_budget": budget, "sample_bytes": per_sample, **more}


# ----------------------------------------------------------------------------- captum


def saliency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """captum ``Saliency`` (abs=True), max over channels; images in chunks that fit the budget (forward+backward)."""
    budget, cost = _budget(model, images, memory_budget)
    chunk = samples_that_fit(cost.backward_bytes, budget, f"saliency on {tuple(images.shape[1:])} inputs")
    forward, _ = _counting_forward(model, len(images), "saliency", progress, should_stop)
    explainer = Saliency(forward)
    x = images.detach().requires_grad_(True)  # captum would warn that it set this itself
    maps = [
        explainer.attribute(x[s : s + chunk], target=targets[s : s + chunk], abs=True).detach().amax(1).cpu()
        for s in range(0, len(images), chunk)
    ]
    report(progress, 1.0)
    return torch.cat(maps).numpy(), _extras(budget, cost.backward_bytes)


def smoothgrad(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    nt_samples: int = 16,
    stdev: float = 0.15,
    seed: int = 0,
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``: |gradient| averaged over ``nt_samples`` noisy
    copies (noise sd ``stdev``), max over channels; one image at a time under ``seeded(seed)``, its noisy copies in
    batches of ``nt_samples_batch_size`` = what fits the budget (extras)."""
    budget, cost = _budget(model, images, memory_budget)
    cap = samples_that_fit(cost.backward_bytes, budget, f"smoothgrad on {tuple(images.shape[1:])} inputs")
    batch = min(int(nt_samples), cap)
    forward, _ = _counting_forward(model, len(images) * int(nt_samples), "smoothgrad", progress, should_stop)
    explainer = NoiseTunnel(Saliency(forward))
    maps = []
    for i in range(len(images)):
        with seeded(seed, images.device):
            attr = explainer.attribute(images[i : i + 1], nt_type="smoothgrad", nt_samples=int(nt_samples),
                                       nt_samples_batch_size=batch, stdevs=float(stdev), target=targets[i : i + 1],
                                       abs=True)  # fmt: skip
        maps.append(attr.detach().amax(1).cpu())
    report(progress, 1.0)
    return torch.cat(maps).numpy(), _extras(budget, cost.backward_bytes, nt_samples_batch_size=batch)


def black_white_baselines(images: torch.Tensor) -> torch.Tensor:
    """GradientSHAP's reference distribution: a black and a white image, (2, C, H, W)."""
    shape = (1, *images.shape[1:])
    return torch.cat([torch.zeros(shape), torch.ones(shape)]).to(images.device, images.dtype)


def gradient_shap(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_samples: int = 16,
    stdev: float = 0.0,
    seed: int = 0,
    baselines: torch.Tensor | None = None,
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """captum ``GradientShap`` from ``baselines`` (None: :func:`black_white_baselines`), ``n_samples`` draws with
    input noise ``stdev``, summed over channels (signed); one image at a time under ``seeded(seed)``. captum puts
    all of an image's draws through the network at once: the budget must hold ``n_samples`` samples
    (:class:`~analysis.memory_budget.MemoryBudgetError` otherwise; lower ``n_samples``)."""
    budget, cost = _budget(model, images, memory_budget)
    what = f"gradient_shap on {tuple(images.shape[1:])} inputs ({n_samples} draws at once)"
    samples_that_fit(cost.backward_bytes * int(n_samples), budget, what)
    base = black_white_baselines(images) if baselines is None else baselines.to(images.device, images.dtype)
    forward, _ = _counting_forward(model, len(images) * int(n_samples), "gradient_shap", progress, should_stop)
    explainer = GradientShap(forward)
    maps = []
    for i in range(len(images)):
        with seeded(seed, images.device):
            attr = explainer.attribute(images[i : i + 1], baselines=base, n_samples=int(n_samples),
                                       stdevs=float(stdev), target=targets[i : i + 1])  # fmt: skip
        maps.append(attr.detach().sum(1).cpu())
    report(progress, 1.0)
    return torch.cat(maps).numpy(), _extras(budget, cost.backward_bytes)


def occlusion_geometry(input_shape: tuple[int, ...], window: int | None, stride: int | None) -> tuple[int, int, int]:
    """(window, stride, positions) for ``input_shape`` (C, H, W): window None is side / 8 (4 at 32 px), stride None
    half the window; positions = how many patches captum slides over the image."""
    w = int(window or max(2, side_of(input_shape) // 8))
    s = int(stride or max(1, w // 2))
    h, wd = input_shape[-2:]
    if w > min(h, wd) or w < 1 or s < 1:
        raise ValueError(f"occlusion window {w} / stride {s} do not fit a {h}x{wd} image")
    return w, s, ((h - w) // s + 1) * ((wd - w) // s + 1)


def occlusion(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    window: int | None = None,
    stride: int | None = None,
    baseline: float = 0.0,
    max_perturbations_per_eval: int = 256,
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """captum ``Occlusion``: a (C, window, window) patch set to ``baseline``, moved by ``stride``; the map is the
    target score's drop averaged over channels (signed). ``perturbations_per_eval`` is what fits the budget (forward
    only) beside the images of one call, at most ``max_perturbations_per_eval``. extras: window, stride, positions."""
    shape = tuple(images.shape[1:])
    w, s, positions = occlusion_geometry(shape, window, stride)
    budget, cost = _budget(model, images, memory_budget)
    cap = samples_that_fit(cost.forward_bytes, budget, f"occlusion on {shape} inputs (forward only)")
    per_call = min(len(images), cap)
    ppe = max(1, min(int(max_perturbations_per_eval), positions, cap // per_call))
    forward, _ = _counting_forward(model, len(images) * (positions + 1), "occlusion", progress, should_stop)
    explainer = Occlusion(forward)
    maps = []
    with torch.no_grad():
        for start in range(0, len(images), per_call):
            sl = slice(start, start + per_call)
            attr = explainer.attribute(images[sl], sliding_window_shapes=(shape[0], w, w), strides=(shape[0], s, s),
                                       baselines=float(baseline), target=targets[sl],
                                       perturbations_per_eval=ppe)  # fmt: skip
            maps.append(attr.detach().mean(1).cpu())
    report(progress, 1.0)
    return torch.cat(maps).numpy(), _extras(budget, cost.forward_bytes, window=w, stride=s, positions=positions,
                                            perturbations_per_eval=ppe)  # fmt: skip


# ----------------------------------------------------------------------------- pytorch-grad-cam

CAM_CLASSES = {"gradcam_plusplus": "GradCAMPlusPlus", "hirescam": "HiResCAM", "layercam": "LayerCAM",
               "scorecam": "ScoreCAM"}  # fmt: skip


class _Guarded(nn.Module):
    """The model behind a stop check before every forward (ScoreCAM runs one per channel of the layer)."""

    def __init__(self, model: nn.Module, should_stop: ShouldStop | None, what: str) -> None:
        super().__init__()
        self.model, self._should_stop, self._what = model, should_stop, what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_stop(self._should_stop, self._what)
        return self.model(x)


def _layer_shape(model: nn.Module, module: nn.Module, image: torch.Tensor) -> tuple[int, ...]:
    """The (C, h, w) output of ``module`` for one image: one no-grad probe forward."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
    try:
        with torch.no_grad():
            model(image[:1])
    finally:
        handle.remove()
    return seen[-1]


def _grad_cam(
    method: str,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str | nn.Module | None,
    memory_budget: int | str | None,
    progress: Progress | None,
    should_stop: ShouldStop | None,
    batch_size: int = 64,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One pytorch-grad-cam class (``CAM_CLASSES[method]``) on GradCAM's layer, in chunks that fit the budget."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name, module = _gradcam_layer(model, images, layer)
    budget, cost = _budget(model, images, memory_budget)
    shape = tuple(images.shape[1:])
    extras = _extras(budget, cost.backward_bytes, layer=name)
    if method == "scorecam":  # per image: the masked copies (C, 3, H, W) and their masks, plus forwards in batches
        channels = _layer_shape(model, module, images)[0]
        fixed = cost.backward_bytes + channels * (shape[0] + 1) * int(np.prod(shape[1:])) * images.element_size()
        per_batch = samples_that_fit(cost.forward_bytes, budget, f"scorecam on {shape} inputs", fixed=fixed)
        chunk, extras["batch_size"] = 1, min(int(batch_size), channels, per_batch)
    else:
        chunk = samples_that_fit(cost.backward_bytes, budget, f"{method} on {shape} inputs (forward+backward)")
    cam = getattr(pytorch_grad_cam, CAM_CLASSES[method])(_Guarded(model, should_stop, method), [module])
    if method == "scorecam":
        cam.batch_size = extras["batch_size"]  # ScoreCAM reads its forward batch from this attribute
    maps = []
    try:
        for start in range(0, len(images), chunk):
            check_stop(should_stop, method)
            sl = slice(start, start + chunk)
            wanted = [ClassifierOutputTarget(int(t)) for t in targets[sl].tolist()]
            maps.append(np.asarray(cam(input_tensor=images[sl], targets=wanted), dtype=np.float32))
            report(progress, min(len(images), start + chunk) / len(images))
    finally:
        cam.activations_and_grads.release()
    return np.concatenate(maps), extras


def gradcam_plusplus(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *,
                     layer: str | nn.Module | None = None, memory_budget: int | str | None = None,
                     progress: Progress | None = None, should_stop: ShouldStop | None = None,
                     ) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """pytorch-grad-cam ``GradCAMPlusPlus`` (Chattopadhyay et al. 2018) on GradCAM's layer; [0, 1] per image."""
    return _grad_cam("gradcam_plusplus", model, images, targets, layer, memory_budget, progress, should_stop)


def hirescam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *,
             layer: str | nn.Module | None = None, memory_budget: int | str | None = None,
             progress: Progress | None = None, should_stop: ShouldStop | None = None,
             ) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """pytorch-grad-cam ``HiResCAM`` (Draelos & Carin 2020: gradients times activations, element-wise) on GradCAM's
    layer; [0, 1] per image."""
    return _grad_cam("hirescam", model, images, targets, layer, memory_budget, progress, should_stop)


def layercam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *,
             layer: str | nn.Module | None = None, memory_budget: int | str | None = None,
             progress: Progress | None = None, should_stop: ShouldStop | None = None,
             ) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """pytorch-grad-cam ``LayerCAM`` (Jiang et al. 2021: positive gradients times activations) on GradCAM's layer;
    [0, 1] per image."""
    return _grad_cam("layercam", model, images, targets, layer, memory_budget, progress, should_stop)


def scorecam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *,
             layer: str | nn.Module | None = None, batch_size: int = 64, memory_budget: int | str | None = None,
             progress: Progress | None = None, should_stop: ShouldStop | None = None,
             ) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """pytorch-grad-cam ``ScoreCAM`` (Wang et al. 2020: each channel's upsampled activation masks the image, weighted
    by the softmax of the target's scores): one forward per channel, in batches of at most ``batch_size`` that fit
    the budget beside the image's masked copies; one image at a time; [0, 1] per image."""
    return _grad_cam("scorecam", model, images, targets, layer, memory_budget, progress, should_stop, batch_size)


# ----------------------------------------------------------------------------- descriptors

_OFF = {"in_report": False, "default_on": False}

#: The ``analysis.attributions.Method`` fields of each method here; that module registers them (one each).
FIELD_METHODS: tuple[dict[str, Any], ...] = (
    {"name": "saliency", "function": saliency, "label": "Saliency", "signed": False,
     "cost": "1 forward+backward per image", **_OFF},
    {"name": "smoothgrad", "function": smoothgrad, "label": "SmoothGrad", "signed": False,
     "defaults": {"nt_samples": 16, "stdev": 0.15, "seed": 0}, "settings": {"seed": "seed"},
     "cost": "nt_samples (16) forward+backward per image", **_OFF},
    {"name": "gradient_shap", "function": gradient_shap, "label": "GradientSHAP", "signed": True,
     "defaults": {"n_samples": 16, "stdev": 0.0, "seed": 0}, "settings": {"seed": "seed"},
     "cost": "n_samples (16) forward+backward per image, all at once", **_OFF},
    {"name": "occlusion", "function": occlusion, "label": "Occlusion", "signed": True, "slow": True,
     "cost": "1 forward per patch position (225 at 32 px: window 4, stride 2), no backward", **_OFF},
    {"name": "gradcam_plusplus", "function": gradcam_plusplus, "label": "GradCAM++", "signed": False,
     "cost": "1 forward+backward per image", **_OFF},
    {"name": "hirescam", "function": hirescam, "label": "HiResCAM", "signed": False,
     "cost": "1 forward+backward per image", **_OFF},
    {"name": "layercam", "function": layercam, "label": "LayerCAM", "signed": False,
     "cost": "1 forward+backward per image", **_OFF},
    {"name": "scorecam", "function": scorecam, "label": "ScoreCAM", "signed": False, "slow": True,
     "cost": "1 forward per channel of the layer per image (512 for a ResNet18's layer4), no backward", **_OFF},
)  # fmt: skip
