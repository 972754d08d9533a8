"""``scl-dashboard``: serve the dashboard with Streamlit from wherever the package is installed.

    scl-dashboard                      # http://127.0.0.1:8501 on the shipped zoo
    scl-dashboard --server.port 8600   # any further argument goes to ``streamlit run``
    SCL_ZOO=/path/to/zoo scl-dashboard
    scl-dashboard --version            # the lab's version (and git commit)

``SCL_ADDRESS`` and ``SCL_PORT`` set the address and port (as ``./lab dashboard`` does). The settings in the
repository's ``.streamlit/config.toml`` (upload limit, XSRF, no usage statistics...) are passed as flags, so they
hold whatever directory the command starts in.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

ENTRY = Path(__file__).resolve().parent / "streamlit_app.py"
CONFIG = ENTRY.parent.parent / ".streamlit" / "config.toml"


def config_flags(path: Path = CONFIG) -> list[str]:
    """``--section.key value`` flags for every setting in Streamlit's config file ``path`` (none if absent)."""
    if not path.is_file():
        return []
    flags = []
    for section, values in tomllib.loads(path.read_text()).items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{key}", text]
    return flags


def streamlit_argv(extra: list[str]) -> list[str]:
    """The ``streamlit run`` command line for the dashboard, with ``extra`` arguments appended."""
    return [
        "streamlit",
        "run",
        str(ENTRY),
        "--server.address",
        os.environ.get("SCL_ADDRESS", "127.0.0.1"),
        "--server.port",
        os.environ.get("SCL_PORT", "8501"),
        *config_flags(),
        *extra,
    ]


def main(argv: list[str] | None = None) -> int:
    """Run Streamlit in this process (what ``streamlit run`` does), serving app/streamlit_app.py."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args[: args.index("--") if "--" in args else len(args)]:  # the lab's version, not Streamlit's
        from models.version import version_string

        print(f"scl-dashboard {version_string()}")
        return 0
    from streamlit.web import cli as stcli

    sys.argv = streamlit_argv(args)
    return stcli.main()


if __name__ == "__main__":
    sys.exit(main())
