"""``colour-bias``: the paper's section 4.7 "Colorful MNIST", white shapes on a red or blue background."""

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

    ``out = g + (1 - g) * background_colour``; exactly ``round(0.05 N)`` images, chosen
    by ``seed``, get the minority colour. ``source`` is "fashion-mnist" or "digits".
    """
    if source == "fashion-mnist":
        gray, labels, src = _fashion_mnist_gray(split, root, limit)
        classes = FASHION_MNIST_CLASSES
    elif source == "digits":
        gray, labels, src = _digits_gray(split, seed, limit)
        classes = DIGIT_CLASSES
    else:
        raise ValueError(f"colour-bias source must be 'fashion-mnist' or 'digits', got {source!r}")
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
