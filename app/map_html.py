"""Saliency rows as static HTML: each panel one PNG (the map coloured and blended over a greyscale copy of the
image on the server), a CSS colour bar per method, titles in fixed-width captions. Pure functions of arrays
(no Streamlit, no models).

Why: a browser draws a few ``<img>`` elements in milliseconds, while a plotly figure with image and heatmap
traces costs it 50-200 ms to lay out; with four variants per slider move that was most of the latency. The
interactive plotly version (hover values) stays in :mod:`app.map_figures`, same arguments, same colours.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import plotly.colors

from app.figures import method_label
from app.map_figures import DIVERGING, POSITIVE, greyscale, image_uri, map_rows

_BAR_PX = 10  # colour bar width
_LABEL_PX = 46  # room for the colour bar's tick labels
# A line of panels wraps onto further lines rather than running off the page (issue 24: every panel visible at
# 1280-1920 px with any set of methods).
_LINE_STYLE = "display:flex;flex-wrap:wrap;gap:8px 14px;align-items:flex-start;max-width:100%"


def _lut(name: str) -> np.ndarray:
    """A 256-entry uint8 RGB lookup table interpolated from plotly's colour scale ``name`` (the same colours as
    the interactive figures and their colour bars)."""
    stops = plotly.colors.get_colorscale(name)
    pos = np.array([p for p, _ in stops], dtype=np.float64)
    rgb = np.array([plotly.colors.unlabel_rgb(plotly.colors.convert_colors_to_same_type(c, "rgb")[0][0])
                    for _, c in stops], dtype=np.float64)  # fmt: skip
    grid = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(grid, pos, rgb[:, i]) for i in range(3)], axis=1).round().astype(np.uint8)


_LUTS = {DIVERGING: _lut(DIVERGING), POSITIVE: _lut(POSITIVE)}


def colourise(m: np.ndarray, signed: bool, scale: float) -> np.ndarray:
    """uint8 (H, W, 3) colours of map ``m`` on [-scale, scale] (``signed``: diverging, 0 in the middle) or
    [0, scale] (sequential; negative values clipped to 0)."""
    v = np.nan_to_num(np.asarray(m, dtype=np.float64)) / (float(scale) or 1.0)
    t = (np.clip(v, -1.0, 1.0) + 1.0) / 2.0 if signed else np.clip(v, 0.0, 1.0)
    return _LUTS[DIVERGING if signed else POSITIVE][np.rint(t * 255).astype(np.int64)]


def blend(backdrop: np.ndarray, colours: np.ndarray, opacity: float) -> np.ndarray:
    """``colours`` over ``backdrop`` (both uint8 (H, W, 3)) with ``opacity`` in [0, 1]."""
    a = float(np.clip(opacity, 0.0, 1.0))
    out = a * colours.astype(np.float32) + (1.0 - a) * backdrop.astype(np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _tick(value: float) -> str:
    return "0" if value == 0 else f"{value:.2g}"


def colour_bar_strip(signed: bool, height: int) -> np.ndarray:
    """uint8 (height, 3) colours of a vertical colour bar, the scale's top at row 0 (for exported PNGs)."""
    lut = _LUTS[DIVERGING if signed else POSITIVE]
    return lut[np.rint(np.linspace(255, 0, max(2, int(height)))).astype(np.int64)]


def colour_bar_html(signed: bool, scale: float, height: int) -> str:
    """A vertical CSS gradient with the scale's limits (and 0 for signed maps) as labels."""
    lut = _LUTS[DIVERGING if signed else POSITIVE]
    stops = ", ".join(f"rgb({r},{g},{b}) {100 * i / 10:.0f}%" for i, (r, g, b) in enumerate(lut[::-1][::25][:11]))
    lo, mid = (-scale, 0.0) if signed else (0.0, scale / 2)
    labels = [(0, _tick(scale)), (50, _tick(mid)), (100, _tick(lo))]
    spans = "".join(f'<span style="position:absolute;left:{_BAR_PX + 3}px;top:{p}%;transform:translateY(-50%);'
                    f'font-size:10px;line-height:1;white-space:nowrap">{html.escape(t)}</span>'
                    for p, t in labels)  # fmt: skip
    return (f'<div class="scl-colour-bar" title="colour scale: {html.escape(_tick(lo))} to {html.escape(_tick(scale))}"'
            f' style="position:relative;width:{_BAR_PX + _LABEL_PX}px;height:{height}px;flex:none">'
            f'<div style="width:{_BAR_PX}px;height:100%;background:linear-gradient(to bottom, {stops})"></div>'
            f"{spans}</div>")  # fmt: skip


