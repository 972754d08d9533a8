"""Attribution within a memory budget, input-fitted defaults, progress and cancelling (analysis.memory_budget,
analysis.network_cost, analysis.attribution_defaults, analysis.attribution_estimates)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.attribution_defaults import gradcam_layer_for
from analysis.attribution_estimates import estimate
from analysis.attribution_methods import SEGMENTATIONS
from analysis.attributions import explain, get_method
from analysis.jobs_protocol import Cancelled
from analysis.memory_budget import MemoryBudgetError, memory_budget, parse_size, set_memory_budget
from analysis.network_cost import sample_cost
from models.errors import LabError, SettingsError
from models.networks import create_network

ROOT = Path(__file__).resolve().parent.parent

# One process per measurement. The kernel's peak-RSS mark (VmHWM) is reset to the current RSS just before IG
# (writing 5 to /proc/self/clear_refs), so the IG peak is VmHWM's rise over the RSS left by loading the network and a
# forward (lazy allocations already paid for); ru_maxrss cannot be reset, and an earlier peak hid IG's rise.
_PEAK_SCRIPT = """
import json, re, sys, torch
def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
torch.set_num_threads(1)
from analysis.attributions import explain
from models.networks import create_network
torch.manual_seed(0)
model = create_network("resnet18", 10).eval()
x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    model(x)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
ex = explain("integrated_gradients", model, x, [3], n_steps=32, memory_budget=sys.argv[1])
after = status("VmHWM")
print(json.dumps({"rise": after - before, "internal": ex.extras["internal_batch_size"],
                  "sample_bytes": ex.extras["sample_bytes"], "budget": ex.extras["memory_budget"]}))
