"""What the pages call things and show first: level labels, variant descriptions, the default variants."""

from __future__ import annotations

from collections.abc import Sequence

from models.objectives import PAPER_VARIANTS, VARIANT_REGISTRY
from models.perturbations import KIND_REGISTRY


def level_label(kind: str, level: int) -> str:
    """Human text for a level of a registered kind, e.g. 'contrast x1.5' (level 0: 'none (level 0)')."""
    if level <= 0:
        return "none (level 0)"
    return KIND_REGISTRY[kind].label(int(level))


def variant_help(variant: str) -> str:
    """The registry's one-line description of a variant ('' for an imported model of another name)."""
    known = VARIANT_REGISTRY.get(variant)
    return known.help if known else ""


def default_variants(variants: Sequence[str]) -> list[str]:
    """The variants a page shows first: the paper's four where the zoo has them, else all."""
    paper = [v for v in variants if v in PAPER_VARIANTS]
    return paper or list(variants)
