"""Where the shipped zoo, its results and the dashboard's Streamlit settings are, in a clone or an installed package.

In a clone they are the repository's ``assets/`` and ``.streamlit/config.toml``. A wheel (``pip install .``) installs
the same files under the environment's prefix, in ``share/semantic-continuity-lab/`` (``assets/`` and
``streamlit/config.toml``: ``[tool.setuptools.data-files]`` in ``pyproject.toml``). ``$SCL_ASSETS`` names another
assets folder (one holding ``zoo/`` and ``results/``) and wins over both.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path

ENV_ASSETS = "SCL_ASSETS"
SHARE = Path("share") / "semantic-continuity-lab"  # under the environment's prefix, for an installed wheel
REPO = Path(__file__).resolve().parent.parent  # the clone's root (site-packages for an installed wheel)

__all__ = ["ENV_ASSETS", "SHARE", "installed_roots", "assets_dir", "default_zoo", "results_root", "streamlit_config",
           "backend_config"]  # fmt: skip


def installed_roots() -> list[Path]:
    """Where a wheel may have put its shared files: ``<prefix>/share/semantic-continuity-lab`` for this
    environment's data path, its prefix and the user base (``pip install --user``)."""
    prefixes = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    return [Path(p) / SHARE for p in dict.fromkeys(p for p in prefixes if p)]


def _found(relative: str) -> Path | None:
    for root in [REPO, *installed_roots()]:
        if (root / relative).exists():
            return root / relative
    return None


def assets_dir() -> Path:
    """``$SCL_ASSETS``, else the clone's ``assets/``, else the installed copy (the clone's path when none exists)."""
    if os.environ.get(ENV_ASSETS):
        return Path(os.environ[ENV_ASSETS]).expanduser()
    return _found("assets") or REPO / "assets"


def default_zoo() -> Path:
    """The shipped zoo: ``<assets>/zoo/default``."""
    return assets_dir() / "zoo" / "default"


def results_root() -> Path:
    """The shipped results, one folder per zoo name: ``<assets>/results``."""
    return assets_dir() / "results"


def backend_config() -> Path:
    """``backend.yaml``, the compute backend's documented settings: the clone's, else the installed copy (the clone's
    path when neither exists)."""
    return _found("backend.yaml") or REPO / "backend.yaml"


def streamlit_config() -> Path | None:
    """The dashboard's Streamlit settings: the clone's ``.streamlit/config.toml`` or the installed copy (None if
    neither exists)."""
    clone = REPO / ".streamlit" / "config.toml"
    if clone.is_file():
        return clone
    return next((p for p in (r / "streamlit" / "config.toml" for r in installed_roots()) if p.is_file()), None)
