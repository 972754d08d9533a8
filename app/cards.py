"""The zoo's model cards as the zoo page shows them: headline metrics per variant, and the human-readable card."""

from __future__ import annotations

import math

import pandas as pd

from app.zoo_cache import ZooHandle
from models.checkpoints import CheckpointError, zoo_member
from models.objectives import VARIANT_REGISTRY


def card_metrics(handle: ZooHandle) -> pd.DataFrame:
    """One row per variant: objective and the card's headline metrics (NaN where a card lacks them)."""
    rows = []
    for v in handle.variants:
        card = handle.card(v)
        m = card.get("metrics", {}) or {}
        row = {
            "variant": v,
            "objective": card.get("objective") or (VARIANT_REGISTRY[v].objective if v in VARIANT_REGISTRY else ""),
            "test_clean_acc": m.get("test_clean_acc", math.nan),
            "test_pgd10_acc": m.get("test_pgd10_acc", math.nan),
            "ds_level1_sum": m.get("ds_level1_sum", math.nan),
        }
        for kind, value in (m.get("ds_level1") or {}).items():
            row[f"ds_level1_{kind}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def card_markdown(handle: ZooHandle, variant: str) -> str | None:
    """The zoo's human-readable card (cards/<variant>.md), if it has one inside the zoo folder (a variant name
    from the manifest never leads outside it)."""
    try:
        path = zoo_member(handle.path, f"cards/{variant}.md", variant)
        return path.read_text() if path.is_file() else None
    except (OSError, CheckpointError):
        return None
