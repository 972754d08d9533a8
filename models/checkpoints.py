"""Self-describing checkpoints, safe loading, and the model zoo.

A checkpoint is a plain dict of tensors and JSON-like values, loaded only with
``torch.load(..., weights_only=True)``, so a file can never run code:

    format, variant, network (how to rebuild it), model (state_dict), config
    (the TrainConfig as a dict), dataset (its description), metrics, git_commit,
    created, and optionally ``training_state`` (optimiser, RNG, step) for resume.

A *zoo* is a folder holding checkpoints and a ``zoo.json`` manifest naming each
variant's file, its sha256 and its model card; loading verifies every hash.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.networks import Classifier, create_network, unwrap_model

CHECKPOINT_FORMAT = "scl-checkpoint/1"
ZOO_FORMAT = "scl-zoo/1"
ZOO_MANIFEST = "zoo.json"


class CheckpointError(Exception):
    """A checkpoint or zoo that is missing, unsafe, corrupt or of the wrong kind."""


def git_commit(repo: Path | None = None) -> str:
    """The current git commit of the code (with '-dirty' if modified), or 'unknown'."""
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Write with ``torch.save`` to a temp file in the same folder, then rename over ``path``.

    An interrupted write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def network_spec(name: str, num_classes: int, width: int | None) -> dict[str, Any]:
    """What ``create_network`` needs to rebuild a network."""
    return {"name": name, "num_classes": int(num_classes), "width": width}


def make_checkpoint(
    model: torch.nn.Module,
    *,
    variant: str,
    network: dict[str, Any],
    config: dict[str, Any],
    dataset: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict (weights on the CPU)."""
    state = {k: v.detach().cpu().clone() for k, v in unwrap_model(model).state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "variant": variant,
        "network": network,
        "model": state,
        "config": config,
        "dataset": dataset,
        "metrics": metrics or {},
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if training_state is not None:
        ckpt["training_state"] = training_state
    return ckpt


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check it is one of ours.

    Raises CheckpointError for a missing file, a file carrying pickled code or
    other objects, or a file that is not a Semantic Continuity Lab checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (corrupt zip), EOFError...
        raise CheckpointError(
            f"refused to load {path}: not a safe weights-only checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a Semantic Continuity Lab checkpoint (expected format {CHECKPOINT_FORMAT})"
        )
    missing = {"variant", "network", "model", "config", "dataset", "metrics"} - ckpt.keys()
    if missing:
        raise CheckpointError(f"{path} lacks fields: {', '.join(sorted(missing))}")
    return ckpt


def build_model(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> Classifier:
    """Rebuild the network a checkpoint describes and load its weights (eval mode)."""
    spec = ckpt["network"]
    model = create_network(spec["name"], spec["num_classes"], width=spec.get("width"))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit network {spec}: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Load a checkpoint file into a ready model; returns (model, checkpoint without weights)."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt, device)
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "training_state")}
    return model, meta


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ZooEntry:
    """One variant of a zoo: its model (eval mode), checkpoint metadata and card."""

    variant: str
    model: Classifier
    meta: dict[str, Any]
    card: dict[str, Any]
    path: Path


@dataclass
class Zoo:
    """A loaded zoo: variants in manifest order."""

    path: Path
    manifest: dict[str, Any]
    entries: dict[str, ZooEntry] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        return list(self.entries)

    @property
    def models(self) -> dict[str, Classifier]:
        return {name: e.model for name, e in self.entries.items()}

    @property
    def dataset(self) -> dict[str, Any]:
        return self.manifest.get("dataset", {})

    def __getitem__(self, variant: str) -> ZooEntry:
        return self.entries[variant]


def write_zoo_manifest(
    folder: str | os.PathLike,
    files: dict[str, str],
    cards: dict[str, dict[str, Any]],
    name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``zoo.json`` for checkpoints already in ``folder``: ``files`` maps variant -> file name."""
    folder = Path(folder)
    variants = {}
    dataset: dict[str, Any] = {}
    for variant, fname in files.items():
        ckpt = load_checkpoint(folder / fname)
        dataset = dataset or ckpt["dataset"]
        variants[variant] = {"file": fname, "sha256": sha256_file(folder / fname), "card": cards.get(variant, {})}
    manifest = {
        "format": ZOO_FORMAT,
        "name": name or folder.name,
        "dataset": dataset,
        "variants": variants,
        **(extra or {}),
    }
    tmp = folder / f".{ZOO_MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, folder / ZOO_MANIFEST)
    return folder / ZOO_MANIFEST


def read_zoo_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Parse and check a zoo's manifest (no models loaded)."""
    folder = Path(folder)
    mpath = folder / ZOO_MANIFEST
    if not mpath.is_file():
        raise CheckpointError(
            f"no {ZOO_MANIFEST} in {folder}: a zoo is a folder of checkpoints with a manifest "
            f"(make one with `python -m models.train_zoo --out {folder}`)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{mpath} is not valid JSON: {exc}") from exc
    if manifest.get("format") != ZOO_FORMAT or not isinstance(manifest.get("variants"), dict):
        raise CheckpointError(f"{mpath} is not a zoo manifest (expected format {ZOO_FORMAT})")
    return manifest


def load_zoo(folder: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True) -> Zoo:
    """Load every variant of a zoo, verifying sha256 hashes against the manifest."""
    folder = Path(folder)
    manifest = read_zoo_manifest(folder)
    zoo = Zoo(folder, manifest)
    for variant, item in manifest["variants"].items():
        path = folder / item["file"]
        if not path.is_file():
            raise CheckpointError(f"zoo {folder}: file {item['file']} of variant {variant} is missing")
        if verify and sha256_file(path) != item.get("sha256"):
            raise CheckpointError(
                f"zoo {folder}: sha256 of {item['file']} does not match {ZOO_MANIFEST} (file changed or corrupt)"
            )
        model, meta = load_model(path, device)
        zoo.entries[variant] = ZooEntry(variant, model, meta, item.get("card", {}), path)
    return zoo
