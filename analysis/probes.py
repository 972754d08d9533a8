"""Semantic probes (paper 4.3): transformations that destroy an image's semantics but keep
low-level statistics. A model that stays accurate on them relies on non-semantic cues.

* ``channel_translate``: R shifted down-right by N pixels, G by N//2, B kept, wrapping around (Fig. 5);
* ``randomise_centre``: the pixels of the central square covering a fraction of the area shuffled (Fig. 7);
* ``sliding_puzzle``: the image cut into k x k tiles whose positions are permuted (Fig. 9).

Every probe is a deterministic function of a batch (seeded where random). ``randomise_centre`` draws one
permutation per call, shared by the batch. ``sliding_puzzle`` with ``per_image=True`` (what ``probe_table`` uses)
draws one permutation **per image**, seeded by the seed and the image's index in the whole set (``first_index`` +
its position in the batch): a single shared permutation would make the result hinge on one draw, and the result
still does not depend on how the set is split into batches.

At 32x32 the smallest channel translation (1/32: R by 1 pixel) rounds G's shift to 0 pixels;
``channel_shifts`` says so and the report prints it.

``conditional_probe_accuracy`` / ``conditional_probe_share``: the probes restricted to the images both compared
models classify correctly when clean (probe accuracy otherwise moves with clean accuracy; issue 23).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from analysis.statistics import TestResult, mcnemar, paired_bootstrap
from models.evaluation import correct_per_image


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


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index``'s own permutation under probe seed ``seed``."""
    return seed * 1_000_003 + index


def sliding_puzzle(
    images: torch.Tensor, k: int, seed: int = 0, per_image: bool = False, first_index: int = 0
) -> torch.Tensor:
    """Cut the image into a k x k grid of tiles and rearrange them: output tile ``i`` is input tile ``perm[i]``
    (``perm = tile_permutation(k, seed)``, never the identity; with ``per_image`` image j of the batch uses
    ``tile_permutation(k, image_seed(seed, first_index + j))``). Tiles are ``(H // k, W // k)``; when a side is
    not divisible by k the remaining bottom rows / right columns are left unchanged."""
    *lead, channels, height, width = images.shape
    th, tw = height // k, width // k
    if th == 0 or tw == 0:
        raise ValueError(f"cannot cut a {height}x{width} image into {k}x{k} tiles")
    flat = images.reshape(-1, channels, height, width)
    n = flat.shape[0]
    if per_image:
        perms = torch.stack([tile_permutation(k, image_seed(seed, first_index + j)) for j in range(n)])
    else:
        perms = tile_permutation(k, seed).expand(n, k * k)
    perms = perms.to(images.device)
    grid = flat[..., : k * th, : k * tw].reshape(n, channels, k, th, k, tw).permute(0, 2, 4, 1, 3, 5)
    tiles = grid.reshape(n, k * k, channels, th, tw)[torch.arange(n, device=images.device)[:, None], perms]
    out = flat.clone()
    out[..., : k * th, : k * tw] = (
        tiles.reshape(n, k, k, channels, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, channels, k * th, k * tw)
    )
    return out.reshape(*lead, channels, height, width)


def channel_shifts(fraction: float, side: int) -> tuple[int, int]:
    """Pixels R and G move under ``channel_translate`` at ``fraction`` on a ``side``-pixel image."""
    n = round(fraction * side)
    return n, n // 2


@dataclass(frozen=True)
class Probe:
    """A probe, its paper levels and their display labels. ``apply(images, level, seed, first_index)``."""

    apply: Callable[[torch.Tensor, float, int, int], torch.Tensor]
    levels: tuple[float, ...]
    labels: tuple[str, ...]
    description: str


PROBES: dict[str, Probe] = {
    "channel_translation": Probe(
        lambda x, level, seed, first: channel_translate(x, level),
        (1 / 32, 1 / 16, 1 / 8, 1 / 4),
        ("1/32", "1/16", "1/8", "1/4"),
        "R shifted down-right by N = level x side pixels, G by N/2, wrapping (paper 4.3.1)",
    ),
    "randomised_centre": Probe(
        lambda x, level, seed, first: randomise_centre(x, level, seed),
        (0.25, 0.5, 0.75, 1.0),
        ("25%", "50%", "75%", "100%"),
        "pixels of the central square covering this share of the area shuffled (paper 4.3.2)",
    ),
    "sliding_puzzle": Probe(
        lambda x, level, seed, first: sliding_puzzle(x, int(level), seed, True, first),
        (2, 4, 8),
        ("2x2", "4x4", "8x8"),
        "image cut into k x k tiles, tiles permuted, one seeded permutation per image (paper 4.3.3)",
    ),
}


