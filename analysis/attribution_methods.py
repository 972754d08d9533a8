"""The attribution methods themselves: Integrated Gradients, GradCAM and LIME, and their shared helpers.

Each method: ``(model, images on the model's device, targets (N,) long, **options) -> (maps (N, H, W), extras)``.
Call them through :func:`analysis.attributions.explain`, which holds the model lock and sets eval mode (and
registers them in ``METHOD_REGISTRY``).

Methods:

* ``integrated_gradients``: ``captum.attr.IntegratedGradients`` from a black
  baseline (pixels 0), Gauss-Legendre steps (50 at 32 px, fewer on larger inputs:
  ``analysis.attribution_defaults``); ``extras["delta"]`` is captum's
  convergence delta per image, ``sum(attributions) - (F(x)[t] - F(baseline)[t])``
  (completeness: it should be near 0; more steps shrink it).
* ``gradcam``: ``captum.attr.LayerGradCam`` on ``model.gradcam_layer`` (the last
  convolutional block; a finer one when that block's map is 1x1 at this input) with
  ``relu_attributions=True``, upsampled bilinearly to the input; ``extras["raw"]`` is
  the map before upsampling (4x4 for a CIFAR ResNet18 at 32x32).
* ``lime``: ``lime.lime_image.LimeImageExplainer(random_state=seed)``, a fresh
  explainer per image, so an image's map depends only on (model, image, target,
  options) and the same seed gives the same map. lime's default segmentation
  (quickshift, kernel_size=4, max_dist=200) gives ONE segment on a 32x32 image,
  hence one weight for the whole image (no spatial information); the default here is ``felzenszwalb(scale=20,
  sigma=0.5, min_size=5)`` at 32 px (scaled with the input size, so a 224-px image gets about as many segments),
  chosen by measurement on 300 fashion-mnist-m test
  images (segments: min 7, median 42, max 83; the majority label of a segment
  agrees with the garment mask on 97% of pixels; ~1 ms). ``slic(n_segments=50,
  compactness=10)`` (17..36 segments, 94%) and ``quickshift(kernel_size=1,
  max_dist=5)`` are options; ``slic`` with compactness=1 fell to 3 segments on
  some garment images. ``segmentation="lime-default"`` restores lime's own. The
  classifier function receives lime's batches (``batch_size`` = num_samples by
  default, lime's own default is 10) and returns softmax probabilities computed
  under ``torch.no_grad`` in eval mode. lime 0.2.0.1 always draws a tqdm progress
  bar on stderr (its ``explain_instance`` has no ``progress_bar`` argument; it is
  passed only where the installed lime accepts it).

Memory and long runs: every method takes ``memory_budget`` (bytes or a size such as ``"2GB"``; default: the
setting, ``$SCL_MEMORY_BUDGET``, or 25% of the device's free memory, see :mod:`analysis.memory_budget`) and chunks
its work to fit it, from the per-sample cost measured once per network and input size
(:mod:`analysis.network_cost`); and ``progress`` / ``should_stop`` callbacks honoured between chunks
(:mod:`analysis.jobs_protocol`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from lime import lime_image
from skimage import segmentation as sk_segmentation
from torch import nn

from analysis.attribution_defaults import felzenszwalb_params, gradcam_layer_for, ig_steps_for, lime_samples_for
from analysis.jobs_protocol import Progress, ShouldStop, check_stop, report
from analysis.memory_budget import memory_budget as resolve_budget
from analysis.memory_budget import samples_that_fit
from analysis.network_cost import sample_cost
from models.networks import unwrap_model

__all__ = ["integrated_gradients", "gradcam", "lime", "SEGMENTATIONS", "DEFAULT_SEGMENTATION"]


# ----------------------------------------------------------------------------- helpers


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _dtype(model: nn.Module) -> torch.dtype:
    """The model's floating dtype (float32 unless it was converted, e.g. ``.double()``)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _as_targets(targets: Any, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(targets, dtype=torch.long).reshape(-1).to(device)
    if t.numel() == 1 and n != 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"targets must have one class per image: got {t.numel()} for {n} images")
    return t


