"""Integrated Gradients, GradCAM and LIME behind one interface, and their quality metrics.

One verb::

    explain(method, model, images, targets=None, **options) -> Explanation

``images`` are pixels in [0, 1], (N, 3, H, W) (normalisation lives inside the
model); ``targets`` are class indices (N,), or None for the model's predicted
class. ``Explanation.maps`` is a float32 array (N, H, W) on the CPU (float64 for a
``.double()`` model): IG summed over channels (signed), GradCAM upsampled to the
input (>= 0), LIME the weight of each pixel's segment (signed). ``METHOD_REGISTRY`` holds one :class:`Method` per name
(function, label, signed, default options); ``register_method`` adds one, and the report, claims and
dashboard loop over everything registered. Drawing is not done here.

Methods:

* ``integrated_gradients``: ``captum.attr.IntegratedGradients`` from a black
  baseline (pixels 0), 50 Gauss-Legendre steps; ``extras["delta"]`` is captum's
  convergence delta per image, ``sum(attributions) - (F(x)[t] - F(baseline)[t])``
  (completeness: it should be near 0; more steps shrink it).
* ``gradcam``: ``captum.attr.LayerGradCam`` on ``model.gradcam_layer`` (the last
  convolutional block) with ``relu_attributions=True``, upsampled bilinearly to
  the input; ``extras["raw"]`` is the map before upsampling (4x4 for a CIFAR
  ResNet18 at 32x32).
* ``lime``: ``lime.lime_image.LimeImageExplainer(random_state=seed)``, a fresh
  explainer per image, so an image's map depends only on (model, image, target,
  options) and the same seed gives the same map. lime's default segmentation
  (quickshift, kernel_size=4, max_dist=200) gives ONE segment on a 32x32 image,
  hence one weight for the whole image (no spatial information); the default here is ``felzenszwalb(scale=20,
  sigma=0.5, min_size=5)``, chosen by measurement on 300 fashion-mnist-m test
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

Concurrency: captum attaches hooks to the model while it attributes (GradCAM's
forward hook on ``gradcam_layer`` fires on *every* forward through that layer,
from any thread), and ``eval_mode`` flips and restores ``model.training``. Two
threads explaining with one shared model (the dashboard serves concurrent users
from one loaded zoo) could therefore read each other's activations or leave the
model in the wrong mode. ``explain`` and ``deletion_insertion`` hold a per-model
re-entrant lock (``model_lock(model)``, a ``WeakKeyDictionary`` keyed by the
unwrapped module, so locks vanish with their models) for the whole computation,
and run the model in eval mode. Any other code that runs forwards on a model
that may be being explained at the same time should hold the same lock::

    with model_lock(model):
        logits = predict_logits(model, images)

Different models attribute in parallel; one model serialises its callers.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from lime import lime_image
from scipy import stats
from skimage import segmentation as sk_segmentation
from torch import nn

from models.evaluation import predict_logits
from models.networks import unwrap_model
from models.perturbations import KINDS, eval_mode, perturb
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
    "mask_share",
    "deletion_insertion",
    "stability",
    "attribution_quality",
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


def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    internal_batch_size: int = 512,
    integration_method: str = "gausslegendre",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Integrated Gradients from ``baseline`` (0 = black), summed over channels, signed.

    Images go through captum in chunks of ``max(1, internal_batch_size // n_steps)``
    so that one internal batch holds about ``internal_batch_size`` interpolated
    images. ``integration_method`` is captum's ``method`` (renamed: ``explain``'s
    first argument is called ``method``). ``extras["delta"]`` (N,): captum's convergence delta, the completeness
    error ``sum(attr) - (F(x)[t] - F(baseline)[t])``.
    """
    ig = IntegratedGradients(model)
    base = _baseline_like(images, baseline)
    chunk = max(1, internal_batch_size // max(1, n_steps))
    maps, deltas = [], []
    for start in range(0, len(images), chunk):
        sl = slice(start, start + chunk)
        x = images[sl]
        attr, delta = ig.attribute(
            x,
            baselines=base[sl],
            target=targets[sl],
            n_steps=n_steps,
            method=integration_method,
            internal_batch_size=max(internal_batch_size, len(x)),
            return_convergence_delta=True,
        )
        maps.append(attr.detach().sum(1).cpu())
        deltas.append(delta.detach().reshape(-1).cpu())
    return torch.cat(maps).numpy(), {"delta": torch.cat(deltas).numpy(), "n_steps": n_steps}


def gradcam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    interpolate_mode: str = "bilinear",
) -> tuple[np.ndarray, dict[str, Any]]:
    """GradCAM on ``model.gradcam_layer`` (ReLU of the weighted activations), upsampled to the input size.

    Warns (UserWarning) when the layer's map is smaller than 4x4: upsampled, it can only say roughly where.
    """
    import warnings

    layer = unwrap_model(model).gradcam_layer
    cam = LayerGradCam(model, layer).attribute(images, target=targets, relu_attributions=True).detach()
    if min(cam.shape[-2:]) < 4:
        warnings.warn(
            f"GradCAM map is only {cam.shape[-2]}x{cam.shape[-1]} for {tuple(images.shape[-2:])} inputs: too coarse "
            "to localise much; use a larger input or an earlier layer (models.import_model --gradcam-layer)",
            UserWarning,
            stacklevel=2,
        )
    up = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode=interpolate_mode)
    return up[:, 0].cpu().numpy(), {"raw": cam[:, 0].cpu().numpy()}


