"""Readers of the usual on-disk formats: MNIST IDX, CIFAR python pickles, SVHN ``.mat``.

Registers ``mnist``, ``cifar10``, ``cifar100`` and ``svhn`` (read from a ``root``
directory; nothing is ever downloaded), and holds the file helpers the built-in
sets share. Missing or malformed files raise :class:`DatasetError` naming the
expected location and format.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.datasets.registry import MASK_THRESHOLD, SIZE, DatasetError, RawArrays, register_loader

DIGIT_CLASSES = [str(i) for i in range(10)]


# --------------------------------------------------------------------------- shared file helpers


def _require_root(root: Path | None, what: str, expected: str) -> Path:
    if root is None:
        raise DatasetError(
            f"{what} is read from disk: pass --data-root <dir> (root=<dir> in Python) containing {expected}"
        )
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


def _gray_arrays(gray: torch.Tensor, labels: np.ndarray, source: dict, classes: list[str]) -> RawArrays:
    """Grayscale ``(N,1,H,W)`` in [0,1] -> RGB by channel replication, masks = intensity > 0.1."""
    return RawArrays(gray.repeat(1, 3, 1, 1), labels, classes, source, gray > MASK_THRESHOLD)


def _gray_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N,28,28)`` -> float ``(N,1,32,32)`` in [0,1], zero-padded and centred."""
    return torch.from_numpy(_pad_center(images)).unsqueeze(1).float().div_(255)


def _limit(n: int, limit: int | None) -> int:
    if limit is None:
        return n
    if int(limit) <= 0:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    return min(n, int(limit))


@register_loader("mnist")
def _load_mnist(split: str, root: Path | None, *, limit: int | None = None, **_: Any) -> RawArrays:
    """MNIST from IDX files (torchvision layout ``root/MNIST/raw`` or directly in root)."""
    expected = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
    root = _require_root(root, "mnist", expected)
    images, labels, paths = _read_idx_split([root / "MNIST" / "raw", root], split, "mnist")
    n = _limit(len(labels), limit)
    source = {"root": str(root), "files": [str(p) for p in paths], "limit": limit}
    return _gray_arrays(_gray_tensor(images[:n]), labels[:n], source, DIGIT_CLASSES)


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
) -> RawArrays:
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
    return RawArrays(np.concatenate(images), np.concatenate(labels), names, source)


@register_loader("cifar10")
def _load_cifar10(split: str, root: Path | None, **_: Any) -> RawArrays:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (python pickles)."""
    files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    return _load_cifar(split, root, what="cifar10", subdir="cifar-10-batches-py", files=files,
                       meta="batches.meta", label_key="labels", names_key="label_names")  # fmt: skip


@register_loader("cifar100")
def _load_cifar100(split: str, root: Path | None, **_: Any) -> RawArrays:
    """CIFAR-100 (fine labels) from ``root/cifar-100-python`` (python pickles)."""
    files = {"train": ["train"], "test": ["test"]}
    return _load_cifar(split, root, what="cifar100", subdir="cifar-100-python", files=files,
                       meta="meta", label_key="fine_labels", names_key="fine_label_names")  # fmt: skip


@register_loader("svhn")
def _load_svhn(split: str, root: Path | None, **_: Any) -> RawArrays:
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
    return RawArrays(images, labels, DIGIT_CLASSES, {"root": str(root), "files": [str(path)]})
