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


def p_value(p: Any) -> str:
    """``p = 0.012``, ``p < 0.001`` or ``p n/a``."""
    if not finite(p):
        return "p n/a"
    return "p < 0.001" if float(p) < 0.001 else f"p = {float(p):.3f}"


def md_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (values as given; format before)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines)
