"""ImageNet-style image folders, ``root/{train,val}/<class>/<image>``: in memory or streamed.

* ``load_dataset("imagefolder", split, root, image_size=S)`` decodes the whole split into one
  in-memory :class:`~models.datasets.registry.ImageDataset` (fine for small sets);
* ``load_dataset(..., stream=True)`` / :func:`stream_imagefolder` returns a
  :class:`StreamingImageFolder` (a torchvision ``ImageFolder``) that decodes each image when it
  is asked for, so a split larger than memory works; :func:`make_loader` wraps either kind in a
  ``DataLoader`` (worker processes, pinned memory on CUDA, seeded shuffling).

Both paths, and the dashboard's uploads (``app.uploads``), turn a file into pixels with the same
:func:`resize_centre_crop` (shorter side to ``S`` with Lanczos, then the central square), so one
photo gives the same pixels wherever it comes from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.datasets import ImageFolder

from models.datasets.formats import _require_root
from models.datasets.registry import DatasetError, ImageDataset, RawArrays, register_loader, register_streamer

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGEFOLDER_DEFAULT_SIZE = 224
RESIZE = "shorter side to the size (Lanczos, JPEG draft-decoded at >= 2x), centre crop"
_FORMAT = "train/<class>/<images> and val/<class>/<images> (or test/); images .jpg/.jpeg/.png/.bmp/.webp"


def resize_centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> ``(size, size, 3)``: shorter side to ``size`` (Lanczos, antialiased), central square."""
    from PIL import Image

    img = Image.fromarray(rgb, "RGB")
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def read_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode an image file to uint8 ``(3, size, size)`` RGB as an upload would be: JPEGs draft-decoded at no
    less than ``2 * size``, EXIF orientation applied, transparency composited onto white, then
    :func:`resize_centre_crop`."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            if im.format in ("JPEG", "MPO"):
                im.draft("RGB", (2 * size, 2 * size))
            im = ImageOps.exif_transpose(im)
            if "A" in im.mode or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot decode image {path}: {e}") from e
    return np.ascontiguousarray(resize_centre_crop(rgb, size).transpose(2, 0, 1))  # a writable copy


def _class_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def imagefolder_listing(root: Path | None, split: str) -> tuple[Path, list[str], list[tuple[str, int]]]:
    """The split's folder, the class names (sorted folders of ``train/``) and its ``(file, label)`` pairs.

    Split "train" reads ``train/``, "test" reads ``val/`` (else ``test/``). Raises DatasetError
    for a missing folder, a class unknown to ``train/`` or a class folder without images.
    """
    root = _require_root(root, "imagefolder", _FORMAT)
    candidates = ["train"] if split == "train" else ["val", "test"]
    split_dir = next((root / c for c in candidates if (root / c).is_dir()), None)
    if split_dir is None:
        raise DatasetError(
            f"imagefolder: no {' or '.join(str(root / c) for c in candidates)} directory; expected {_FORMAT}"
        )
    classes = [p.name for p in _class_dirs(root / "train" if (root / "train").is_dir() else split_dir)]
    if not classes:
        raise DatasetError(f"imagefolder: no class folders in {root / 'train'}; expected {_FORMAT}")
    samples: list[tuple[str, int]] = []
    for class_dir in _class_dirs(split_dir):
        if class_dir.name not in classes:
            raise DatasetError(f"imagefolder: class folder {class_dir} has no counterpart in {root / 'train'}")
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetError(f"imagefolder: class folder {class_dir} holds no images; expected {_FORMAT}")
        samples += [(str(f), classes.index(class_dir.name)) for f in files]
    if not samples:
        raise DatasetError(f"imagefolder: no class folders in {split_dir}; expected {_FORMAT}")
    return split_dir, classes, samples


@register_loader("imagefolder")
def _load_imagefolder(split: str, root: Path | None, *, image_size: int | None = None, **_: Any) -> RawArrays:
    """ImageNet-style ``root/{train,val}/<class>/<image>`` decoded into memory (split "test" reads val/, else test/).

    Class names are the sorted folder names of ``train/`` (else of the split's folder); images are
    resized (shorter side) and centre-cropped to ``image_size`` (default 224).
    """
    split_dir, classes, samples = imagefolder_listing(root, split)
    size = image_size or IMAGEFOLDER_DEFAULT_SIZE
    images = np.empty((len(samples), 3, size, size), dtype=np.uint8)
    for i, (path, _label) in enumerate(samples):
        images[i] = read_image(path, size)
    source = {"root": str(root), "split_dir": str(split_dir), "image_size": size, "resize": RESIZE}
    return RawArrays(images, np.asarray([label for _, label in samples]), classes, source)


