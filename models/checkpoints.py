"""Self-describing checkpoints, safe loading, and the model zoo.

A checkpoint is a plain dict of tensors and JSON-like values, loaded only with
``torch.load(..., weights_only=True)``, so a file can never run code:

    format, variant, network (how to rebuild it), model (state_dict), config
    (the TrainConfig as a dict), dataset (its description), metrics, git_commit,
    lab_version (the package version), created, and optionally ``training_state``
    (optimiser, RNG, step) for resume.

A *zoo* is a folder holding checkpoints and a ``zoo.json`` manifest naming each
variant's file, its sha256, its role (see ``models.roles.ROLES``) and its model card;
loading verifies every hash and that all variants share data set, classes and input
size. Build one from any checkpoints or run folders with ``python -m models.zoo``.

Networks trained elsewhere become checkpoints with ``python -m models.import_model``;
their ``network`` spec names ``"torchvision:<arch>"`` or ``"timm:<arch>"`` and carries
``mean``, ``std``, ``gradcam_layer``, ``classifier`` and ``input_size``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch

from models.errors import LabError, ZooError
from models.networks import Classifier, network_from_spec, unwrap_model
from models.safe_output import OutputError, remove_stale_temps, temp_sibling
from models.version import git_commit, package_version

CHECKPOINT_FORMAT = "scl-checkpoint/1"
ZOO_FORMAT = "scl-zoo/1"
ZOO_MANIFEST = "zoo.json"


class CheckpointError(LabError):
    """A checkpoint or zoo that is missing, unsafe, corrupt or of the wrong kind."""


class ZooMismatchError(ZooError, CheckpointError):
    """A zoo whose variants (or manifest) disagree on data set, classes or input size."""


_SAVE_WEIGHTS_HINT = (
    "save the weights alone, `torch.save(model.state_dict(), 'weights.pt')` (or a .safetensors file), "
    "and turn them into a lab checkpoint with `python -m models.import_model`"
)


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a ``torch.jit.save`` archive (a zip holding ``code/`` or ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` whose refusals are explained in the lab's words.

    TorchScript archives and pickles of Python objects (a whole model saved with
    ``torch.save(model)``) are refused with what to do instead; nothing is ever
    unpickled beyond tensors and plain containers.
    """
    path = Path(path)
    if is_torchscript_archive(path):
        raise CheckpointError(
            f"refused to load {path}: it is a TorchScript archive (torch.jit.save), which carries code the lab "
            f"never runs; {_SAVE_WEIGHTS_HINT}"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it names {found.group(1)})" if found else ""
        raise CheckpointError(
            f"refused to load {path}: it holds pickled Python objects{what}, not only tensors, and unpickling "
            f"them could run code; {_SAVE_WEIGHTS_HINT}"
        ) from exc
    except Exception as exc:  # RuntimeError (corrupt zip), EOFError, OSError...
        raise CheckpointError(
            f"refused to load {path}: not a readable torch file ({type(exc).__name__}); truncated or corrupt?"
        ) from exc


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Write with ``torch.save`` to a temp file in the same folder, then rename over ``path``.

    An interrupted write leaves the previous file intact; a full disk is an OutputError (one line); temporary
    files left by a killed process are removed on the next save.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # left by a process killed mid-write (kill -9)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        except (RuntimeError, OSError) as exc:  # torch reports a full disk as "[enforce fail at ...]"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OutputError(f"cannot write {path}: {reason} (is the disk full or the folder read-only?)") from exc
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def network_spec(name: str, num_classes: int, width: int | None, **options: Any) -> dict[str, Any]:
    """What ``create_network`` needs to rebuild a network.

    ``options`` (``models.networks.NETWORK_OPTIONS``: mean, std, gradcam_layer, classifier,
    input_size) are kept when not None; imported networks carry them all.
    """
    spec = {"name": name, "num_classes": int(num_classes), "width": width}
    return spec | {k: v for k, v in options.items() if v is not None}


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
        "lab_version": package_version(),
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
    if path.suffix == ".safetensors":
        raise CheckpointError(
            f"{path} is a safetensors file, not a Semantic Continuity Lab checkpoint: turn it into one with "
            "`python -m models.import_model`"
        )
    ckpt = safe_torch_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a Semantic Continuity Lab checkpoint (expected format {CHECKPOINT_FORMAT}); "
            "a torchvision or timm state_dict becomes one with `python -m models.import_model`"
        )
    missing = {"variant", "network", "model", "config", "dataset", "metrics"} - ckpt.keys()
    if missing:
        raise CheckpointError(f"{path} lacks fields: {', '.join(sorted(missing))}")
    return ckpt


