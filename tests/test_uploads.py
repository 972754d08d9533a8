"""Upload validation against a corpus of hostile and awkward files, generated here (nothing stored)."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.uploads import MAX_BYTES, MAX_PIXELS, UploadError, ValidatedImage, validate_image_bytes

SIZE = 32


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A genuine, valid 1-bit greyscale PNG of width x height, all black: ~50 MB of zeros compressed to ~50 KB."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def photo_like(width: int = 96, height: int = 64) -> Image.Image:
    """A smooth colourful RGB image."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 7.0)], axis=-1)
    return Image.fromarray((arr * 255).astype(np.uint8), "RGB")


def assert_ok(result: ValidatedImage, size: int = SIZE) -> np.ndarray:
    assert isinstance(result, ValidatedImage)
    px = result.pixels
    assert px.shape == (3, size, size) and px.dtype == np.float32
    assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0
    assert result.preview.shape == (size, size, 3) and result.preview.dtype == np.uint8
    return px


def assert_refused(data: bytes, *words: str) -> str:
    with pytest.raises(UploadError) as info:
        validate_image_bytes(data, SIZE)
    message = str(info.value)
    assert message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


# --- refused -----------------------------------------------------------------------------------


def test_empty_file():
    assert_refused(b"", "empty")


def test_truncated_png():
    data = _save(photo_like(200, 200), "PNG")
    assert_refused(data[: len(data) // 2], "could not be decoded")


def test_text_renamed_png():
    assert_refused(b"hello, this is not an image\n" * 10, "not an image")


def test_svg_and_tiff_are_not_accepted_formats():
    assert_refused(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image")
    assert_refused(_save(photo_like(), "TIFF"), "not an image")  # a real image, but not an allowed decoder


def test_one_pixel_image():
    assert_refused(_save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), "too small", "1x1")


def test_decompression_bomb_20000x20000_is_refused_fast():
    data = bomb_png(20000, 20000)
    assert len(data) < 1_000_000  # tiny on disk ...
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (20000, 20000)
    assert zlib.decompressobj().decompress(data[41 : 41 + 2000], 5000) == b"\x00" * 5000  # genuine image data
    t0 = time.perf_counter()
    assert_refused(data, "too large", "megapixels")
    assert time.perf_counter() - t0 < 1.0  # refused from the header, nothing decoded


def test_pil_bomb_guard_is_armed():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= MAX_PIXELS
    # Even with our own pixel check relaxed, PIL's guard (2x MAX_IMAGE_PIXELS -> error) stops the bomb.
    with pytest.raises(UploadError, match="(?i)decompression bomb|too large"):
        validate_image_bytes(bomb_png(20000, 20000), SIZE, max_pixels=10**12)


def test_byte_size_over_the_limit():
    data = _save(photo_like(), "PNG")
    huge = data + b"\x00" * (MAX_BYTES + 1 - len(data))  # valid PNG with trailing junk, 1 byte over
    assert_refused(huge, "too large", "limit")


# --- accepted, with the right pixels -------------------------------------------------------------


def test_plain_png_resized_and_centre_cropped():
    img = Image.new("RGB", (300, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 100, 100))  # left third red; the centre crop must drop it
    px = assert_ok(validate_image_bytes(_save(img, "PNG"), SIZE))
    assert np.allclose(px[:, :, 4:-4], np.array([0, 0, 1.0])[:, None, None], atol=0.02)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_accepted_formats(fmt):
    res = validate_image_bytes(_save(photo_like(), fmt), SIZE)
    assert_ok(res)
    assert res.format == fmt


@pytest.mark.parametrize("size", [8, 28, 32, 64])
def test_output_follows_model_size(size):
    assert_ok(validate_image_bytes(_save(photo_like(40, 40), "PNG"), size), size)


def test_i16_png_scaled_not_clipped():
    grey = np.full((40, 40), 128 * 257, dtype=np.uint16)  # 16-bit mid grey
    img = Image.fromarray(grey)
    assert img.mode.startswith("I")
    data = _save(img, "PNG")
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode in ("I;16", "I")  # really a 16-bit file
    res = validate_image_bytes(data, SIZE)
    px = assert_ok(res)
    assert np.allclose(px, 128 / 255, atol=1 / 255)  # naive clipping to 255 would give 1.0
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    px = assert_ok(validate_image_bytes(_save(Image.fromarray(ramp), "PNG"), SIZE))
    assert px.min() < 0.05 and px.max() > 0.95 and np.all(np.diff(px[0, 0]) >= -1e-6)


def test_cmyk_jpeg():
    img = Image.new("CMYK", (64, 48), (0, 255, 255, 0))  # pure red in CMYK
    res = validate_image_bytes(_save(img, "JPEG", quality=95), SIZE)
    px = assert_ok(res)
    assert res.original_mode == "CMYK"
    assert px[0].mean() > 0.9 and px[1].mean() < 0.1 and px[2].mean() < 0.1


def test_animated_gif_first_frame():
    red, blue = Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 255))
    data = _save(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.n_frames == 2
    res = validate_image_bytes(data, SIZE)
    px = assert_ok(res)
    assert px[0].mean() > 0.9 and px[2].mean() < 0.1
    assert any("first frame" in n for n in res.notes)


def test_exif_rotated_jpeg():
    img = Image.new("RGB", (128, 64), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 64, 64))  # stored: left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: left becomes top
    res = validate_image_bytes(_save(img, "JPEG", quality=95, exif=exif.tobytes()), SIZE)
    px = assert_ok(res)
    assert res.original_size == (64, 128)  # portrait once oriented
    top, bottom = px[:, :8].mean(axis=(1, 2)), px[:, -8:].mean(axis=(1, 2))
    assert top[0] > 0.8 and top[2] < 0.2, top
    assert bottom[2] > 0.8 and bottom[0] < 0.2, bottom


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "1"])
def test_any_mode_to_rgb(mode):
    img = photo_like(48, 48).convert(mode)
    assert_ok(validate_image_bytes(_save(img, "PNG"), SIZE))


