"""Each variant's loss equals a hand-written reference, and a few steps reduce it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from models.networks import create_network
from models.objectives import VARIANTS, ObjectiveConfig, distance_score, get_objective
from models.perturbations import pgd_attack, random_colour_jitter

CFG = ObjectiveConfig(alpha=0.7, pgd_eps=8 / 255, pgd_step=4 / 255, pgd_steps=3)


def _reference(variant: str, model, x, y, seed: int) -> torch.Tensor:
    """The losses written out by hand, separate forward passes (the model is in eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    if variant == "standard":
        return F.cross_entropy(model(x), y)
    if variant in ("C", "standard+jitter", "C-control"):
        xp = random_colour_jitter(x, generator=gen)
        fx, fp = model(x), model(xp)
        if variant != "C":  # the controls: the same jitter as augmentation, no DS term
            return 0.5 * (F.cross_entropy(fx, y) + F.cross_entropy(fp, y))
        ds = sum(((fp[i] - fx[i]) ** 2).sum() for i in range(len(x))) / len(x)
        return F.cross_entropy(fx, y) + CFG.alpha * ds
    xa = pgd_attack(model, x, y, eps=CFG.pgd_eps, step_size=CFG.pgd_step, steps=CFG.pgd_steps, generator=gen)
    if variant == "ADV":
        return F.cross_entropy(model(xa), y)
    fx, fa = model(x), model(xa)
    if variant == "ADV-mixed":  # Kannan's baseline: ADV+C with alpha = 0
        return 0.5 * (F.cross_entropy(fx, y) + F.cross_entropy(fa, y))
    ds = sum(((fa[i] - fx[i]) ** 2).sum() for i in range(len(x))) / len(x)
    return 0.5 * (F.cross_entropy(fx, y) + F.cross_entropy(fa, y)) + CFG.alpha * ds


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_equals_hand_written_reference(variant, tiny_model, batch):
    x, y = batch
    out = get_objective(variant)(tiny_model, x, y, CFG, generator=torch.Generator().manual_seed(5))
    ref = _reference(variant, tiny_model, x, y, seed=5)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-5)
    assert out.logits.shape == (8, 10)


def test_distance_score_sums_over_classes():
    a = torch.tensor([[0.0, 1.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 0.0]])
    assert distance_score(a, b).tolist() == [5.0]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_few_steps_reduce_the_loss(variant, batch):
    x, y = batch
    torch.manual_seed(0)
    model = create_network("resnet18-cifar", 10, width=4).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    fn = get_objective(variant)

    def eval_loss() -> float:  # same draws each time; BatchNorm on batch statistics
        with torch.no_grad() if variant in ("standard", "C", "standard+jitter", "C-control") else torch.enable_grad():
            return fn(model, x, y, CFG, generator=torch.Generator().manual_seed(9)).loss.item()

    before = eval_loss()
    for step in range(20):
        out = fn(model, x, y, CFG, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert eval_loss() < before


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="known: standard, C, ADV, ADV\\+C, standard\\+jitter, C-control, ADV-mixed"):
        get_objective("TRADES")
