"""``scl-dashboard``: serve the dashboard with Streamlit from wherever the package is installed.

    scl-dashboard                              # http://127.0.0.1:8501 on the shipped zoo
    scl-dashboard --zoo zoos/mine --port 8600  # your own zoo, another port
    scl-dashboard --address 0.0.0.0            # reachable from other machines (as the Docker image does)
    scl-dashboard --device cpu                 # the compute backend on the CPU even with a GPU
    scl-dashboard -- --server.runOnSave true   # anything after -- goes to `streamlit run`
    scl-dashboard --version                    # the lab's version (and git commit)

``SCL_ZOO``, ``SCL_PORT``, ``SCL_ADDRESS`` and ``SCL_DEVICE`` set the same defaults (as ``./lab dashboard`` and the
Docker image use them). The dashboard's Streamlit settings (upload limit, XSRF protection, no usage statistics,
error details: the clone's ``.streamlit/config.toml``, installed with the wheel under
``<prefix>/share/semantic-continuity-lab/streamlit/``, see :mod:`models.assets`) are passed as flags, so they hold
for an installed package and whatever folder the command starts in.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

ENTRY = Path(__file__).resolve().parent / "streamlit_app.py"
DEVICES = ("auto", "cpu", "cuda")
STREAMLIT_OPTION = re.compile(r"--[a-zA-Z]+\.[a-zA-Z]+(=.*)?")  # --server.port, --browser.gatherUsageStats=false


def config_flags(path: Path | None = None) -> list[str]:
    """``--section.key value`` flags for every setting in Streamlit's config file ``path`` (default: the
    dashboard's, :func:`models.assets.streamlit_config`; none if absent)."""
    if path is None:
        from models.assets import streamlit_config

        path = streamlit_config()
    if path is None or not path.is_file():
        return []
    flags = []
    for section, values in tomllib.loads(path.read_text()).items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{key}", text]
    return flags


def build_parser() -> argparse.ArgumentParser:
    from models.assets import default_zoo
    from models.cli import make_parser

    parser = make_parser(
        "scl-dashboard",
        "Serve the Semantic Continuity Lab dashboard (Streamlit) on a zoo.",
        epilog="Arguments after -- go to `streamlit run` unchanged (e.g. -- --server.runOnSave true); Streamlit "
        "options of the form --section.key VALUE are passed on too.",
    )
    parser.add_argument("--zoo", default=os.environ.get("SCL_ZOO") or str(default_zoo()),
                        help="zoo folder to open first ($SCL_ZOO, else the shipped zoo)")  # fmt: skip
    parser.add_argument("--port", type=int, default=int(os.environ.get("SCL_PORT") or 8501),
                        help="port to serve on ($SCL_PORT)")  # fmt: skip
    parser.add_argument("--address", default=os.environ.get("SCL_ADDRESS") or "127.0.0.1",
                        help="address to serve on ($SCL_ADDRESS; 0.0.0.0 for every interface)")  # fmt: skip
    parser.add_argument("--device", choices=DEVICES, default=os.environ.get("SCL_DEVICE") or "auto",
                        help="the compute backend's device for predictions and maps ($SCL_DEVICE; auto: CUDA when "
                        "available)")  # fmt: skip
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The lab's options and the arguments for ``streamlit run`` (after ``--``, and ``--section.key`` options)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv[:cut])
    passed = []
    for i, arg in enumerate(unknown):
        if STREAMLIT_OPTION.fullmatch(arg):
            passed.append(arg)
        elif i and STREAMLIT_OPTION.fullmatch(unknown[i - 1]) and "=" not in unknown[i - 1]:
            passed.append(arg)  # the value of the option before it
        else:
            parser.error(f"unrecognized argument: {arg} (Streamlit's options go after --)")
    if args.port <= 0 or args.port > 65535:
        parser.error(f"--port {args.port}: not a port number (1-65535)")
    return args, passed + argv[cut + 1 :]


def streamlit_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The ``streamlit run`` command line for the dashboard, with ``extra`` arguments appended."""
    from analysis.public_mode import is_public

    entry = ENTRY.with_name("asgi_app.py") if is_public() else ENTRY  # public: framing/CSP headers, no metrics
    return ["streamlit", "run", str(entry), "--server.address", args.address, "--server.port", str(args.port),
            *config_flags(), *extra]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run Streamlit in this process (what ``streamlit run`` does), serving app/streamlit_app.py."""
    from models.assets import default_zoo

    args, extra = parse(list(sys.argv[1:] if argv is None else argv))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: no CUDA GPU is available on this machine", file=sys.stderr)
            return 2
    zoo = Path(args.zoo).expanduser()
    if not zoo.is_dir() and zoo != default_zoo():  # no shipped zoo: the app itself says how to make one
        print(f"error: --zoo {zoo}: no such folder (a zoo is a folder with zoo.json)", file=sys.stderr)
        return 2
    os.environ["SCL_ZOO"] = str(zoo.resolve())
    os.environ["SCL_DEVICE"] = args.device
    from streamlit.web import cli as stcli

    sys.argv = streamlit_argv(args, extra)
    return stcli.main()


if __name__ == "__main__":
    sys.exit(main())