def _panel(title: str, uri: str, px: int, tip: str, bar: str = "") -> str:
    """One captioned image (its caption wraps within the panel's width, so titles never collide)."""
    img = (f'<img src="{uri}" width="{px}" height="{px}" alt="{html.escape(title)}" title="{html.escape(tip)}" '
           f'style="image-rendering:pixelated;display:block">')  # fmt: skip
    width = px + (_BAR_PX + _LABEL_PX if bar else 0)
    return (f'<figure class="scl-panel" style="margin:0;width:{width}px;flex:none">'
            f'<figcaption style="font-size:12px;line-height:1.25;width:{px}px;text-align:center;min-height:2.5em;'
            f'overflow-wrap:anywhere">{html.escape(title)}</figcaption>'
            f'<div style="display:flex;gap:3px;align-items:flex-start">{img}{bar}</div></figure>')  # fmt: skip


def saliency_comparison_html(
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
    raw: bool = False,
    original_maps: Mapping[str, np.ndarray] | None = None,
    original_scales: Mapping[str, float] | None = None,
    panel_px: int = 224,
) -> str:
    """One variant's row of maps as HTML, the same layout and arguments as
    :func:`app.map_figures.saliency_comparison`: original, perturbed, then one panel per method (overlaid on a
    greyscale copy of the image it explains with ``opacity``, or alone); ``raw`` adds the bare maps, and
    ``original_maps`` the maps of the original image, in rows below. Every image is upscaled by nearest
    neighbour to at least ``panel_px`` pixels."""
    labels = dict(labels or {})
    rows = map_rows(original, perturbed, maps, scales, overlay, raw, original_maps, original_scales)
    head = [
        _panel(title, image_uri(image, panel_px), panel_px, title)
        for image, title in zip((original, perturbed), image_titles, strict=True)
    ]
    lines = []
    for r, (prefix, source, backdrop, row_scales) in enumerate(rows):
        panels = list(head) if r == 0 else [f'<div style="width:{panel_px}px;flex:none"></div>'] * 2
        for method in maps:
            if method not in source:
                continue
            title = f"{prefix}{labels.get(method, method_label(method))}"
            is_signed, scale = bool(signed.get(method, False)), float(row_scales.get(method, 1.0)) or 1.0
            colours = colourise(source[method], is_signed, scale)
            if backdrop is not None:
                colours = blend(greyscale(backdrop), colours, opacity)
            tip = f"{title}: colours over {'±' if is_signed else '0 to '}{_tick(scale)}"
            bar = colour_bar_html(is_signed, scale, panel_px)
            panels.append(_panel(title, image_uri(colours, panel_px), panel_px, tip, bar))
        lines.append(f'<div style="{_LINE_STYLE}">{"".join(panels)}</div>')
    return f'<div class="scl-saliency" style="display:flex;flex-direction:column;gap:8px">{"".join(lines)}</div>'


def difference_row_html(
    title: str,
    maps: Mapping[str, np.ndarray],
    reference: str,
    correlations: Mapping[str, float],
    panel_px: int = 160,
) -> str:
    """One method's difference maps as HTML: for each variant its normalised map minus the reference's (signed, on
    the diverging scale over [-m, m], m the largest |difference| of the row, 1 when all are 0), titled with its
    Spearman ρ to the reference; one colour bar for the row. Panels wrap onto further lines."""
    values = [np.nan_to_num(np.asarray(m, dtype=np.float64)) for m in maps.values()]
    scale = max((float(np.abs(v).max()) for v in values if v.size), default=0.0) or 1.0
    panels = []
    for variant, m in maps.items():
        rho = correlations.get(variant)
        label = (f"{variant} (reference)" if variant == reference else
                 f"{variant} − {reference}" + ("" if rho is None or rho != rho else f" · ρ = {rho:.2f}"))  # fmt: skip
        tip = f"{title}: {label}; colours over ±{_tick(scale)} (normalised maps)"
        panels.append(_panel(label, image_uri(colourise(m, True, scale), panel_px), panel_px, tip))
    bar = colour_bar_html(True, scale, panel_px)
    return (f'<div class="scl-difference" style="{_LINE_STYLE}">{"".join(panels)}'
            f'<div style="padding-top:2.5em">{bar}</div></div>')  # fmt: skip
