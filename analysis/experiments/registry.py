"""The experiment registry: what every experiment gets (``Context``), returns (``Output``) and is (``Experiment``)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from analysis.experiments.settings import Settings
from analysis.roles import zoo_roles
from models.checkpoints import Zoo
from models.data import ImageDataset

EXPLANATION_CACHE_BYTES = 512 * 2**20  # maps kept in one report run for the experiments that share them


@dataclass
class Context:
    """What every experiment gets: the zoo, the data, the settings and where to write."""

    zoo: Zoo
    settings: Settings
    out: Path
    work_dir: Path
    device: torch.device
    dataset: str
    data_root: str | None
    test: ImageDataset  # the zoo data set's whole test split
    eval: ImageDataset  # the evaluation subset (n_images of a seeded permutation of the test split)
    roots: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    results: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)  # experiment -> part -> table
    explained: dict[tuple[str, str, int, str], Any] = field(default_factory=dict)  # see explain_first

    @property
    def models(self) -> dict[str, torch.nn.Module]:
        return self.zoo.models

    @property
    def roles(self) -> dict[str, str]:
        """Variant name -> role (``analysis.roles.zoo_roles``)."""
        return zoo_roles(self.zoo)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The main table of each finished experiment."""
        return {name: next(iter(parts.values())) for name, parts in self.results.items() if parts}

    def first(self, n: int) -> ImageDataset:
        return self.eval.subset(torch.arange(min(n, len(self.eval))))

    def explain_first(self, variant: str, method: str, n: int, options: dict[str, Any]) -> Any:
        """``analysis.attributions.explain``: ``variant``'s ``method`` maps of the true label of the first ``n``
        evaluation images, computed once per report run, so that ROAD scores the very maps the attributions
        experiment made (same images, method and options; the methods are deterministic or seeded) rather than
        computing them again. Kept while all kept maps stay under ``EXPLANATION_CACHE_BYTES``; beyond it (500
        maps at 224 px are 100 MB a set) they are computed afresh each time."""
        from analysis.attributions import explain

        key = (variant, method, n, json.dumps(options, sort_keys=True, default=str))
        if key in self.explained:
            return self.explained[key]
        data = self.first(n)
        ex = explain(method, self.models[variant], data.images, data.labels, **options)
        kept = sum(e.maps.nbytes for e in self.explained.values())
        if kept + ex.maps.nbytes <= EXPLANATION_CACHE_BYTES:
            self.explained[key] = ex
        return ex


@dataclass
class Output:
    """An experiment's results: tables (the first is the main one; parts named ``per_*`` go to CSV only), notes
    for the report, figures written, and ``ran``: what it actually ran (images, epochs, steps, seeds)."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    ran: dict[str, Any] = field(default_factory=dict)


class ExperimentSkipped(Exception):
    """Raised by an experiment that does not apply to this zoo; the message (the reason) goes into the report."""


#: Draws an experiment's figures from its tables (part -> table, as stored) into a folder; returns their paths.
Draw = Callable[[Mapping[str, pd.DataFrame], Path], list[str]]


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    paper: str
    run: Callable[[Context], Output]
    settings: tuple[str, ...]  # the Settings fields it uses
    uses: tuple[str, ...] | None = None  # roles of the zoo variants whose weights it reads (None: all of them)
    #: its figures from its stored tables alone, so that a reused result's figures can be drawn again with the
    #: current figure code (``--redraw``) or when one is missing, without computing anything
    draw: Draw | None = None


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(
    name: str, title: str, paper: str, settings: tuple[str, ...], uses: tuple[str, ...] | None = None,
    draw: Draw | None = None,
) -> Callable[[Callable[[Context], Output]], Callable[[Context], Output]]:  # fmt: skip
    """Register the decorated runner as experiment ``name`` (``draw``: its figures from its tables)."""

    def register(fn: Callable[[Context], Output]) -> Callable[[Context], Output]:
        EXPERIMENTS[name] = Experiment(name, title, paper, fn, settings, uses, draw)
        return fn

    return register


@contextlib.contextmanager
def quiet(enabled: bool) -> Iterator[None]:
    """Swallow stdout and stderr when ``enabled``: the training loop's JSON lines, and the progress bars of
    libraries that draw them whatever they are told (lime)."""
    if not enabled:
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def figure_dir(ctx: Context) -> Path:
    """Where a report's figures go."""
    return ctx.out / "figures"
