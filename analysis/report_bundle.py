"""A report folder as something to read and keep: REPORT.md split into text and figures (so a page can show each
figure where the text puts it), the report as one zip (REPORT.md, claims and figures/), or as one Markdown file
with its figures embedded as data URIs. Pure functions of the folder (no Streamlit)."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

FIGURE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<path>[^)\s]+)\)\s*$")
BUNDLED = ("REPORT.md", "claims.csv", "claims.json", "claim_tests.csv", "summary.json")  # beside figures/*.png
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Part:
    """A run of Markdown text, or one figure (``path`` relative to the report folder, ``alt`` its caption)."""

    text: str = ""
    path: str | None = None
    alt: str = ""


def split_report(markdown: str) -> list[Part]:
    """REPORT.md as text parts and figure parts, in order: a figure is a line holding only ``![alt](path)``."""
    parts: list[Part] = []
    lines: list[str] = []
    for line in markdown.splitlines():
        found = FIGURE_LINE.match(line.strip())
        if found is None:
            lines.append(line)
            continue
        if "".join(lines).strip():
            parts.append(Part(text="\n".join(lines)))
        lines = []
        parts.append(Part(path=found["path"], alt=found["alt"]))
    if "".join(lines).strip():
        parts.append(Part(text="\n".join(lines)))
    return parts


def figure_file(folder: str | Path, path: str) -> Path | None:
    """The figure file a report links to, when it exists inside the report folder (a link out of it: None)."""
    root = Path(folder).resolve()
    target = (root / path).resolve()
    return target if target.is_file() and target.is_relative_to(root) else None


def report_figures(folder: str | Path) -> list[Path]:
    """Every figure in the folder's figures/ (sorted)."""
    figures = Path(folder) / "figures"
    return sorted(p for p in figures.glob("*") if p.is_file() and p.suffix.lower() in MIME) if figures.is_dir() else []


def report_zip(folder: str | Path) -> bytes:
    """The report as a zip: REPORT.md, the claims and summary files present, and figures/ (the paths REPORT.md
    links to, so the unpacked folder reads with its figures)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in BUNDLED:
            if (folder / name).is_file():
                zf.write(folder / name, name)
        for fig in report_figures(folder):
            zf.write(fig, f"figures/{fig.name}")
    return buf.getvalue()


def inline_figures(markdown: str, folder: str | Path) -> str:
    """REPORT.md as one self-contained file: each figure link replaced by a ``data:`` URI of the image."""
    out = []
    for line in markdown.splitlines():
        found = FIGURE_LINE.match(line.strip())
        file = figure_file(folder, found["path"]) if found else None
        if file is None:
            out.append(line)
            continue
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        mime = MIME.get(file.suffix.lower(), "application/octet-stream")
        out.append(f"![{found['alt']}](data:{mime};base64,{data})")
    return "\n".join(out) + ("\n" if markdown.endswith("\n") else "")
