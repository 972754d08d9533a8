"""Table 1 perturbations, per-sample jitter and PGD, checked against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchvision.transforms import functional as TF

from models.perturbations import (
    KINDS,
    TABLE1,
    level_value,
    margin_loss,
    perturb,
    pgd_attack,
    random_colour_jitter,
    shift_hue,
)


def test_table1_values_are_the_papers():
    assert TABLE1 == {
        "brightness": (16.0, 32.0, 48.0, 64.0),
        "contrast": (1.25, 1.50, 1.75, 2.0),
        "saturation": (1.25, 1.50, 1.75, 2.0),
        "hue": (0.1, 0.2, 0.3, 0.4),
    }
    assert level_value("contrast", 3) == 1.75
    with pytest.raises(ValueError):
        level_value("hue", 5)
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(torch.zeros(1, 3, 2, 2), "blur", 1)


def _pixel(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(1, 3, 1, 1)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_brightness_is_additive_on_the_255_scale(level):
    x = _pixel(100 / 255, 0.0, 250 / 255)
    out = perturb(x, "brightness", level).flatten()
    k = 16 * level
    assert out[0].item() == pytest.approx((100 + k) / 255, abs=1e-6)
    assert out[1].item() == pytest.approx(k / 255, abs=1e-6)
    assert out[2].item() == pytest.approx(min(250 + k, 255) / 255, abs=1e-6)  # clamped at 1


def test_contrast_blends_with_the_grayscale_mean_by_hand():
    # Two gray pixels 0.2 and 0.6: luma mean 0.4 * (0.2989 + 0.587 + 0.114); factor 1.25 at level 1.
    x = torch.tensor([[[[0.2, 0.6]]] * 3]).float()
    mean = 0.4 * 0.9999
    expected = torch.tensor([1.25 * 0.2 - 0.25 * mean, 1.25 * 0.6 - 0.25 * mean])
    assert torch.allclose(perturb(x, "contrast", 1)[0, 0, 0], expected, atol=1e-6)
    expected4 = torch.tensor([max(0.0, 2 * 0.2 - mean), 2 * 0.6 - mean])  # factor 2, clamped at 0
    assert torch.allclose(perturb(x, "contrast", 4)[0, 0, 0], expected4, atol=1e-6)


def test_saturation_blends_with_the_pixels_luma_by_hand():
    x = _pixel(0.6, 0.4, 0.2)
    luma = 0.2989 * 0.6 + 0.587 * 0.4 + 0.114 * 0.2
    out = perturb(x, "saturation", 2).flatten()  # factor 1.5
    assert torch.allclose(out, 1.5 * x.flatten() - 0.5 * luma, atol=1e-5)


def test_hue_rotates_pure_red_by_hand():
    out = perturb(_pixel(1.0, 0.0, 0.0), "hue", 2).flatten()  # +0.2 turn = 72 degrees
    assert torch.allclose(out, torch.tensor([0.8, 1.0, 0.0]), atol=1e-5)


def test_level_zero_is_identity_and_perturbations_are_deterministic(batch):
    x, _ = batch
    for kind in KINDS:
        assert torch.equal(perturb(x, kind, 0), x)
        assert torch.equal(perturb(x, kind, 3), perturb(x, kind, 3))
        assert 0.0 <= perturb(x, kind, 4).min() and perturb(x, kind, 4).max() <= 1.0


def test_perturb_accepts_inputs_that_require_grad(batch):
    x = batch[0].clone().requires_grad_(True)
    assert not perturb(x, "hue", 1).requires_grad


def test_jitter_draws_different_factors_per_image():
    x = torch.rand(1, 3, 16, 16).repeat(16, 1, 1, 1)
    out = random_colour_jitter(x, torch.Generator().manual_seed(0))
    per_image = out.flatten(1)
    distinct = {tuple(row[:5].tolist()) for row in per_image}
    assert len(distinct) == 16  # every copy got its own factors
    again = random_colour_jitter(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    assert out.min() >= 0 and out.max() <= 1


def test_vectorised_hue_equals_torchvision_per_image():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(12, 3, 8, 8, generator=gen)
    shifts = torch.rand(12, generator=gen) - 0.5
    ref = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(x, shifts, strict=True)])
    assert torch.allclose(shift_hue(x, shifts), ref, atol=1e-5)


def test_pgd_stays_in_the_ball_and_restores_the_model(tiny_model, batch):
    x, y = batch
    eps = 8 / 255
    for training in (True, False):
        tiny_model.train(training)
        adv = pgd_attack(tiny_model, x, y, eps=eps, step_size=2 / 255, steps=5)
        assert tiny_model.training is training
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        assert not adv.requires_grad
        assert all(p.grad is None for p in tiny_model.parameters())


def test_pgd_increases_the_loss_over_a_random_point_of_the_ball(tiny_model, batch):
    x, y = batch
    eps = 8 / 255
    gen = torch.Generator().manual_seed(0)
    random_point = (x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps).clamp(0, 1)
    adv = pgd_attack(tiny_model, x, y, eps=eps, step_size=2 / 255, steps=10, generator=gen)
    with torch.no_grad():
        loss_random = F.cross_entropy(tiny_model(random_point), y)
        loss_adv = F.cross_entropy(tiny_model(adv), y)
    assert loss_adv > loss_random + 1e-3


def test_margin_loss_and_restarts_pick_the_worst_case(tiny_model, batch):
    x, y = batch
    one = pgd_attack(tiny_model, x, y, steps=3, loss="margin", generator=torch.Generator().manual_seed(0))
    best = pgd_attack(tiny_model, x, y, steps=3, loss="margin", restarts=3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m_one, m_best = margin_loss(tiny_model(one), y), margin_loss(tiny_model(best), y)
    assert torch.all(m_best >= m_one - 1e-5)  # the first restart is the same draw; others can only improve
    with pytest.raises(ValueError, match="unknown attack loss"):
        pgd_attack(tiny_model, x, y, loss="l2")
