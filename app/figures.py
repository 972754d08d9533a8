"""Plotly figure builders: pure functions of arrays and DataFrames (no Streamlit, no models).

Conventions: images are float (3, H, W) or (H, W, 3) in [0, 1], or uint8 (H, W, 3);
attribution maps are (H, W). IG is signed and drawn on a diverging scale centred
on 0; GradCAM and LIME are drawn on a positive scale. Every map is scaled by its
own largest absolute value, so colours compare *where* a model looks, not how
strongly (the raw scale is in the hover text and the captions).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.tables import column_label, is_accuracy
from models.objectives import variant_colour  # the one colour of each variant (the report's figures use it too)

KIND_COLOURS = {
    "none": "#9AA0A6",
    "brightness": "#F4B400",
    "contrast": "#DB4437",
    "saturation": "#0F9D58",
    "hue": "#4285F4",
}
_KIND_FALLBACK = ["#8E24AA", "#00897B", "#6D4C41", "#C0CA33"]
METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "gradcam": "GradCAM", "lime": "LIME"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
ANCHOR_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "pentagon", "hexagon", "star-triangle-up")
DIVERGING = "RdBu_r"  # red = evidence for the class, blue = against
POSITIVE = "Viridis"


def _colour_map(variants: Sequence[str]) -> dict[str, str]:
    return {v: variant_colour(v, variants) for v in variants}


def kind_colour(kind: str) -> str:
    """A stable colour per perturbation kind (registered kinds beyond Table 1 get one by name)."""
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    return _KIND_FALLBACK[sum(map(ord, kind)) % len(_KIND_FALLBACK)]


def method_label(method: str) -> str:
    """An attribution method's label: ``analysis.attributions.METHOD_REGISTRY`` when it is loaded, else ours."""
    attributions = sys.modules.get("analysis.attributions")
    registry = getattr(attributions, "METHOD_REGISTRY", {}) if attributions else {}
    if method in registry:
        return registry[method].label
    return METHOD_LABELS.get(method, method)


def method_dash(method: str, order: Sequence[str] = ()) -> str:
    """The one dash style of an attribution method in line charts (registry order, then ``order``)."""
    attributions = sys.modules.get("analysis.attributions")
    names = list(getattr(attributions, "METHOD_REGISTRY", {}) if attributions else METHOD_LABELS)
    names += [m for m in order if m not in names]
    return DASHES[(names.index(method) if method in names else len(names)) % len(DASHES)]