"""


def _peak(budget: str) -> dict:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, budget], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ig_on_a_torchvision_resnet_at_224_px_stays_within_a_small_budget():
    small = _peak("300MB")
    assert small["budget"] == 300 * 10**6
    assert 1 <= small["internal"] < 32  # the steps were split: 32 interpolated images would not fit
    assert small["internal"] * small["sample_bytes"] <= small["budget"]
    assert 0 < small["rise"] <= small["budget"], small
    # the same measurement sees the unbudgeted run go over it: all 32 steps in one batch
    large = _peak("100GB")
    assert large["internal"] == 32
    assert large["rise"] > small["budget"], large


def _small_net(double: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_network("resnet18-cifar", 10, width=8).eval()
    return net.double() if double else net


def _photos(size: int, n: int = 4) -> torch.Tensor:
    """Centre squares of scikit-image photographs at ``size`` px, (n, 3, size, size) in [0, 1]."""
    from skimage import data, transform

    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field")[:n]:
        im = getattr(data, name)()[..., :3] / 255.0
        h, w = im.shape[:2]
        s = min(h, w)
        im = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append(transform.resize(im, (size, size), anti_aliasing=True))
    return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2)).float()


def test_chunked_ig_gives_the_unchunked_attributions(one_thread):
    model = _small_net(double=True)
    x = _photos(32, 2).double()
    per_sample = sample_cost(model, (3, 32, 32)).backward_bytes
    whole = explain("integrated_gradients", model, x, [1, 2], n_steps=20, memory_budget="100GB")
    chunked = explain("integrated_gradients", model, x, [1, 2], n_steps=20, memory_budget=3 * per_sample + 1)
    assert whole.extras["internal_batch_size"] == 40 and chunked.extras["internal_batch_size"] == 3
    # Float64 arithmetic: each value is a sum of 20 step terms, each a gradient through ~20 layers of reductions of
    # <= 3*3*64 products; regrouping the steps and the batch (kernels may reduce in another order) changes each by
    # at most ~ 20 layers * 576 products * 2.2e-16 ~ 3e-12 relative. 1e-10 of the largest value bounds it.
    tol = 1e-10 * np.abs(whole.maps).max()
    np.testing.assert_allclose(chunked.maps, whole.maps, rtol=0, atol=tol)
    np.testing.assert_allclose(chunked.extras["delta"], whole.extras["delta"], rtol=0, atol=tol * x[0].numel())


def test_a_budget_too_small_for_one_sample_is_one_clear_error(tiny_model, batch, monkeypatch):
    images, _ = batch
    per_sample = sample_cost(tiny_model, tuple(images.shape[1:])).backward_bytes
    with pytest.raises(MemoryBudgetError) as info:
        explain("integrated_gradients", tiny_model, images[:1], n_steps=4, memory_budget=per_sample // 2)
    err = info.value
    assert isinstance(err, LabError) and err.needed == per_sample and err.budget == per_sample // 2
    assert "needs" in str(err) and "memory budget is" in str(err) and "\n" not in str(err)
    monkeypatch.setenv("SCL_MEMORY_BUDGET", "1KB")  # the environment variable reaches every method
    assert memory_budget() == 1000
    for method in ("gradcam", "lime"):
        with pytest.raises(MemoryBudgetError, match=method):
            explain(method, tiny_model, images[:1])
    set_memory_budget("64MiB")  # the setting wins over the environment; the option over both
    try:
        assert memory_budget() == 64 * 2**20 and memory_budget(budget=5000) == 5000
    finally:
        set_memory_budget(None)
    with pytest.raises(SettingsError, match="lots"):
        parse_size("lots")
    with pytest.raises(SettingsError):
        set_memory_budget("0GB")


def test_lime_batches_are_cut_to_the_budget(one_thread):
    model = _small_net()
    x = _photos(224, 1)
    budget = 64 * 2**20
    ex = explain("lime", model, x, [0], num_samples=40, memory_budget=budget)
    raw = 24 * x[0].numel()  # lime's and our copies of one perturbed image
    forward = sample_cost(model, (3, 224, 224)).forward_bytes
    assert 1 <= ex.extras["batch_size"] < 40  # 40 perturbed 224-px images would not fit in 64 MiB
    assert ex.extras["batch_size"] * raw + ex.extras["predict_batch_size"] * forward <= budget


def test_gradcam_picks_a_layer_with_a_spatial_map_for_resnet18_at_32_px(one_thread):
    torch.manual_seed(0)
    model = create_network("resnet18", 10).eval()  # torchvision's: layer4 is 1x1 at 32 px
    name, module, hw = gradcam_layer_for(model, (3, 32, 32))
    assert min(hw) > 1 and name == "body.layer3" and module is model.body.layer3
    x = _photos(32, 2)
    with pytest.warns(UserWarning, match="only 2x2"):
        ex = explain("gradcam", model, x, [0, 1])
    assert ex.extras["layer"] == "body.layer3" and ex.extras["raw"].shape == (2, 2, 2)
    with pytest.warns(UserWarning, match="only 1x1"):  # the caller's pick is kept
        assert explain("gradcam", model, x, [0, 1], layer="layer4").extras["raw"].shape == (2, 1, 1)
    # the lab's CIFAR ResNet18 at 32 px keeps its declared layer4 (4x4)
    lab = _small_net()
    assert gradcam_layer_for(lab, (3, 32, 32))[1] is lab.layer4


def test_lime_segments_at_32_and_224_px_are_comparable():
    segment = SEGMENTATIONS["felzenszwalb"]
    small, large = _photos(32, 6), _photos(224, 6)
    counts = [
        (len(np.unique(segment(a.permute(1, 2, 0).double().numpy()))),
         len(np.unique(segment(b.permute(1, 2, 0).double().numpy()))))
        for a, b in zip(small, large, strict=True)
    ]  # fmt: skip
    ratios = np.array([b / a for a, b in counts])
    assert 0.5 <= np.median(ratios) <= 2.0, counts
    assert ratios.min() >= 1 / 3 and ratios.max() <= 3, counts
    assert all(b <= 200 for _, b in counts), counts  # the unscaled 32-px parameters give 700-2,600 at 224 px


def test_defaults_fit_the_input_size(one_thread):
    ig, lime = get_method("integrated_gradients"), get_method("lime")
    assert ig.options()["n_steps"] == 50 and ig.options(input_size=(3, 32, 32))["n_steps"] == 50
    assert ig.options(input_size=224)["n_steps"] < 50 and lime.options(input_size=224)["num_samples"] < 1000
    assert ig.options(input_size=224, n_steps=7)["n_steps"] == 7  # the caller's value wins
    model = _small_net()
    ex = explain("integrated_gradients", model, _photos(224, 1), [0])  # no n_steps: fitted to 224 px
    assert ex.extras["n_steps"] == ig.options(input_size=224)["n_steps"]


def test_progress_is_reported_per_chunk_and_should_stop_cancels(one_thread):
    model = _small_net()
    x = _photos(32, 1)
    cap = 4 * sample_cost(model, (3, 32, 32)).backward_bytes
    seen: list[float] = []
    explain("integrated_gradients", model, x, [0], n_steps=16, memory_budget=cap, progress=seen.append)
    assert len(seen) >= 4 and seen == sorted(seen) and seen[-1] == 1.0 and 0 <= seen[0] < 0.5
    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        explain("integrated_gradients", model, x, [0], n_steps=16, memory_budget=cap, should_stop=stop_after_two)
    seen_lime: list[float] = []
    explain("lime", model, x, [0], num_samples=60, batch_size=20, progress=seen_lime.append)
    assert seen_lime[-1] == 1.0 and len(seen_lime) >= 3 and seen_lime == sorted(seen_lime)
    with pytest.raises(Cancelled):
        explain("lime", model, x, [0], num_samples=60, batch_size=20, should_stop=lambda: True)


def test_estimate_says_when_a_method_is_slow(one_thread):
    model = _small_net()
    lime_small = estimate("lime", model, (3, 32, 32), threshold_s=1e9)
    assert lime_small.seconds > 0 and not lime_small.slow and lime_small.options["num_samples"] == 1000
    assert estimate("lime", model, (3, 32, 32), threshold_s=0.0).slow
    ig = estimate("integrated_gradients", model, (3, 32, 32), n_images=2, n_steps=10)
    cam = estimate("gradcam", model, (3, 32, 32), n_images=2)
    assert ig.seconds == pytest.approx(cam.seconds * 12)  # 10 steps + 2 delta forwards per image


def test_report_estimate_scales_with_the_network_and_input_size():
    from analysis.experiments.settings import QUICK, estimate_cpu_s
    from analysis.network_cost import cost_scale

    small = cost_scale([_small_net()], (3, 32, 32))
    large = cost_scale([create_network("resnet50", 10)], (3, 224, 224))
    assert small < 1 < large and large > 50  # width 8 is ~4x cheaper; resnet50 at 224 px ~150x dearer
    roles = {"standard": "baseline", "C": "constrained"}
    base, scaled = estimate_cpu_s(QUICK, roles, 1000), estimate_cpu_s(QUICK, roles, 1000, cost_scale=large)
    assert scaled["attributions"] == pytest.approx(base["attributions"] * large)
    assert scaled["fairness"] == base["fairness"]  # its own width-16 networks at 32 px: not the zoo's


def test_deletion_insertion_in_chunks_gives_the_same_curves(tiny_model, batch):
    from analysis.attribution_quality import deletion_insertion

    images, _ = batch
    maps = np.random.default_rng(0).random((4, 32, 32))
    built = 2 * (4 + 1) * images[0].numel() * 4 * 3  # one image's 10 perturbed copies, three times (float32)
    whole = deletion_insertion(tiny_model, images[:4], maps, [0, 1, 2, 3], steps=4, memory_budget="100GB")
    # 3x one image's copies: the forward takes at most half, so 1..3 images go at once, never all 4
    chunked = deletion_insertion(tiny_model, images[:4], maps, [0, 1, 2, 3], steps=4, memory_budget=3 * built)
    for key in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
        np.testing.assert_allclose(chunked[key], whole[key], rtol=0, atol=1e-6)  # float32 probabilities
    with pytest.raises(MemoryBudgetError, match="deletion/insertion"):
        deletion_insertion(tiny_model, images[:4], maps, [0, 1, 2, 3], steps=4, memory_budget=built // 2)
