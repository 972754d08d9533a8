"""What changed between two reports' verdicts: ``scl-claims-diff OLD NEW``.

A report regenerated on a retrained zoo, with more seeds or on new code decides its claims again; a reader (and
the README's claims table) needs each verdict that moved, beside the evidence it moved with (the n it rests on,
its effect and interval). OLD and NEW are report folders (their pooled ``across_seeds/claims.csv`` where it
exists, else their ``claims.csv``: the same headline the dashboard and the README take) or claims CSV files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.results_store import ACROSS_SEEDS

COMPARED = ("verdict", "control_verdict", "secondary_verdict", "scope")  # what a reader reads as the decision
EVIDENCE = {"n": "n", "effect_ci": "effect"}  # claims column -> the change table's name
ABSENT = "(no such claim)"
CHANGE_COLUMNS = ["key", "field", "before", "after", "n_before", "n_after", "effect_before", "effect_after"]


def headline_claims(path: str | Path) -> pd.DataFrame:
    """A report folder's headline claims (pooled over training seeds where it has them) or a claims CSV."""
    path = Path(path)
    if path.is_dir():
        pooled = path / ACROSS_SEEDS / "claims.csv"
        path = pooled if pooled.is_file() else path / "claims.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no claims table (give a report folder or a claims CSV)")
    claims = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "key" not in claims.columns or "verdict" not in claims.columns:
        raise ValueError(f"{path}: not a claims table (it needs the columns key and verdict)")
    return claims


def verdict_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """One row per claim and decision field that differs (a claim only one side has: field ``verdict``, the other
    side ``(no such claim)``), with each side's n and effect; claims in the order of ``after``, then removed ones."""
    old, new = before.set_index("key"), after.set_index("key")
    keys = [*new.index, *[k for k in old.index if k not in new.index]]
    fields = [f for f in COMPARED if f in new.columns or f in old.columns]
    rows = []
    for key in keys:
        a = old.loc[key] if key in old.index else None
        b = new.loc[key] if key in new.index else None
        for field in fields:
            was = ABSENT if a is None else str(a.get(field, ""))
            now = ABSENT if b is None else str(b.get(field, ""))
            if was != now and (field == "verdict" or (a is not None and b is not None)):
                sides = (("before", a), ("after", b))
                rows.append({"key": key, "field": field, "before": was, "after": now,
                             **{f"{name}_{side}": "" if r is None else str(r.get(col, ""))
                                for col, name in EVIDENCE.items() for side, r in sides}})  # fmt: skip
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


def markdown(changes: pd.DataFrame) -> str:
    """The changes as a Markdown table (or one line saying there are none)."""
    if changes.empty:
        return "No verdict changed."
    cells = changes.astype(str).apply(lambda c: c.str.replace("|", "\\|"))
    lines = ["| " + " | ".join(CHANGE_COLUMNS) + " |", "|" + "---|" * len(CHANGE_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scl-claims-diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the earlier report folder or claims CSV")
    parser.add_argument("after", help="the later report folder or claims CSV")
    parser.add_argument("--csv", help="also write the changes to this CSV file")
    args = parser.parse_args(argv)
    try:
        changes = verdict_changes(headline_claims(args.before), headline_claims(args.after))
        if args.csv:
            changes.to_csv(args.csv, index=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
