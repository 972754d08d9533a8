"""The layers GradCAM can read on a network at a given input size, and the one it reads by default.

The saliency page lets a researcher choose GradCAM's layer: the candidates are a network's stages (its outermost
modules with weights and a spatial output, or those of an imported network's source model), each with the side of
its map, found by :mod:`analysis.gradcam_resolution`'s probe forward; the default is
:func:`analysis.attribution_defaults.gradcam_layer_for`, the declared layer unless its map is 1x1, then the finest
layer whose map is not 1x1 (what ``gradcam`` reads when no layer is given).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from analysis.attribution_defaults import gradcam_layer_for
from analysis.gradcam_resolution import _spatial_outputs
from models.networks import ImportedNetwork, unwrap_model

__all__ = ["LayerChoice", "default_layer", "layer_candidates"]


@dataclass(frozen=True)
class LayerChoice:
    """A layer GradCAM can read: its module name (what ``gradcam(layer=...)`` takes) and its map's size."""

    name: str
    height: int
    width: int

    @property
    def label(self) -> str:
        """``layer3 (8x8)``: the name as the source model spells it, and the map's size."""
        return f"{self.name.removeprefix('body.')} ({self.height}x{self.width})"


def _has_weights(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def layer_candidates(model: nn.Module, input_size: int) -> list[LayerChoice]:
    """The stages of ``model`` GradCAM can read at ``input_size`` px, input to output, with their map sizes; the
    default layer (:func:`default_layer`) is always among them, even when it is not a whole stage."""
    from analysis.attributions import model_lock

    net = unwrap_model(model)
    with model_lock(net):  # the probe's hooks must not see another thread's forward
        events = _spatial_outputs(net, int(input_size))
        default = default_layer(net, input_size)
    depth = 1 if isinstance(net, ImportedNetwork) else 0
    seen: dict[str, LayerChoice] = {}
    for name, module, (h, w) in events:  # a module that fires twice keeps its last map
        outermost = name.count(".") == depth and (depth == 0 or name.startswith("body."))
        if (outermost and _has_weights(module)) or name == default.name:
            seen[name] = LayerChoice(name, h, w)
    return list(seen.values())


def default_layer(model: nn.Module, input_size: int) -> LayerChoice:
    """The layer GradCAM reads when none is chosen (:func:`analysis.attribution_defaults.gradcam_layer_for`)."""
    net = unwrap_model(model)
    name, module, (h, w) = gradcam_layer_for(net, (3, int(input_size), int(input_size)))
    if name is None:
        name = next((n for n, m in net.named_modules() if m is module), "gradcam_layer")
    return LayerChoice(name, h, w)