def log_ticks(values: Sequence[float] | np.ndarray) -> dict:
    """Axis settings for a log axis with one fully labelled tick per decade (1e-3 ... 0.01, 0.1, 1, 10, 100 ...):
    plotly's own log ticks label only the digits between decades ("2, 5, 2, 5")."""
    v = np.asarray([x for x in np.asarray(values, dtype=float).ravel() if np.isfinite(x) and x > 0])
    if not len(v):
        return {"type": "log"}
    lo, hi = int(np.floor(np.log10(v.min()))), int(np.ceil(np.log10(v.max())))
    hi = max(hi, lo + 1)
    step = max(1, (hi - lo + 7) // 8)  # at most ~8 labels
    exps = list(range(lo, hi + 1, step))
    return {
        "type": "log",
        "tickvals": [10.0**e for e in exps],
        "ticktext": [_decade(e) for e in exps],
        "range": [lo - 0.05, hi + 0.05],
    }


def _decade(exponent: int) -> str:
    if -3 <= exponent <= 4:
        return f"{10.0**exponent:.{max(0, -exponent)}f}"
    return f"1e{exponent}"


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


def _hover(d: pd.DataFrame) -> list[str]:
    """Hover text of embedding points: what the point is, predicted and true class, DS to its anchor."""
    out = []
    for r in d.itertuples(index=False):
        role = getattr(r, "role", "")
        anchor = getattr(r, "anchor", "") or ""
        if role == "perturbed":
            head = f"{anchor}: {r.kind} level {int(r.level)}" if anchor else f"{r.kind} level {int(r.level)}"
        elif role == "original":
            head = f"anchor {anchor}" if anchor else f"original (image #{int(r.dataset_index)})"
        else:
            head = f"test image #{int(r.dataset_index)}"
        lines = [head]
        if "pred_name" in d:
            lines.append(f"predicted {r.pred_name} · true {getattr(r, 'true_name', '?')}")
        ds = getattr(r, "ds", None)
        if ds is not None and np.isfinite(ds):
            to = getattr(r, "ds_to", "") or "the anchor"
            lines.append(f"DS to {to}: {ds:.3g}")
        out.append("<br>".join(lines))
    return out


def _rows(d: pd.DataFrame) -> np.ndarray:
    return (d["row"] if "row" in d else pd.Series(d.index, index=d.index)).to_numpy().astype(np.int64)[:, None]


def selected_rows(fig: go.Figure, points: Sequence[Mapping]) -> list[int]:
    """The table rows of a plotly selection: each point's ``curve_number`` and ``point_index`` looked up in the
    figure's own traces (their ``customdata`` column 0 holds the row). The browser's copy of ``customdata`` is
    not used: plotly sends arrays as typed arrays and the selection does not give back what Python put in."""
    rows = []
    for point in points or []:
        if not isinstance(point, Mapping):
            continue
        curve = point.get("curve_number")
        index = point.get("point_index", point.get("point_number"))
        if curve is None or index is None or not 0 <= int(curve) < len(fig.data):
            continue
        custom = fig.data[int(curve)].customdata
        if custom is None or not 0 <= int(index) < len(custom):
            continue
        rows.append(int(np.asarray(custom[int(index)]).ravel()[0]))
    return rows


def shared_ranges(frames: Sequence[pd.DataFrame], pad: float = 0.05) -> tuple[list[float], list[float]]:
    """One x and one y range covering every frame's x, y columns (so panels of a shared projection compare)."""
    xs = np.concatenate([f["x"].to_numpy(float) for f in frames if len(f)] or [np.zeros(1)])
    ys = np.concatenate([f["y"].to_numpy(float) for f in frames if len(f)] or [np.zeros(1)])

    def span(v: np.ndarray) -> list[float]:
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        margin = (hi - lo) * pad or 1.0
        return [lo - margin, hi + margin]

    return span(xs), span(ys)


def embedding_scatter(
    df: pd.DataFrame,
    title: str = "",
    height: int = 380,
    ranges: tuple[Sequence[float], Sequence[float]] | None = None,
    selected: int | None = None,
) -> go.Figure:
    """A 2-D neighbourhood projection: same-class images grey, perturbed copies coloured by kind and sized by level
    (one marker symbol per anchor), anchors black stars; no text labels (level and class are in the hover).

    ``df`` columns: x, y, role, kind, level, dataset_index, and optionally row (given back by ``selected_rows``),
    anchor, pred_name, true_name, ds (hover text). ``ranges`` fixes both axes (shared by a variant's panels);
    ``selected`` rings the point of that row.
    """
    fig = go.Figure()
    anchors = [a for a in dict.fromkeys(df["anchor"])] if "anchor" in df else []
    anchors = [a for a in anchors if a]
    symbol = {a: ANCHOR_SYMBOLS[i % len(ANCHOR_SYMBOLS)] for i, a in enumerate(anchors)}
    same = df[df["role"] == "same_class"]
    if len(same):
        fig.add_trace(
            go.Scatter(
                x=same["x"], y=same["y"], mode="markers", name="same class",
                marker=dict(color=KIND_COLOURS["none"], size=6, opacity=0.55),
                customdata=_rows(same), hovertext=_hover(same), hovertemplate="%{hovertext}<extra></extra>",
            )
        )  # fmt: skip
    pert = df[df["role"] == "perturbed"]
    for kind, d in pert.groupby("kind", sort=False):
        symbols = [symbol.get(a, "circle") for a in d["anchor"]] if "anchor" in d else "circle"
        fig.add_trace(
            go.Scatter(
                x=d["x"], y=d["y"], mode="markers", name=str(kind),
                marker=dict(color=kind_colour(str(kind)), size=6 + 2.5 * d["level"].astype(float), symbol=symbols,
                            line=dict(width=1, color="white")),
                customdata=_rows(d), hovertext=_hover(d), hovertemplate="%{hovertext}<extra></extra>",
            )
        )  # fmt: skip
    orig = df[df["role"] == "original"]
    if len(orig):
        fig.add_trace(
            go.Scatter(
                x=orig["x"], y=orig["y"], mode="markers", name="anchor" if anchors else "original",
                marker=dict(color="black", size=16, symbol="star", line=dict(width=1, color="white")),
                customdata=_rows(orig), hovertext=_hover(orig), hovertemplate="%{hovertext}<extra></extra>",
            )
        )  # fmt: skip
    _mark_selected(fig, df, selected)
    fig.update_layout(
        title=dict(text=title, font_size=14), height=height, margin=dict(l=0, r=0, t=36, b=0),
        legend=dict(orientation="h", y=-0.05), xaxis=dict(showticklabels=False, title=None),
        yaxis=dict(showticklabels=False, title=None), clickmode="event+select", dragmode="pan",
    )  # fmt: skip
    if ranges is not None:
        fig.update_xaxes(range=list(ranges[0]))
        fig.update_yaxes(range=list(ranges[1]))
    return fig


def _mark_selected(fig: go.Figure, df: pd.DataFrame, selected: int | None) -> None:
    """A ring around the selected row (not selectable itself: it has no customdata)."""
    if selected is None or "row" not in df:
        return
    hit = df[df["row"] == selected]
    if len(hit):
        fig.add_trace(
            go.Scatter(x=hit["x"], y=hit["y"], mode="markers", name="selected", hoverinfo="skip", showlegend=False,
                       marker=dict(size=22, color="rgba(0,0,0,0)", line=dict(width=2, color="#D50000")))
        )  # fmt: skip


def whole_set_scatter(
    df: pd.DataFrame,
    title: str = "",
    overlay: pd.DataFrame | None = None,
    colour_by: str = "true_name",
    ranges: tuple[Sequence[float], Sequence[float]] | None = None,
    height: int = 480,
    selected: int | None = None,
) -> go.Figure:
    """The whole test set in WebGL (``go.Scattergl``, fine at 10,000+ points): one trace per value of ``colour_by``
    (true or predicted class, or correctness), and ``overlay`` (anchors and their perturbed copies, drawn like
    ``embedding_scatter``'s) on top. ``df`` columns: x, y, row, dataset_index, pred_name, true_name."""
    fig = go.Figure()
    palette = [
        "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF",
    ]  # fmt: skip
    groups = list(dict.fromkeys(df[colour_by])) if len(df) else []
    groups.sort(key=str)
    for i, g in enumerate(groups):
        d = df[df[colour_by] == g]
        fig.add_trace(
            go.Scattergl(
                x=d["x"], y=d["y"], mode="markers", name=str(g), customdata=_rows(d),
                marker=dict(size=4, opacity=0.6, color=palette[i % len(palette)]),
                hovertext=[f"test image #{int(r.dataset_index)}<br>predicted {r.pred_name} · true {r.true_name}"
                           for r in d.itertuples(index=False)],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )  # fmt: skip
    if overlay is not None and len(overlay):
        for trace in embedding_scatter(overlay).data:
            if trace.name == "same class":
                continue
            marker = trace.marker.to_plotly_json()
            fig.add_trace(go.Scattergl(x=trace.x, y=trace.y, mode="markers", name=trace.name, marker=marker,
                                       customdata=trace.customdata, hovertext=trace.hovertext,
                                       hovertemplate=trace.hovertemplate))  # fmt: skip
    _mark_selected(fig, pd.concat([df, overlay]) if overlay is not None else df, selected)
    fig.update_layout(
        title=dict(text=title, font_size=14), height=height, margin=dict(l=0, r=0, t=36, b=0),
        legend=dict(orientation="h", y=-0.05), xaxis=dict(showticklabels=False, title=None),
        yaxis=dict(showticklabels=False, title=None), clickmode="event+select", dragmode="pan",
    )  # fmt: skip
    if ranges is not None:
        fig.update_xaxes(range=list(ranges[0]))
        fig.update_yaxes(range=list(ranges[1]))
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
    fig.update_xaxes(title="Level", dtick=1)
    fig.update_yaxes(title=column_label(value), row=1, col=1)
    if log_y:
        fig.update_yaxes(**log_ticks(df.loc[df[value] > 0, value]))
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
        yaxis=dict(title=y_title or column_label(y) + (" (%)" if percent and not is_accuracy(y) else ""),
                   range=[0, 105] if percent else None),
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
        yaxis.update(log_ticks([min(positive) / 10, max(positive) * 2]))
        yaxis["range"] = [np.log10(min(positive)) - 1, np.log10(max(positive)) + 0.4]
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
    dash: str | None = None,
    log_y: bool = False,
    x_title: str | None = None,
) -> go.Figure:
    """Lines of ``y`` against ``x``, one line per ``colour`` value, one panel per ``panel`` value.

    Used for probe curves (x = level, panel = probe), the attack audit (x = steps, panel = loss),
    eps sweeps and the neighbourhood-rank curves. ``x_labels`` names a column with tick labels (a categorical
    axis). ``dash`` names a column of attribution methods: one line per (colour, method), dashed by
    ``method_dash``. ``log_y``: a log axis with a labelled tick per decade. Variants keep ``variant_colour``.
    """
    panels = list(dict.fromkeys(df[panel])) if panel else [None]
    series = list(dict.fromkeys(df[colour]))
    colours = _colour_map(series)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[str(p) for p in panels] if panel else None,
                        shared_yaxes=True, horizontal_spacing=0.04)  # fmt: skip
    scale = 100.0 if percent else 1.0
    styles = list(dict.fromkeys(df[dash])) if dash else [None]
    for c, p in enumerate(panels, start=1):
        dp = df if p is None else df[df[panel] == p]
        for s in series:
            for m in styles:
                d = dp[(dp[colour] == s) & ((dp[dash] == m) if dash else True)].sort_values(x)
                if d.empty:
                    continue
                name = str(s) if m is None else f"{s}, {method_label(str(m))}"
                fig.add_trace(
                    go.Scatter(
                        x=d[x_labels] if x_labels else d[x], y=d[y] * scale, mode="lines+markers", name=name,
                        legendgroup=name, showlegend=c == 1,
                        line=dict(color=colours[s], dash=None if m is None else method_dash(str(m), styles)),
                        hovertemplate=f"{name}: %{{y:.3g}}<extra>%{{x}}</extra>",
                    ),
                    row=1, col=c,
                )  # fmt: skip
        if x_labels:
            fig.update_xaxes(type="category", row=1, col=c)
    fig.update_xaxes(title=x_title or column_label(x))
    fig.update_yaxes(title=y_title or column_label(y) + (" (%)" if percent and not is_accuracy(y) else ""), row=1,
                     col=1)  # fmt: skip
    if log_y:
        fig.update_yaxes(**log_ticks(df[y] * scale))
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
    rows_spec: list[tuple[str, Mapping[str, np.ndarray], np.ndarray | None, Mapping[str, float]]] = []
    rows_spec.append(("", maps, perturbed if overlay else None, scales))
    if raw and overlay:
        rows_spec.append(("raw: ", maps, None, scales))
    if original_maps:
        rows_spec.append(("original: ", original_maps, original if overlay else None, original_scales or scales))
    n_rows, n_cols = len(rows_spec), 2 + len(methods)
    big_orig, k = upscale_nearest(original, panel_px)
    side_y, side_x = big_orig.shape[:2]
    # Built as plain dicts and validated once (make_subplots and per-axis updates cost ~0.2 s a figure).
    gap_x, gap_y = 48 / (n_cols * (panel_px + 48)), 34 / (n_rows * (panel_px + 34))
    width_x, height_y = (1 - gap_x * (n_cols - 1)) / n_cols, (1 - gap_y * (n_rows - 1)) / n_rows
    layout: dict = {"annotations": []}
    data: list[dict] = []

    def axes(r: int, c: int, title: str) -> tuple[str, str, list[float], list[float]]:
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
            trace = dict(
                type="heatmap", z=np.nan_to_num(np.asarray(source[method], dtype=np.float64)), x0=(k - 1) / 2, dx=k,
                y0=(k - 1) / 2, dy=k, zmin=-scale if is_signed else 0.0, zmax=scale,
                colorscale=DIVERGING if is_signed else POSITIVE, opacity=opacity if backdrop is not None else 1.0,
                zsmooth=False, showscale=r == 0, xaxis=xa, yaxis=ya, name=title,
                hovertemplate="x=%{x} y=%{y}<br>value=%{z:.3g}<extra></extra>",
            )  # fmt: skip
            if is_signed:
                trace["zmid"] = 0.0
            if r == 0:
                trace["colorbar"] = dict(x=dx[1] + 0.003, xanchor="left", y=(dy[0] + dy[1]) / 2, yanchor="middle",
                                         len=(dy[1] - dy[0]) * 0.9, thickness=9, tickfont=dict(size=9),
                                         exponentformat="e", nticks=5)  # fmt: skip
            data.append(trace)
    layout.update(width=n_cols * (panel_px + 48) + 20, height=n_rows * (panel_px + 34) + 8,
                  margin=dict(l=0, r=40, t=24, b=0), showlegend=False)  # fmt: skip
    return go.Figure(data=data, layout=layout)


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
