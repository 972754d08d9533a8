"""The data set registry and the one in-memory form every data set takes: :class:`ImageDataset`.

Every data set comes out the same way, so training and analysis code never cares
where it came from: float32 RGB images ``(N, 3, H, W)`` in ``[0, 1]``, int64 labels,
class names, optional boolean object masks and a JSON-serialisable ``source`` record
saying how the data were made (paths, seed, generator version). A loader registered
with :func:`register_loader` returns :class:`RawArrays`; the registry adds the checks
and conversions all loaders share.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.errors import LabError

DEFAULT_DATASET = "fashion-mnist-m"
SPLITS = ("train", "test")
_SPLIT_ID = {"train": 0, "test": 1}  # mixed into seeds so the splits draw different streams
MASK_THRESHOLD = 0.1  # object mask = intensity > this, for the grayscale sources
SIZE = 32  # native side of every built-in data set


class DatasetError(LabError):
    """Data missing or malformed; the message names the expected location and format."""


@dataclass(eq=False, repr=False)
class ImageDataset:
    """A labelled image data set held in memory.

    ``images`` are float32 ``(N, 3, H, W)`` RGB in ``[0, 1]``, ``labels`` int64 ``(N,)``,
    ``masks`` bool ``(N, 1, H, W)`` object masks where known (else ``None``), and
    ``source`` a JSON-serialisable record of how the data were made.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    masks: torch.Tensor | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.images.shape[0] if self.images.ndim else -1
        if self.images.ndim != 4 or tuple(self.labels.shape) != (n,):
            raise ValueError(
                f"images must be (N,C,H,W) and labels (N,); got {tuple(self.images.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        if self.masks is not None and (self.masks.ndim != 4 or self.masks.shape[0] != n):
            raise ValueError(f"masks must be (N,1,H,W) with N={n}; got {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, size={len(self)}, "
            f"image_shape={tuple(self.images.shape[1:])}, num_classes={self.num_classes}, "
            f"has_masks={self.masks is not None})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageDataset:
        """The examples at ``indices`` (ints, or a boolean mask), masks included."""
        idx = indices if isinstance(indices, torch.Tensor) else torch.as_tensor(np.asarray(indices))
        if idx.dtype != torch.bool:
            idx = idx.long()
        return ImageDataset(
            name=self.name,
            split=self.split,
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            masks=None if self.masks is None else self.masks[idx],
            source=dict(self.source),
        )

    def describe(self) -> dict:
        """JSON-serialisable summary, e.g. for checkpoints and reports."""
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "image_shape": list(self.images.shape[1:]),
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "has_masks": self.masks is not None,
            "source": json.loads(json.dumps(self.source, default=str)),
        }


# --------------------------------------------------------------------------- registry

Loader = Callable[..., ImageDataset]
#: name -> loader(split, root, **kwargs); loaders ignore keyword arguments they don't use.
DATASETS: dict[str, Loader] = {}


@dataclass
class RawArrays:
    """What a raw loader produces; :func:`_register` turns it into an ImageDataset."""

    images: np.ndarray | torch.Tensor  # uint8 (N,3,H,W) or float in [0,1]
    labels: np.ndarray
    classes: list[str]
    source: dict
    masks: np.ndarray | torch.Tensor | None = None


def register_loader(name: str) -> Callable[[Callable[..., RawArrays]], Loader]:
    """Register a raw loader under ``name``, adding the checks and conversions all share."""

    def decorate(raw: Callable[..., RawArrays]) -> Loader:
        @functools.wraps(raw)
        def loader(split: str = "train", root: str | os.PathLike | None = None, **kwargs: Any) -> ImageDataset:
            _check_split(split)
            arrays = raw(split, None if root is None else Path(root).expanduser(), **kwargs)
            return _to_dataset(name, split, arrays, kwargs.get("image_size"))

        DATASETS[name] = loader
        return loader

    return decorate


#: name -> streamer(root, split, image_size): data sets that can also be read lazily, batch by batch.
STREAMERS: dict[str, Callable[..., Any]] = {}


def register_streamer(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``streamer(root, split, image_size)`` for ``load_dataset(name, stream=True)``."""

    def decorate(streamer: Callable[..., Any]) -> Callable[..., Any]:
        STREAMERS[name] = streamer
        return streamer

    return decorate


def dataset_names() -> list[str]:
    """Registered data set names, sorted."""
    return sorted(DATASETS)


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int | None = None,
    stream: bool = False,
) -> ImageDataset:
    """Load the ``split`` ("train"/"test") of data set ``name``.

    ``stream=True`` (``imagefolder`` only) returns a ``StreamingImageFolder`` that reads each
    image when asked (see ``models.datasets.folders``) instead of decoding the split into memory.

    ``root`` is where on-disk data sets live (required for cifar10, cifar100, svhn,
    mnist, imagefolder; for the Fashion-MNIST-based ones it overrides the Fashion-MNIST
    directory). ``cache_dir`` holds built data sets (default ``$SCL_CACHE_DIR`` or
    ``~/.cache/semantic-continuity-lab``); ``seed`` fixes generated data and the digits
    split; ``image_size`` resizes to ``image_size`` x ``image_size`` (imagefolder
    default 224, others native 32).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; registered: {', '.join(dataset_names())}")
    _check_split(split)
    if stream:
        if name not in STREAMERS:
            raise ValueError(f"only {', '.join(sorted(STREAMERS))} can be streamed; {name!r} is loaded into memory")
        return STREAMERS[name](root, split, image_size)
    return DATASETS[name](split, root, cache_dir=cache_dir, seed=seed, image_size=image_size)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _to_dataset(name: str, split: str, arrays: RawArrays, image_size: int | None) -> ImageDataset:
    """Validate raw arrays, convert to the common tensor layout and resize if asked."""
    images = (
        arrays.images
        if isinstance(arrays.images, torch.Tensor)
        else torch.from_numpy(np.ascontiguousarray(arrays.images))
    )
    images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
    labels = torch.as_tensor(np.asarray(arrays.labels, dtype=np.int64))
    masks = arrays.masks
    if masks is not None:
        masks = (masks if isinstance(masks, torch.Tensor) else torch.from_numpy(np.asarray(masks))).bool()
    if images.ndim != 4 or images.shape[1] != 3 or len(labels) != len(images):
        raise DatasetError(
            f"{name}/{split}: loader produced images {tuple(images.shape)} and {len(labels)} labels; "
            "expected (N,3,H,W) and N labels"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(arrays.classes)):
        raise DatasetError(
            f"{name}/{split}: labels span {int(labels.min())}..{int(labels.max())} but there are "
            f"{len(arrays.classes)} classes; files under {arrays.source.get('root')} look malformed"
        )
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        images, masks = _resize(images, masks, image_size)
    return ImageDataset(name, split, images, labels, list(arrays.classes), masks, dict(arrays.source))


def _resize(images: torch.Tensor, masks: torch.Tensor | None, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Bilinear resize to ``size`` x ``size`` (antialiased when shrinking); masks follow."""
    if size <= 0:
        raise ValueError(f"image_size must be positive, got {size}")
    shrink = size < max(images.shape[-2:])
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    if masks is not None:
        masks = F.interpolate(masks.float(), size=(size, size), mode="bilinear", align_corners=False) > 0.5
    return images.clamp_(0, 1), masks
