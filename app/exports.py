"""What a researcher takes away from a page: every chart as SVG from plotly's own modebar (the camera icon; drawn
in the browser by plotly.js, so the server needs no kaleido), and the numbers behind it as CSV with a header of
``# key: value`` lines saying where they came from (zoo, data set, source file, settings).

``csv_bytes`` / ``read_csv_export`` are the format (pure), ``csv_download`` the button, ``chart`` a plotly chart
with both, ``provenance`` the header every page starts from.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from models.version import package_version

__all__ = ["chart", "csv_bytes", "csv_download", "figure_config", "provenance", "read_csv_export", "safe_name"]


def safe_name(name: str) -> str:
    """A file name from ``name``: letters, digits, dots, dashes and underscores only ("ADV+C" -> "ADVplusC")."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name).replace("+", "plus")).strip("._")
    return text or "export"


def csv_bytes(df: pd.DataFrame, header: Mapping[str, object]) -> bytes:
    """``df`` as UTF-8 CSV after one ``# key: value`` line per ``header`` item (newlines in values flattened)."""
    lines = "".join(f"# {k}: {' '.join(str(v).split())}\n" for k, v in header.items())
    return (lines + df.to_csv(index=False)).encode("utf-8")


def read_csv_export(data: bytes | str) -> tuple[dict[str, str], pd.DataFrame]:
    """A file written by ``csv_bytes`` read back: (header, table). Only the leading ``#`` lines are the header
    (a cell such as an anchor named "#12" stays data; ``pandas.read_csv(comment="#")`` would cut it)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    header: dict[str, str] = {}
    body = text.splitlines(keepends=True)
    skip = 0
    for line in body:
        if not line.startswith("# "):
            break
        key, _, value = line[2:].rstrip("\n").partition(": ")
        header[key] = value
        skip += 1
    return header, pd.read_csv(io.StringIO("".join(body[skip:])))


def provenance(ctx: Any, source: str | None = None, **settings: object) -> dict[str, object]:
    """The header of a page's exports: the zoo, its data set, the result file the numbers come from, the page's
    settings (``settings``, e.g. variant, method), the lab version and the date (UTC)."""
    handle = getattr(ctx, "handle", None)
    out: dict[str, object] = {"zoo": getattr(handle, "name", "?"), "data set": getattr(ctx, "dataset_name", "?")}
    if source:
        out["source"] = source
    out.update({k.replace("_", " "): v for k, v in settings.items() if v is not None})
    out["lab version"] = package_version()
    out["exported"] = datetime.now(UTC).strftime("%Y-%m-%d")
    return out


def figure_config(name: str) -> dict[str, Any]:
    """Plotly config of a chart: the modebar's camera icon saves an SVG named after ``name`` (plotly.js in the
    browser; a PNG is one step from the SVG in any viewer)."""
    return {"toImageButtonOptions": {"format": "svg", "filename": safe_name(name)}, "displaylogo": False}


def csv_download(df: pd.DataFrame, name: str, header: Mapping[str, object], key: str | None = None,
                 label: str = "Numbers (CSV)") -> None:  # fmt: skip
    """A download button for ``df`` as ``<name>.csv`` with its provenance ``header`` (no rerun on click)."""
    st.download_button(label, csv_bytes(df, header), file_name=f"{safe_name(name)}.csv", mime="text/csv",
                       key=key or f"csv_{safe_name(name)}", on_click="ignore",
                       help="The chart's numbers; the first lines say where they came from.")  # fmt: skip


def chart(fig: go.Figure, key: str, name: str, table: pd.DataFrame | None = None,
          header: Mapping[str, object] | None = None, **kwargs: Any) -> Any:  # fmt: skip
    """``st.plotly_chart`` with an SVG modebar download named ``name`` and, when ``table`` is given, its numbers
    as a CSV button under it (key ``<key>_csv``). Returns what ``st.plotly_chart`` returns (a selection event)."""
    config = {**figure_config(name), **kwargs.pop("config", {})}
    event = st.plotly_chart(fig, key=key, config=config, **kwargs)
    if table is not None:
        csv_download(table, name, header or {}, key=f"{key}_csv")
    return event
