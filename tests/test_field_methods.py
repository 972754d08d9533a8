"""The field's methods (analysis.attribution_methods_field) through the registry: each against a direct call of its
library on the same inputs, their shape and sign conventions, the memory budget, progress and stopping, and that they
stay out of the report's experiments, its claims and the saliency page's default selection."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam
import torch
from captum.attr import GradientShap, NoiseTunnel, Occlusion, Saliency
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from analysis.attribution_methods_field import CAM_CLASSES, FIELD_METHODS, black_white_baselines
from analysis.attributions import METHOD_REGISTRY, explain
from analysis.experiments.settings import FULL, QUICK
from analysis.jobs_protocol import Cancelled
from analysis.memory_budget import MemoryBudgetError
from analysis.network_cost import sample_cost

FIELD = [spec["name"] for spec in FIELD_METHODS]
FAST_OPTIONS = {"smoothgrad": {"nt_samples": 6}, "gradient_shap": {"n_samples": 6}}


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32 arithmetic: relative 1e-4, absolute 1e-5 of the map's scale."""
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _captum_direct(name: str, model, x: torch.Tensor, t: torch.Tensor, options: dict) -> np.ndarray:
    """The library called as its documentation shows, one image at a time where the method seeds per image."""
    if name == "saliency":
        return Saliency(model).attribute(x, target=t, abs=True).amax(1).detach().numpy()
    maps = []
    for i in range(len(x)):
        _seed(options.get("seed", 0))
        if name == "smoothgrad":
            nt = options["nt_samples"]
            attr = NoiseTunnel(Saliency(model)).attribute(x[i : i + 1], nt_type="smoothgrad", nt_samples=nt,
                                                          nt_samples_batch_size=nt, stdevs=0.15,
                                                          target=t[i : i + 1], abs=True).amax(1)  # fmt: skip
        else:
            attr = GradientShap(model).attribute(x[i : i + 1], baselines=black_white_baselines(x),
                                                 n_samples=options["n_samples"], stdevs=0.0,
                                                 target=t[i : i + 1]).sum(1)  # fmt: skip
        maps.append(attr.detach().numpy())
    return np.concatenate(maps)


@pytest.mark.parametrize("name", ["saliency", "smoothgrad", "gradient_shap"])
def test_captum_gradient_methods_match_the_library(name, tiny_model, batch, one_thread):
    x, t = batch[0][:4], batch[1][:4]
    options = FAST_OPTIONS.get(name, {})
    ours = explain(name, tiny_model, x, t, **options).maps
    _close(ours, _captum_direct(name, tiny_model, x, t, options))


def test_occlusion_matches_the_library(tiny_model, batch, one_thread):
    x, t = batch[0][:3], batch[1][:3]
    ex = explain("occlusion", tiny_model, x, t)
    assert (ex.extras["window"], ex.extras["stride"], ex.extras["positions"]) == (4, 2, 225)  # side / 8 at 32 px
    with torch.no_grad():
        direct = Occlusion(tiny_model).attribute(x, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=0.0,
                                                 target=t, perturbations_per_eval=7).mean(1)  # fmt: skip
    _close(ex.maps, direct.numpy())
    # The target's score drop when a patch is blacked out: a pixel's value is the mean drop over its patches.
    with torch.no_grad():
        occluded = x[:1].clone()
        occluded[:, :, :4, :4] = 0
        drop = (tiny_model(x[:1]) - tiny_model(occluded))[0, t[0]].item()
    assert ex.maps[0, 0, 0] == pytest.approx(drop, rel=1e-3, abs=1e-7)  # pixel (0, 0) lies in one patch only


