"""Plotly figure builders: pure functions of arrays and DataFrames (no Streamlit, no models).

Conventions: images are float (3, H, W) or (H, W, 3) in [0, 1], or uint8 (H, W, 3);
attribution maps are (H, W). IG is signed and drawn on a diverging scale centred
on 0; GradCAM and LIME are drawn on a positive scale. Every map is scaled by its
own largest absolute value, so colours compare *where* a model looks, not how
strongly (the raw scale is in the hover text and the captions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

VARIANT_COLOURS = {"standard": "#636EFA", "C": "#00A86B", "ADV": "#EF8B00", "ADV+C": "#AB63FA"}
_FALLBACK = ["#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52", "#E45756"]
KIND_COLOURS = {
    "none": "#9AA0A6",
    "brightness": "#F4B400",
    "contrast": "#DB4437",
    "saturation": "#0F9D58",
    "hue": "#4285F4",
}
METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "gradcam": "GradCAM", "lime": "LIME"}
DIVERGING = "RdBu_r"  # red = evidence for the class, blue = against
POSITIVE = "Viridis"


def variant_colour(variant: str, order: Sequence[str] = ()) -> str:
    """A stable colour per variant (the paper's four have fixed ones)."""
    if variant in VARIANT_COLOURS:
        return VARIANT_COLOURS[variant]
    idx = list(order).index(variant) if variant in order else abs(hash(variant))
    return _FALLBACK[idx % len(_FALLBACK)]


def _colour_map(variants: Sequence[str]) -> dict[str, str]:
    return {v: variant_colour(v, variants) for v in variants}


def to_uint8_hwc(image: np.ndarray) -> np.ndarray:
    """(3,H,W) or (H,W,3) float in [0,1] (or uint8) -> uint8 (H,W,3)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):  # CHW (tiny HWC 3x3x3: as is)
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def normalise_map(m: np.ndarray, signed: bool) -> tuple[np.ndarray, float]:
    """Scale a map by its largest |value| -> values in [-1, 1] (signed) or [0, 1]; returns (map, scale)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    if not signed:
        m = np.clip(m, 0.0, None)
    scale = float(np.abs(m).max()) if m.size else 0.0
    return (m / scale if scale > 0 else np.zeros_like(m)), scale


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


def probability_bars(probs: Mapping[str, np.ndarray], classes: Sequence[str], top: int = 5) -> go.Figure:
    """Horizontal bars of the top-``top`` class probabilities for each label (e.g. original / perturbed)."""
    fig = go.Figure()
    first = next(iter(probs.values()))
    order = np.argsort(-np.asarray(first))[:top][::-1]
    for label, p in probs.items():
        p = np.asarray(p)
        fig.add_trace(go.Bar(y=[classes[i] for i in order], x=p[order], name=label, orientation="h"))
    fig.update_layout(barmode="group", height=60 + 28 * len(order), margin=dict(l=0, r=0, t=10, b=0),
                      xaxis=dict(range=[0, 1], title="probability"), legend=dict(orientation="h"))  # fmt: skip
    return fig


def embedding_scatter(df: pd.DataFrame, title: str = "", height: int = 380) -> go.Figure:
    """A 2-D neighbourhood projection: same-class images grey, perturbed copies coloured by kind and sized
    by level, the original a black star. ``df`` has columns x, y, role, kind, level, dataset_index (and
    optionally ``row`` for selection callbacks and ``label_name``)."""
    fig = go.Figure()
    rows = df["row"] if "row" in df else pd.Series(np.arange(len(df)), index=df.index)
    same = df["role"] == "same_class"
    if same.any():
        d = df[same]
        fig.add_trace(
            go.Scatter(
                x=d["x"], y=d["y"], mode="markers", name="same class",
                marker=dict(color=KIND_COLOURS["none"], size=6, opacity=0.55),
                customdata=np.stack([rows[same], d["dataset_index"]], axis=1),
                hovertemplate="same-class image #%{customdata[1]}<extra></extra>",
            )
        )  # fmt: skip
    pert = df[df["role"] == "perturbed"]
    for kind, d in pert.groupby("kind", sort=False):
        fig.add_trace(
            go.Scatter(
                x=d["x"], y=d["y"], mode="markers+text", name=str(kind),
                text=[str(int(v)) for v in d["level"]], textposition="top center", textfont=dict(size=9),
                marker=dict(color=KIND_COLOURS.get(str(kind), "#333"), size=7 + 2.5 * d["level"].astype(float),
                            line=dict(width=1, color="white")),
                customdata=np.stack([rows[d.index], d["level"]], axis=1),
                hovertemplate=f"{kind}, level %{{customdata[1]}}<extra></extra>",
            )
        )  # fmt: skip
    orig = df[df["role"] == "original"]
    if len(orig):
        fig.add_trace(
            go.Scatter(
                x=orig["x"], y=orig["y"], mode="markers", name="original",
                marker=dict(color="black", size=16, symbol="star", line=dict(width=1, color="white")),
                customdata=np.stack([rows[orig.index], orig["dataset_index"]], axis=1),
                hovertemplate="original (image #%{customdata[1]})<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        title=dict(text=title, font_size=14), height=height, margin=dict(l=0, r=0, t=36, b=0),
        legend=dict(orientation="h", y=-0.05), xaxis=dict(showticklabels=False, title=None),
        yaxis=dict(showticklabels=False, title=None),
    )  # fmt: skip
    return fig


def ds_curves(df: pd.DataFrame, value: str = "ds_mean", error: str | None = "ds_std", log_y: bool = True) -> go.Figure:
    """DS against perturbation level, one panel per kind, one line per variant (paper Fig. 3).

    ``df`` columns: variant, kind, level, ``value`` (and ``error``). Level 0 (DS = 0) is not drawn on a log axis.
    """
    kinds = list(dict.fromkeys(df["kind"]))
    variants = list(dict.fromkeys(df["variant"]))
    colours = _colour_map(variants)
    fig = make_subplots(rows=1, cols=max(1, len(kinds)), subplot_titles=kinds, shared_yaxes=True,
                        horizontal_spacing=0.03)  # fmt: skip
    for c, kind in enumerate(kinds, start=1):
        for variant in variants:
            d = df[(df["kind"] == kind) & (df["variant"] == variant)].sort_values("level")
            if log_y:
                d = d[d[value] > 0]
            err = d[error] if error and error in d else None
            fig.add_trace(
                go.Scatter(
                    x=d["level"], y=d[value], mode="lines+markers", name=variant, legendgroup=variant,
                    showlegend=c == 1, line=dict(color=colours[variant]),
                    error_y=dict(type="data", array=err, visible=True, thickness=1) if err is not None and not log_y
                    else None,
                    hovertemplate=f"{variant}, {kind} level %{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=1, col=c,
            )  # fmt: skip
    fig.update_xaxes(title="level", dtick=1)
    fig.update_yaxes(title=value, row=1, col=1)
    if log_y:
        fig.update_yaxes(type="log", exponentformat="e")
    fig.update_layout(height=340, margin=dict(l=0, r=0, t=30, b=0), legend=dict(orientation="h", y=-0.2))
    return fig


def accuracy_bars(df: pd.DataFrame, columns: Mapping[str, str], percent: bool = True, title: str = "") -> go.Figure:
    """Grouped bars: x = variant, one bar per metric column (``columns`` maps column -> label)."""
    fig = go.Figure()
    scale = 100.0 if percent else 1.0
    for col, label in columns.items():
        if col not in df:
            continue
        fig.add_trace(
            go.Bar(x=df["variant"], y=df[col] * scale, name=label, text=[f"{v * scale:.1f}" for v in df[col]],
                   textposition="outside")
        )  # fmt: skip
    fig.update_layout(
        barmode="group", height=320, margin=dict(l=0, r=0, t=30 if title else 10, b=0), title=title or None,
        yaxis=dict(title="%" if percent else "", range=[0, 105] if percent else None),
        legend=dict(orientation="h", y=-0.15),
    )  # fmt: skip
    return fig


def grouped_bars(
    df: pd.DataFrame,
    x: str,
    y: str,
    colour: str = "variant",
    error: str | None = None,
    percent: bool = True,
    y_title: str | None = None,
    title: str = "",
) -> go.Figure:
    """Bars of ``y`` grouped by ``x``, one colour per ``colour`` value, optional error bars (e.g. sd over seeds)."""
    series = list(dict.fromkeys(df[colour]))
    colours = _colour_map(series)
    scale = 100.0 if percent else 1.0
    fig = go.Figure()
    for s in series:
        d = df[df[colour] == s]
        err = d[error] * scale if error and error in d and d[error].notna().any() else None
        fig.add_trace(
            go.Bar(x=d[x].astype(str), y=d[y] * scale, name=str(s), marker_color=colours[s],
                   error_y=dict(type="data", array=err, visible=True) if err is not None else None,
                   text=[f"{v * scale:.1f}" for v in d[y]], textposition="outside")
        )  # fmt: skip
    fig.update_layout(
        barmode="group", height=340, margin=dict(l=0, r=0, t=30 if title else 10, b=0), title=title or None,
        yaxis=dict(title=y_title or (f"{y} (%)" if percent else y), range=[0, 105] if percent else None),
        legend=dict(orientation="h", y=-0.15),
    )  # fmt: skip
    return fig


def metric_bars(values: Mapping[str, float], title: str = "", y_title: str = "", log_y: bool = False) -> go.Figure:
    """One bar per variant (e.g. DS level-1 sum)."""
    variants = list(values)
    colours = _colour_map(variants)
    fig = go.Figure(
        go.Bar(x=variants, y=[values[v] for v in variants], marker_color=[colours[v] for v in variants],
               text=[f"{values[v]:.3g}" for v in variants], textposition="outside")
    )  # fmt: skip
    yaxis: dict = dict(title=y_title, type="log" if log_y else "linear")
    positive = [v for v in values.values() if v and v > 0 and np.isfinite(v)]
    if log_y and positive:  # bars on a log axis start at its bottom: put that a decade under the smallest value
        yaxis.update(range=[np.log10(min(positive)) - 1, np.log10(max(positive)) + 0.4], exponentformat="e")
    fig.update_layout(height=280, margin=dict(l=0, r=0, t=30 if title else 10, b=0), title=title or None,
                      yaxis=yaxis)  # fmt: skip
    return fig


def line_panels(
    df: pd.DataFrame,
    x: str,
    y: str,
    panel: str | None = None,
    colour: str = "variant",
    x_labels: str | None = None,
    y_title: str | None = None,
    percent: bool = False,
    height: int = 320,
) -> go.Figure:
    """Lines of ``y`` against ``x``, one line per ``colour`` value, one panel per ``panel`` value.

    Used for probe curves (x = level, panel = probe), the attack audit (x = steps, panel = loss),
    eps sweeps and the neighbourhood-rank curves. ``x_labels`` names a column with tick labels.
    """
    panels = list(dict.fromkeys(df[panel])) if panel else [None]
    series = list(dict.fromkeys(df[colour]))
    colours = _colour_map(series)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[str(p) for p in panels] if panel else None,
                        shared_yaxes=True, horizontal_spacing=0.04)  # fmt: skip
    scale = 100.0 if percent else 1.0
    for c, p in enumerate(panels, start=1):
        dp = df if p is None else df[df[panel] == p]
        for s in series:
            d = dp[dp[colour] == s].sort_values(x)
            if d.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=d[x_labels] if x_labels else d[x], y=d[y] * scale, mode="lines+markers", name=str(s),
                    legendgroup=str(s), showlegend=c == 1, line=dict(color=colours[s]),
                    hovertemplate=f"{s}: %{{y:.3g}}<extra>%{{x}}</extra>",
                ),
                row=1, col=c,
            )  # fmt: skip
        if x_labels:
            fig.update_xaxes(type="category", row=1, col=c)
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y_title or (f"{y} (%)" if percent else y), row=1, col=1)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), legend=dict(orientation="h", y=-0.2))
    return fig


def rank_heatmap(df: pd.DataFrame, value: str = "rank", title: str = "", zmax: float | None = None) -> go.Figure:
    """A kind x level heatmap of neighbour ranks (1 = the perturbed copy is the original's nearest neighbour).

    ``zmax`` fixes the top of the colour scale (e.g. the number of candidates) so that heatmaps compare."""
    pivot = df.pivot_table(index="kind", columns="level", values=value, aggfunc="mean")
    fig = go.Figure(
        go.Heatmap(
            z=pivot.to_numpy(), x=[str(c) for c in pivot.columns], y=list(pivot.index), colorscale="Reds",
            zmin=1, zmax=zmax, text=pivot.to_numpy(), texttemplate="%{text:.0f}", showscale=False,
            hovertemplate="%{y}, level %{x}: rank %{z}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(height=60 + 34 * len(pivot), margin=dict(l=0, r=0, t=26 if title else 4, b=0),
                      title=title or None, xaxis=dict(title="level"))  # fmt: skip
    return fig
