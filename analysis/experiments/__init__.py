"""The report's experiments: settings (``settings``), the registry (``registry``) and the runners (``measure``:
measurements of the zoo's checkpoints; ``training``: experiments that train). ``EXPERIMENTS`` is in run order."""

from __future__ import annotations

from analysis.experiments import explanations, measure, training  # noqa: F401 (registers the runners)
from analysis.experiments.registry import EXPERIMENTS, Context, Experiment, Output, experiment
from analysis.experiments.settings import FULL, QUICK, Settings, estimate_cpu_s, parse_overrides, with_seeds

ORDER = ("continuity", "alpha_sweep", "neighbourhood_rank", "probes", "robustness", "tradeoff", "eps_sweep",
         "attack_audit", "attributions", "road", "stability", "sanity_checks", "explanation_continuity", "embeddings",
         "transfer", "fairness")  # fmt: skip
_ordered = {n: EXPERIMENTS[n] for n in ORDER if n in EXPERIMENTS}
_ordered.update({n: e for n, e in EXPERIMENTS.items() if n not in _ordered})
EXPERIMENTS.clear()
EXPERIMENTS.update(_ordered)

__all__ = ["EXPERIMENTS", "FULL", "QUICK", "Context", "Experiment", "Output", "Settings", "estimate_cpu_s",
           "experiment", "parse_overrides", "with_seeds"]  # fmt: skip
