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
5. memory: the decoded frame's bytes in its *original* mode (width x height x bytes per
   pixel, after JPEG draft scaling) must stay under ``MAX_DECODED_BYTES``; one decode runs
   at a time (``DECODE_LOCK``), and the frame is shrunk by an integer box filter
   (``Image.reduce``, or JPEG draft mode while decoding) *before* any colour conversion,
   so four concurrent near-limit uploads cost about one decoded frame of memory;
6. conversion: the first frame of an animation, EXIF orientation applied, any
   mode (1, L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F...) to RGB, transparency
   composited onto white, 16-bit values scaled to 8 bits properly (/257);
7. geometry: shorter side resized to the model's input size, centre crop.
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.datasets.folders import resize_centre_crop  # the data layer's: same pixels as an image folder

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "ALLOWED_FORMATS",
    "MAX_BYTES",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "UploadError",
    "ValidatedImage",
    "to_rgb_uint8",
    "validate_image_bytes",
]

MAX_BYTES = 10 * 1024 * 1024  # same limit as server.maxUploadSize in .streamlit/config.toml (MB)
MAX_PIXELS = 40_000_000  # decompression-bomb limit, width x height of the (first) frame
MAX_DECODED_BYTES = 128 * 1024 * 1024  # one decoded frame in its own mode (a 40 MP RGBA PNG would need 160 MB)
MIN_SIDE = 8  # smaller images carry no usable content
DECODE_LOCK = threading.Lock()  # one decode at a time: concurrent uploads queue instead of adding up in memory
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2,
                   "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}  # fmt: skip  # anything else: 4 bytes
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


def validate_image_bytes(
    data: bytes,
    size: int,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
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
        with DECODE_LOCK, warnings.catch_warnings():
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
                img.draft(img.mode, (2 * size, 2 * size))
            dw, dh = img.size
            decoded = dw * dh * BYTES_PER_PIXEL.get(img.mode, 4)
            if decoded > max_decoded_bytes:
                raise UploadError(
                    f"The image is too large to decode: {dw}x{dh} pixels in mode {img.mode} need "
                    f"{_mb(decoded)}; the limit is {_mb(max_decoded_bytes)}."
                )
            img.load()
            original_mode = img.mode
            img = _reduce(img, 3 * size)  # shrink in the original mode, before any conversion
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
    pixels = resize_centre_crop(rgb, size).astype(np.float32).transpose(2, 0, 1) / 255.0
    return ValidatedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format=fmt,
        original_size=original_size,
        original_mode=original_mode,
        notes=notes + conv_notes,
    )


def _reduce(img: Image.Image, min_side: int) -> Image.Image:
    """Shrink by the largest integer factor that keeps the shorter side >= ``min_side`` (box average in the
    image's own mode; palette and 1-bit images by nearest neighbour, which keeps their palette)."""
    factor = min(img.size) // max(1, min_side)
    if factor < 2:
        return img
    if img.mode in ("P", "PA", "1"):
        return img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.Resampling.NEAREST)
    try:
        return img.reduce(factor)
    except ValueError:  # a mode reduce() does not handle (I;16): shrink it with the generic resampler
        return img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.Resampling.BOX)


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None
