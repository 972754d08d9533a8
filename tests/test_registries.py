"""Adding a perturbation kind, a training variant and an attribution method is one function plus one
registration each: a toy of each, registered through the registries only, reaches the perturbation, the
training step, the explanation, the report and the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch.nn import functional as F

from analysis.attributions import METHOD_REGISTRY, Method, explain
from models.objectives import VARIANT_REGISTRY, LossOutput, Variant, get_objective, variant_colour
from models.perturbations import KIND_REGISTRY, KINDS, TABLE1, Kind, perturb, random_colour_jitter
from tests.conftest import make_tiny_zoo

ROOT = Path(__file__).resolve().parent.parent
TOY_KIND, TOY_VARIANT, TOY_METHOD = "toy-invert", "toy-smooth", "toy-gradient"


def _invert(x: torch.Tensor, v: float | torch.Tensor) -> torch.Tensor:
    """Blend each image with its negative: (1 - v) x + v (1 - x), v a number or one per image (N,)."""
    v = v.view(-1, 1, 1, 1) if torch.is_tensor(v) else v
    return ((1 - v) * x + v * (1 - x)).clamp(0, 1)


def _smooth_loss(model, x, y, cfg, generator=None) -> LossOutput:
    """Cross-entropy with label smoothing 0.1: a toy variant."""
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    return LossOutput(loss, logits, {"ce": loss.item()})


def _gradient_x_input(model, images, targets, **options):
    """Gradient x input summed over channels: a toy attribution method."""
    x = images.clone().requires_grad_(True)
    score = model(x).gather(1, targets[:, None]).sum()
    (grad,) = torch.autograd.grad(score, x)
    return (grad * images).sum(1).detach().cpu().numpy(), {"toy": True}


@pytest.fixture
def toys(monkeypatch):
    """The three toys registered for one test (the registries are restored afterwards)."""
    monkeypatch.setitem(
        KIND_REGISTRY,
        TOY_KIND,
        Kind(
            TOY_KIND,
            (0.05, 0.1, 0.15, 0.2),
            "{:g}",
            _invert,
            _invert,
            jitter=(0.0, 0.2),
            description="blend with the negative",
        ),
    )
    monkeypatch.setitem(
        VARIANT_REGISTRY,
        TOY_VARIANT,
        Variant(TOY_VARIANT, _smooth_loss, "CE with label smoothing", "A toy variant.", "#123456", role="other"),
    )
    monkeypatch.setitem(METHOD_REGISTRY, TOY_METHOD, Method(TOY_METHOD, _gradient_x_input, "Toy gradient", signed=True))
    yield


def test_the_toys_reach_perturbation_training_and_explanation(toys, tiny_model, batch):
    x, y = batch
    assert TOY_KIND in KINDS and TABLE1[TOY_KIND][1] == 0.1  # the live views follow the registry
    assert torch.allclose(perturb(x, TOY_KIND, 2), 0.9 * x + 0.1 * (1 - x))
    # The C variant's training jitter draws the toy kind too: with only its range, it is the toy perturbation.
    gen = torch.Generator().manual_seed(0)
    jittered = random_colour_jitter(x, generator=gen, ranges={TOY_KIND: (0.1, 0.1)})
    assert torch.allclose(jittered, perturb(x, TOY_KIND, 2), atol=1e-6)

    out = get_objective(TOY_VARIANT)(tiny_model, x, y, None)
    assert out.loss.item() == pytest.approx(F.cross_entropy(tiny_model(x), y, label_smoothing=0.1).item(), rel=1e-6)
    assert variant_colour(TOY_VARIANT) == "#123456"

    expl = explain(TOY_METHOD, tiny_model, x[:2], y[:2])
    assert expl.maps.shape == (2, 32, 32) and expl.extras == {"toy": True}


def test_the_toy_variant_trains(toys, tmp_path, cache_dir):
    from models.train import TrainConfig, train

    cfg = TrainConfig(variant=TOY_VARIANT, dataset="digits", width=4, epochs=1, batch_size=32, train_limit=96,
                      val_size=32, out=str(tmp_path / "run"), num_threads=1)  # fmt: skip
    result = train(cfg, progress=False)
    assert (tmp_path / "run" / "model.pt").is_file() and not result.get("interrupted")


def test_the_toys_reach_the_report_and_the_dashboard(toys, tmp_path, monkeypatch, cache_dir):
    from analysis.report import main

    zoo = make_tiny_zoo(tmp_path / "zoo")  # one checkpoint per registered variant, the toy one included
    assert json.loads((zoo / "zoo.json").read_text())["variants"][TOY_VARIANT]
    out = tmp_path / "report"
    rc = main(["--zoo", str(zoo), "--out", str(out), "--quick", "--only", "continuity,attributions",
               "--no-progress", "--set", "n_images=16", "--set", "attr_images=2"])  # fmt: skip
    assert rc == 0
    ds = pd.read_csv(out / "results" / "continuity.csv")
    assert TOY_KIND in set(ds["kind"]) and TOY_VARIANT in set(ds["variant"])
    attributions = pd.read_csv(out / "results" / "attributions.csv")
    assert TOY_METHOD in set(attributions["method"]) and TOY_VARIANT in set(attributions["variant"])
    report = (out / "REPORT.md").read_text()
    assert TOY_KIND in report and TOY_VARIANT in report

    monkeypatch.setenv("SCL_ZOO", str(zoo))
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    assert TOY_VARIANT in at.multiselect(key="zoo_variants").options
    at.switch_page("views/saliency.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert TOY_KIND in at.selectbox(key="sal_kind").options
    assert at.checkbox(key=f"sal_method_{TOY_METHOD}").label == "Toy gradient"
    assert TOY_VARIANT in at.multiselect(key="sal_variants").options
    at.selectbox(key="sal_kind").set_value(TOY_KIND)
    at.checkbox(key=f"sal_method_{TOY_METHOD}").check()
    at.multiselect(key="sal_variants").set_value([TOY_VARIANT])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    rows = [h.value for h in at.get("html") if "scl-saliency" in h.value]  # the default drawing: images
    assert rows and all('alt="Toy gradient"' in row for row in rows)
    at.toggle(key="sal_interactive").set_value(True).run()  # and as plotly charts
    assert not at.exception, [e.value for e in at.exception]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "sal_fig_" in c.proto.id]
    assert specs and any("Toy gradient" in json.dumps(s["layout"]) for s in specs)
