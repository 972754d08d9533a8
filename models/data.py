"""Image data sets for the lab, all returned as one in-memory :class:`ImageDataset`.

Every data set comes out the same way, so training and analysis code never cares
where it came from: float32 RGB images ``(N, 3, H, W)`` in ``[0, 1]``, int64 labels,
class names, optional boolean object masks and a JSON-serialisable ``source`` record
saying how the data were made (paths, seed, generator version).

Registered data sets (see :data:`DATASETS`, :func:`load_dataset`):

* ``fashion-mnist-m`` (default): Fashion-MNIST garments, tinted, composited onto
  32x32 crops of real colour photographs (built once, cached on disk). Per pixel,
  with ``g`` the garment intensity in ``[0, 1]`` used as alpha::

      out = g * tint * (0.4 + 0.6 * g) + (1 - g) * background

* ``fashion-mnist``, ``digits`` (sklearn 8x8 digits), ``colour-bias`` (the paper's
  section 4.7 "Colorful MNIST": white garments on a red or blue background whose
  frequencies flip between train and test) -- all built from data installed locally.
* ``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``imagefolder``: read from a ``root``
  directory in the usual on-disk formats; nothing is ever downloaded.

Missing or malformed data raise :class:`DatasetError` naming the expected location
and format.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import pickle
import struct
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "FASHION_MNIST_DIR",
    "GENERATOR_VERSION",
    "DatasetError",
    "ImageDataset",
    "dataset_names",
    "load_dataset",
]

DEFAULT_DATASET = "fashion-mnist-m"
#: Where the Debian package ``dataset-fashion-mnist`` installs its files; the
#: environment variable ``SCL_FASHION_MNIST_DIR`` (read at load time) overrides it.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Bump when the fashion-mnist-m generator changes; it is part of the cache file name.
GENERATOR_VERSION = 1

SPLITS = ("train", "test")
_SPLIT_ID = {"train": 0, "test": 1}  # mixed into seeds so the splits draw different streams
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(i) for i in range(10)]
MASK_THRESHOLD = 0.1  # object mask = intensity > this, for the grayscale sources
SIZE = 32  # native side of every built-in data set

_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_IMAGEFOLDER_DEFAULT_SIZE = 224


class DatasetError(Exception):
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
class _Arrays:
    """What a raw loader produces; :func:`_register` turns it into an ImageDataset."""

    images: np.ndarray | torch.Tensor  # uint8 (N,3,H,W) or float in [0,1]
    labels: np.ndarray
    classes: list[str]
    source: dict
    masks: np.ndarray | torch.Tensor | None = None


def _register(name: str) -> Callable[[Callable[..., _Arrays]], Loader]:
    """Register a raw loader under ``name``, adding the checks and conversions all share."""

    def decorate(raw: Callable[..., _Arrays]) -> Loader:
        @functools.wraps(raw)
        def loader(split: str = "train", root: str | os.PathLike | None = None, **kwargs: Any) -> ImageDataset:
            _check_split(split)
            arrays = raw(split, None if root is None else Path(root).expanduser(), **kwargs)
            return _to_dataset(name, split, arrays, kwargs.get("image_size"))

        DATASETS[name] = loader
        return loader

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
) -> ImageDataset:
    """Load the ``split`` ("train"/"test") of data set ``name``.

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
    return DATASETS[name](split, root, cache_dir=cache_dir, seed=seed, image_size=image_size)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _to_dataset(name: str, split: str, arrays: _Arrays, image_size: int | None) -> ImageDataset:
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


# --------------------------------------------------------------------------- shared file helpers


def _require_root(root: Path | None, what: str, expected: str) -> Path:
    if root is None:
        raise DatasetError(f"{what} is read from disk: pass root=<dir> containing {expected}")
    if not root.is_dir():
        raise DatasetError(f"{what}: root {root} is not a directory; expected it to contain {expected}")
    return root


