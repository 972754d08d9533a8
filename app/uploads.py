"""Validation of uploaded images: hostile until proven otherwise.

Pure functions, no Streamlit, so they can be tested on a corpus of bad files.
:func:`validate_image_bytes` either returns a :class:`ValidatedImage` (RGB float
pixels of the model's input size) or raises :class:`UploadError` whose message is
meant to be shown to the user as is.

What is checked, in order:

1. byte size: empty files and files over ``max_bytes`` are refused before decoding;
2. format: only PNG, JPEG (and MPO, the multi-picture JPEG of phone cameras),
   WebP, BMP and GIF decoders are allowed to look at the bytes;
3. pixel count: declared width x height above ``max_pixels`` (decompression bombs)
   is refused *before* decoding; PIL's own bomb check is armed as well
   (``Image.MAX_IMAGE_PIXELS``, its warning turned into an error);
4. decoding: truncated or corrupt data become a clear message, never a traceback;
5. conversion: the first frame of an animation, EXIF orientation applied, any
   mode (1, L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F...) to RGB, transparency
   composited onto white, 16-bit values scaled to 8 bits properly (/257);
6. geometry: shorter side resized to the model's input size, centre crop.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "ALLOWED_FORMATS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "UploadError",
    "ValidatedImage",
    "to_rgb_uint8",
    "validate_image_bytes",
]

MAX_BYTES = 10 * 1024 * 1024  # same limit as server.maxUploadSize in .streamlit/config.toml (MB)
MAX_PIXELS = 40_000_000  # decompression-bomb limit, width x height of the (first) frame
MIN_SIDE = 8  # smaller images carry no usable content
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # JPEG's decoder also yields MPO (phone cameras)
ACCEPTED_EXTENSIONS = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]

Image.init()  # register every plugin now: Image.open(formats=[...]) fails on ones not yet loaded

# PIL's own guard: a warning above MAX_IMAGE_PIXELS, an error above twice that. Never loosen
# a stricter limit someone else set.
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class UploadError(ValueError):
    """An upload that cannot be used; ``str(err)`` is a message for the user."""


@dataclass
class ValidatedImage:
    """A decoded, converted and resized upload."""

    pixels: np.ndarray  # float32 (3, size, size) in [0, 1], RGB
    format: str  # decoder that read it, e.g. "PNG"
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    original_mode: str  # PIL mode before conversion, e.g. "I;16"
    notes: list[str] = field(default_factory=list)  # what was done to it, for the user

    @property
    def preview(self) -> np.ndarray:
        """uint8 (size, size, 3) for display."""
        return (self.pixels.transpose(1, 2, 0) * 255).round().astype(np.uint8)

    def describe(self) -> str:
        w, h = self.original_size
        s = self.pixels.shape[-1]
        text = f"{self.format} {w}x{h} ({self.original_mode}) -> RGB {s}x{s}"
        return text + (f"; {'; '.join(self.notes)}" if self.notes else "")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def to_rgb_uint8(img: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Any PIL image -> uint8 (H, W, 3) RGB, with notes on what was converted."""
    notes: list[str] = []
    mode = img.mode
    if mode in ("RGB",):
        return np.asarray(img, dtype=np.uint8).copy(), notes
    if mode.startswith("I") or mode == "F":
        # 16/32-bit integer or float grey: scale to 0..255 by the type's range, not by clipping.
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
            arr = arr / 65535.0 * 255.0  # 16-bit range (PIL opens 16-bit PNGs as I;16 or I)
            notes.append(f"16-bit {mode} scaled to 8 bits")
        elif mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
            notes.append("float image in [0, 1] scaled to 8 bits")
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), notes
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append("transparency composited onto white")
    else:
        if mode not in ("L", "P"):
            notes.append(f"{mode} converted to RGB")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy(), notes


def _resize_centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (antialiased), then the central ``size`` x ``size`` square."""
    img = Image.fromarray(rgb, "RGB")
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def validate_image_bytes(
    data: bytes,
    size: int,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> ValidatedImage:
    """Decode an untrusted upload into a (3, size, size) RGB float image, or raise UploadError."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if data is None or len(data) == 0:
        raise UploadError("The file is empty.")
    if len(data) > max_bytes:
        raise UploadError(f"The file is too large ({_mb(len(data))}); the limit is {_mb(max_bytes)}.")
    allowed = ", ".join(ALLOWED_FORMATS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            w, h = img.size
            if w * h > max_pixels:
                raise UploadError(
                    f"The image is too large: {w}x{h} = {w * h / 1e6:.1f} megapixels; "
                    f"the limit is {max_pixels / 1e6:.0f} megapixels."
                )
            if min(w, h) < min_side:
                raise UploadError(f"The image is too small ({w}x{h}); each side must be at least {min_side} pixels.")
            fmt = img.format or "?"
            orientation = _exif_orientation(img)
            original_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
            notes: list[str] = []
            if getattr(img, "is_animated", False):
                notes.append("animated: first frame used")
            img.seek(0)
            if fmt in ("JPEG", "MPO"):
                # Let the JPEG decoder downscale by a power of two while decoding: far less memory and time.
                img.draft("RGB", (2 * size, 2 * size))
            img.load()
            original_mode = img.mode
            if orientation not in (None, 1):
                img = ImageOps.exif_transpose(img)
                notes.append(f"EXIF orientation {orientation} applied")
            rgb, conv_notes = to_rgb_uint8(img)
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(
            f"The image is too large: it declares more pixels than allowed (possible decompression bomb); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels."
        ) from None
    except UnidentifiedImageError:
        raise UploadError(f"This is not an image in an accepted format ({allowed}), or it is damaged.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, MemoryError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UploadError(f"The image could not be decoded (damaged or truncated file): {detail}") from None
    except Exception as exc:  # any other decoder failure: still a message, never a traceback
        raise UploadError(f"The image could not be read ({type(exc).__name__}).") from None
    pixels = _resize_centre_crop(rgb, size).astype(np.float32).transpose(2, 0, 1) / 255.0
    return ValidatedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format=fmt,
        original_size=original_size,
        original_mode=original_mode,
        notes=notes + conv_notes,
    )


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None
