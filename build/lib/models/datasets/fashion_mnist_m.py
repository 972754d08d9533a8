"""``fashion-mnist-m``: Fashion-MNIST garments, tinted, composited onto 32x32 crops of real photographs.

Per pixel, with ``g`` the garment intensity in ``[0, 1]`` used as alpha::

    out = g * tint * (0.4 + 0.6 * g) + (1 - g) * background

The photographs ship inside scikit-learn and scikit-image; a split is built once per
seed and cached on disk (``$SCL_CACHE_DIR`` or ``~/.cache/semantic-continuity-lab``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.datasets.builtin import FASHION_MNIST_CLASSES, _fashion_mnist_idx
from models.datasets.formats import _limit, _pad_center
from models.datasets.registry import _SPLIT_ID, MASK_THRESHOLD, SIZE, DatasetError, RawArrays, register_loader
from models.perturbations import hsv_to_rgb

#: Bump when the fashion-mnist-m generator changes; it is part of the cache file name.
GENERATOR_VERSION = 1
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
    hsv = (
        u[:, 4],
        TINT_SATURATION[0] + u[:, 5] * (TINT_SATURATION[1] - TINT_SATURATION[0]),
        TINT_VALUE[0] + u[:, 6] * (TINT_VALUE[1] - TINT_VALUE[0]),
    )
    tint = hsv_to_rgb(*(torch.from_numpy(np.ascontiguousarray(c)) for c in hsv)).numpy()  # float64, (N, 3)
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


@register_loader("fashion-mnist-m")
def _load_fashion_mnist_m(
    split: str,
    root: Path | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    limit: int | None = None,
    **_: Any,
) -> RawArrays:
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
    return RawArrays(cached["images"], cached["labels"], FASHION_MNIST_CLASSES, source, cached["masks"])