def probe_correct(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, probe: Probe, level: float, seed: int,
    batch_size: int,
) -> torch.Tensor:  # fmt: skip
    """Per image (bool): correct on the probed image (each batch told where it starts in ``images``)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        out.append(correct_per_image(model, probe.apply(x, level, seed, start), labels[start : start + batch_size],
                                     batch_size))  # fmt: skip
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def level_detail(name: str, level: float, side: int) -> str:
    """What a level does in pixels where that matters (channel translation: R and G shifts)."""
    if name != "channel_translation":
        return ""
    r, g = channel_shifts(level, side)
    return f"R {r} px, G {g} px" + (" (G rounds to 0: not shifted)" if g == 0 else "")


def probe_tables(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    probes: Sequence[str] = tuple(PROBES),
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy of every variant on every probe level (paper Fig. 6, 8, 10), and per-image correctness.

    Each probe's curve starts with the clean accuracy as level 0, label "clean". Returns (table, per_image):
    table columns variant, probe, level, level_label, accuracy, n_images, detail; per_image columns variant, probe,
    level_label, image, correct.
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    labels = torch.as_tensor(labels).cpu()
    rows, per_image = [], []
    side = min(images.shape[-2:])
    total = len(models) * (1 + sum(len(PROBES[p].levels) for p in probes))
    bar = tqdm(total=total, desc="probes", disable=not progress, unit="cell")
    for variant, model in models.items():
        clean = correct_per_image(model, images, labels, batch_size)
        bar.update(1)
        for name in probes:
            probe = PROBES[name]
            cells = [(0, "clean", clean)]
            for level, label in zip(probe.levels, probe.labels, strict=True):
                bar.set_postfix_str(f"{variant} {name} {label}")
                cells.append((level, label, probe_correct(model, images, labels, probe, level, seed, batch_size)))
                bar.update(1)
            for level, label, ok in cells:
                detail = "" if label == "clean" else level_detail(name, level, side)
                rows.append({"variant": variant, "probe": name, "level": level, "level_label": label,
                             "accuracy": float(ok.float().mean()) if len(ok) else float("nan"),
                             "n_images": len(ok), "detail": detail})  # fmt: skip
                per_image.append(pd.DataFrame({"variant": variant, "probe": name, "level_label": label,
                                               "image": range(len(ok)), "correct": ok.numpy()}))  # fmt: skip
    bar.close()
    table = pd.DataFrame(rows, columns=["variant", "probe", "level", "level_label", "accuracy", "n_images", "detail"])
    return table, (pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame())


def probe_table(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    probes: Sequence[str] = tuple(PROBES),
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """The accuracy table of ``probe_tables`` (columns variant, probe, level, level_label, accuracy, n_images,
    detail)."""
    return probe_tables(models, images, labels, probes, seed, batch_size, progress)[0]


# --- issue 23: probe accuracy not confounded with clean accuracy ---

CONDITIONAL_COLUMNS = ["probe", "level_label", "variant_a", "variant_b", "n_images", "n_total", "accuracy_a",
                       "accuracy_b", "effect", "ci_low", "ci_high", "p", "test"]  # fmt: skip


def _clean_correct(per_image: pd.DataFrame, variant: str) -> pd.Series:
    """Per image (indexed by image): ``variant`` correct on the clean image (the "clean" rows of any probe)."""
    rows = per_image[(per_image["variant"] == variant) & (per_image["level_label"] == "clean")]
    if rows.empty:
        raise ValueError(f"no clean per-image correctness for variant {variant!r} in the probe table")
    return rows.groupby("image")["correct"].first().astype(bool)


def both_clean_correct(per_image: pd.DataFrame, a: str, b: str) -> np.ndarray:
    """The images (sorted ids) that variants ``a`` and ``b`` both classify correctly when clean."""
    ca, cb = _clean_correct(per_image, a), _clean_correct(per_image, b)
    if not ca.index.equals(cb.index):
        raise ValueError(f"variants {a!r} and {b!r} were probed on different images")
    return ca.index[ca.to_numpy() & cb.to_numpy()].to_numpy()


def conditional_probe_accuracy(per_image: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Probe accuracy of ``a`` and ``b`` on only the images both classify correctly when clean.

    A model that is right on more clean images also stays right on more probed ones, so the plain probe accuracy
    moves with clean accuracy; on the common clean-correct images it does not. ``per_image``: the per-image table
    of ``probe_tables`` (variant, probe, level_label, image, correct). One row per probe x non-clean level: the
    accuracies, ``effect`` = a - b with ``statistics.mcnemar``'s CI and exact p, ``n_images`` kept of ``n_total``.
    Columns: CONDITIONAL_COLUMNS.
    """
    keep = both_clean_correct(per_image, a, b)
    n_total = int(per_image.loc[per_image["variant"] == a, "image"].nunique())
    rows = []
    probed = per_image[(per_image["level_label"] != "clean") & per_image["image"].isin(keep)]
    for (probe, label), g in probed.groupby(["probe", "level_label"], sort=False):
        ok = g.pivot_table(index="image", columns="variant", values="correct", aggfunc="first")
        if a not in ok.columns or b not in ok.columns:
            continue
        ok = ok[[a, b]].dropna().astype(bool)
        res = mcnemar(ok[a].to_numpy(), ok[b].to_numpy())
        rows.append({"probe": probe, "level_label": label, "variant_a": a, "variant_b": b, "n_images": len(ok),
                     "n_total": n_total, "accuracy_a": float(ok[a].mean()), "accuracy_b": float(ok[b].mean()),
                     "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "p": res.p,
                     "test": res.test})  # fmt: skip
    return pd.DataFrame(rows, columns=CONDITIONAL_COLUMNS)


def conditional_probe_share(per_image: pd.DataFrame, a: str, b: str, probe: str) -> TestResult:
    """The claims' probe metric (per image, the share of the probe's levels classified correctly, clean
    excluded) for ``a`` minus ``b`` on the images both classify correctly when clean: ``paired_bootstrap``."""
    keep = both_clean_correct(per_image, a, b)
    sub = per_image[(per_image["probe"] == probe) & (per_image["level_label"] != "clean")]
    if sub.empty:
        raise ValueError(f"probe {probe!r} has no probed levels in the table")
    share = sub[sub["image"].isin(keep)].groupby(["variant", "image"])["correct"].mean().unstack("variant")
    share = share.reindex(keep)
    return paired_bootstrap(share[a].to_numpy(float), share[b].to_numpy(float))
