"""The seed-to-seed spread of a zoo's card metrics as a figure: one dot per checkpoint, a bar at each mean."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.palette import variant_colour
from analysis.seed_spread import CARD_METRICS

PERCENT = ("test_clean_acc", "test_pgd10_acc")


def seed_spread_bars(table: pd.DataFrame) -> go.Figure:
    """Per card metric, a panel with each variant's seeds as dots (hover: the seed) and their mean as a bar."""
    fig = make_subplots(rows=1, cols=len(CARD_METRICS), subplot_titles=list(CARD_METRICS.values()))
    for col, metric in enumerate(CARD_METRICS, 1):
        scale = 100.0 if metric in PERCENT else 1.0
        for variant, rows in table.groupby("variant", sort=False):
            values = rows[metric] * scale
            colour = variant_colour(str(variant))
            mean = go.Bar(x=[variant], y=[values.mean()], marker_color=colour, opacity=0.35, name=str(variant),
                          legendgroup=str(variant), showlegend=col == 1,
                          hovertemplate=f"{variant}: mean %{{y:.3g}}<extra></extra>")  # fmt: skip
            fig.add_trace(mean, row=1, col=col)
            fig.add_trace(go.Scatter(x=[variant] * len(rows), y=values, mode="markers", marker_color=colour,
                                     customdata=rows["seed"], legendgroup=str(variant), showlegend=False,
                                     hovertemplate=f"{variant}, seed %{{customdata}}: %{{y:.3g}}<extra></extra>"),
                          row=1, col=col)  # fmt: skip
        fig.update_yaxes(title_text="%" if scale == 100.0 else "DS", row=1, col=col)
    fig.update_layout(height=320, margin={"t": 40, "b": 30}, barmode="overlay")
    return fig
