"""Cascading model-parameter randomisation (analysis.sanity_checks): a method whose maps ignore the weights is
flagged, Integrated Gradients on a trained tiny model is not, and the model checked is never modified."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import filters

from analysis.attributions import METHOD_REGISTRY, Method
from analysis.sanity_checks import (
    cascading_randomisation,
    randomisation_units,
    randomise_,
    sanity_summary,
    survives_randomisation,
)


def _edges(model, images, targets, **options):
    """An edge detector posing as an attribution method: the Sobel magnitude of the grey image, no model at all."""
    grey = images.mean(1).detach().cpu().numpy()
    return np.stack([filters.sobel(g) for g in grey]).astype(np.float32), {}


def _squares(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Dim noise with a bright 8x8 square in one of four places; the class is the place."""
    x = 0.2 * torch.rand(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 4, (n,), generator=gen)
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c, 2)
        x[i, :, 4 + 16 * r : 12 + 16 * r, 4 + 16 * q : 12 + 16 * q] = 0.9
    return x, y


@pytest.fixture
def trained_model(tiny_model, one_thread):
    """The tiny model trained to tell where the square is (30 Adam steps; >= 90% on fresh images)."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(tiny_model.parameters(), 1e-2)
    tiny_model.train()
    for _ in range(30):
        x, y = _squares(32, gen)
        loss = torch.nn.functional.cross_entropy(tiny_model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tiny_model.eval()
    x, y = _squares(64, gen)
    with torch.no_grad():
        assert (tiny_model(x).argmax(1) == y).float().mean() >= 0.9
    return tiny_model


def test_the_blocks_go_head_first(tiny_model):
    names = [n for n, _ in randomisation_units(tiny_model, (3, 32, 32))]
    assert names[0] == "head" and names[1] == "layer4.1" and names[-1] == "stem.0"
    assert names.index("layer3.0") < names.index("layer2.1")  # later stages before earlier ones
    before = {k: v.clone() for k, v in tiny_model.head.state_dict().items()}
    assert randomise_(tiny_model.head, seed=1) == 1
    assert not torch.equal(before["weight"], tiny_model.head.weight)


def test_a_wrapped_network_is_split_into_its_blocks_too():
    """An imported network sits under one child (``body``): its layers, and its stages' blocks, are the units."""
    from torch import nn
    from torchvision.models import resnet18

    class Imported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = resnet18(num_classes=10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    names = [n for n, _ in randomisation_units(Imported(), (3, 32, 32))]
    assert names[:3] == ["body.fc", "body.layer4.1", "body.layer4.0"] and names[-2:] == ["body.bn1", "body.conv1"]


def test_a_method_that_ignores_the_weights_is_flagged(monkeypatch, tiny_model, batch, one_thread):
    monkeypatch.setitem(METHOD_REGISTRY, "toy-edges", Method("toy-edges", _edges, "Edges", signed=False))
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    df = cascading_randomisation(tiny_model, batch[0][:4], "toy-edges")
    assert sorted(set(df["step"])) == list(range(12)) and len(df) == 12 * 4
    assert np.allclose(df["spearman"], 1.0) and np.allclose(df["ssim"], 1.0)
    assert survives_randomisation(df, "toy-edges")
    for k, v in tiny_model.state_dict().items():  # the model checked is untouched (a copy is randomised)
        assert torch.equal(v, state[k]), k


def test_integrated_gradients_of_a_trained_model_is_not_flagged(trained_model):
    x, y = _squares(6, torch.Generator().manual_seed(5))
    df = cascading_randomisation(trained_model, x, "integrated_gradients", y, n_steps=16)
    assert not survives_randomisation(df, "integrated_gradients")
    summary = sanity_summary(df, n_resamples=2000)
    rho = summary[summary["metric"] == "spearman"].set_index("step")
    assert rho.loc[0, "mean"] == 1.0 and rho.loc[1, "layer"] == "head"
    assert rho.loc[rho.index.max(), "mean"] < 0.5 and rho.loc[1, "mean"] < 1.0
    assert (rho["ci_low"] <= rho["mean"] + 1e-12).all() and (rho["mean"] <= rho["ci_high"] + 1e-12).all()
    with pytest.raises(ValueError, match="no sanity-check rows"):
        survives_randomisation(df, "gradcam")