def _locate(dirs: Sequence[Path], names: Sequence[str], what: str, fmt: str, gz: bool = False) -> list[Path]:
    """Paths of ``names`` in the first of ``dirs`` holding them all (``name.gz`` too if ``gz``)."""
    for d in dirs:
        found = [_find(d, n, gz) for n in names]
        if all(p is not None for p in found):
            return found  # type: ignore[return-value]
    missing = [str(dirs[0] / n) + ("[.gz]" if gz else "") for n in names if _find(dirs[0], n, gz) is None]
    also = f" (also looked in {', '.join(str(d) for d in dirs[1:])})" if len(dirs) > 1 else ""
    raise DatasetError(f"{what}: missing {', '.join(missing)}{also}; expected {fmt}")


def _find(d: Path, name: str, gz: bool) -> Path | None:
    for candidate in (name, name + ".gz") if gz else (name,):
        if (d / candidate).is_file():
            return d / candidate
    return None


_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read {path}: {e}; expected an IDX file (MNIST format, optionally gzipped)") from e
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (magic {data[:4].hex()!r}); expected the MNIST IDX format")
    ndim, header = data[3], 4 + 4 * data[3]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    dims = struct.unpack(f">{ndim}I", data[4:header]) if len(data) >= header else None
    if dims is None or len(data) != header + math.prod(dims) * dtype.itemsize:
        raise DatasetError(f"{path}: IDX header and file size disagree (truncated or corrupt?); {len(data)} bytes")
    return np.frombuffer(data, dtype, count=math.prod(dims), offset=header).reshape(dims)