def non_finite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    return [
        k for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]  # fmt: skip


def check_finite(ckpt: dict[str, Any], where: str | os.PathLike, allow_nan: bool = False) -> None:
    """CheckpointError when the weights hold NaN or infinite values; with ``allow_nan`` a warning on stderr."""
    bad = non_finite_tensors(ckpt.get("model") or {})
    if not bad:
        return
    message = f"{where} holds non-finite weights (NaN or inf) in {len(bad)} tensor(s), e.g. {', '.join(bad[:3])}"
    if not allow_nan:
        raise CheckpointError(f"{message}; refused (pass --allow-nan to load it anyway)")
    print(f"warning: {message}; loaded because of --allow-nan", file=sys.stderr)


def build_model(
    ckpt: dict[str, Any], device: str | torch.device = "cpu", allow_nan: bool = False, where: str = "checkpoint"
) -> Classifier:
    """Rebuild the network a checkpoint describes and load its weights (eval mode); non-finite weights are
    refused unless ``allow_nan`` (see :func:`check_finite`)."""
    check_finite(ckpt, where, allow_nan)
    spec = ckpt["network"]
    try:
        model = network_from_spec(spec)
    except (ValueError, ImportError) as exc:
        raise CheckpointError(f"cannot rebuild network {spec}: {exc}") from exc
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit network {spec}: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval()


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", allow_nan: bool = False
) -> tuple[Classifier, dict[str, Any]]:
    """Load a checkpoint file into a ready model; returns (model, checkpoint without weights)."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt, device, allow_nan, where=str(path))
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
    sha256: str | None = None  # the manifest's (verified when loaded with verify=True)


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

    @property
    def roles(self) -> dict[str, str]:
        """Variant name -> role (``models.roles.ROLES``): the manifest's, else the default for the name."""
        return manifest_roles(self.manifest, self.variants)

    def __getitem__(self, variant: str) -> ZooEntry:
        return self.entries[variant]


