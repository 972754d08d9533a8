"""Sanity checks for attribution maps: cascading model-parameter randomisation (Adebayo et al. 2018).

A map that explains the *model* must change when the model's weights are destroyed. The network's blocks are
re-initialised cumulatively from the head down (the classifier first, then the last residual block, ..., the stem),
on a copy of the model, and after each step every image's map (same method, options and explained class: the
trained model's) is compared with the trained model's map by Spearman's rank correlation (of the maps and of their
magnitudes) and SSIM (:mod:`analysis.map_comparison`). A method whose maps stay close once every block is random
does not depend on what the model learned (an edge detector would pass unchanged): :func:`survives_randomisation`
flags it.

* :func:`randomisation_units`: the blocks, head first: each top-level parameterised child of the network, split
  into its parameterised children when it has any (a ResNet stage into its residual blocks, the stem into its
  convolution and batch norm; an imported network's ``body`` into its layers, a ``Sequential`` stage among them
  into its blocks), ordered by when they run in a forward.
* :func:`cascading_randomisation`: the per-image table (method, step, layer, image, spearman, spearman_abs, ssim).
* :func:`sanity_summary`: per method, step and metric, the mean over images with its bootstrap 95% CI.
* :func:`survives_randomisation`: True when, with every block random, the mean rank correlation to the trained
  map is still at least ``threshold`` (0.5 by default).
* :func:`flagged_methods`: method -> why, for every method that survives randomisation for some variant: what each
  page that shows the method warns about.

Re-initialisation is PyTorch's own (each module's ``reset_parameters``, seeded per step), as Adebayo et al.'s
cascade used the layers' initialisers. The model given is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.attributions import explain, get_method
from analysis.map_comparison import spearman, ssim
from analysis.statistics import N_RESAMPLES, mean_ci
from models.networks import unwrap_model

__all__ = [
    "METRICS",
    "cascading_randomisation",
    "flagged_methods",
    "randomisation_units",
    "randomise_",
    "sanity_summary",
    "survives_randomisation",
]

METRICS = ("spearman", "spearman_abs", "ssim")
COLUMNS = ["method", "step", "layer", "image", "target", *METRICS]


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _blocks(name: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    """A top-level child as blocks: itself when it has no parameterised children, else those children, a
    ``Sequential`` among them (a ResNet stage) split into its elements."""
    kids = [(f"{name}.{n}", m) for n, m in module.named_children() if _has_parameters(m)]
    if not kids:
        return [(name, module)]
    out: list[tuple[str, nn.Module]] = []
    for kid_name, kid in kids:
        if isinstance(kid, nn.Sequential):
            out += [(f"{kid_name}.{n}", m) for n, m in kid.named_children() if _has_parameters(m)]
        else:
            out.append((kid_name, kid))
    return out


def randomisation_units(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """(name, module) of the blocks to re-initialise, head first (see the module docstring); one no-grad probe
    forward on zeros of ``input_shape`` (C, H, W) finds the order they run in."""
    net = unwrap_model(model)
    candidates = [unit for name, child in net.named_children() if _has_parameters(child)
                  for unit in _blocks(name, child)]  # fmt: skip
    order: dict[str, int] = {}

    def seen(name: str):
        def hook(*_: Any) -> None:  # returns None: a forward hook's return value would replace the output
            order.setdefault(name, len(order))

        return hook

    hooks = [m.register_forward_hook(seen(n)) for n, m in candidates]
    device = next(net.parameters()).device
    dtype = next(p.dtype for p in net.parameters() if p.is_floating_point())
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    ran = [(n, m) for n, m in candidates if n in order]
    if not ran:
        raise ValueError(f"{type(net).__name__} has no parameterised block that runs in a forward")
    return sorted(ran, key=lambda item: -order[item[0]])


def randomise_(module: nn.Module, seed: int) -> int:
    """Re-initialise every submodule of ``module`` that has ``reset_parameters`` (in place, seeded); returns how
    many were reset. BatchNorm's running statistics are reset too (its ``reset_parameters`` does)."""
    n = 0
    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
                n += 1
    return n


