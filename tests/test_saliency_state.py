"""The saliency page's pure building blocks: IG/GradientSHAP baselines, GradCAM's candidate layers, the view <->
query parameters mapping, exported PNG/CSV with their provenance, and rows that wrap instead of running off-page."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from analysis import attribution_baselines as ab
from app import map_export, map_html, view_state

# ----------------------------------------------------------------------------- baselines


def test_baselines_black_blurred_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    assert torch.equal(ab.baseline_images("black", x), torch.zeros_like(x))
    blurred = ab.baseline_images("blurred", x)
    assert blurred.shape == x.shape and blurred.dtype == x.dtype
    # a blur keeps each channel's mean (reflected edges) and removes detail: far less pixel-to-pixel variation
    assert torch.allclose(blurred.mean((2, 3)), x.mean((2, 3)), atol=0.02)
    assert blurred.diff(dim=-1).abs().mean() < 0.25 * x.diff(dim=-1).abs().mean()
    one = ab.baseline_images("blurred", x[1:])
    assert torch.allclose(one[0], blurred[1])  # each image blurred on its own
    noise = ab.baseline_images("uniform noise", x, seed=3)
    assert torch.equal(noise, ab.baseline_images("uniform noise", x, seed=3))  # seeded: the same every call
    assert not torch.equal(noise, ab.baseline_images("uniform noise", x, seed=4))
    assert 0.0 <= float(noise.min()) and float(noise.max()) < 1.0 and abs(float(noise.mean()) - 0.5) < 0.05
    pair = ab.baseline_images("black and white", x)
    assert pair.shape == (2, 3, 32, 32) and float(pair[0].max()) == 0.0 and float(pair[1].min()) == 1.0
    with pytest.raises(ValueError, match="unknown baseline"):
        ab.baseline_images("grey", x)


def test_named_baselines_reach_ig_and_gradient_shap_parameters(tiny_model, one_thread):
    from analysis.attribution_methods import gradcam, integrated_gradients
    from analysis.attribution_methods_field import gradient_shap
    from analysis.attributions import explain

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    opts = ab.named_baselines(integrated_gradients, {"n_steps": 8, "baseline": "blurred"}, x)
    assert set(opts) == {"n_steps", "baseline"} and torch.allclose(opts["baseline"], ab.baseline_images("blurred", x))
    shap = ab.named_baselines(gradient_shap, {"baselines": "uniform noise", "seed": 5}, x)
    assert torch.equal(shap["baselines"], ab.baseline_images("uniform noise", x, seed=5))
    assert ab.named_baselines(gradcam, {"layer": "layer3"}, x) == {"layer": "layer3"}  # no baseline: unchanged
    from analysis.attribution_methods_field import occlusion

    assert ab.baseline_parameter(integrated_gradients) == "baseline"
    assert ab.baseline_parameter(gradient_shap) == "baselines"
    assert ab.baseline_parameter(occlusion) is None  # its ``baseline`` is the patch's fill value, not an image
    with pytest.raises(ValueError, match="set of baselines"):
        ab.named_baselines(integrated_gradients, {"baseline": "black and white"}, x)
    # the maps differ by baseline, and IG's completeness holds against the baseline it was given
    black = explain("integrated_gradients", tiny_model, x, [3], n_steps=16)
    blurred = explain("integrated_gradients", tiny_model, x, [3], n_steps=16, baseline=opts["baseline"])
    assert not np.allclose(black.maps, blurred.maps)
    with torch.no_grad():
        gap = tiny_model(x)[0, 3] - tiny_model(opts["baseline"])[0, 3]
    assert float(blurred.maps.sum()) == pytest.approx(float(gap), abs=0.05 * abs(float(gap)) + 1e-3)


def test_gradcam_layer_candidates_and_default(tiny_model):
    from analysis.attribution_defaults import gradcam_layer_for
    from analysis.gradcam_layers import default_layer, layer_candidates

    at32 = layer_candidates(tiny_model, 32)
    assert [c.name for c in at32] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert [(c.height, c.width) for c in at32][-2:] == [(8, 8), (4, 4)]
    assert default_layer(tiny_model, 32).name == "layer4"
    at8 = {c.name: c for c in layer_candidates(tiny_model, 8)}
    assert (at8["layer4"].height, at8["layer4"].width) == (1, 1)
    default8 = default_layer(tiny_model, 8)  # layer4 is 1x1 at 8 px: the finest layer whose map is not 1x1
    assert default8.name == "layer3" and default8.label == "layer3 (2x2)"
    assert gradcam_layer_for(tiny_model, (3, 8, 8))[0] == "layer3"


# ----------------------------------------------------------------------------- view <-> query parameters

CHOICES = view_state.Choices(kinds=["brightness", "hue"], max_level=4, variants=["standard", "C", "ADV+C"],
                             methods=["integrated_gradients", "gradcam"], baselines=ab.BASELINES,
                             n_images=100, n_classes=10)  # fmt: skip


def test_view_round_trips_through_query_params():
    view = view_state.ViewState(zoo="tiny", manifest="abc123def456", image=7, kind="hue", level=3,
                                variants=("standard", "ADV+C"), methods=("gradcam",), target="class:2",
                                baseline="blurred", layer="layer3", diff="ADV+C")  # fmt: skip
    params = view_state.to_query_params(view)
    assert params["variants"] == "standard,ADV+C" and params["level"] == "3" and "upload" not in params
    back, problems = view_state.from_query_params(params, CHOICES)
    assert back == view and problems == []
    upload = view_state.ViewState(upload="f" * 32, kind="brightness")
    assert view_state.from_query_params(view_state.to_query_params(upload), CHOICES) == (upload, [])


def test_bad_link_values_drop_only_their_field_with_one_line_each():
    params = {"kind": "sepia", "level": "9", "image": "x", "variants": "standard,nope", "methods": "gradcam",
              "target": "class:12", "baseline": "grey", "other_page_thing": "1", "diff": ["C", "standard"]}  # fmt: skip
    view, problems = view_state.from_query_params(params, CHOICES)
    assert view == view_state.ViewState(methods=("gradcam",), diff="standard")  # the repeated one: its last value
    assert len(problems) == 6  # kind, level, image, variants, target, baseline
    assert any("kind='sepia'" in p and "not one of brightness, hue" in p for p in problems)
    assert any("level='9'" in p and "out of range (0 to 4)" in p for p in problems)
    assert any("unknown: nope" in p for p in problems)
    assert any("class 12 is not one of the 10 classes" in p for p in problems)
    both, problems = view_state.from_query_params({"image": "3", "upload": "ab"}, CHOICES)
    assert both.image == 3 and both.upload is None and "both" in problems[0]


def test_manifest_hash_and_provenance():
    manifest = {"name": "tiny", "variants": {"C": {"sha256": "1"}}}
    h = view_state.manifest_hash(manifest)
    assert re.fullmatch(r"[0-9a-f]{12}", h) and h == view_state.manifest_hash(dict(reversed(manifest.items())))
    assert h != view_state.manifest_hash({"name": "tiny", "variants": {"C": {"sha256": "2"}}})
    fields = view_state.provenance(view_state.ViewState(zoo="tiny", kind="hue"), variant="C", version="0.2")
    assert fields == {"scl.zoo": "tiny", "scl.kind": "hue", "scl.variant": "C", "scl.version": "0.2"}
    assert view_state.provenance_text({"a": "x\ny"}) == "# a: x y\n"


# ----------------------------------------------------------------------------- export


def _row_arrays():
    rng = np.random.default_rng(0)
    image = rng.random((3, 8, 8)).astype(np.float32)
    maps = {"integrated_gradients": rng.normal(size=(8, 8)), "gradcam": rng.random((8, 8))}
    return image, maps


def test_row_png_opens_and_carries_provenance():
    image, maps = _row_arrays()
    prov = view_state.provenance(view_state.ViewState(zoo="tiny", image=4, kind="hue", level=2), variant="C")
    data = map_export.row_png(image, image, maps, signed={"integrated_gradients": True, "gradcam": False},
                              scales={"integrated_gradients": 3.0, "gradcam": 1.0}, provenance=prov,
                              panel_px=64)  # fmt: skip
    with Image.open(io.BytesIO(data)) as png:
        assert png.format == "PNG" and png.width >= 4 * 64 and png.height >= 64
        assert {k: png.text[k] for k in prov} == prov
        pixels = np.asarray(png.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # images and coloured maps, not a blank canvas


def test_row_csv_parses_with_its_header():
    image, maps = _row_arrays()
    prov = {"scl.kind": "hue", "scl.level": "2"}
    text = map_export.row_csv("ADV+C", {"ds": 0.25, "pred": "3 (cat)"}, maps, {"gradcam": maps["gradcam"]}, prov)
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert head == ["# scl.kind: hue", "# scl.level: 2", "# row.ds: 0.25", "# row.pred: 3 (cat)"]
    table = pd.read_csv(io.StringIO(text), comment="#")
    assert list(table.columns) == ["variant", "method", "image", "y", "x", "value"] and len(table) == 3 * 64
    ig = table[(table.method == "integrated_gradients") & (table.image == "perturbed")]
    grid = ig.pivot(index="y", columns="x", values="value").to_numpy()
    assert np.allclose(grid, maps["integrated_gradients"], rtol=1e-5)
    assert set(table.variant) == {"ADV+C"} and set(table.image) == {"perturbed", "original"}


# ----------------------------------------------------------------------------- layout


def test_rows_wrap_instead_of_running_off_the_page():
    image, maps = _row_arrays()
    many = {f"m{i}": maps["gradcam"] for i in range(11)}
    row = map_html.saliency_comparison_html(image, image, many, signed={}, scales={})
    lines = re.findall(r'<div style="(display:flex;[^"]*gap:[^"]*14px[^"]*)">', row)  # the lines of panels
    assert len(lines) == 1 and "flex-wrap:wrap" in lines[0]
    diff = map_html.difference_row_html("GradCAM", {"a": maps["gradcam"], "b": -maps["gradcam"]}, "a", {"b": -1.0})
    assert "flex-wrap:wrap" in diff and "b − a · ρ = -1.00" in diff and "a (reference)" in diff
