"""analysis.probes: each probe checked by hand as an exact shift / permutation on small arange images."""

from __future__ import annotations

import pytest
import torch

from analysis.probes import (
    PROBES,
    centre_box,
    channel_shifts,
    channel_translate,
    image_seed,
    level_detail,
    probe_table,
    probe_tables,
    randomise_centre,
    sliding_puzzle,
    tile_permutation,
)
from models.checkpoints import load_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


def _arange(n: int = 2, side: int = 8) -> torch.Tensor:
    """Distinct values everywhere: image, channel, row and column are all recoverable from a pixel."""
    return torch.arange(n * 3 * side * side, dtype=torch.float32).view(n, 3, side, side)


def _tiles(x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The k x k tiles of one image (C, H, W), row-major, over the divisible part."""
    th, tw = x.shape[-2] // k, x.shape[-1] // k
    return [x[:, i * th : (i + 1) * th, j * tw : (j + 1) * tw] for i in range(k) for j in range(k)]


@pytest.mark.parametrize("fraction, n", [(1 / 8, 1), (1 / 4, 2), (1 / 2, 4)])
def test_channel_translation_moves_r_by_n_and_g_by_half_with_wrap(fraction, n):
    x = _arange(side=8)
    out = channel_translate(x, fraction)
    h = n // 2
    for r in range(8):
        for c in range(8):
            assert out[0, 0, r, c] == x[0, 0, (r - n) % 8, (c - n) % 8]  # R: content moved down-right by n
            assert out[1, 1, r, c] == x[1, 1, (r - h) % 8, (c - h) % 8]  # G: by n // 2
    assert torch.equal(out[:, 2], x[:, 2])  # B unchanged
    assert out[0, 0, 0, 0] == x[0, 0, 8 - n, 8 - n]  # the bottom-right corner wrapped to the top-left
    assert torch.equal(channel_translate(x, 0.0), x)


def test_channel_translation_rounds_n_from_the_side():
    x = _arange(1, side=32)
    assert torch.equal(channel_translate(x, 1 / 32)[0, 0], torch.roll(x[0, 0], (1, 1), (0, 1)))
    assert torch.equal(channel_translate(x, 1 / 32)[0, 1], x[0, 1])  # N // 2 = 0
    assert torch.equal(channel_translate(x, 1 / 4)[0, 1], torch.roll(x[0, 1], (4, 4), (0, 1)))


@pytest.mark.parametrize("fraction, side", [(0.25, 4), (0.5, 6), (0.75, 7), (1.0, 8)])
def test_randomised_centre_permutes_only_the_central_square(fraction, side):
    x = _arange(2, side=8)
    top, left, h, w = centre_box(8, 8, fraction)
    assert (h, w) == (side, side) and (top, left) == ((8 - side) // 2, (8 - side) // 2)
    out = randomise_centre(x, fraction, seed=1)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[top : top + h, left : left + w] = True
    assert torch.equal(out[..., ~inside], x[..., ~inside])  # untouched outside
    assert not torch.equal(out[..., inside], x[..., inside])
    assert torch.equal(out[..., inside].sort(-1).values, x[..., inside].sort(-1).values)  # a permutation
    # The same position permutation for every channel and image: the source of each output pixel is one
    # position (values are image * 192 + channel * 64 + row * 8 + column).
    src = out - x[:, :, :1, :1]  # position index r * 8 + c of where each value came from
    assert torch.equal(src[:, 0], src[:, 1]) and torch.equal(src[:, 0], src[:, 2]) and torch.equal(src[0], src[1])


def test_randomised_centre_is_seeded():
    x = _arange(1, side=8)
    assert torch.equal(randomise_centre(x, 0.5, seed=3), randomise_centre(x, 0.5, seed=3))
    assert not torch.equal(randomise_centre(x, 0.5, seed=3), randomise_centre(x, 0.5, seed=4))
    assert torch.equal(randomise_centre(x, 0.0, seed=3), x)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_sliding_puzzle_permutes_tiles(k):
    x = _arange(2, side=32)
    out = sliding_puzzle(x, k, seed=0)
    perm = tile_permutation(k, seed=0)
    assert not torch.equal(perm, torch.arange(k * k)) and not torch.equal(out, x)
    for img in range(2):
        src, dst = _tiles(x[img], k), _tiles(out[img], k)
        for i, tile in enumerate(dst):
            assert torch.equal(tile, src[perm[i]])  # output tile i is input tile perm[i]
        assert sorted(t.flatten()[0].item() for t in dst) == sorted(t.flatten()[0].item() for t in src)
    assert torch.equal(out, sliding_puzzle(x, k, seed=0))  # deterministic


def test_sliding_puzzle_keeps_the_remainder_when_the_side_is_not_divisible():
    x = _arange(1, side=10)
    out = sliding_puzzle(x, 4, seed=2)  # 2x2-pixel tiles over the top-left 8x8
    assert torch.equal(out[..., 8:, :], x[..., 8:, :]) and torch.equal(out[..., :, 8:], x[..., :, 8:])
    src = {tuple(t.flatten().tolist()) for t in _tiles(x[0, :, :8, :8], 4)}
    assert {tuple(t.flatten().tolist()) for t in _tiles(out[0, :, :8, :8], 4)} == src
    with pytest.raises(ValueError):
        sliding_puzzle(x, 1)


def test_tile_permutation_is_never_the_identity():
    for seed in range(40):
        assert not torch.equal(tile_permutation(2, seed), torch.arange(4))


def test_registry_has_the_paper_levels():
    assert PROBES["channel_translation"].levels == (1 / 32, 1 / 16, 1 / 8, 1 / 4)
    assert PROBES["randomised_centre"].levels == (0.25, 0.5, 0.75, 1.0)
    assert PROBES["sliding_puzzle"].levels == (2, 4, 8)
    for probe in PROBES.values():
        assert len(probe.labels) == len(probe.levels)


def test_probe_table(tiny_zoo, batch):
    models = load_zoo(tiny_zoo).models
    images, labels = batch
    df, per_image = probe_tables(models, images, labels, batch_size=3)
    assert list(df.columns) == ["variant", "probe", "level", "level_label", "accuracy", "n_images", "detail"]
    per_variant = sum(1 + len(p.levels) for p in PROBES.values())
    assert len(df) == len(models) * per_variant and list(df["variant"].unique()) == list(models)
    assert df["accuracy"].between(0, 1).all() and (df["n_images"] == len(images)).all()
    clean = df[df["level_label"] == "clean"]
    assert (clean["level"] == 0).all() and len(clean) == len(models) * len(PROBES)
    assert clean.groupby("variant")["accuracy"].nunique().eq(1).all()
    # the accuracy is the mean of the per-image results, whatever the batch size
    means = per_image.groupby(["variant", "probe", "level_label"], sort=False)["correct"].mean().to_numpy()
    assert means == pytest.approx(df["accuracy"].to_numpy())
    assert df.equals(probe_table(models, images, labels, batch_size=8))
    with pytest.raises(ValueError, match="unknown probe"):
        probe_table(models, images, labels, probes=("blur",))


def test_sliding_puzzle_per_image_permutations_are_seeded_and_batch_independent():
    x = torch.arange(6 * 1 * 4 * 4, dtype=torch.float32).reshape(6, 1, 4, 4)
    whole = sliding_puzzle(x, 2, seed=3, per_image=True)
    halves = torch.cat([sliding_puzzle(x[:2], 2, 3, True, 0), sliding_puzzle(x[2:], 2, 3, True, 2)])
    assert torch.equal(whole, halves)
    perms = {tuple(tile_permutation(2, image_seed(3, i)).tolist()) for i in range(6)}
    assert len(perms) > 1  # not one shared permutation
    for i in range(6):  # image i is cut with its own permutation
        assert torch.equal(whole[i : i + 1], sliding_puzzle(x[i : i + 1], 2, seed=image_seed(3, i)))


def test_channel_translation_reports_a_g_shift_that_rounds_to_zero():
    assert channel_shifts(1 / 32, 32) == (1, 0)
    assert "G rounds to 0" in level_detail("channel_translation", 1 / 32, 32)
    assert level_detail("channel_translation", 1 / 8, 32) == "R 4 px, G 2 px"
