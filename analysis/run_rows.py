"""A scored training run's row, kept as a small JSON file beside (or instead of) its checkpoints.

The colour bias and the transfer fine-tunes train many short runs; a report split over sessions whose training
folders do not survive keeps just these few-hundred-byte files (e.g. committed) and never retrains or rescores a
run it has scored. A row is trusted only for the very run it was written for: its ``identity`` (the resolved
training configuration, the training and test images, anything else the score depends on, such as the source
checkpoint's sha256) must compare equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.safe_output import temp_sibling


def normalised(identity: Mapping[str, Any]) -> dict[str, Any]:
    """``identity`` as it reads back from JSON (tuples as lists, paths as text), so that it compares equal to a
    stored one."""
    return json.loads(json.dumps(dict(identity), default=str))


def stored_row(run_dir: str | os.PathLike, identity: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """The row scored earlier for this very run (file ``name`` in ``run_dir``, same identity), or None (absent,
    unreadable, damaged or another run's)."""
    try:
        doc = json.loads((Path(run_dir) / name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("identity") != normalised(identity) or not isinstance(doc.get("row"), dict):
        return None
    return doc["row"]


def store_row(run_dir: str | os.PathLike, identity: Mapping[str, Any], row: Mapping[str, Any], name: str) -> None:
    """Write the row file atomically (a stopped write leaves no half file that a rerun would trust)."""
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_text(json.dumps({"identity": normalised(identity), "row": dict(row)}, indent=1, default=float) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