def cascading_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    targets: torch.Tensor | Sequence[int] | None = None,
    seed: int = 0,
    **options: Any,
) -> pd.DataFrame:
    """Per image: ``method``'s map after each cumulative re-initialisation step against the trained model's map.

    Step 0 is the trained model (every metric 1); step k has the first k blocks of :func:`randomisation_units`
    random, ``layer`` naming the k-th. The explained class is the trained model's (``targets`` None: its
    predictions) at every step. ``options`` override the method's registered defaults. Rows: method, step, layer,
    image, target, spearman, spearman_abs (of |map|), ssim.
    """
    info = get_method(method)
    opts = info.options(**options)
    trained = explain(method, model, images, targets, **opts)
    copy_ = copy.deepcopy(unwrap_model(model)).eval()
    units = randomisation_units(copy_, tuple(images.shape[1:]))
    rows = []

    def record(step: int, layer: str, maps: np.ndarray) -> None:
        for i, (a, b) in enumerate(zip(trained.maps, maps, strict=True)):
            rows.append({"method": method, "step": step, "layer": layer, "image": i, "target": int(trained.targets[i]),
                         "spearman": spearman(a, b), "spearman_abs": spearman(np.abs(a), np.abs(b)),
                         "ssim": ssim(a, b, info.signed)})  # fmt: skip

    record(0, "none (trained)", trained.maps)
    for step, (name, unit) in enumerate(units, start=1):
        if randomise_(unit, seed + step) == 0:
            raise ValueError(f"block {name!r} has parameters but no module with reset_parameters to re-initialise")
        record(step, name, explain(method, copy_, images, trained.targets, **opts).maps)
    return pd.DataFrame(rows, columns=COLUMNS)


def sanity_summary(per_image: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per method, step (with its layer) and metric: the mean over images, its bootstrap 95% CI and the images
    whose metric was defined (a constant map has no ranks)."""
    rows = []
    for (method, step, layer), group in per_image.groupby(["method", "step", "layer"], sort=False):
        for metric in METRICS:
            values = group[metric].to_numpy(dtype=float)
            mean, lo, hi = mean_ci(values, n_resamples, seed)
            rows.append({"method": method, "step": int(step), "layer": layer, "metric": metric, "mean": mean,
                         "ci_low": lo, "ci_high": hi, "n_images": int(np.isfinite(values).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "step", "layer", "metric", "mean", "ci_low", "ci_high", "n_images"])


def survives_randomisation(per_image: pd.DataFrame, method: str, threshold: float = 0.5) -> bool:
    """Whether ``method``'s maps still rank-correlate (mean Spearman over images, signed maps as they are) at least
    ``threshold`` with the trained model's once every block is random: a map that does not depend on the weights."""
    rows = per_image[per_image["method"] == method]
    if rows.empty:
        raise ValueError(f"no sanity-check rows for method {method!r}")
    last = rows[rows["step"] == rows["step"].max()]["spearman"].to_numpy(dtype=float)
    last = last[np.isfinite(last)]
    return bool(len(last)) and float(last.mean()) >= threshold


def flagged_methods(per_image: pd.DataFrame | None, threshold: float = 0.5) -> dict[str, str]:
    """method -> why it is flagged, for each method whose maps survive full randomisation
    (:func:`survives_randomisation`) for at least one variant of ``per_image`` (the per-image table of
    :func:`cascading_randomisation`, with a ``variant`` column when it covers several variants; None or empty: no
    flag). The reason names the variants and their mean rank correlation once every block is random."""
    if per_image is None or not len(per_image):
        return {}
    missing = {"method", "step", "spearman"} - set(per_image.columns)
    if missing:
        raise ValueError(f"sanity-check table lacks columns: {', '.join(sorted(missing))}")
    table = per_image if "variant" in per_image.columns else per_image.assign(variant="the model")
    flags: dict[str, str] = {}
    for method, rows in table.groupby("method", sort=False):
        survived = []
        for variant, g in rows.groupby("variant", sort=False):
            if survives_randomisation(g, str(method), threshold):
                last = g[g["step"] == g["step"].max()]["spearman"].to_numpy(dtype=float)
                survived.append(f"{variant} (rank correlation {np.nanmean(last):.2f})")
        if survived:
            flags[str(method)] = (f"fails the sanity check (Adebayo et al. 2018): with every block of the network "
                                  f"re-initialised its maps still rank-correlate at least {threshold:g} with the "
                                  f"trained model's for {', '.join(survived)}, so they say little about what the "
                                  "model learned")  # fmt: skip
    return flags