def _baseline_like(images: torch.Tensor, baseline: float | torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(images.device, images.dtype).expand_as(images).contiguous()
    return torch.full_like(images, float(baseline))


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------- methods
# Each method: (model, images on the model's device, targets (N,) long) -> (maps (N,H,W), extras).
# Call them through ``explain``, which holds the model lock and sets eval mode.


def _plan_ig(n_images: int, n_steps: int, cap: int) -> tuple[int, int]:
    """(images per captum call, captum's internal_batch_size) for at most ``cap`` interpolated images at once."""
    if cap >= n_steps:
        per_call = max(1, min(n_images, cap // n_steps))
        return per_call, per_call * n_steps
    return 1, cap  # one image per call; captum splits its steps into batches of ``cap``


def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_steps: int | None = None,
    baseline: float | torch.Tensor = 0.0,
    internal_batch_size: int = 512,
    integration_method: str = "gausslegendre",
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Integrated Gradients from ``baseline`` (0 = black), summed over channels, signed.

    ``n_steps`` None: :func:`analysis.attribution_defaults.ig_steps_for` the input size (50 at 32 px, 16 at 224 px).
    Memory: at most ``k`` interpolated images go through the network at once, ``k = min(internal_batch_size,
    budget // per-sample cost)`` with the budget from :func:`analysis.memory_budget.memory_budget` (``memory_budget``:
    bytes or a size such as ``"2GB"``; None: the setting, ``$SCL_MEMORY_BUDGET`` or 25% of the free memory) and the
    cost of one sample's forward+backward measured once per network and input size
    (:func:`analysis.network_cost.sample_cost`). When ``k >= n_steps`` whole images go through captum in chunks of
    ``k // n_steps``; otherwise one image at a time with captum's ``internal_batch_size = k`` splitting its steps.
    Not even one sample in the budget: :class:`~analysis.memory_budget.MemoryBudgetError`, before any work.
    ``integration_method`` is captum's ``method`` (renamed: ``explain``'s first argument is called ``method``).

    ``progress(fraction)`` is called after each chunk of interpolated images (and with 1.0 at the end);
    ``should_stop()`` is asked before each chunk and, when True, :class:`~analysis.jobs_protocol.Cancelled` is raised.

    extras: ``delta`` (N,) captum's convergence delta, the completeness error
    ``sum(attr) - (F(x)[t] - F(baseline)[t])``; ``n_steps``; ``internal_batch_size`` (the ``k`` used),
    ``memory_budget`` (bytes) and ``sample_bytes`` (the measured per-sample cost).
    """
    n_steps = int(n_steps or ig_steps_for(tuple(images.shape[1:])))
    budget = resolve_budget(_device(model), memory_budget)
    per_sample = sample_cost(model, tuple(images.shape[1:])).backward_bytes
    what = f"integrated_gradients on {tuple(images.shape[1:])} inputs (one interpolated image, forward+backward)"
    cap = min(int(internal_batch_size), samples_that_fit(per_sample, budget, what))
    per_call, internal = _plan_ig(len(images), n_steps, cap)
    total = len(images) * (n_steps + 2)  # interpolated images, plus captum's two delta forwards per image
    done = [0]

    def forward(x: torch.Tensor) -> torch.Tensor:
        check_stop(should_stop, "integrated_gradients")
        report(progress, done[0] / total)  # everything before this forward has finished its backward
        out = model(x)
        done[0] += len(x)
        return out

    ig = IntegratedGradients(forward)
    base = _baseline_like(images, baseline)
    maps, deltas = [], []
    for start in range(0, len(images), per_call):
        sl = slice(start, start + per_call)
        x = images[sl]
        attr, delta = ig.attribute(
            x,
            baselines=base[sl],
            target=targets[sl],
            n_steps=n_steps,
            method=integration_method,
            internal_batch_size=max(internal, len(x)),
            return_convergence_delta=True,
        )
        maps.append(attr.detach().sum(1).cpu())
        deltas.append(delta.detach().reshape(-1).cpu())
    report(progress, 1.0)
    extras = {"delta": torch.cat(deltas).numpy(), "n_steps": n_steps, "internal_batch_size": internal,
              "memory_budget": budget, "sample_bytes": per_sample}  # fmt: skip
    return torch.cat(maps).numpy(), extras


def _gradcam_layer(model: nn.Module, images: torch.Tensor, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    net = unwrap_model(model)
    if isinstance(layer, nn.Module):
        names = {id(m): n for n, m in net.named_modules()}
        return names.get(id(layer), type(layer).__name__), layer
    if isinstance(layer, str):  # a name in the network's naming, or (imported networks) in the source model's
        for root in (net, getattr(net, "body", None)):
            if isinstance(root, nn.Module):
                try:
                    return layer, root.get_submodule(layer)
                except AttributeError:
                    pass
        raise ValueError(f"{type(net).__name__} has no module {layer!r} for GradCAM")
    name, module, _ = gradcam_layer_for(net, tuple(images.shape[1:]))
    if name is None:
        names = {id(m): n for n, m in net.named_modules()}
        name = names.get(id(module), "gradcam_layer")
    return name, module


def gradcam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    interpolate_mode: str = "bilinear",
    layer: str | nn.Module | None = None,
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """GradCAM (ReLU of the weighted activations) on ``layer``, upsampled to the input size.

    ``layer`` (a module name of the unwrapped model or, for an imported network, of its source model as in
    ``--gradcam-layer``; or the module) None:
    :func:`analysis.attribution_defaults.gradcam_layer_for`, i.e. ``model.gradcam_layer`` unless its map is 1x1 at
    this input, then the last layer before the global pooling whose map is at least 2x2. Warns (UserWarning) when
    the map is smaller than 4x4: upsampled, it can only say roughly where. Images go through in chunks that fit the
    memory budget (as in :func:`integrated_gradients`; one chunk for a small batch); ``progress`` / ``should_stop``
    are honoured between chunks. extras: ``raw`` (the map before upsampling), ``layer`` (its name).
    """
    import warnings

    name, module = _gradcam_layer(model, images, layer)
    budget = resolve_budget(_device(model), memory_budget)
    per_sample = sample_cost(model, tuple(images.shape[1:])).backward_bytes
    chunk = samples_that_fit(per_sample, budget, f"gradcam on {tuple(images.shape[1:])} inputs (forward+backward)")
    explainer = LayerGradCam(model, module)
    cams = []
    for start in range(0, len(images), chunk):
        check_stop(should_stop, "gradcam")
        sl = slice(start, start + chunk)
        cams.append(explainer.attribute(images[sl], target=targets[sl], relu_attributions=True).detach())
        report(progress, min(len(images), start + chunk) / len(images))
    cam = torch.cat(cams)
    if min(cam.shape[-2:]) < 4:
        warnings.warn(
            f"GradCAM map is only {cam.shape[-2]}x{cam.shape[-1]} for {tuple(images.shape[-2:])} inputs: too coarse "
            "to localise much; use a larger input or an earlier layer (models.import_model --gradcam-layer)",
            UserWarning,
            stacklevel=2,
        )
    up = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode=interpolate_mode)
    return up[:, 0].cpu().numpy(), {"raw": cam[:, 0].cpu().numpy(), "layer": name}


def _felzenszwalb(image: np.ndarray) -> np.ndarray:
    """Felzenszwalb with the 32-px parameters (scale 20, sigma 0.5, min_size 5) scaled to the image's size, so a
    224-px image gets about as many segments as a 32-px one (``analysis.attribution_defaults.felzenszwalb_params``)."""
    return sk_segmentation.felzenszwalb(image, **felzenszwalb_params(tuple(image.shape[:2])))


def _slic(image: np.ndarray) -> np.ndarray:
    return sk_segmentation.slic(image, n_segments=50, compactness=10, start_label=0)


def _quickshift(image: np.ndarray) -> np.ndarray:
    return sk_segmentation.quickshift(image, kernel_size=1, max_dist=5, ratio=0.2, rng=0)


# name -> segmentation of an (H, W, 3) float image in [0, 1]; "lime-default" (None) is lime's own quickshift.
SEGMENTATIONS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "felzenszwalb": _felzenszwalb,
    "slic": _slic,
    "quickshift": _quickshift,
    "lime-default": None,
}
DEFAULT_SEGMENTATION = "felzenszwalb"


def _sequential(segment_fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Relabel segments 0..K-1: lime indexes its features by segment label."""

    def segment(image: np.ndarray) -> np.ndarray:
        labels = np.asarray(segment_fn(image))
        return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)

    return segment


def _segmenter(segmentation: str | Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray] | None:
    if callable(segmentation):
        return _sequential(segmentation)
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"unknown segmentation {segmentation!r}; known: {', '.join(SEGMENTATIONS)}")
    fn = SEGMENTATIONS[segmentation]
    return None if fn is None else _sequential(fn)


