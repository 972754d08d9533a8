"""Plotly figures of the embeddings page: neighbourhood and whole-test-set scatters (and which table rows a
selection picked), neighbour-rank heatmaps. Pure functions of DataFrames (no Streamlit, no models)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.palette import CLASS_COLOURS
from app.figures import KIND_COLOURS, kind_colour

ANCHOR_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "pentagon", "hexagon", "star-triangle-up")
MATCH_COLOUR = "#00B8D4"  # rings around a search's matches (cyan: no variant, kind or class colour is near it)


def pca_axis_titles(ratios: Sequence[float], aligned: bool = False) -> tuple[str, str]:
    """Axis titles of a PCA map: "PC1 (23.4%)", "PC2 (10.1%)" from the explained-variance ratios; a map rotated
    onto another variant's by Procrustes says so, with its plane's total ("aligned PCA, plane 33.5%")."""
    r = [100.0 * float(v) for v in ratios]
    if aligned:
        return (f"aligned PCA axis 1 (plane: {sum(r):.1f}% of variance)", "aligned PCA axis 2")
    return f"PC1 ({r[0]:.1f}%)", f"PC2 ({r[1]:.1f}%)"


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
    axis_titles: tuple[str, str] | None = None,
    highlight: Sequence[int] | None = None,
) -> go.Figure:
    """A 2-D neighbourhood projection: same-class images grey, perturbed copies coloured by kind and sized by level
    (one marker symbol per anchor), anchors black stars; no text labels (level and class are in the hover).

    ``df`` columns: x, y, role, kind, level, dataset_index, and optionally row (given back by ``selected_rows``),
    anchor, pred_name, true_name, ds (hover text). ``ranges`` fixes both axes (shared by a variant's panels);
    ``selected`` rings the point of that row; ``highlight`` rings the rows a search matched (trace "search matches");
    ``axis_titles`` names the axes (e.g. ``pca_axis_titles``).
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
    _mark_matches(fig, df, highlight)
    _mark_selected(fig, df, selected)
    _layout(fig, title, height, ranges, axis_titles)
    return fig


def _layout(fig: go.Figure, title: str, height: int, ranges: tuple[Sequence[float], Sequence[float]] | None,
            axis_titles: tuple[str, str] | None) -> None:  # fmt: skip
    """The scatters' common layout: no tick labels (a projection's units mean nothing), axis titles when given."""
    x_title, y_title = axis_titles or (None, None)
    fig.update_layout(
        title=dict(text=title, font_size=14), height=height, margin=dict(l=0, r=0, t=36, b=0),
        legend=dict(orientation="h", y=-0.12 if axis_titles else -0.05),
        xaxis=dict(showticklabels=False, title=dict(text=x_title, font_size=11) if x_title else None),
        yaxis=dict(showticklabels=False, title=dict(text=y_title, font_size=11) if y_title else None),
        clickmode="event+select", dragmode="pan",
    )  # fmt: skip
    if ranges is not None:
        fig.update_xaxes(range=list(ranges[0]))
        fig.update_yaxes(range=list(ranges[1]))


def _mark_matches(fig: go.Figure, df: pd.DataFrame, rows: Sequence[int] | None) -> None:
    """Rings around the rows a search matched (one trace, "search matches"; not selectable: no customdata)."""
    if rows is None or not len(rows):
        return
    key = df["row"] if "row" in df else pd.Series(df.index, index=df.index)
    hit = df[key.isin(set(int(r) for r in rows))]
    if len(hit):
        fig.add_trace(
            go.Scatter(x=hit["x"], y=hit["y"], mode="markers", name="search matches", hoverinfo="skip",
                       marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2.5, color=MATCH_COLOUR)))
        )  # fmt: skip


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
    axis_titles: tuple[str, str] | None = None,
    highlight: Sequence[int] | None = None,
) -> go.Figure:
    """The whole test set in WebGL (``go.Scattergl``, fine at 10,000+ points): one trace per value of ``colour_by``
    (true or predicted class, or correctness), and ``overlay`` (anchors and their perturbed copies, drawn like
    ``embedding_scatter``'s) on top. ``df`` columns: x, y, row, dataset_index, pred_name, true_name. ``highlight``
    and ``axis_titles`` as in ``embedding_scatter``."""
    fig = go.Figure()
    palette = CLASS_COLOURS  # analysis.palette: never close to a variant's or a perturbation's colour
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
    everything = pd.concat([df, overlay]) if overlay is not None else df
    _mark_matches(fig, everything, highlight)
    _mark_selected(fig, everything, selected)
    _layout(fig, title, height, ranges, axis_titles)
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