@pytest.mark.parametrize("name", list(CAM_CLASSES))
def test_grad_cam_methods_match_the_library(name, tiny_model, batch, one_thread):
    x, t = batch[0][:4], batch[1][:4]
    ex = explain(name, tiny_model, x, t)
    assert ex.extras["layer"] == "layer4"  # GradCAM's layer: 4x4 for this network at 32 px
    cam = getattr(pytorch_grad_cam, CAM_CLASSES[name])(tiny_model, [tiny_model.gradcam_layer])
    try:
        direct = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    finally:
        cam.activations_and_grads.release()
    _close(ex.maps, direct)
    assert ex.maps.max(axis=(1, 2)) == pytest.approx(1.0, abs=1e-5)  # the library scales each map to [0, 1]


@pytest.mark.parametrize("name", FIELD)
def test_shape_sign_and_registration(name, tiny_model, batch, one_thread):
    method = METHOD_REGISTRY[name]
    x = batch[0]
    ex = explain(name, tiny_model, x, **FAST_OPTIONS.get(name, {}))
    assert ex.maps.shape == (8, 32, 32) and ex.maps.dtype == np.float32 and np.isfinite(ex.maps).all()
    with torch.no_grad():
        np.testing.assert_array_equal(ex.targets, tiny_model(x).argmax(1).numpy())
    if method.signed:
        assert ex.maps.min() < 0 < ex.maps.max()
    else:
        assert ex.maps.min() >= 0 and ex.maps.max() > 0
    assert not method.in_report and not method.default_on and not method.selected_by_default and method.cost
    assert name not in FULL.attr_method_names and name not in QUICK.stability_method_names


def test_the_report_keeps_its_three_methods():
    assert FULL.attr_method_names == ("integrated_gradients", "gradcam", "lime")
    assert [name for name, m in METHOD_REGISTRY.items() if m.selected_by_default] == ["integrated_gradients", "gradcam"]


@pytest.mark.parametrize("name", FIELD)
def test_progress_and_stop(name, tiny_model, batch, one_thread):
    x = batch[0][:2]
    seen: list[float] = []
    explain(name, tiny_model, x, progress=seen.append, **FAST_OPTIONS.get(name, {}))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        explain(name, tiny_model, x, should_stop=lambda: True, **FAST_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", ["saliency", "occlusion", "hirescam", "scorecam"])
def test_a_small_budget_chunks_the_work_and_changes_no_map(name, tiny_model, batch, one_thread):
    x = batch[0][:4]
    cost = sample_cost(tiny_model, (3, 32, 32))
    whole = explain(name, tiny_model, x).maps
    chunked = explain(name, tiny_model, x, memory_budget=2 * cost.backward_bytes + 8 * cost.forward_bytes)
    _close(chunked.maps, whole)
    if name == "occlusion":
        assert chunked.extras["perturbations_per_eval"] < explain(name, tiny_model, x).extras["perturbations_per_eval"]
    with pytest.raises(MemoryBudgetError):
        explain(name, tiny_model, x, memory_budget=max(1, cost.forward_bytes // 4))


def test_gradient_shap_needs_its_draws_in_the_budget(tiny_model, batch):
    cost = sample_cost(tiny_model, (3, 32, 32))
    with pytest.raises(MemoryBudgetError, match="6 draws"):
        explain("gradient_shap", tiny_model, batch[0][:1], n_samples=6, memory_budget=3 * cost.backward_bytes)


@pytest.mark.parametrize("name", ["smoothgrad", "gradient_shap"])
def test_random_methods_depend_on_the_image_not_the_batch_and_leave_the_generators(name, tiny_model, batch):
    x = batch[0][:3]
    options = FAST_OPTIONS[name]
    torch.manual_seed(123)
    np.random.seed(123)
    alone = explain(name, tiny_model, x[1:2], **options).maps
    after = (torch.rand(1).item(), np.random.rand())
    torch.manual_seed(123)
    np.random.seed(123)
    assert after == (torch.rand(1).item(), np.random.rand())  # the global generators are as they were
    _close(explain(name, tiny_model, x, **options).maps[1:2], alone)
    other_seed = explain(name, tiny_model, x[1:2], seed=1, **options).maps
    assert not np.allclose(other_seed, alone)
