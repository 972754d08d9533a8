"""The seed-to-seed spread of a zoo's card metrics: one row per checkpoint, and each variant's mean and spread.

A zoo with replicas (``models.replicas``) holds several training runs per variant; their cards' test-split
metrics say how much a variant moves between seeds, the yardstick for any difference between variants.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from models.replicas import variant_replicas

__all__ = ["CARD_METRICS", "seed_card_table", "seed_spread"]

CARD_METRICS = {"test_clean_acc": "clean accuracy", "test_pgd10_acc": "PGD-10 accuracy",
                "ds_level1_sum": "DS level 1 (sum)"}  # fmt: skip


def seed_card_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per checkpoint of the zoo: variant, seed, primary, and the card metrics (NaN where missing)."""
    rows = []
    for variant in manifest.get("variants", {}):
        for rep in variant_replicas(manifest, variant):
            metrics = rep.card.get("metrics") or {}
            rows.append({"variant": variant, "seed": rep.seed, "primary": rep.primary,
                         **{k: float(metrics.get(k, math.nan)) for k in CARD_METRICS}})  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "seed", "primary", *CARD_METRICS])


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the number of seeds, and each metric's mean, sample standard deviation (NaN for one seed),
    minimum and maximum over seeds, in the variants' order of appearance."""
    order = list(dict.fromkeys(table["variant"]))
    stats = table.groupby("variant", sort=False)[list(CARD_METRICS)].agg(["mean", "std", "min", "max"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    seeds = table.groupby("variant", sort=False)["seed"].agg(lambda s: sorted(int(x) for x in s))
    out = stats.assign(seeds=seeds, n_seeds=seeds.map(len)).reindex(order).reset_index()
    return out[["variant", "n_seeds", "seeds", *stats.columns]]
