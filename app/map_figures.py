"""Plotly figures of images and attribution maps: saliency rows, image grids, images as data URIs.
Pure functions of arrays (no Streamlit, no models).

Conventions: images are float (3, H, W) or (H, W, 3) in [0, 1], or uint8 (H, W, 3);
attribution maps are (H, W). IG is signed and drawn on a diverging scale centred
on 0; GradCAM and LIME are drawn on a positive scale. Every map is scaled by its
own largest absolute value, so colours compare *where* a model looks, not how
strongly (the raw scale is in the hover text and the captions).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures import METHOD_LABELS, method_label, normalise_map, to_uint8_hwc

DIVERGING = "RdBu_r"  # red = evidence for the class, blue = against
POSITIVE = "Viridis"


def _axes_off(fig: go.Figure) -> None:
    fig.update_xaxes(visible=False, showgrid=False, zeroline=False)
    fig.update_yaxes(visible=False, showgrid=False, zeroline=False, scaleanchor=None)


def saliency_row(
    original: np.ndarray,
    perturbed: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    map_titles: Mapping[str, str] | None = None,
    image_titles: tuple[str, str] = ("original", "perturbed"),
    original_maps: Mapping[str, np.ndarray] | None = None,
    height: int = 230,
) -> go.Figure:
    """One variant's row: original and perturbed image, then one panel per attribution map.

    ``maps`` maps method name -> (H, W) map of the perturbed image; ``original_maps``
    (optional) the same for the original, drawn in a second row under the first.
    IG: diverging scale, zero in the middle; GradCAM / LIME: positive scale (LIME's
    negative segment weights are dropped). Each map scaled by its own max |value|.
    """
    methods = list(maps)
    two_rows = bool(original_maps)
    rows = 2 if two_rows else 1
    cols = 2 + len(methods)
    titles = [image_titles[0], image_titles[1]]
    titles += [(map_titles or {}).get(m, METHOD_LABELS.get(m, m)) for m in methods]
    if two_rows:
        titles += ["", ""] + [f"{METHOD_LABELS.get(m, m)} of the original" for m in methods]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.015, vertical_spacing=0.08)
    fig.add_trace(go.Image(z=to_uint8_hwc(original), hoverinfo="skip", name="original"), row=1, col=1)
    fig.add_trace(go.Image(z=to_uint8_hwc(perturbed), hoverinfo="skip", name="perturbed"), row=1, col=2)
    for r, source in enumerate([maps, original_maps] if two_rows else [maps], start=1):
        for c, method in enumerate(methods, start=3):
            if source is None or method not in source:
                continue
            signed = method == "integrated_gradients"
            z, scale = normalise_map(source[method], signed)
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    zmin=-1.0 if signed else 0.0,
                    zmax=1.0,
                    zmid=0.0 if signed else None,
                    colorscale=DIVERGING if signed else POSITIVE,
                    showscale=False,
                    hovertemplate=f"x=%{{x}} y=%{{y}}<br>value/max=%{{z:.2f}}<br>max |value| = {scale:.3g}"
                    "<extra></extra>",
                    name=METHOD_LABELS.get(method, method),
                ),
                row=r,
                col=c,
            )
    _axes_off(fig)
    for i in range(1, rows * cols + 1):  # images top-down, square pixels, in every panel
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"yaxis{suffix}": {"autorange": "reversed", "scaleanchor": f"x{suffix}"}})
    fig.update_annotations(font_size=12)
    fig.update_layout(height=height * rows, margin=dict(l=0, r=0, t=24, b=0), showlegend=False)
    return fig


def image_grid(
    images: Sequence[np.ndarray] | np.ndarray,
    titles: Sequence[str] | None = None,
    cols: int = 6,
    panel_height: int = 150,
) -> go.Figure:
    """A grid of images with titles (e.g. a gallery, probe examples, adversarial examples)."""
    images = list(images)
    n = max(1, len(images))
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    titles = list(titles or [""] * len(images))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles + [""] * (rows * cols - len(titles)),
                        horizontal_spacing=0.01, vertical_spacing=0.12 / max(1, rows))  # fmt: skip
    for i, img in enumerate(images):
        fig.add_trace(go.Image(z=to_uint8_hwc(img), hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
    _axes_off(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=panel_height * rows + 30, margin=dict(l=0, r=0, t=28, b=0), showlegend=False)
    return fig


# ----------------------------------------------------------------------------- saliency maps for comparison


def upscale_nearest(image: np.ndarray, min_side: int = 224) -> tuple[np.ndarray, int]:
    """uint8 (H, W, 3) upscaled by the smallest integer factor k with k * min(H, W) >= ``min_side``
    (nearest neighbour: every pixel becomes a k x k block); returns (image, k)."""
    a = to_uint8_hwc(image)
    k = max(1, -(-min_side // max(1, min(a.shape[:2]))))
    return (np.repeat(np.repeat(a, k, axis=0), k, axis=1) if k > 1 else a), k


def greyscale(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) grey copy (ITU-R 601 luma) of an image, the backdrop of an overlaid map."""
    a = to_uint8_hwc(image).astype(np.float32)
    luma = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(np.clip(luma.round(), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) image as a PNG data URI (drawn by the browser without any request)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8_hwc(image)).save(buf, "PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def map_scale(maps: Sequence[np.ndarray], signed: bool) -> float:
    """The colour-scale limit shared by ``maps``: the largest |value| (positive part for unsigned maps); 1 if 0."""
    values = [np.nan_to_num(np.asarray(m, dtype=np.float64)) for m in maps]
    top = max((float(np.abs(v if signed else np.clip(v, 0, None)).max()) for v in values if v.size), default=0.0)
    return top if top > 0 else 1.0


MapRow = tuple[str, Mapping[str, np.ndarray], "np.ndarray | None", Mapping[str, float]]


def map_rows(
    original: np.ndarray,
    perturbed: np.ndarray,
    maps: Mapping[str, np.ndarray],
    scales: Mapping[str, float],
    overlay: bool,
    raw: bool,
    original_maps: Mapping[str, np.ndarray] | None,
    original_scales: Mapping[str, float] | None,
) -> list[MapRow]:
    """The rows of maps a saliency comparison draws (plotly or HTML): (title prefix, maps, the image they are
    overlaid on or None, colour scales): the perturbed image's maps, then the raw maps, then the original's."""
    rows: list[MapRow] = [("", maps, perturbed if overlay else None, scales)]
    if raw and overlay:
        rows.append(("raw: ", maps, None, scales))
    if original_maps:
        rows.append(("original: ", original_maps, original if overlay else None, original_scales or scales))
    return rows


def saliency_comparison(
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
) -> go.Figure:
    """One variant's row of maps, drawn to be compared with other rows.

    Columns: original, perturbed, one per method. Row 1: each method's map of the perturbed image, overlaid
    with ``opacity`` on a greyscale copy of it (``overlay``; as Captum Insights draws them) or alone. ``raw``
    adds the bare maps in a row under the overlays; ``original_maps`` adds the maps of the original image.
    Colours run over [-scale, scale] (``signed`` methods, diverging) or [0, scale] per method from ``scales``
    (one scale for every row: comparable colours; or each map's own), with one colour bar per method;
    ``original_scales`` (default ``scales``) for the maps of the original image.
    Images are upscaled by nearest neighbour to at least ``panel_px`` pixels; maps are drawn as blocks.
    """
    methods = list(maps)
    labels = dict(labels or {})
    rows_spec = map_rows(original, perturbed, maps, scales, overlay, raw, original_maps, original_scales)
    n_rows, n_cols = len(rows_spec), 2 + len(methods)
    big_orig, k = upscale_nearest(original, panel_px)
    side_y, side_x = big_orig.shape[:2]
    # Built as plain dicts and validated once (make_subplots and per-axis updates cost ~0.2 s a figure).
    gap_x, gap_y = 48 / (n_cols * (panel_px + 48)), 34 / (n_rows * (panel_px + 34))
    width_x, height_y = (1 - gap_x * (n_cols - 1)) / n_cols, (1 - gap_y * (n_rows - 1)) / n_rows
    layout: dict = {"annotations": []}
    data: list[dict] = []
    axes = functools.partial(_panel_axes, layout, (n_cols, width_x, height_y, gap_x, gap_y, side_x, side_y))
    for c, (image, title) in enumerate(((original, image_titles[0]), (perturbed, image_titles[1]))):
        xa, ya, _, _ = axes(0, c, title)
        data.append(dict(type="image", source=image_uri(image, panel_px), xaxis=xa, yaxis=ya, hoverinfo="skip"))
    for r, (prefix, source, backdrop, row_scales) in enumerate(rows_spec):
        for c, method in enumerate(methods, start=2):
            title = f"{prefix}{labels.get(method, method_label(method))}"
            xa, ya, dx, dy = axes(r, c, title)
            if method not in source:
                continue
            if backdrop is not None:
                data.append(dict(type="image", source=image_uri(backdrop, panel_px, grey=True), xaxis=xa, yaxis=ya,
                                 hoverinfo="skip", name="greyscale"))  # fmt: skip
            is_signed, scale = bool(signed.get(method, False)), float(row_scales.get(method, 1.0)) or 1.0
            data.append(_map_trace(source[method], k, is_signed, scale, opacity if backdrop is not None else 1.0,
                                   (xa, ya), title, (dx, dy) if r == 0 else None))  # fmt: skip
    layout.update(width=n_cols * (panel_px + 48) + 20, height=n_rows * (panel_px + 34) + 8,
                  margin=dict(l=0, r=40, t=24, b=0), showlegend=False)  # fmt: skip
    return go.Figure(data=data, layout=layout)


def _panel_axes(layout: dict, grid: tuple, r: int, c: int, title: str) -> tuple[str, str, list[float], list[float]]:
    """The axes of panel (``r``, ``c``) of ``saliency_comparison``'s grid ((n_cols, panel width, panel height,
    gaps x and y, image sides x and y) in paper fractions and pixels), added to ``layout`` with its title;
    returns the axis names and the panel's x and y domains."""
    n_cols, width_x, height_y, gap_x, gap_y, side_x, side_y = grid
    i = r * n_cols + c + 1
    sx, sy = "" if i == 1 else str(i), "" if i == 1 else str(i)
    dx = [max(0.0, c * (width_x + gap_x)), min(1.0, c * (width_x + gap_x) + width_x)]
    dy = [max(0.0, 1 - (r + 1) * height_y - r * gap_y), min(1.0, 1 - r * (height_y + gap_y))]
    off = dict(visible=False, showgrid=False, zeroline=False)
    layout[f"xaxis{sx}"] = dict(domain=dx, anchor=f"y{sy}", range=[-0.5, side_x - 0.5], **off)
    layout[f"yaxis{sy}"] = dict(domain=dy, anchor=f"x{sx}", range=[side_y - 0.5, -0.5], scaleanchor=f"x{sx}", **off)
    if title:
        layout["annotations"].append(dict(text=title, x=(dx[0] + dx[1]) / 2, y=dy[1], xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False,
                                          font=dict(size=11)))  # fmt: skip
    return f"x{sx}", f"y{sy}", dx, dy


def _map_trace(m: np.ndarray, k: int, is_signed: bool, scale: float, opacity: float, axes: tuple[str, str],
               title: str, colourbar_at: tuple[list[float], list[float]] | None) -> dict:  # fmt: skip
    """One map as a heatmap of k x k pixel blocks over [-scale, scale] (signed: diverging, centred on 0) or
    [0, scale], on ``axes``; with a colour bar right of the panel whose x and y domains are ``colourbar_at``."""
    xa, ya = axes
    trace = dict(
        type="heatmap", z=np.nan_to_num(np.asarray(m, dtype=np.float64)), x0=(k - 1) / 2, dx=k,
        y0=(k - 1) / 2, dy=k, zmin=-scale if is_signed else 0.0, zmax=scale,
        colorscale=DIVERGING if is_signed else POSITIVE, opacity=opacity,
        zsmooth=False, showscale=colourbar_at is not None, xaxis=xa, yaxis=ya, name=title,
        hovertemplate="x=%{x} y=%{y}<br>value=%{z:.3g}<extra></extra>",
    )  # fmt: skip
    if is_signed:
        trace["zmid"] = 0.0
    if colourbar_at is not None:
        dx, dy = colourbar_at
        trace["colorbar"] = dict(x=dx[1] + 0.003, xanchor="left", y=(dy[0] + dy[1]) / 2, yanchor="middle",
                                 len=(dy[1] - dy[0]) * 0.9, thickness=9, tickfont=dict(size=9),
                                 exponentformat="e", nticks=5)  # fmt: skip
    return trace


_URI_CACHE: dict[tuple, str] = {}


def image_uri(image: np.ndarray, min_side: int = 224, grey: bool = False) -> str:
    """PNG data URI of an image (greyscale copy if ``grey``) upscaled by nearest neighbour to ``min_side``
    (the last 256 are kept: a level slider redraws the same originals)."""
    a = np.ascontiguousarray(image)
    key = (a.shape, a.dtype.str, hash(a.tobytes()), min_side, grey)
    uri = _URI_CACHE.get(key)
    if uri is None:
        if len(_URI_CACHE) >= 256:
            _URI_CACHE.pop(next(iter(_URI_CACHE)))
        uri = _URI_CACHE[key] = png_data_uri(upscale_nearest(greyscale(a) if grey else a, min_side)[0])
    return uri
