"""The command line of ``python -m models.train`` (``scl-train``): one flag per TrainConfig field, plus
``--force``, ``--strict``, ``--no-progress``, ``--num-threads`` and ``--version``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from models import train as train_module
from models.checkpoints import load_checkpoint
from models.cli import EXIT_INTERRUPTED, add_threads_argument, make_parser, run_cli
from models.errors import SettingsError
from models.runs import claim_out
from models.train_config import TrainConfig

EXIT_NEAR_CHANCE = 1  # --strict: the run ended within a few points of chance
# Where the command line's default differs from TrainConfig's (the library and the zoo recipes keep TrainConfig's).
CLI_DEFAULTS = {"min_epoch_steps": 40}
FLAGS = ("resume", "stream")  # booleans given bare (--resume), not as --flag true


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One --flag per TrainConfig field (underscores become dashes), each with help, default and choices."""
    parser = make_parser("python -m models.train", (train_module.__doc__ or "").split("\n")[0], allow_abbrev=False)
    defaults = TrainConfig()
    casts = {"int": int, "float": float, "str": str, "bool": _parse_bool}
    for f in dataclasses.fields(TrainConfig):
        flag, help_text = "--" + f.name.replace("_", "-"), f.metadata.get("help")
        if f.name in FLAGS:
            parser.add_argument(flag, action="store_true", help=help_text)
        elif f.name == "min_epoch_steps":
            parser.add_argument(
                flag,
                type=int,
                default=CLI_DEFAULTS[f.name],
                metavar="INT",
                help=f"{help_text}; an explicit --batch-size is always kept",
            )
        elif f.name == "num_threads":
            add_threads_argument(parser)
        else:
            type_name = str(f.type).replace(" | None", "")
            parser.add_argument(
                flag,
                type=casts.get(type_name, str),
                default=getattr(defaults, f.name),
                choices=f.metadata.get("choices"),
                metavar=None if f.metadata.get("choices") else type_name.upper(),
                help=help_text,
            )
    parser.add_argument(
        "--force",
        action="store_true",
        help="start afresh in an --out that holds a run, moving it aside to <out>.old-<timestamp>",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when the run ends within 5 points of chance")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def config_from_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The TrainConfig a command line asks for, and the command-only options (force, strict, no_progress)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = vars(build_parser().parse_args(argv))
    extra = argparse.Namespace(**{k: args.pop(k) for k in ("force", "strict", "no_progress")})
    args["num_threads"] = args["num_threads"] or None
    cfg = TrainConfig(**args)
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    if "--batch-size" in given:  # the user's batch size is never changed
        cfg = dataclasses.replace(cfg, min_epoch_steps=0)
    if cfg.init and not cfg.resume and not {"--network", "--width"} & given:
        spec = load_checkpoint(cfg.init)["network"]  # --init: the network is the checkpoint's
        cfg = dataclasses.replace(cfg, network=spec["name"], width=spec.get("width"))
    return cfg, extra


def _main(argv: list[str] | None) -> int:
    cfg, extra = config_from_args(argv)
    if int(os.environ.get("RANK", "0")) == 0:
        moved = claim_out(cfg.out, cfg.resume, extra.force)
        if moved is not None:
            print(f"--force: moved the earlier run in {cfg.out} aside to {moved}", file=sys.stderr)
    try:
        result = train_module.train(cfg, progress=not extra.no_progress)
    except KeyboardInterrupt:  # before the loop took over the signals: nothing was trained yet
        print("\ninterrupted before training started; nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError) as exc:  # e.g. an unknown network or data set name
        raise SettingsError(str(exc)) from exc
    if result.get("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_NEAR_CHANCE if extra.strict and result.get("near_chance") else 0


def main(argv: list[str] | None = None) -> int:
    """Parse, refuse to overwrite a run, train; errors are one line and exit 2, Ctrl-C exits 130."""
    return run_cli(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
