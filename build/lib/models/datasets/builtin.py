"""Built-in data sets made from data installed locally: ``fashion-mnist`` and ``digits``.

* ``fashion-mnist``: Fashion-MNIST (the Debian package ``dataset-fashion-mnist``), 28x28
  padded to 32x32, grayscale replicated to RGB; masks ``g > 0.1``.
* ``digits``: scikit-learn's 8x8 digits, upsampled to 32x32, with a seeded stratified split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.datasets.formats import DIGIT_CLASSES, _gray_arrays, _gray_tensor, _limit, _read_idx_split
from models.datasets.registry import SIZE, RawArrays, register_loader

#: Where the Debian package ``dataset-fashion-mnist`` installs its files; the
#: environment variable ``SCL_FASHION_MNIST_DIR`` (read at load time) overrides it.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def _fashion_mnist_dirs(root: Path | None) -> list[Path]:
    base = root if root is not None else Path(os.environ.get("SCL_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)
    return [base, base / "FashionMNIST" / "raw"]


def _fashion_mnist_idx(split: str, root: Path | None, what: str) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Raw Fashion-MNIST uint8 images and labels of ``split``, plus the files read."""
    hint = (
        f" as installed by `apt-get install dataset-fashion-mnist` into {FASHION_MNIST_DIR} "
        "(or set SCL_FASHION_MNIST_DIR / pass root)"
    )
    return _read_idx_split(_fashion_mnist_dirs(root), split, what, hint)


def _fashion_mnist_gray(split: str, root: Path | None, limit: int | None) -> tuple[torch.Tensor, np.ndarray, dict]:
    """Fashion-MNIST as padded grayscale ``(N,1,32,32)`` floats, labels and a source record."""
    images, labels, paths = _fashion_mnist_idx(split, root, "Fashion-MNIST")
    n = _limit(len(labels), limit)
    gray = _gray_tensor(images[:n])
    source = {"root": str(paths[0].parent), "files": [p.name for p in paths], "limit": limit}
    return gray, labels[:n], source


def _digits_gray(split: str, seed: int, limit: int | None) -> tuple[torch.Tensor, np.ndarray, dict]:
    """sklearn digits upsampled to 32x32, with a seeded stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=seed
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    idx = idx[: _limit(len(idx), limit)]
    small = torch.from_numpy(digits.images[idx] / 16.0).float().unsqueeze(1)
    gray = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp_(0, 1)
    source = {"loader": "sklearn.datasets.load_digits", "seed": seed, "test_fraction": 0.2,
              "stratified": True, "upsampling": "bilinear 8->32", "limit": limit}  # fmt: skip
    return gray, digits.target[idx].astype(np.int64), source


@register_loader("fashion-mnist")
def _load_fashion_mnist(split: str, root: Path | None, *, limit: int | None = None, **_: Any) -> RawArrays:
    """Fashion-MNIST, 28x28 padded to 32x32, grayscale replicated to RGB; masks g > 0.1."""
    return _gray_arrays(*_fashion_mnist_gray(split, root, limit), FASHION_MNIST_CLASSES)


@register_loader("digits")
def _load_digits(split: str, root: Path | None, *, seed: int = 0, limit: int | None = None, **_: Any) -> RawArrays:
    """sklearn's 8x8 digits, bilinearly upsampled to 32x32 RGB; 80/20 stratified split by ``seed``."""
    return _gray_arrays(*_digits_gray(split, seed, limit), DIGIT_CLASSES)