def data_signature(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What variants of one zoo must share: data set name, classes (or their number) and input size.

    ``ckpt`` is a checkpoint or its metadata; unknown fields are None (and never compared).
    """
    dataset, config, network = ckpt.get("dataset") or {}, ckpt.get("config") or {}, ckpt.get("network") or {}
    classes = dataset.get("classes")
    shape = dataset.get("image_shape")
    size = shape[-1] if isinstance(shape, list | tuple) and shape else None
    return {
        "dataset": dataset.get("name") or config.get("dataset"),
        "classes": list(classes) if classes else None,
        "num_classes": dataset.get("num_classes") or (len(classes) if classes else None) or network.get("num_classes"),
        "input_size": size or config.get("image_size") or network.get("input_size"),
    }


def check_same_data(signatures: dict[str, dict[str, Any]], where: str) -> None:
    """Raise ZooMismatchError unless all ``signatures`` (name -> :func:`data_signature`) agree where known."""
    for key in ("dataset", "num_classes", "classes", "input_size"):
        values = {name: sig[key] for name, sig in signatures.items() if sig.get(key) is not None}
        if len({json.dumps(v) for v in values.values()}) > 1:
            listed = "; ".join(f"{name}: {v}" for name, v in values.items())
            raise ZooMismatchError(
                f"{where}: variants must share data set, classes and input size, but their {key} differ ({listed})"
            )


def manifest_roles(manifest: dict[str, Any], variants: list[str] | None = None) -> dict[str, str]:
    """Variant -> role from a manifest; variants without one (older manifests) get the default for their name."""
    from models.roles import default_role

    items = manifest.get("variants", {})
    names = list(items) if variants is None else variants
    return {v: str((items.get(v) or {}).get("role") or default_role(v)) for v in names}


def write_zoo_manifest(
    folder: str | os.PathLike,
    files: dict[str, str],
    cards: dict[str, dict[str, Any]],
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    roles: dict[str, str] | None = None,
    replicas: dict[str, dict[int, tuple[str, dict[str, Any]]]] | None = None,
) -> Path:
    """Write ``zoo.json`` for checkpoints already in ``folder``: ``files`` maps variant -> file name.

    ``roles`` maps variant -> role (default: by name, see ``models.roles.default_role``). ``replicas`` maps
    variant -> {seed: (file name, card)} for the variant's checkpoints of other seeds (``models.replicas``).
    Refuses (ZooMismatchError) checkpoints that disagree on data set, classes or input size.
    """
    from models.roles import check_role, default_role

    folder = Path(folder)
    variants = {}
    dataset: dict[str, Any] = {}
    signatures = {}
    for variant, fname in files.items():
        path = zoo_member(folder, fname, variant)
        ckpt = load_checkpoint(path)
        signatures[variant] = data_signature(ckpt)
        dataset = dataset or ckpt["dataset"]
        role = check_role((roles or {}).get(variant) or default_role(variant))
        variants[variant] = {
            "file": fname,
            "sha256": sha256_file(path),
            "role": role,
            "card": cards.get(variant, {}),
        }
        extra_seeds = []
        for seed, (rep_name, rep_card) in sorted(((replicas or {}).get(variant) or {}).items()):
            rep_path = zoo_member(folder, rep_name, f"{variant} seed {seed}")
            signatures[f"{variant} seed {seed}"] = data_signature(load_checkpoint(rep_path))
            extra_seeds.append({"seed": int(seed), "file": rep_name, "sha256": sha256_file(rep_path), "card": rep_card})
        if extra_seeds:
            variants[variant]["replicas"] = extra_seeds
    check_same_data(signatures, f"zoo {folder}")
    manifest = {
        "format": ZOO_FORMAT,
        "name": name or folder.name,
        "lab_version": package_version(),
        "dataset": dataset,
        "variants": variants,
        **(extra or {}),
    }
    remove_stale_temps(folder / ZOO_MANIFEST)
    tmp = temp_sibling(folder / ZOO_MANIFEST)
    try:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, folder / ZOO_MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)
    return folder / ZOO_MANIFEST


def zoo_member(folder: str | os.PathLike, name: Any, variant: str) -> Path:
    """The path of a file named in a zoo manifest, refused (CheckpointError) unless it lies inside ``folder``.

    Checked without opening anything: no absolute path, no ``..``, no backslash, and no symbolic link leading out
    of the folder (the real path must stay inside the folder's real path).
    """
    folder = Path(folder)
    where = f"zoo {folder}: variant {variant}"
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise CheckpointError(f"{where} names no file in {ZOO_MANIFEST}")
    rel = PurePosixPath(name)
    if rel.is_absolute() or PureWindowsPath(name).drive or "\\" in name or ".." in rel.parts:
        raise CheckpointError(f"{where}: file {name!r} is not a path inside the zoo folder; refused")
    path = folder / rel
    real_folder, real = Path(os.path.realpath(folder)), Path(os.path.realpath(path))
    if real == real_folder or not real.is_relative_to(real_folder):
        raise CheckpointError(f"{where}: file {name!r} leads outside the zoo folder (a symbolic link?); refused")
    return path


def read_zoo_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Parse and check a zoo's manifest (no models loaded)."""
    folder = Path(folder)
    mpath = folder / ZOO_MANIFEST
    if not mpath.is_file():
        held = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
        if held:  # e.g. a folder of imported weights: models.zoo assembles them, models.train_zoo would retrain
            hint = (
                f"it holds checkpoints ({', '.join(held[:3])}): assemble them into a zoo with "
                f"`python -m models.zoo --out <zoo folder> --variant NAME={folder / held[0]} ...`"
            )
        else:
            hint = (
                "assemble checkpoints, imported ones too, with `python -m models.zoo --out <zoo folder> "
                f"--variant NAME=FILE ...`, or train one with `python -m models.train_zoo --out {folder}`"
            )
        raise CheckpointError(
            f"no {ZOO_MANIFEST} in {folder}: a zoo is a folder of checkpoints with a manifest ({hint})"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{mpath} is not valid JSON: {exc}") from exc
    if manifest.get("format") != ZOO_FORMAT or not isinstance(manifest.get("variants"), dict):
        raise CheckpointError(f"{mpath} is not a zoo manifest (expected format {ZOO_FORMAT})")
    return manifest


def load_zoo(
    folder: str | os.PathLike,
    device: str | torch.device = "cpu",
    verify: bool = True,
    allow_nan: bool = False,
    seed: int | None = None,
) -> Zoo:
    """Load every variant of a zoo, verifying sha256 hashes against the manifest.

    ``seed`` loads each variant's checkpoint trained with that seed (``models.replicas``) instead of its primary
    one; variants without that seed are left out (CheckpointError when none has it).

    Every file the manifest names must lie inside ``folder`` (checked for all before any is opened, see
    :func:`zoo_member`). Raises CheckpointError for a path outside the folder, a missing or changed file (one
    message for both, so it tells nothing about what exists) or non-finite weights (unless ``allow_nan``),
    ZooMismatchError (also a ZooError) when the variants, or the manifest's data set, disagree on data set,
    classes or input size.
    """
    folder = Path(folder)
    manifest = read_zoo_manifest(folder)
    zoo = Zoo(folder, manifest)
    signatures = {f"{ZOO_MANIFEST} data set": data_signature({"dataset": manifest.get("dataset") or {}})}
    items = {v: item if isinstance(item, dict) else {} for v, item in manifest["variants"].items()}
    if seed is not None:
        items = _items_for_seed(folder, manifest, seed)
    paths = {v: zoo_member(folder, item.get("file"), v) for v, item in items.items()}  # all, before opening any
    for variant, item in items.items():
        path = paths[variant]
        if not path.is_file() or (verify and sha256_file(path) != item.get("sha256")):
            raise CheckpointError(
                f"zoo {folder}: file {item['file']} of variant {variant} is missing or does not match its sha256 "
                f"in {ZOO_MANIFEST}"
            )
        model, meta = load_model(path, device, allow_nan=allow_nan)
        signatures[variant] = data_signature(meta)
        zoo.entries[variant] = ZooEntry(variant, model, meta, item.get("card", {}), path, item.get("sha256"))
    check_same_data(signatures, f"zoo {folder}")
    return zoo


def _items_for_seed(folder: Path, manifest: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """Variant -> manifest entry (file, sha256, card) of its checkpoint trained with ``seed``."""
    from models.replicas import entry_for_seed, zoo_seeds

    items = {}
    for variant in manifest["variants"]:
        rep = entry_for_seed(manifest, variant, seed)
        if rep is not None:
            items[variant] = {"file": rep.file, "sha256": rep.sha256, "card": rep.card}
    if not items:
        held = sorted({s for seeds in zoo_seeds(manifest).values() for s in seeds})
        raise CheckpointError(f"zoo {folder}: no variant has a checkpoint of seed {seed} (seeds: {held})")
    return items