@pytest.mark.parametrize("mode", ["I", "F", "YCbCr", "LAB", "HSV", "CMYK"])
def test_conversion_of_modes_no_file_format_stores(mode):
    from app.uploads import to_rgb_uint8

    base = photo_like(48, 48)
    img = base.convert("L").convert(mode) if mode in ("I", "F") else base.convert(mode)
    rgb, _ = to_rgb_uint8(img)
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8
    if mode in ("I", "F"):  # 8-bit values in a wide type stay as they are
        assert np.array_equal(rgb[..., 0], np.asarray(base.convert("L")))


def test_transparency_composited_on_white():
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    px = assert_ok(validate_image_bytes(_save(img, "PNG"), SIZE))
    assert np.allclose(px, 1.0)


def test_grey_png_replicated_to_three_channels():
    img = Image.fromarray(np.full((40, 40), 77, dtype=np.uint8), "L")
    px = assert_ok(validate_image_bytes(_save(img, "PNG"), SIZE))
    assert np.allclose(px, 77 / 255, atol=1e-6)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_four_concurrent_near_limit_uploads_bounded_memory():
    """Four threads decode a 6300x6300 grey PNG (39.7 MP, just under the limit) at once: the peak RSS rises by at
    most 300 MB (one decode at a time, shrunk in its own mode before conversion; unbounded it is ~4 x 40 MB for
    the frames plus ~4 x 120 MB for RGB copies)."""
    import threading

    side = 6300
    ramp = np.tile(np.linspace(0, 255, side).astype(np.uint8), (side, 1))  # a horizontal grey ramp
    data = _save(Image.fromarray(ramp, "L"), "PNG", optimize=True)
    assert side * side <= MAX_PIXELS and len(data) < 200_000, len(data)
    del ramp
    import gc

    gc.collect()
    try:  # reset the peak (VmHWM) to the current RSS, so the peak measured is this test's own
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = _rss_kb("VmRSS")
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # without a resettable peak: sample the RSS
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb("VmRSS"))
            done.wait(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results: list = [None] * 4
    start = threading.Barrier(4)

    def worker(i: int) -> None:
        start.wait(timeout=30)
        results[i] = validate_image_bytes(data, SIZE)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done.set()
    sampler.join()
    high = max(peak[0], _rss_kb("VmHWM") if reset else 0)
    rise_mb = (high - before) / 1024
    for res in results:
        px = assert_ok(res)
        assert res.original_size == (side, side) and res.original_mode == "L"
        assert px[0, 0, 0] < 0.55 and px[0, 0, -1] > 0.45 and np.all(np.diff(px[0, 0]) >= -1e-6)  # the ramp survives
    print(f"peak RSS rise with four concurrent {side}x{side} grey PNG uploads ({len(data)} bytes): {rise_mb:.0f} MB")
    assert rise_mb <= 300, f"peak RSS rose by {rise_mb:.0f} MB"


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "P", "1", "LA"])
def test_large_images_shrink_in_their_own_mode(mode):
    """A 2000x1500 image of each mode is reduced before conversion and still converts correctly."""
    base = photo_like(2000, 1500)
    img = (
        Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257) if mode == "I;16" else base.convert(mode)
    )
    res = validate_image_bytes(_save(img, "PNG"), SIZE)
    assert_ok(res)
    assert res.original_size == (2000, 1500)


def test_decoded_bytes_in_the_original_mode_are_bounded():
    img = Image.new("RGBA", (3000, 3000), (10, 20, 30, 255))
    with pytest.raises(UploadError, match="too large to decode"):
        validate_image_bytes(_save(img, "PNG"), SIZE, max_decoded_bytes=3000 * 3000 * 4 - 1)
    assert_ok(validate_image_bytes(_save(img, "PNG"), SIZE, max_decoded_bytes=3000 * 3000 * 4))