def _read_idx_split(
    dirs: Sequence[Path], split: str, what: str, hint: str = ""
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """uint8 images (N,28,28) and labels (N,) of an MNIST-style split, plus the files read."""
    prefix = "train" if split == "train" else "t10k"
    fmt = f"IDX files {prefix}-images-idx3-ubyte and {prefix}-labels-idx1-ubyte (optionally .gz){hint}"
    paths = _locate(dirs, [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"], what, fmt, gz=True)
    images, labels = (_read_idx(p) for p in paths)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{what}: {paths[0]} holds {images.dtype} {images.shape} and {paths[1]} {labels.shape}; "
            "expected uint8 (N,28,28) images and N labels"
        )
    return images, labels.astype(np.int64), paths


def _pad_center(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Zero-pad ``(N, h, w)`` images to ``(N, size, size)``, centred."""
    h, w = images.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left)))


def _gray_arrays(gray: torch.Tensor, labels: np.ndarray, source: dict, classes: list[str]) -> _Arrays:
    """Grayscale ``(N,1,H,W)`` in [0,1] -> RGB by channel replication, masks = intensity > 0.1."""
    return _Arrays(gray.repeat(1, 3, 1, 1), labels, classes, source, gray > MASK_THRESHOLD)


def _gray_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N,28,28)`` -> float ``(N,1,32,32)`` in [0,1], zero-padded and centred."""
    return torch.from_numpy(_pad_center(images)).unsqueeze(1).float().div_(255)


def _limit(n: int, limit: int | None) -> int:
    if limit is None:
        return n
    if int(limit) <= 0:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    return min(n, int(limit))


# --------------------------------------------------------------------------- grayscale sources


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


@_register("fashion-mnist")
def _load_fashion_mnist(split: str, root: Path | None, *, limit: int | None = None, **_: Any) -> _Arrays:
    """Fashion-MNIST, 28x28 padded to 32x32, grayscale replicated to RGB; masks g > 0.1."""
    return _gray_arrays(*_fashion_mnist_gray(split, root, limit), FASHION_MNIST_CLASSES)


@_register("digits")
def _load_digits(split: str, root: Path | None, *, seed: int = 0, limit: int | None = None, **_: Any) -> _Arrays:
    """sklearn's 8x8 digits, bilinearly upsampled to 32x32 RGB; 80/20 stratified split by ``seed``."""
    return _gray_arrays(*_digits_gray(split, seed, limit), DIGIT_CLASSES)


@_register("mnist")
def _load_mnist(split: str, root: Path | None, *, limit: int | None = None, **_: Any) -> _Arrays:
    """MNIST from IDX files (torchvision layout ``root/MNIST/raw`` or directly in root)."""
    expected = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
    root = _require_root(root, "mnist", expected)
    images, labels, paths = _read_idx_split([root / "MNIST" / "raw", root], split, "mnist")
    n = _limit(len(labels), limit)
    source = {"root": str(root), "files": [str(p) for p in paths], "limit": limit}
    return _gray_arrays(_gray_tensor(images[:n]), labels[:n], source, DIGIT_CLASSES)


# --------------------------------------------------------------------------- colour-bias

COLOUR_BIAS_COLOURS = {"red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0)}
COLOUR_BIAS_MAJORITY = {"train": "red", "test": "blue"}
COLOUR_BIAS_MAJORITY_FRACTION = 0.95


@_register("colour-bias")
def _load_colour_bias(
    split: str, root: Path | None, *, seed: int = 0, source: str = "fashion-mnist", limit: int | None = None, **_: Any
) -> _Arrays:
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
    return _Arrays(images, labels, classes, record, gray > MASK_THRESHOLD)


# --------------------------------------------------------------------------- fashion-mnist-m

#: The fixed photograph set: (source, name). All ship inside the installed packages.
PHOTOS = (
    ("sklearn", "china"), ("sklearn", "flower"),
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "coffee"), ("skimage", "rocket"),
    ("skimage", "hubble_deep_field"), ("skimage", "immunohistochemistry"), ("skimage", "retina"),
    ("skimage", "colorwheel"),
)  # fmt: skip
CROP_SIZES = (32, 128)  # background crop side, inclusive range, before resizing to 32
TINT_SATURATION = (0.5, 1.0)
TINT_VALUE = (0.6, 1.0)
COMPOSITE_FORMULA = "out = g * tint * (0.4 + 0.6 * g) + (1 - g) * background, g = garment/255"
_CHUNK = 1024  # images per step; small enough to stay in cache


def _load_photos() -> list[np.ndarray]:
    """The :data:`PHOTOS` as uint8 (H, W, 3) arrays, loaded from the installed packages."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    sklearn_photos = {Path(f).stem: im for f, im in zip(sample.filenames, sample.images, strict=True)}
    photos = []
    for origin, name in PHOTOS:
        try:
            photo = sklearn_photos[name] if origin == "sklearn" else getattr(skimage.data, name)()
        except Exception as e:  # a photo that is not bundled would try to download
            raise DatasetError(f"fashion-mnist-m: cannot load photo {origin}:{name} offline: {e}") from e
        photo = np.asarray(photo)
        if photo.ndim != 3 or photo.shape[2] < 3 or min(photo.shape[:2]) < CROP_SIZES[1]:
            raise DatasetError(f"fashion-mnist-m: photo {origin}:{name} has unusable shape {photo.shape}")
        photos.append(np.ascontiguousarray(photo[:, :, :3], dtype=np.uint8))
    return photos


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for arrays of shape (N,), all in [0, 1]; returns (N, 3)."""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _pyramid(photo: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A photo at full and half resolution as (1,3,H,W) floats, cropped to even size."""
    h, w = photo.shape[0] // 2 * 2, photo.shape[1] // 2 * 2
    full = torch.tensor(photo[:h, :w]).permute(2, 0, 1).unsqueeze(0).float().div_(255)
    return full, F.avg_pool2d(full, 2)


def _crop_backgrounds(
    pyramids: Sequence[tuple[torch.Tensor, torch.Tensor]],
    photo: np.ndarray,
    size: np.ndarray,
    y0: np.ndarray,
    x0: np.ndarray,
) -> torch.Tensor:
    """Bilinearly resample square crops (photo index, side, top, left) to (n,3,32,32).

    All crops of one photo are sampled in a single ``grid_sample`` call. Crops larger
    than 64 px are taken from the half-resolution level so that the resampling never
    shrinks by more than 2x (which would alias).
    """
    out = torch.empty(len(size), 3, SIZE, SIZE)
    frac = (torch.arange(SIZE, dtype=torch.float64) + 0.5) / SIZE  # pixel centres within a crop
    for p, levels in enumerate(pyramids):
        h, w = levels[0].shape[-2:]
        for level, image in enumerate(levels):
            sel = np.flatnonzero((photo == p) & ((size > 2 * SIZE) == bool(level)))
            if len(sel) == 0:
                continue
            s = torch.from_numpy(size[sel]).double()[:, None]
            # normalised coordinates (align_corners=False) do not depend on the pyramid level
            ys = 2 * (torch.from_numpy(y0[sel]).double()[:, None] + frac * s) / h - 1
            xs = 2 * (torch.from_numpy(x0[sel]).double()[:, None] + frac * s) / w - 1
            grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1).float()
            sampled = F.grid_sample(
                image,
                grid.reshape(1, len(sel) * SIZE, SIZE, 2),
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
            out[torch.from_numpy(sel)] = sampled.reshape(3, len(sel), SIZE, SIZE).transpose(0, 1)
    return out


def _composite(
    garments: np.ndarray,
    seed: int | Sequence[int],
    photos: Sequence[np.ndarray] | None = None,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tint uint8 garments ``(N,28,28)`` (or 32x32) and composite them onto photo crops.

    Returns uint8 images ``(N,3,32,32)`` and bool masks ``(N,1,32,32)`` (g > 0.1).
    Each image's random parameters come from row i of one ``(N, 7)`` uniform draw, so
    the first n results do not depend on N (a prefix of the data equals the data of
    the prefix) and nothing depends on chunking. ``progress`` is a tqdm description
    (bar on stderr, shown on terminals only).
    """
    photos = _load_photos() if photos is None else photos
    garments = _pad_center(np.asarray(garments, dtype=np.uint8))
    n = len(garments)
    u = np.random.default_rng(seed).random((n, 7))
    photo = np.minimum((u[:, 0] * len(photos)).astype(np.int64), len(photos) - 1)
    lo, hi = CROP_SIZES
    size = lo + (u[:, 1] * (hi - lo + 1)).astype(np.int64)
    heights = np.array([p.shape[0] // 2 * 2 for p in photos])[photo]
    widths = np.array([p.shape[1] // 2 * 2 for p in photos])[photo]
    y0 = (u[:, 2] * (heights - size + 1)).astype(np.int64)
    x0 = (u[:, 3] * (widths - size + 1)).astype(np.int64)
    tint = _hsv_to_rgb(
        u[:, 4],
        TINT_SATURATION[0] + u[:, 5] * (TINT_SATURATION[1] - TINT_SATURATION[0]),
        TINT_VALUE[0] + u[:, 6] * (TINT_VALUE[1] - TINT_VALUE[0]),
    )
    pyramids = [_pyramid(p) for p in photos]
    images = np.empty((n, 3, SIZE, SIZE), dtype=np.uint8)
    for start in tqdm(range(0, n, _CHUNK), desc=progress, file=sys.stderr, disable=None if progress else True):
        part = slice(start, start + _CHUNK)
        background = _crop_backgrounds(pyramids, photo[part], size[part], y0[part], x0[part])
        g = torch.from_numpy(garments[part]).unsqueeze(1).float().div_(255)
        colour = torch.from_numpy(tint[part]).float()[:, :, None, None]
        out = background.mul_(1 - g).addcmul_(g * (0.4 + 0.6 * g), colour)  # the formula, in place
        images[part] = out.mul_(255).round_().clamp_(0, 255).to(torch.uint8).numpy()
    masks = (garments > MASK_THRESHOLD * 255)[:, None]  # == g > 0.1 with g = garments / 255
    return images, masks


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SCL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semantic-continuity-lab"


def _read_cache(path: Path) -> dict[str, Any] | None:
    """Cached arrays and source record, or None if absent or unreadable (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            cached = {k: z[k] for k in ("images", "labels", "masks")}
            cached["source"] = json.loads(str(z["source"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"ignoring unreadable cache file {path} ({e}); rebuilding", stacklevel=3)
        return None
    return cached


def _write_cache(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed npz atomically (temp file + os.replace); warn if impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"could not write cache file {path}: {e}", stacklevel=3)


@_register("fashion-mnist-m")
def _load_fashion_mnist_m(
    split: str,
    root: Path | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    limit: int | None = None,
    **_: Any,
) -> _Arrays:
    """Fashion-MNIST garments, tinted, on real photo crops; built once per seed, then cached.

    ``limit=n`` builds only the first n images (identical to the first n of the full split).
    """
    name = f"fashion-mnist-m_{split}_seed{seed}_v{GENERATOR_VERSION}" + ("" if limit is None else f"_n{limit}")
    path = _cache_dir(cache_dir) / f"{name}.npz"
    cached = _read_cache(path)
    if cached is None:
        garments, labels, files = _fashion_mnist_idx(split, root, "fashion-mnist-m (Fashion-MNIST source)")
        n = _limit(len(labels), limit)
        split_seed = [seed, _SPLIT_ID[split]]
        images, masks = _composite(garments[:n], split_seed, progress=f"building fashion-mnist-m {split}")
        source = {
            "root": str(files[0].parent), "files": [p.name for p in files], "seed": seed,
            "split_seed": split_seed, "generator_version": GENERATOR_VERSION,
            "photos": [f"{origin}:{photo}" for origin, photo in PHOTOS], "crop_sizes": list(CROP_SIZES),
            "tint_hsv": {"hue": [0.0, 1.0], "saturation": list(TINT_SATURATION), "value": list(TINT_VALUE)},
            "composite": COMPOSITE_FORMULA, "mask": f"g > {MASK_THRESHOLD}", "limit": limit,
        }  # fmt: skip
        cached = {"images": images, "labels": labels[:n].astype(np.uint8), "masks": masks, "source": source}
        if n > 5 * _CHUNK and sys.stderr.isatty():
            tqdm.write(f"writing {path}", file=sys.stderr)
        _write_cache(path, **{**cached, "source": np.array(json.dumps(source))})
    source = {**cached["source"], "cache": str(path)}
    return _Arrays(cached["images"], cached["labels"], FASHION_MNIST_CLASSES, source, cached["masks"])


# --------------------------------------------------------------------------- CIFAR, SVHN


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays (CIFAR batches)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path, fmt: str) -> dict[str, Any]:
    """A CIFAR python pickle as a dict with str keys (bytes keys decoded)."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:
        raise DatasetError(f"cannot unpickle {path}: {e}; expected {fmt}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} holds a {type(obj).__name__}, expected a dict; expected {fmt}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(d: dict[str, Any], key: str, path: Path, fmt: str) -> Any:
    if key not in d:
        raise DatasetError(f"{path} has no {key!r} entry (keys: {sorted(d)}); expected {fmt}")
    return d[key]


def _load_cifar(
    split: str,
    root: Path | None,
    *,
    what: str,
    subdir: str,
    files: dict[str, list[str]],
    meta: str,
    label_key: str,
    names_key: str,
) -> _Arrays:
    """Shared CIFAR-10/100 reader: pickled dicts of uint8 (N,3072) CHW rows and labels."""
    fmt = f"the CIFAR python version: {subdir}/{{{','.join(files['train'] + files['test'] + [meta])}}} pickles"
    root = _require_root(root, what, fmt)
    *batch_paths, meta_path = _locate([root / subdir, root], [*files[split], meta], what, fmt)
    names = [
        n.decode() if isinstance(n, bytes) else str(n)
        for n in _field(_unpickle(meta_path, fmt), names_key, meta_path, fmt)
    ]
    images, labels = [], []
    for path in batch_paths:
        batch = _unpickle(path, fmt)
        data = np.asarray(_field(batch, "data", path, fmt))
        batch_labels = np.asarray(_field(batch, label_key, path, fmt), dtype=np.int64).reshape(-1)
        if (
            data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * SIZE * SIZE
            or len(data) != len(batch_labels)
        ):
            raise DatasetError(
                f"{path}: data is {data.dtype} {data.shape} with {len(batch_labels)} labels; "
                f"expected uint8 (N,3072) and N labels ({fmt})"
            )
        images.append(data.reshape(-1, 3, SIZE, SIZE))
        labels.append(batch_labels)
    source = {"root": str(root), "files": [str(p) for p in [*batch_paths, meta_path]]}
    return _Arrays(np.concatenate(images), np.concatenate(labels), names, source)


@_register("cifar10")
def _load_cifar10(split: str, root: Path | None, **_: Any) -> _Arrays:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (python pickles)."""
    files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    return _load_cifar(split, root, what="cifar10", subdir="cifar-10-batches-py", files=files,
                       meta="batches.meta", label_key="labels", names_key="label_names")  # fmt: skip


@_register("cifar100")
def _load_cifar100(split: str, root: Path | None, **_: Any) -> _Arrays:
    """CIFAR-100 (fine labels) from ``root/cifar-100-python`` (python pickles)."""
    files = {"train": ["train"], "test": ["test"]}
    return _load_cifar(split, root, what="cifar100", subdir="cifar-100-python", files=files,
                       meta="meta", label_key="fine_labels", names_key="fine_label_names")  # fmt: skip


@_register("svhn")
def _load_svhn(split: str, root: Path | None, **_: Any) -> _Arrays:
    """SVHN cropped digits from ``root/{train,test}_32x32.mat``; label 10 means digit 0."""
    import scipy.io

    fmt = "MATLAB files train_32x32.mat / test_32x32.mat with X uint8 (32,32,3,N) and y (N,1)"
    root = _require_root(root, "svhn", fmt)
    (path,) = _locate([root], [f"{split}_32x32.mat"], "svhn", fmt)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:
        raise DatasetError(f"cannot read {path}: {e}; expected {fmt}") from e
    x, y = np.asarray(_field(mat, "X", path, fmt)), np.asarray(_field(mat, "y", path, fmt))
    if x.ndim != 4 or x.shape[:3] != (SIZE, SIZE, 3) or y.size != x.shape[3]:
        raise DatasetError(f"{path}: X is {x.shape} and y {y.shape}; expected {fmt}")
    labels = y.reshape(-1).astype(np.int64)
    labels[labels == 10] = 0
    images = x.transpose(3, 2, 0, 1).astype(np.uint8)  # (H,W,C,N) -> (N,C,H,W)
    return _Arrays(images, labels, DIGIT_CLASSES, {"root": str(root), "files": [str(path)]})


# --------------------------------------------------------------------------- image folders


def _read_image(path: Path, size: int) -> np.ndarray:
    """Decode an image as RGB, resize its shorter side to ``size`` and centre-crop: (3,size,size) uint8."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            new = (max(size, round(w * scale)), max(size, round(h * scale)))
            if new != im.size:
                im = im.resize(new, Image.Resampling.BILINEAR)
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size))).transpose(2, 0, 1)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot decode image {path}: {e}") from e


def _class_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


@_register("imagefolder")
def _load_imagefolder(split: str, root: Path | None, *, image_size: int | None = None, **_: Any) -> _Arrays:
    """ImageNet-style ``root/{train,val}/<class>/<image>`` (split "test" reads val/, else test/).

    Class names are the sorted folder names of ``train/`` (else of the split's folder);
    images are resized (shorter side) and centre-cropped to ``image_size`` (default 224).
    """
    fmt = "train/<class>/<images> and val/<class>/<images> (or test/); images .jpg/.jpeg/.png/.bmp/.webp"
    root = _require_root(root, "imagefolder", fmt)
    candidates = ["train"] if split == "train" else ["val", "test"]
    split_dir = next((root / c for c in candidates if (root / c).is_dir()), None)
    if split_dir is None:
        raise DatasetError(
            f"imagefolder: no {' or '.join(str(root / c) for c in candidates)} directory; expected {fmt}"
        )
    classes = [p.name for p in _class_dirs(root / "train" if (root / "train").is_dir() else split_dir)]
    if not classes:
        raise DatasetError(f"imagefolder: no class folders in {root / 'train'}; expected {fmt}")
    files, labels = [], []
    for class_dir in _class_dirs(split_dir):
        if class_dir.name not in classes:
            raise DatasetError(f"imagefolder: class folder {class_dir} has no counterpart in {root / 'train'}")
        images = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS)
        if not images:
            raise DatasetError(f"imagefolder: class folder {class_dir} holds no images; expected {fmt}")
        files += images
        labels += [classes.index(class_dir.name)] * len(images)
    if not files:
        raise DatasetError(f"imagefolder: no class folders in {split_dir}; expected {fmt}")
    size = image_size or _IMAGEFOLDER_DEFAULT_SIZE
    images = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(files):
        images[i] = _read_image(path, size)
    source = {
        "root": str(root),
        "split_dir": str(split_dir),
        "image_size": size,
        "resize": "shorter side + centre crop",
    }
    return _Arrays(images, np.asarray(labels), classes, source)
