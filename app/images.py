"""Image helpers of the dashboard: content hashes (the cache keys), batches, and the test images of a data set (by
index, by class, one example per class). Perturbed images come from ``analysis.per_image.perturbed_image``."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from models.data import ImageDataset


def image_key(image: np.ndarray) -> str:
    """Content hash of an image (shape, dtype and bytes): the cache key of everything computed from it."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(3,H,W) -> float32 tensor (1,3,H,W) on the CPU."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    return x.unsqueeze(0) if x.ndim == 3 else x


def dataset_image(ds: ImageDataset, index: int) -> tuple[np.ndarray, int]:
    """Image (3,H,W) float32 and label of ``ds[index]``."""
    return ds.images[int(index)].numpy().astype(np.float32), int(ds.labels[int(index)])


def gallery_indices(ds: ImageDataset, label: int | None = None, limit: int | None = None) -> np.ndarray:
    """Indices of the test images, optionally of one class."""
    labels = ds.labels.numpy()
    idx = np.arange(len(labels)) if label is None else np.flatnonzero(labels == label)
    return idx[:limit] if limit else idx


def class_examples(ds: ImageDataset, per_class: int = 1) -> tuple[list[np.ndarray], list[str]]:
    """The first ``per_class`` images of each class, for the data set overview."""
    images, titles = [], []
    labels = ds.labels.numpy()
    for c, name in enumerate(ds.classes):
        for i in np.flatnonzero(labels == c)[:per_class]:
            images.append(ds.images[i].numpy())
            titles.append(f"{name} (#{i})")
    return images, titles