def _felzenszwalb(image: np.ndarray) -> np.ndarray:
    return sk_segmentation.felzenszwalb(image, scale=20, sigma=0.5, min_size=5)


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


def lime(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    segmentation: str | Callable[[np.ndarray], np.ndarray] = DEFAULT_SEGMENTATION,
    batch_size: int | None = None,
    predict_batch_size: int = 250,
    hide_color: float = 0.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """LIME with a seeded explainer per image; map = weight of each pixel's segment for the target.

    ``batch_size`` is lime's batch of perturbed images per classifier call
    (default ``num_samples``: one call; lime's own default is 10); the classifier
    forwards them in chunks of ``predict_batch_size`` (on 2 CPU cores one batch
    of 1000 32x32 images was ~1.5x slower than chunks of 25..250: the activations
    outgrow the caches). extras: ``segments`` (N,H,W),
    ``weights`` (list of per-segment weight arrays), ``intercept``, ``score``
    (R^2 of the local linear model) and ``n_segments`` per image.
    """
    device, dtype = _device(model), _dtype(model)
    segment_fn = _segmenter(segmentation)
    batch_size = batch_size or num_samples

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
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

    extra_kwargs = {"progress_bar": False} if _LIME_HAS_PROGRESS_BAR else {}
    maps, segments, weights, intercepts, scores = [], [], [], [], []
    for image, target in zip(images.detach().cpu().numpy(), targets.tolist(), strict=True):
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
    extras = {
        "segments": np.stack(segments),
        "weights": weights,
        "intercept": np.asarray(intercepts),
        "score": np.asarray(scores),
        "n_segments": np.asarray([len(w) for w in weights]),
    }
    return np.stack(maps), extras


MethodFn = Callable[..., tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class Method:
    """One attribution method: its function, how it is labelled and drawn, and its default options.

    ``function(model, images, targets, **options) -> (maps (N, H, W), extras)`` runs under ``explain``'s
    lock and eval mode. ``signed`` maps have evidence for and against the class (a diverging colour
    scale); unsigned ones are >= 0. ``settings`` maps an option name to the name of the report or
    dashboard setting that sets it (e.g. ``{"n_steps": "ig_steps"}``). ``slow`` methods are off by
    default in interactive views.
    """

    name: str
    function: MethodFn
    label: str
    signed: bool
    defaults: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    slow: bool = False

    def options(self, settings: Mapping[str, Any] | Any = None, **overrides: Any) -> dict[str, Any]:
        """The method's options: defaults, then values read from ``settings`` (a mapping or an object with
        attributes named as in ``self.settings``), then ``overrides``."""
        opts = dict(self.defaults)
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


# ----------------------------------------------------------------------------- quality metrics


def mask_share(maps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Share of positive attribution inside the object mask, per image (N,), in [0, 1].

    ``sum(relu(map) * mask) / sum(relu(map))``; negative attribution is ignored.
    ``masks`` (N,H,W) or (N,1,H,W), boolean or {0,1}. An image whose map has no
    positive attribution gets NaN (undefined), not 0.
    """
    m = _numpy(maps).astype(np.float64)
    k = _numpy(masks).astype(np.float64).reshape(m.shape)
    pos = np.clip(m, 0.0, None).reshape(len(m), -1)
    total = pos.sum(1)
    inside = (pos * k.reshape(len(m), -1)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: np.ndarray | torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    steps: int = 16,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves (Petsiuk et al. 2018) of each image's map.

    Pixels are ranked by map value, largest first (signed maps: most positive
    evidence first); ties are broken by one seeded random pixel order, the same
    for every image, so flat regions (GradCAM zeros) are not removed in raster
    order. For fractions ``f = 0, 1/steps, ..., 1`` the top ``round(f*H*W)``
    pixels are set to ``baseline`` (deletion) or copied into a ``baseline`` image
    (insertion), all channels. Every curve point is the softmax probability of
    the target; all ``2*(steps+1)*N`` images are built at once and go through the
    model in one ``predict_logits`` call (chunks of ``batch_size``). AUC =
    trapezoid over f in [0, 1].

    Returns ``fractions`` (steps+1,), ``deletion`` and ``insertion`` (N, steps+1),
    ``deletion_auc`` and ``insertion_auc`` (N,). Low deletion AUC and high
    insertion AUC mean a faithful map.
    """
    device = _device(model)
    x = images.detach().to(device, _dtype(model))
    n, _, h, w = x.shape
    m = _numpy(maps).reshape(n, h * w).astype(np.float64)
    t = _as_targets(targets, n, device)
    tiebreak = np.random.default_rng(seed).permutation(h * w)
    order = np.stack([np.lexsort((tiebreak, -row)) for row in m])  # (N, HW), most important first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * h * w).astype(np.int64)
    chosen = torch.from_numpy(rank[:, None, :] < counts[None, :, None]).to(device)  # (N, S+1, HW)
    chosen = chosen.view(n, steps + 1, 1, h, w)
    base = _baseline_like(x, baseline)[:, None]
    xs = x[:, None]
    deleted = torch.where(chosen, base, xs)
    inserted = torch.where(chosen, xs, base)
    batch = torch.cat([deleted, inserted], 1).reshape(-1, *x.shape[1:])  # (N*2*(S+1), C, H, W)
    with model_lock(model):
        logits = predict_logits(model, batch, batch_size=batch_size)
    probs = torch.softmax(logits, 1).view(n, 2 * (steps + 1), -1)
    p = probs.gather(2, t.cpu().view(n, 1, 1).expand(n, 2 * (steps + 1), 1))[..., 0].numpy()
    deletion, insertion = p[:, : steps + 1], p[:, steps + 1 :]
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": np.trapezoid(deletion, fractions, axis=1),
        "insertion_auc": np.trapezoid(insertion, fractions, axis=1),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho of two maps; 1.0 for identical maps, NaN when one map is constant and they differ."""
    a, b = a.ravel(), b.ravel()
    if np.array_equal(a, b):
        return 1.0
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def stability(
    method: str,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | None = None,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = (1, 2, 3, 4),
    **options: Any,
) -> pd.DataFrame:
    """How much a map changes when its input is perturbed (Table 1), per kind and level.

    For each image the map of ``perturb(image, kind, level)`` is compared with the
    map of the clean image by Spearman rank correlation over pixels, the target
    fixed to ``targets`` (None: the clean prediction) for both. Rows: kind, level,
    spearman_mean, spearman_std (over images with a defined correlation), n_valid
    (images whose correlation is defined: a constant map, e.g. an all-zero
    GradCAM, has no ranks). Level 0 (the identity) gives 1.0.
    """
    clean = explain(method, model, images, targets, **options)
    rows = []
    for kind in kinds:
        for level in levels:
            moved = explain(method, model, perturb(images, kind, level), clean.targets, **options)
            rho = np.array([_spearman(a, b) for a, b in zip(clean.maps, moved.maps, strict=True)])
            valid = rho[~np.isnan(rho)]
            rows.append(
                {
                    "kind": kind,
                    "level": int(level),
                    "spearman_mean": float(valid.mean()) if len(valid) else float("nan"),
                    "spearman_std": float(valid.std()) if len(valid) else float("nan"),
                    "n_valid": int(len(valid)),
                }
            )
    return pd.DataFrame(rows, columns=["kind", "level", "spearman_mean", "spearman_std", "n_valid"])


def attribution_quality(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    masks: np.ndarray | torch.Tensor,
    methods: Sequence[str] = ("integrated_gradients", "gradcam", "lime"),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 16,
    baseline: float = 0.0,
) -> pd.DataFrame:
    """The report's table: per variant and method, mean mask share and deletion / insertion AUCs.

    Maps explain the true ``labels``. ``method_options`` maps a method name to its
    options (e.g. ``{"lime": {"num_samples": 300}}``); leave ``"lime"`` out of
    ``methods`` to skip it. ``mask_share`` is the mean over images with positive
    attribution (NaN-ignoring).
    """
    method_options = method_options or {}
    rows = []
    for variant, model in models.items():
        for method in methods:
            ex = explain(method, model, images, labels, **dict(method_options.get(method, {})))
            share = mask_share(ex.maps, masks)
            curves = deletion_insertion(model, images, ex.maps, ex.targets, steps=steps, baseline=baseline)
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "mask_share": float(np.nanmean(share)) if np.isfinite(share).any() else float("nan"),
                    "deletion_auc": float(curves["deletion_auc"].mean()),
                    "insertion_auc": float(curves["insertion_auc"].mean()),
                    "n_images": int(len(images)),
                }
            )
    return pd.DataFrame(rows, columns=["variant", "method", "mask_share", "deletion_auc", "insertion_auc", "n_images"])
