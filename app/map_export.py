"""A saliency row as files: a PNG of its panels (drawn with PIL from the arrays, the same colours as on the page)
and a CSV of its numbers, each carrying the view's provenance (:func:`app.view_state.provenance`): PNG tEXt
chunks (``PIL.PngImagePlugin.PngInfo``) and ``# key: value`` comment lines at the top of the CSV.

Pure functions of arrays (no Streamlit, no models).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from app.map_figures import greyscale, upscale_nearest
from app.map_html import blend, colour_bar_strip, colourise
from app.view_state import provenance_text

__all__ = ["row_csv", "row_png"]

_TITLE_PX = 30  # room above each panel for its title
_BAR_PX = 12
_GAP_PX = 12


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an older Pillow without scalable default fonts
        return ImageFont.load_default()


def _panels(
    original: np.ndarray,
    perturbed: np.ndarray,
    maps: Mapping[str, np.ndarray],
    signed: Mapping[str, bool],
    scales: Mapping[str, float],
    labels: Mapping[str, str],
    image_titles: tuple[str, str],
    overlay: bool,
    opacity: float,
    panel_px: int,
) -> list[tuple[str, np.ndarray, tuple[bool, float] | None]]:
    """(title, uint8 (H, W, 3) upscaled panel, (signed, scale) of its colour bar or None) in the row's order."""
    out: list[tuple[str, np.ndarray, tuple[bool, float] | None]] = [
        (title, upscale_nearest(image, panel_px)[0], None)
        for image, title in zip((original, perturbed), image_titles, strict=True)
    ]
    for method, m in maps.items():
        is_signed, scale = bool(signed.get(method, False)), float(scales.get(method, 1.0)) or 1.0
        colours = colourise(m, is_signed, scale)
        if overlay:
            colours = blend(greyscale(perturbed), colours, opacity)
        out.append((labels.get(method, method), upscale_nearest(colours, panel_px)[0], (is_signed, scale)))
    return out


def row_png(
    original: np.ndarray,
    perturbed: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    signed: Mapping[str, bool],
    scales: Mapping[str, float],
    labels: Mapping[str, str] | None = None,
    image_titles: tuple[str, str] = ("original", "perturbed"),
    overlay: bool = True,
    opacity: float = 0.6,
    provenance: Mapping[str, str] | None = None,
    panel_px: int = 160,
) -> bytes:
    """One variant's row as a PNG: original, perturbed, then each map (over a greyscale copy of the perturbed image
    when ``overlay``) with its colour bar and limits, titled; ``provenance`` goes into tEXt chunks."""
    panels = _panels(original, perturbed, maps, signed, scales, dict(labels or {}), image_titles, overlay, opacity,
                     panel_px)  # fmt: skip
    font = _font()
    widths = [p.shape[1] + (_BAR_PX + 44 if bar else 0) for _, p, bar in panels]
    height = _TITLE_PX + max(p.shape[0] for _, p, _ in panels) + 4
    canvas = Image.new("RGB", (sum(widths) + _GAP_PX * (len(panels) + 1), height), "white")
    draw = ImageDraw.Draw(canvas)
    x = _GAP_PX
    for (title, pixels, bar), width in zip(panels, widths, strict=True):
        draw.text((x, 4), title, fill="black", font=font)
        canvas.paste(Image.fromarray(pixels), (x, _TITLE_PX))
        if bar is not None:
            is_signed, scale = bar
            side = pixels.shape[0]
            strip = colour_bar_strip(is_signed, side)
            bx = x + pixels.shape[1] + 3
            canvas.paste(Image.fromarray(np.repeat(strip[:, None, :], _BAR_PX, axis=1)), (bx, _TITLE_PX))
            low = -scale if is_signed else 0.0
            for frac, value in ((0.0, scale), (1.0, low)):
                draw.text((bx + _BAR_PX + 3, _TITLE_PX + int(frac * (side - 12))), f"{value:.2g}", fill="black",
                          font=font)  # fmt: skip
        x += width + _GAP_PX
    info = PngInfo()
    for key, value in (provenance or {}).items():
        info.add_text(str(key), str(value))
    buf = io.BytesIO()
    canvas.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def row_csv(
    variant: str,
    numbers: Mapping[str, float | int | str],
    maps: Mapping[str, np.ndarray],
    original_maps: Mapping[str, np.ndarray] | None = None,
    provenance: Mapping[str, str] | None = None,
) -> str:
    """One variant's row as CSV: ``# key: value`` comment lines (the provenance, then the row's numbers: its
    predictions, DS, IG's δ, ρ per method), then one line per map pixel: variant, method, image (``perturbed`` or
    ``original``), y, x, value. ``pandas.read_csv(..., comment="#")`` reads it."""
    head = provenance_text({**(provenance or {}), **{f"row.{k}": str(v) for k, v in numbers.items()}})
    frames = []
    for which, source in (("perturbed", maps), ("original", original_maps or {})):
        for method, m in source.items():
            a = np.asarray(m, dtype=np.float64)
            ys, xs = np.indices(a.shape)
            frames.append(pd.DataFrame({"variant": variant, "method": method, "image": which, "y": ys.ravel(),
                                        "x": xs.ravel(), "value": a.ravel()}))  # fmt: skip
    table = (pd.concat(frames, ignore_index=True) if frames else
             pd.DataFrame(columns=["variant", "method", "image", "y", "x", "value"]))  # fmt: skip
    return head + table.to_csv(index=False, float_format="%.6g")