_LIME_HAS_PROGRESS_BAR = "progress_bar" in inspect.signature(lime_image.LimeImageExplainer.explain_instance).parameters


#: Bytes per perturbed image that lime and the classifier hold per pixel and channel beside the network's own
#: activations: lime's float64 copy and its np.array of the batch (8 + 8), our float32 tensor and its
#: channels_last copy (4 + 4).
LIME_BYTES_PER_VALUE = 24


def _lime_classifier(
    model: nn.Module, predict_batch_size: int, on_batch: Callable[[int], None] | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """lime's classifier function: (B, H, W, C) images -> softmax probabilities, in chunks of ``predict_batch_size``;
    ``on_batch(B)`` is called before each of lime's batches (progress and cancelling)."""
    device, dtype = _device(model), _dtype(model)

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        if on_batch is not None:
            on_batch(len(batch))
        # lime hands over (B, H, W, C): its transpose *is* a channels_last NCHW tensor, which the convolutions
        # run ~1.3x faster on the CPU (measured at width 16); the model itself is left untouched.
        x = torch.from_numpy(batch.transpose(0, 3, 1, 2)).to(device, dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            probs = [
                torch.softmax(model(x[s : s + predict_batch_size]).float(), 1)
                for s in range(0, len(x), predict_batch_size)
            ]
        return torch.cat(probs).cpu().numpy()

    return classifier_fn


def _plan_lime(
    model: nn.Module, shape: tuple[int, ...], num_samples: int, batch_size: int, predict_batch_size: int, budget: int
) -> tuple[int, int]:
    """(lime batch, classifier chunk) within ``budget``: half of it at most for the network's activations (forward
    only), the rest for lime's copies of the perturbed images (``LIME_BYTES_PER_VALUE`` per value)."""
    forward = sample_cost(model, shape).forward_bytes
    raw = LIME_BYTES_PER_VALUE * int(np.prod(shape))
    what = f"lime on {shape} inputs (one perturbed image: lime's copies and a forward)"
    samples_that_fit(forward + raw, budget, what)  # raises when not even one perturbed image fits
    chunk = max(1, min(predict_batch_size, (budget // 2) // forward))
    lime_batch = max(1, min(batch_size, num_samples, (budget - chunk * forward) // raw))
    return lime_batch, min(chunk, lime_batch)


def lime(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_samples: int | None = None,
    seed: int = 0,
    segmentation: str | Callable[[np.ndarray], np.ndarray] = DEFAULT_SEGMENTATION,
    batch_size: int | None = None,
    predict_batch_size: int = 250,
    hide_color: float = 0.0,
    memory_budget: int | str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """LIME with a seeded explainer per image; map = weight of each pixel's segment for the target.

    ``num_samples`` None: :func:`analysis.attribution_defaults.lime_samples_for` the input size (1000 at 32 px,
    300 at 224 px). ``batch_size`` is lime's batch of perturbed images per classifier call (default
    ``num_samples``: one call; lime's own default is 10); the classifier forwards them in chunks of
    ``predict_batch_size`` (on 2 CPU cores one batch of 1000 32x32 images was ~1.5x slower than chunks of 25..250:
    the activations outgrow the caches). Both are lowered to fit the memory budget (see
    :func:`integrated_gradients` for how it is found; ``memory_budget`` overrides it): the forward's measured
    per-sample cost times the chunk, plus lime's copies of the batch; not even one perturbed image in the budget:
    :class:`~analysis.memory_budget.MemoryBudgetError`.

    ``progress(fraction)`` is called after each of lime's batches (fraction of all images' samples) and with 1.0
    at the end; ``should_stop()`` is asked before each batch and, when True,
    :class:`~analysis.jobs_protocol.Cancelled` is raised (out of lime: nothing of the image is kept).

    extras: ``segments`` (N,H,W), ``weights`` (list of per-segment weight arrays), ``intercept``, ``score``
    (R^2 of the local linear model), ``n_segments`` per image, ``batch_size`` and ``predict_batch_size`` used.
    """
    shape = tuple(images.shape[1:])
    num_samples = int(num_samples or lime_samples_for(shape))
    segment_fn = _segmenter(segmentation)
    budget = resolve_budget(_device(model), memory_budget)
    batch_size, predict_batch_size = _plan_lime(
        model, shape, num_samples, int(batch_size or num_samples), int(predict_batch_size), budget
    )
    total, done = len(images) * num_samples, [0]

    def on_batch(n: int) -> None:
        check_stop(should_stop, "lime")
        report(progress, done[0] / total)
        done[0] += n

    classifier_fn = _lime_classifier(model, predict_batch_size, on_batch)
    extra_kwargs = {"progress_bar": False} if _LIME_HAS_PROGRESS_BAR else {}
    maps, segments, weights, intercepts, scores = [], [], [], [], []
    for i, (image, target) in enumerate(zip(images.detach().cpu().numpy(), targets.tolist(), strict=True)):
        done[0] = i * num_samples
        explainer = lime_image.LimeImageExplainer(random_state=seed)
        exp = explainer.explain_instance(
            image.transpose(1, 2, 0).astype(np.float64),
            classifier_fn,
            labels=(target,),
            top_labels=None,
            hide_color=hide_color,
            num_samples=num_samples,
            batch_size=batch_size,
            segmentation_fn=segment_fn,
            **extra_kwargs,
        )
        seg = np.asarray(exp.segments)
        w = np.zeros(int(seg.max()) + 1)
        for index, value in exp.local_exp[target]:
            w[index] = value
        maps.append(w[seg].astype(np.float32))
        segments.append(seg)
        weights.append(w)
        intercepts.append(float(exp.intercept[target]))
        scores.append(float(exp.score))
    report(progress, 1.0)
    extras = {
        "segments": np.stack(segments),
        "weights": weights,
        "intercept": np.asarray(intercepts),
        "score": np.asarray(scores),
        "n_segments": np.asarray([len(w) for w in weights]),
        "batch_size": batch_size,
        "predict_batch_size": predict_batch_size,
    }
    return np.stack(maps), extras
