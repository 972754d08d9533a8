"""``colour-bias``: the paper's section 4.7 "Colorful MNIST", white shapes on a red or blue background, and
``colour-bias-shortcut``: a variant where the background colour predicts the class in training and not in test.

In the paper's design the colour is independent of the label (a background shift between the splits, nothing to
learn from it); the shortcut set gives each class its own colour in training, so a model can learn the colour in
place of the shape, and draws test colours independently of the label (issue 23).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.datasets.builtin import FASHION_MNIST_CLASSES, _digits_gray, _fashion_mnist_gray
from models.datasets.formats import DIGIT_CLASSES
from models.datasets.registry import _SPLIT_ID, MASK_THRESHOLD, RawArrays, register_loader

COLOUR_BIAS_COLOURS = {"red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0)}
COLOUR_BIAS_MAJORITY = {"train": "red", "test": "blue"}
COLOUR_BIAS_MAJORITY_FRACTION = 0.95


@register_loader("colour-bias")
def _load_colour_bias(
    split: str, root: Path | None, *, seed: int = 0, source: str = "fashion-mnist", limit: int | None = None, **_: Any
) -> RawArrays:
    """Paper §4.7 "Colorful MNIST": white shapes on red/blue, 95/5 in train and 5/95 in test.

    ``out = g + (1 - g) * background_colour``; exactly ``round((1 - 0.95) * N)`` images (``round`` of
    the float, so 0.05 N of x.5 rounds up), chosen by ``seed``, get the minority colour. ``source`` is
    "fashion-mnist" or "digits".
    """
    gray, labels, src, classes = _grayscale_source(split, root, seed, source, limit)
    n = len(labels)
    major = COLOUR_BIAS_MAJORITY[split]
    minor = next(c for c in COLOUR_BIAS_COLOURS if c != major)
    n_minor = round((1 - COLOUR_BIAS_MAJORITY_FRACTION) * n)
    is_minor = np.zeros(n, dtype=bool)
    is_minor[np.random.default_rng([seed, _SPLIT_ID[split], 2]).permutation(n)[:n_minor]] = True
    colours = np.where(is_minor[:, None], COLOUR_BIAS_COLOURS[minor], COLOUR_BIAS_COLOURS[major])
    background = torch.from_numpy(colours).float()[:, :, None, None]
    images = gray + (1 - gray) * background
    record = {
        "grayscale_source": source, **src, "seed": seed,
        "formula": "out = g + (1 - g) * background_colour",
        "colours": {k: list(v) for k, v in COLOUR_BIAS_COLOURS.items()},
        "fractions": {major: (n - n_minor) / max(n, 1), minor: n_minor / max(n, 1)},
        "counts": {major: n - n_minor, minor: n_minor},
    }  # fmt: skip
    return RawArrays(images, labels, classes, record, gray > MASK_THRESHOLD)


# one background per class for the shortcut set (red and blue first, as in the paper's set), all saturated enough
# that the white-to-colour formula keeps the shape visible
SHORTCUT_COLOURS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.6, 0.0), (1.0, 0.8, 0.0), (0.8, 0.0, 0.8),
    (0.0, 0.7, 0.7), (1.0, 0.5, 0.0), (0.4, 0.0, 0.6), (0.5, 0.3, 0.1), (0.4, 0.4, 0.4),
)  # fmt: skip
SHORTCUT_FRACTION = 0.95  # of each class's training images on the class's own colour


def _grayscale_source(split: str, root: Path | None, seed: int, source: str, limit: int | None):
    if source == "fashion-mnist":
        gray, labels, src = _fashion_mnist_gray(split, root, limit)
        return gray, labels, src, FASHION_MNIST_CLASSES
    if source == "digits":
        gray, labels, src = _digits_gray(split, seed, limit)
        return gray, labels, src, DIGIT_CLASSES
    raise ValueError(f"colour-bias source must be 'fashion-mnist' or 'digits', got {source!r}")


def shortcut_colour_index(labels: np.ndarray, split: str, seed: int, n_colours: int) -> np.ndarray:
    """Per image, the index of its background colour in ``SHORTCUT_COLOURS``.

    Train: exactly ``round((1 - 0.95) * n_c)`` images (about 5%) of each class c (chosen by ``seed``) get one of
    the other colours (uniformly), the rest colour c. Test: every image's colour drawn uniformly, independently
    of its label.
    """
    rng = np.random.default_rng([seed, _SPLIT_ID[split], 3])
    n = len(labels)
    if split == "test":
        return rng.integers(0, n_colours, size=n)
    colour = labels.astype(np.int64).copy()
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        off = rng.permutation(members)[: round((1 - SHORTCUT_FRACTION) * len(members))]
        colour[off] = (c + rng.integers(1, n_colours, size=len(off))) % n_colours  # any colour but c's own
    return colour


@register_loader("colour-bias-shortcut")
def _load_colour_bias_shortcut(
    split: str, root: Path | None, *, seed: int = 0, source: str = "fashion-mnist", limit: int | None = None, **_: Any
) -> RawArrays:
    """The colour-bias set with a shortcut: class c on colour c for 95% of its training images, colours
    independent of the label in test. Same sources, seeds, limits and formula as ``colour-bias``."""
    gray, labels, src, classes = _grayscale_source(split, root, seed, source, limit)
    if len(classes) > len(SHORTCUT_COLOURS):
        raise ValueError(f"the shortcut set has {len(SHORTCUT_COLOURS)} colours for {len(classes)} classes")
    y = np.asarray(labels)
    colour = shortcut_colour_index(y, split, seed, len(classes))
    palette = np.asarray(SHORTCUT_COLOURS[: len(classes)])
    background = torch.from_numpy(palette[colour]).float()[:, :, None, None]
    images = gray + (1 - gray) * background
    record = {
        "grayscale_source": source, **src, "seed": seed, "design": "shortcut",
        "formula": "out = g + (1 - g) * background_colour",
        "colour_of_class": {classes[c]: list(palette[c]) for c in range(len(classes))},
        "on_class_colour": float((colour == y).mean()) if len(y) else float("nan"),
    }  # fmt: skip
    return RawArrays(images, labels, classes, record, gray > MASK_THRESHOLD)
