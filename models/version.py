"""The lab's version: one number, in ``pyproject.toml``, readable at run time.

Checkpoints, zoo manifests, reports and the dashboard record :func:`version_string` beside the git commit.
"""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "semantic-continuity-lab"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def package_version() -> str:
    """The version in the source tree's ``pyproject.toml`` when there is one, else the installed metadata's."""
    if _PYPROJECT.is_file():
        return tomllib.loads(_PYPROJECT.read_text())["project"]["version"]
    return metadata.version(DISTRIBUTION)


def git_commit(repo: Path | None = None) -> str:
    """The current git commit of the code (with '-dirty' if modified), or 'unknown'."""
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        # a staged report's own results (staging/, written while it runs) and a zoo being trained into (assets/zoo/,
        # whose checkpoints every result records by sha256) do not make the code dirty
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!staging", ":!assets/zoo"]
        dirty = subprocess.run(status, cwd=cwd, capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version_string() -> str:
    """``0.2.0``, with ``(commit 1a2b3c4d5e6f)`` appended when run from a git checkout."""
    commit = git_commit()
    return package_version() if commit == "unknown" else f"{package_version()} (commit {commit[:12]})"


__version__ = package_version()
