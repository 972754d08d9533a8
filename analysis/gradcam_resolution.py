"""How fine a network's GradCAM map is at a given input size, and a finer layer when it is too coarse.

GradCAM reads one layer's activations; its map has that layer's spatial size, upsampled to the image. A
torchvision resnet18 on 32 px images gives ``layer4`` a 1x1 map: one number per image, so its mask share,
deletion/insertion AUCs and stability (1.000: a constant map is perfectly stable) say nothing about where the
network looks. :func:`gradcam_resolution` takes the layer GradCAM actually reads at the zoo's input size
(:func:`analysis.attribution_defaults.gradcam_layer_for`: the declared one, or a 2x2 one when that is 1x1),
measures its map with one probe forward, and names a layer whose map is at least :data:`MIN_SIDE` on each side;
the report and the dashboard print the mark beside every GradCAM number.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from analysis.attribution_defaults import gradcam_layer_for
from models.networks import _NOT_GRADCAM, ImportedNetwork, unwrap_model

MIN_SIDE = 4  # a GradCAM map smaller than 4x4 cannot localise an object
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[int, GradcamResolution]] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


@dataclass(frozen=True)
class GradcamResolution:
    """GradCAM's map for one network at ``input_size``: the layer it reads, its map's side, a finer layer."""

    layer: str  # the GradCAM layer (in the source model's naming for an imported network)
    height: int
    width: int
    input_size: int
    finer: str | None = None  # the last layer with a map >= MIN_SIDE on each side (None: none, or not coarse)
    finer_height: int | None = None
    finer_width: int | None = None
    imported: bool = False

    @property
    def coarse(self) -> bool:
        """The map is smaller than MIN_SIDE x MIN_SIDE."""
        return min(self.height, self.width) < MIN_SIDE

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"

    def advice(self) -> str:
        """What to do about a coarse map: the finer layer (with the import flag for an imported network)."""
        if self.finer is None:
            return f"no layer gives {MIN_SIDE}x{MIN_SIDE} at {self.input_size} px: use larger inputs"
        finer = f"a finer layer is `{self.finer}` ({self.finer_height}x{self.finer_width})"
        if self.imported:
            return f"{finer}: import the model again with `--gradcam-layer {self.finer}`"
        return finer

    def caption(self) -> str:
        """One line saying how fine the map is and, when coarse, what that means and what to use instead."""
        line = f"GradCAM reads `{self.layer}`: a {self.size} map at {self.input_size} px"
        if not self.coarse:
            return line + "."
        return f"{line}, below {MIN_SIDE}x{MIN_SIDE}: too coarse to localise; {self.advice()}."


def _spatial_outputs(model: nn.Module, input_size: int) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    """(name, module, (H, W)) of every module with a 4D output, in the order they finish, from one probe forward."""
    events: list[tuple[str, nn.Module, tuple[int, int]]] = []

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4 and not isinstance(module, _NOT_GRADCAM):
                events.append((name, module, (int(output.shape[-2]), int(output.shape[-1]))))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return events


def gradcam_resolution(model: nn.Module, input_size: int) -> GradcamResolution:
    """The size of ``model``'s GradCAM map (the layer ``gradcam`` reads) at ``input_size`` px, and a finer layer.

    The finer layer is a module finishing before the GradCAM layer with the coarsest map that is still at least
    MIN_SIDE on each side; of those, the outermost (a whole stage such as ``layer2`` wins over its blocks), then the
    last.
    """
    from analysis.attributions import model_lock

    model = unwrap_model(model)
    with _GUARD:
        known = _CACHE.get(model, {}).get(int(input_size))
    if known is not None:  # one probe per network and size (the dashboard asks on every rerun)
        return known
    with model_lock(model):  # the probes' hooks must not see another thread's forward (the dashboard's jobs)
        _, target, _ = gradcam_layer_for(model, (3, input_size, input_size))
        events = _spatial_outputs(model, input_size)
    imported = isinstance(model, ImportedNetwork)
    at = next((i for i, (_, module, _) in enumerate(events) if module is target), None)
    if at is None:
        raise ValueError(f"{type(model).__name__}'s GradCAM layer gave no 4D output at {input_size} px")

    def named(name: str) -> str:  # the source model's naming for an imported network (what --gradcam-layer takes)
        return name.removeprefix("body.") if imported else name

    name, _, (h, w) = events[at]
    finer = [(n, s) for n, _, s in events[:at] if min(s) >= MIN_SIDE and (not imported or n.startswith("body."))]
    result = GradcamResolution(named(name), h, w, input_size, imported=imported)
    if result.coarse and finer:  # the coarsest map still >= MIN_SIDE, read at its outermost module (a whole stage)
        area = min(fh * fw for _, (fh, fw) in finer)
        pool = [(i, n, s) for i, (n, s) in enumerate(finer) if s[0] * s[1] == area]
        _, n, (fh, fw) = min(pool, key=lambda item: (item[1].count("."), -item[0]))
        result = GradcamResolution(named(name), h, w, input_size, named(n), fh, fw, imported)
    with _GUARD:
        _CACHE.setdefault(model, {})[int(input_size)] = result
    return result


def zoo_gradcam_resolutions(models: Mapping[str, nn.Module], input_size: int) -> dict[str, GradcamResolution]:
    """:func:`gradcam_resolution` of every model of a zoo (variant -> resolution)."""
    return {variant: gradcam_resolution(model, input_size) for variant, model in models.items()}


def coarse_variants(models: Mapping[str, nn.Module], input_size: int) -> dict[str, GradcamResolution]:
    """The variants whose GradCAM map is below MIN_SIDE x MIN_SIDE at ``input_size`` px."""
    return {v: r for v, r in zoo_gradcam_resolutions(models, input_size).items() if r.coarse}


def mark_table(table: pd.DataFrame, coarse: Mapping[str, GradcamResolution], bold: bool = False) -> pd.DataFrame:
    """``table`` (with ``variant`` and ``method`` columns) with each GradCAM row of a coarse variant's method
    reading ``gradcam (2x2 map)``; unchanged when nothing is coarse."""
    if not coarse or not {"variant", "method"} <= set(table.columns):
        return table
    t = table.copy()
    hit = (t["method"] == "gradcam") & t["variant"].isin(list(coarse))
    t["method"] = t["method"].astype(object)
    mark = "**{} map**" if bold else "{} map"
    t.loc[hit, "method"] = [f"gradcam ({mark.format(coarse[v].size)})" for v in t.loc[hit, "variant"]]
    return t
