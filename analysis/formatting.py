"""The one way numbers are written in the report and the claims: percentages, plain numbers, intervals, tables."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def finite(x: Any) -> bool:
    """A real, finite number (not None, not NaN)."""
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pct(x: Any, sd: Any = None, digits: int = 1) -> str:
    """``41.2%`` or ``41.2 ± 0.8%`` (x and sd as fractions); ``n/a`` when x is missing."""
    if not finite(x):
        return "n/a"
    if not finite(sd):
        return f"{100 * float(x):.{digits}f}%"
    return f"{100 * float(x):.{digits}f} ± {100 * float(sd):.{digits}f}%"


def num(x: Any, sd: Any = None) -> str:
    """``0.123`` (3 significant digits) or ``0.123 ± 0.01``; ``n/a`` when x is missing."""
    if not finite(x):
        return "n/a"
    text = f"{float(x):.3g}"
    return text if not finite(sd) else f"{text} ± {float(sd):.2g}"


def points(x: Any) -> str:
    """A difference of fractions in percentage points: ``+3.1``."""
    return "n/a" if not finite(x) else f"{100 * float(x):+.1f}"


def interval(effect: Any, low: Any, high: Any, unit: str = "points") -> str:
    """``+3.1 [+1.0, +5.2] points`` (fractions shown as points) or ``-0.41 [-0.52, -0.30]`` for plain numbers."""
    if not finite(effect):
        return "n/a"
    fmt = points if unit == "points" else (lambda v: "n/a" if not finite(v) else f"{float(v):+.3g}")
    ci = f" [{fmt(low)}, {fmt(high)}]" if finite(low) and finite(high) else " [no CI]"
    return f"{fmt(effect)}{ci}" + (" points" if unit == "points" else "")


P_SCIENTIFIC_BELOW = 1e-3  # smaller p-values are written in scientific notation (1.1e-49), never rounded to 0


def p_number(p: Any) -> str:
    """A p-value as text: ``0.012`` at or above 0.001, ``1.1e-49`` below (never ``0.000``); ``n/a`` if missing.

    The one rule for p-values in the report, claims.csv and the dashboard."""
    if not finite(p):
        return "n/a"
    p = float(p)
    if p == 0.0:
        return "0"
    return f"{p:.2g}" if p >= 1.0 else (f"{p:.3f}" if p >= P_SCIENTIFIC_BELOW else f"{p:.1e}")


def p_value(p: Any) -> str:
    """``p = 0.012``, ``p = 1.1e-49`` or ``p n/a`` (:func:`p_number`)."""
    return "p n/a" if not finite(p) else f"p = {p_number(p)}"


def round_significant(x: Any, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits, as ``f"{x:.3g}"`` writes it (NaN when missing): tables and
    cards then show the same number (11.37 -> 11.4 in both)."""
    return float(f"{float(x):.{digits}g}") if finite(x) else float("nan")


def md_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (values as given; format before)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines)