class _PixelLoader:
    """Picklable (for DataLoader workers) file -> float32 ``(3, S, S)`` tensor in [0, 1]."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, path: str) -> torch.Tensor:
        return torch.from_numpy(read_image(path, self.size)).float().div_(255)


class _ListedImageFolder(ImageFolder):
    """torchvision's ImageFolder over a listing made by :func:`imagefolder_listing` (same classes, same files)."""

    def __init__(self, split_dir: Path, classes: list[str], samples: list[tuple[str, int]], size: int) -> None:
        self._listing = (classes, samples)
        super().__init__(str(split_dir), loader=_PixelLoader(size))

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = self._listing[0]
        return list(classes), {c: i for i, c in enumerate(classes)}

    def make_dataset(self, *args: Any, **kwargs: Any) -> list[tuple[str, int]]:  # type: ignore[override]
        return list(self._listing[1])


class StreamingImageFolder(Dataset):
    """An image-folder split read lazily, one file per item: ``(float32 (3, S, S) in [0, 1], label)``.

    Holds only file names and labels, never the pixels of the split; each item is decoded as
    :func:`read_image` does (the in-memory ``imagefolder`` gives the same pixels). Metadata as
    :class:`ImageDataset` (``name``, ``split``, ``classes``, ``num_classes``, ``labels``, ``source``,
    ``describe()``, ``subset()``), so training code can treat both alike; batch it with
    :func:`make_loader`.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", image_size: int | None = None, name: str = "imagefolder"
    ) -> None:
        root = Path(root).expanduser()
        split_dir, classes, samples = imagefolder_listing(root, split)
        self.name, self.split, self.classes = name, split, classes
        self.image_size = image_size or IMAGEFOLDER_DEFAULT_SIZE
        self.folder = _ListedImageFolder(split_dir, classes, samples, self.image_size)
        self.indices = np.arange(len(samples))
        self.source = {"root": str(root), "split_dir": str(split_dir), "image_size": self.image_size,
                       "resize": RESIZE, "streamed": True}  # fmt: skip

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.folder[int(self.indices[i])]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> torch.Tensor:
        """int64 labels ``(N,)`` (file names and labels only: no pixels are read)."""
        return torch.as_tensor(np.asarray(self.folder.targets, dtype=np.int64)[self.indices])

    @property
    def files(self) -> list[str]:
        return [self.folder.samples[i][0] for i in self.indices]

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> StreamingImageFolder:
        """The items at ``indices`` (ints, or a boolean mask), still streamed."""
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        view = object.__new__(StreamingImageFolder)
        view.__dict__.update(self.__dict__)
        view.indices = self.indices[np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)]
        return view

    def describe(self) -> dict:
        """JSON-serialisable summary, as :meth:`ImageDataset.describe`."""
        return {"name": self.name, "split": self.split, "size": len(self), "num_classes": self.num_classes,
                "image_shape": [3, self.image_size, self.image_size], "classes": list(self.classes),
                "has_masks": False, "source": dict(self.source)}  # fmt: skip

    def __repr__(self) -> str:
        return (f"StreamingImageFolder(split={self.split!r}, size={len(self)}, image_size={self.image_size}, "
                f"num_classes={self.num_classes})")  # fmt: skip


@register_streamer("imagefolder")
def stream_imagefolder(
    root: str | os.PathLike | None, split: str = "train", image_size: int | None = None
) -> StreamingImageFolder:
    """The ``split`` of an image folder as a :class:`StreamingImageFolder` (DatasetError if malformed)."""
    if root is None:
        raise DatasetError(
            f"imagefolder is read from disk: pass --data-root <dir> (root=<dir> in Python) containing {_FORMAT}"
        )
    return StreamingImageFolder(root, split, image_size)


def make_loader(
    dataset: ImageDataset | StreamingImageFolder,
    batch_size: int,
    *,
    shuffle: bool = False,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader of ``(images, labels)`` batches over an in-memory or a streamed data set.

    Streamed sets decode in ``num_workers`` worker processes (default: up to 4, one per spare CPU)
    with pinned memory when ``device`` is CUDA; in-memory sets are sliced in the main process.
    Shuffling is seeded by ``seed``.
    """
    streamed = isinstance(dataset, StreamingImageFolder)
    data = dataset if streamed else TensorDataset(dataset.images, dataset.labels)
    if num_workers is None:
        num_workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if streamed else 0
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=streamed and torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
