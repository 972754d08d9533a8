"""Assemble a zoo folder from any checkpoints or training run folders.

    python -m models.zoo --out zoos/mine \\
        --variant standard=runs/standard --variant mine=imported/resnet18.pt --role mine=baseline

Each ``--variant NAME=PATH`` names a lab checkpoint (``.pt``, e.g. one written by
``models.import_model``) or a run folder of ``models.train`` (its finished ``model.pt``).
Names are free; each variant has a *role* (``models.roles.ROLES``) saying what it stands for in the
comparison, given with ``--role NAME=ROLE`` or by default from its name (the registered training
variants know theirs: ``standard`` is the baseline, ``C`` constrained...; any other name is
``other``). All variants must share data set, classes and input size, else
:class:`~models.checkpoints.ZooMismatchError` (a :class:`~models.errors.ZooError`). The checkpoints
are copied into the folder and ``zoo.json`` records each file's sha256 and role.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.cli import make_parser, run_cli
from models.errors import ZooError
from models.roles import ROLES, check_role, default_role
from models.safe_output import folder_lock, replacing

RUN_FINAL_FILE = "model.pt"  # what a finished models.train run folder holds (models.train.FINAL_FILE)
RUN_RESUME_FILE = "checkpoint.pt"


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file behind ``path``: the file itself, or a finished run folder's ``model.pt``."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / RUN_FINAL_FILE).is_file():
            return path / RUN_FINAL_FILE
        if (path / RUN_RESUME_FILE).is_file():
            raise ZooError(f"{path} is an unfinished training run (only {RUN_RESUME_FILE}); finish it with --resume")
        raise ZooError(f"{path} holds no {RUN_FINAL_FILE}: give a checkpoint or a finished models.train run folder")
    raise ZooError(f"{path} does not exist")


def _file_name(variant: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9+._-]", "_", variant).lstrip(".") or "variant"
    name, i = f"{stem}.pt", 1
    while name in taken:
        i += 1
        name = f"{stem}-{i}.pt"
    taken.add(name)
    return name


def _card(variant: str, role: str, source: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """A minimal model card: where the checkpoint came from and what it says about itself."""
    metrics = {k: v for k, v in (ckpt.get("metrics") or {}).items() if k != "history"}
    objective = None
    try:
        from models.objectives import get_variant

        registered = get_variant(str(ckpt.get("variant")))
        objective = registered.objective if registered else None
    except ImportError:  # pragma: no cover
        pass
    card = {
        "variant": variant,
        "role": role,
        "source": str(source),
        "network": ckpt["network"].get("name"),
        "dataset": ckpt.get("dataset", {}),
        "metrics": metrics,
    }
    if objective:
        card["objective"] = objective
    if "import" in (ckpt.get("config") or {}):
        card["imported_from"] = ckpt["config"]["import"]
    return card


def assemble_zoo(
    out: str | Path,
    variants: dict[str, str | Path],
    roles: dict[str, str] | None = None,
    name: str | None = None,
    force: bool = False,
    allow_nan: bool = False,
) -> Path:
    """Copy the checkpoints ``variants`` (name -> checkpoint or run folder) into ``out`` and write ``zoo.json``.

    Returns the manifest's path. Raises ZooError for an unknown role, a role for a variant not
    given, an existing zoo in ``out`` (unless ``force``, which keeps it as ``<out>.old-<timestamp>``),
    or variants that disagree on data set, classes or input size; CheckpointError for a file that is
    not a safe lab checkpoint; OutputInUse while another process writes ``out``. The zoo is written
    into a temporary sibling and swapped in only when complete (``models.safe_output``).
    """
    from models.checkpoints import (
        ZOO_MANIFEST,
        check_finite,
        check_same_data,
        data_signature,
        load_checkpoint,
        write_zoo_manifest,
    )

    roles = dict(roles or {})
    if not variants:
        raise ZooError("a zoo needs at least one --variant NAME=PATH")
    unknown = sorted(set(roles) - set(variants))
    if unknown:
        raise ZooError(f"--role given for {', '.join(unknown)}, which no --variant names")
    out = Path(out).expanduser()
    if (out / ZOO_MANIFEST).exists() and not force:
        raise ZooError(f"{out} already holds a zoo ({ZOO_MANIFEST}); pass --force to replace it")
    sources = {v: resolve_checkpoint(p) for v, p in variants.items()}
    ckpts = {v: load_checkpoint(p) for v, p in sources.items()}
    for variant, ckpt in ckpts.items():  # a zoo of NaN weights would load nowhere
        check_finite(ckpt, sources[variant], allow_nan)
    check_same_data({v: data_signature(c) for v, c in ckpts.items()}, f"zoo {out}")
    roles = {v: check_role(roles.get(v) or default_role(v)) for v in variants}
    with folder_lock(out, "zoo writer"), replacing(out, folder=True) as staged:  # swapped in once complete
        files, cards, taken = {}, {}, set()
        for variant, source in sources.items():
            files[variant] = _file_name(variant, taken)
            shutil.copyfile(source, staged.path / files[variant])
            cards[variant] = _card(variant, roles[variant], source, ckpts[variant])
        write_zoo_manifest(staged.path, files, cards, name=name or out.name, roles=roles)
    if staged.kept is not None:
        print(f"kept the earlier {out} as {staged.kept} (nothing is deleted)", file=sys.stderr)
    return out / ZOO_MANIFEST


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; ZooError for a malformed or repeated name."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ZooError(f"{flag} {item!r}: expected NAME=VALUE")
        if key in pairs:
            raise ZooError(f"{flag}: {key!r} given twice")
        pairs[key] = value
    return pairs


def build_parser() -> argparse.ArgumentParser:
    roles = "; ".join(f"{r}: {d}" for r, d in ROLES.items())
    parser = make_parser("scl-zoo-assemble", "Build a zoo folder (zoo.json) from checkpoints or run folders.")
    parser.add_argument("--out", required=True, help="zoo folder to write")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a variant: any name, and a lab checkpoint or a finished models.train run folder (repeat)",
    )
    parser.add_argument(
        "--role", action="append", default=[], metavar="NAME=ROLE", help=f"role of variant NAME (repeat). {roles}"
    )
    parser.add_argument("--name", help="the zoo's name (default: the folder name)")
    parser.add_argument(
        "--allow-nan", action="store_true", help="accept checkpoints holding NaN or infinite weights (with a warning)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a zoo already in --out, keeping it as <out>.old-<timestamp>"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        path = assemble_zoo(
            args.out,
            _pairs(args.variant, "--variant"),
            _pairs(args.role, "--role"),
            args.name,
            args.force,
            args.allow_nan,
        )
        from models.checkpoints import manifest_roles, read_zoo_manifest

        manifest = read_zoo_manifest(path.parent)
        for variant, role in manifest_roles(manifest).items():
            print(f"{variant}: {manifest['variants'][variant]['file']} (role {role})")
        print(f"wrote {path} (data set {manifest['dataset'].get('name', '?')})")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
