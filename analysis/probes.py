"""Semantic probes (paper 4.3, DESIGN section 5): transformations that destroy an image's semantics but keep
low-level statistics. A model that stays accurate on them relies on non-semantic cues.

* ``channel_translate``: R shifted down-right by N pixels, G by N//2, B kept, wrapping around (Fig. 5);
* ``randomise_centre``: the pixels of the central square covering a fraction of the area shuffled (Fig. 7);
* ``sliding_puzzle``: the image cut into k x k tiles whose positions are permuted (Fig. 9).

Every probe is a deterministic function of a batch (seeded where random). A random probe draws **one**
permutation per call, shared by all images of the batch: so its result does not depend on how a data set is
split into batches, and it can be passed as the ``transform`` of ``models.evaluation.accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from models.evaluation import accuracy


def channel_translate(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """Shift R by ``N = round(fraction * side)`` pixels and G by ``N // 2`` pixels down and right, wrapping
    around (what leaves the bottom/right edge re-enters top/left); B unchanged. ``side = min(H, W)``."""
    n = round(fraction * min(images.shape[-2:]))
    out = images.clone()
    out[:, 0] = torch.roll(images[:, 0], shifts=(n, n), dims=(-2, -1))
    out[:, 1] = torch.roll(images[:, 1], shifts=(n // 2, n // 2), dims=(-2, -1))
    return out


def centre_box(height: int, width: int, area_fraction: float) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the centred box with sides ``round(sqrt(area_fraction) * side)``: a square
    covering ``area_fraction`` of a square image (rounded to whole pixels)."""
    if not 0.0 <= area_fraction <= 1.0:
        raise ValueError(f"area_fraction must be in [0, 1], got {area_fraction}")
    scale = math.sqrt(area_fraction)
    h, w = round(scale * height), round(scale * width)
    return (height - h) // 2, (width - w) // 2, h, w


def randomise_centre(images: torch.Tensor, area_fraction: float, seed: int = 0) -> torch.Tensor:
    """Shuffle the pixel positions inside the central square covering ``area_fraction`` of the image
    (1.0 = the whole image). One seeded permutation of positions, applied to all channels of a pixel together
    and to every image of the batch; pixels outside the square are untouched."""
    top, left, h, w = centre_box(images.shape[-2], images.shape[-1], area_fraction)
    out = images.clone()
    if h * w <= 1:
        return out
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed)).to(images.device)
    region = images[..., top : top + h, left : left + w].reshape(*images.shape[:-2], h * w)
    out[..., top : top + h, left : left + w] = region[..., perm].reshape(*images.shape[:-2], h, w)
    return out


def tile_permutation(k: int, seed: int = 0) -> torch.Tensor:
    """A seeded permutation of ``k * k`` tile positions that is not the identity (redrawn until it is not)."""
    if k < 2:
        raise ValueError(f"sliding puzzle needs k >= 2 tiles per side, got {k}")
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(k * k, generator=gen)
        if not torch.equal(perm, torch.arange(k * k)):
            return perm


def sliding_puzzle(images: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Cut the image into a k x k grid of tiles and rearrange them: output tile ``i`` is input tile ``perm[i]``
    (``perm = tile_permutation(k, seed)``, never the identity). Tiles are ``(H // k, W // k)``; when a side is
    not divisible by k the remaining bottom rows / right columns are left unchanged."""
    *lead, height, width = images.shape
    th, tw = height // k, width // k
    if th == 0 or tw == 0:
        raise ValueError(f"cannot cut a {height}x{width} image into {k}x{k} tiles")
    perm = tile_permutation(k, seed).to(images.device)
    grid = images[..., : k * th, : k * tw].reshape(*lead, k, th, k, tw).transpose(-3, -2)
    tiles = grid.reshape(*lead, k * k, th, tw)[..., perm, :, :]
    out = images.clone()
    out[..., : k * th, : k * tw] = tiles.reshape(*lead, k, k, th, tw).transpose(-3, -2).reshape(*lead, k * th, k * tw)
    return out


@dataclass(frozen=True)
class Probe:
    """A probe, its paper levels and their display labels. ``apply(images, level, seed)``."""

    apply: Callable[[torch.Tensor, float, int], torch.Tensor]
    levels: tuple[float, ...]
    labels: tuple[str, ...]
    description: str


PROBES: dict[str, Probe] = {
    "channel_translation": Probe(
        lambda x, level, seed: channel_translate(x, level),
        (1 / 32, 1 / 16, 1 / 8, 1 / 4),
        ("1/32", "1/16", "1/8", "1/4"),
        "R shifted down-right by N = level x side pixels, G by N/2, wrapping (paper 4.3.1)",
    ),
    "randomised_centre": Probe(
        lambda x, level, seed: randomise_centre(x, level, seed),
        (0.25, 0.5, 0.75, 1.0),
        ("25%", "50%", "75%", "100%"),
        "pixels of the central square covering this share of the area shuffled (paper 4.3.2)",
    ),
    "sliding_puzzle": Probe(
        lambda x, level, seed: sliding_puzzle(x, int(level), seed),
        (2, 4, 8),
        ("2x2", "4x4", "8x8"),
        "image cut into k x k tiles, tiles permuted (paper 4.3.3)",
    ),
}


def probe_table(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    probes: Sequence[str] = tuple(PROBES),
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Accuracy of every variant on every probe level (paper Fig. 6, 8, 10).

    Each probe's curve starts with the clean accuracy as level 0, label "clean". Columns: variant, probe,
    level, level_label, accuracy.
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    rows = []
    total = len(models) * (1 + sum(len(PROBES[p].levels) for p in probes))
    bar = tqdm(total=total, desc="probes", disable=not progress, unit="cell")
    for variant, model in models.items():
        clean = accuracy(model, images, labels, batch_size)
        bar.update(1)
        for name in probes:
            probe = PROBES[name]
            rows.append({"variant": variant, "probe": name, "level": 0, "level_label": "clean", "accuracy": clean})
            for level, label in zip(probe.levels, probe.labels, strict=True):
                bar.set_postfix_str(f"{variant} {name} {label}")

                def transform(x: torch.Tensor, probe: Probe = probe, level: float = level) -> torch.Tensor:
                    return probe.apply(x, level, seed)

                acc = accuracy(model, images, labels, batch_size, transform=transform)
                rows.append({"variant": variant, "probe": name, "level": level, "level_label": label, "accuracy": acc})
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=["variant", "probe", "level", "level_label", "accuracy"])
