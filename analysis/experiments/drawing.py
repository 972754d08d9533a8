"""Each experiment's figures drawn from its tables alone (part -> table, as the runner returns them or as
``results_store`` reads them back), so that a reused result's figures can be drawn again with the current figure
code (``python -m analysis.report --resume --redraw``) without computing anything. The runners call these too:
one way to draw each figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis.claims import PROBE_FIGURES
from analysis.report_figures import (
    fig_alpha,
    fig_bars,
    fig_continuity,
    fig_eps,
    fig_map_continuity,
    fig_probe,
    fig_road,
    fig_sanity,
    fig_tradeoff,
)

Parts = Mapping[str, pd.DataFrame]


def draw_continuity(parts: Parts, folder: Path) -> list[str]:
    return [fig_continuity(parts["continuity"], folder / "fig3_continuity.png", parts.get("per_image"))]


def draw_probes(parts: Parts, folder: Path) -> list[str]:
    return [fig_probe(parts["probes"], probe, folder / f"{fig}_{probe}.png", fig[3:], parts.get("per_image"))
            for probe, fig in PROBE_FIGURES.items()]  # fmt: skip


def draw_tradeoff(parts: Parts, folder: Path) -> list[str]:
    return [fig_tradeoff(parts["tradeoff"], parts.get("matched"), folder / "tradeoff.png")]


def draw_eps_sweep(parts: Parts, folder: Path) -> list[str]:
    return [fig_eps(parts["eps_sweep"], folder / "eps_sweep.png")]


def draw_alpha_sweep(parts: Parts, folder: Path) -> list[str]:
    return [fig_alpha(parts["alpha_sweep"], folder / "fig4_alpha.png")]


def draw_transfer(parts: Parts, folder: Path) -> list[str]:
    return [fig_bars(parts["summary"], "test_acc", "target", folder / "table3_transfer.png", "Table 3: transfer")]


def draw_fairness(parts: Parts, folder: Path) -> list[str]:
    return [fig_bars(parts["summary"], "test_acc", None, folder / "table4_fairness.png", "Table 4: colour bias")]


def draw_road(parts: Parts, folder: Path) -> list[str]:
    return [fig_road(parts["road"], folder / "road.png")]


def draw_sanity_checks(parts: Parts, folder: Path) -> list[str]:
    return [fig_sanity(parts["sanity_checks"], folder / "sanity_checks.png")]


def draw_explanation_continuity(parts: Parts, folder: Path) -> list[str]:
    return [fig_map_continuity(parts["explanation_continuity"], folder / "explanation_continuity.png")]
