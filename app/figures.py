"""Plotly figure builders shared by the pages: colours, labels, axes and the result charts (curves, bars, lines).
Pure functions of arrays and DataFrames (no Streamlit, no models).

The saliency maps and image grids are drawn by :mod:`app.map_figures`, the embedding scatters by
:mod:`app.embedding_figures`; both use the colours and helpers here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.palette import KIND_COLOURS, kind_colour, variant_colour  # noqa: F401 (the one scheme, re-exported)
from app.tables import column_label, is_accuracy

METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "gradcam": "GradCAM", "lime": "LIME"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _colour_map(variants: Sequence[str]) -> dict[str, str]:
    return {v: variant_colour(v, variants) for v in variants}


# Legends sit right of the plot area, outside it: never over the axes' titles or the data, however many series.
SIDE_LEGEND = dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top", font=dict(size=11))


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


def ci_error_bars(d: pd.DataFrame, y: str, ci: tuple[str, str] | None, scale: float = 1.0) -> dict | None:
    """Plotly ``error_y`` of a 95% CI: asymmetric bars from ``d[y]`` to the ``ci`` columns (low, high), or None
    when ``d`` has no such columns or no finite interval."""
    if ci is None or not set(ci) <= set(d.columns):
        return None
    lo, hi = d[ci[0]].to_numpy(float), d[ci[1]].to_numpy(float)
    if not np.isfinite(lo).any():
        return None
    v = d[y].to_numpy(float)
    return dict(type="data", symmetric=False, array=np.nan_to_num((hi - v) * scale).clip(0),
                arrayminus=np.nan_to_num((v - lo) * scale).clip(0), visible=True, thickness=1.2, width=3)  # fmt: skip


def ds_curves(
    df: pd.DataFrame,
    value: str = "ds_mean",
    error: str | None = "ds_std",
    log_y: bool = True,
    ci: tuple[str, str] | None = ("ci_low", "ci_high"),
) -> go.Figure:
    """DS against perturbation level, one panel per kind, one line per variant (paper Fig. 3).

    ``df`` columns: variant, kind, level, ``value`` (and ``error``, or the 95% CI columns ``ci``: drawn as error
    bars, on a log axis too). Level 0 (DS = 0) is not drawn on a log axis.
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
            bars = ci_error_bars(d, value, ci)
            if bars is None and err is not None and not log_y:
                bars = dict(type="data", array=err, visible=True, thickness=1)
            fig.add_trace(
                go.Scatter(
                    x=d["level"], y=d[value], mode="lines+markers", name=variant, legendgroup=variant,
                    showlegend=c == 1, line=dict(color=colours[variant]), error_y=bars,
                    hovertemplate=f"{variant}, {kind} level %{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=1, col=c,
            )  # fmt: skip
    fig.update_xaxes(title="Level", dtick=1)
    fig.update_yaxes(title=column_label(value), row=1, col=1)
    if log_y:
        fig.update_yaxes(**log_ticks(df.loc[df[value] > 0, value]))
    fig.update_layout(height=340, margin=dict(l=0, r=0, t=30, b=0), legend=SIDE_LEGEND)
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
        legend=SIDE_LEGEND,
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
    """Bars of ``y`` grouped by ``x``, one colour per ``colour`` value, optional error bars (e.g. sd over seeds).

    Value labels sit above the bars, or inside at their base when there are error bars: a label above a bar
    would be crossed by its error bar."""
    series = list(dict.fromkeys(df[colour]))
    colours = _colour_map(series)
    scale = 100.0 if percent else 1.0
    fig = go.Figure()
    for s in series:
        d = df[df[colour] == s]
        err = d[error] * scale if error and error in d and d[error].notna().any() else None
        labels = dict(textposition="outside") if err is None else dict(textposition="inside", insidetextanchor="start",
                                                                        textangle=0)  # fmt: skip
        fig.add_trace(
            go.Bar(x=d[x].astype(str), y=d[y] * scale, name=str(s), marker_color=colours[s],
                   error_y=dict(type="data", array=err, visible=True) if err is not None else None,
                   text=[f"{v * scale:.1f}" for v in d[y]], **labels)
        )  # fmt: skip
    fig.update_layout(
        barmode="group", height=340, margin=dict(l=0, r=0, t=30 if title else 10, b=0), title=title or None,
        yaxis=dict(title=y_title or column_label(y) + (" (%)" if percent and not is_accuracy(y) else ""),
                   range=[0, 105] if percent else None),
        legend=SIDE_LEGEND, uniformtext=dict(minsize=9, mode="show"),
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
    ci: tuple[str, str] | None = None,
) -> go.Figure:
    """Lines of ``y`` against ``x``, one line per ``colour`` value, one panel per ``panel`` value.

    Used for probe curves (x = level, panel = probe), the attack audit (x = steps, panel = loss),
    eps sweeps and the neighbourhood-rank curves. ``x_labels`` names a column with tick labels (a categorical
    axis). ``dash`` names a column of attribution methods: one line per (colour, method), dashed by
    ``method_dash``. ``log_y``: a log axis with a labelled tick per decade. Variants keep ``variant_colour``.
    ``ci``: the columns (low, high) of each point's 95% CI, drawn as error bars (``ci_error_bars``).
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
                        error_y=ci_error_bars(d, y, ci, scale),
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
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), legend=SIDE_LEGEND)
    return fig


def stability_lines(stab: pd.DataFrame, value: str = "spearman_mean") -> go.Figure:
    """Saliency stability (report's ``stability`` table): ρ with the clean map against the level, one panel per
    kind; one colour per variant and one dash per attribution method, so that every (variant, method) series
    is told apart (a colour per combined name ran out of colours)."""
    return line_panels(stab, "level", value, panel="kind", colour="variant", dash="method",
                       y_title="Spearman ρ with the clean map")  # fmt: skip
