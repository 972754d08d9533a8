"""The precomputed store of a zoo: gallery maps and whole-test-set embeddings computed ahead (``scl-precompute``),
read by the dashboard before it computes anything.

Layout (default ``<zoo>/precomputed``, beside the zoo's ``results/``; ``$SCL_PRECOMPUTED`` names another)::

    index.json                                      what the store holds (a summary, rebuilt by every run)
    maps/<sha256[:16]>/<settings>/settings.json     variant, checkpoint sha256, kind, method, options, input shape
    maps/<sha256[:16]>/<settings>/chunk-000000.npz  index (n,), digest (n,), target (n,), levels (L,),
                                                    maps (n, L, H, W) float32, extra_<name> (n, L) (NaN: none)
    embeddings/<sha256[:16]>/<settings>/settings.json, chunk-000000.npz   index (n,), rep (n, D), pred (n,)

Every entry is keyed by the checkpoint's sha256 and a hash of its settings (:func:`settings_key`), so a changed
checkpoint or changed options never reuse old files. A map is found by the image's content digest
(:func:`image_digest`, the dashboard's ``app.images.image_key``), so uploads are never found and are computed as
before. Chunks are plain ``.npz`` files (``numpy.load``) written atomically with fixed zip timestamps, so the same
computation gives byte-identical files; an unreadable chunk is reported once and treated as missing.

The dashboard attaches a store to a loaded zoo (:func:`attach`: each model carries its store and sha256, also
through ``copy.deepcopy``) and calls :func:`level_maps` / :func:`representations` in place of the computations.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
import weakref
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.safe_output import replacing

__all__ = [
    "ATTRIBUTE",
    "ENV_STORE",
    "FORMAT",
    "RUNTIME_OPTIONS",
    "StoreRef",
    "attach",
    "chunk_name",
    "dataset_fingerprint",
    "default_root",
    "embedding_settings",
    "has_maps",
    "has_representations",
    "image_digest",
    "level_maps",
    "map_settings",
    "read_chunk",
    "settings_key",
    "stored_maps",
    "stored_representations",
    "write_chunk",
    "write_index",
    "write_settings",
]

FORMAT = 1
ENV_STORE = "SCL_PRECOMPUTED"
ATTRIBUTE = "_scl_precomputed"  # set on each model of an attached zoo (a StoreRef)
RUNTIME_OPTIONS = frozenset({"progress", "should_stop", "memory_budget", "internal_batch_size"})  # never in a key
_CHUNK = re.compile(r"^chunk-(\d+)\.npz$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- keys


def image_digest(image: Any) -> str:
    """Content hash of one image (shape, dtype and bytes of its float32 array): ``app.images.image_key``'s."""
    a = np.ascontiguousarray(np.asarray(image, dtype=np.float32))
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def settings_key(settings: Mapping[str, Any]) -> str:
    """The folder name of one settings entry: a hash of its JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(_json_safe(dict(settings)), sort_keys=True).encode()).hexdigest()[:16]


def map_settings(variant: str, sha256: str, kind: str, method: str, input_shape: Sequence[int],
                 options: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """What one method's maps of one variant and kind depend on: the method's options resolved as
    ``analysis.per_image.level_maps`` resolves them (defaults fitted to the input size, then ``options``), without
    the options that change only how it runs (:data:`RUNTIME_OPTIONS`). Maps explain the class the variant
    predicts on the original image (stored per image as ``target``)."""
    from analysis.attributions import get_method

    shape = tuple(int(s) for s in input_shape)
    given = {k: v for k, v in dict(options).items() if k not in RUNTIME_OPTIONS}
    resolved = {k: v for k, v in get_method(method).options(input_size=shape, **given).items()
                if k not in RUNTIME_OPTIONS}  # fmt: skip
    return _json_safe({"format": FORMAT, "what": "maps", "variant": variant, "sha256": sha256, "kind": kind,
                       "method": method, "options": resolved, "input_shape": list(shape),
                       "target": "the variant's prediction on the original image"})  # fmt: skip


def embedding_settings(variant: str, sha256: str, representation: str, dataset: Sequence[Any],
                       n_images: int) -> dict[str, Any]:  # fmt: skip
    """What one variant's whole-set representation depends on: the representation and the data set split (name,
    split, image size; not its folder, which differs between machines) and its size. The chunks also record the
    data's :func:`dataset_fingerprint`, checked when read."""
    name, split = (list(dataset) + [None, None])[:2]
    size = dataset[3] if len(dataset) > 3 else None
    return _json_safe({"format": FORMAT, "what": "embeddings", "variant": variant, "sha256": sha256,
                       "representation": representation, "dataset": name, "split": split, "image_size": size,
                       "n_images": int(n_images)})  # fmt: skip


def dataset_fingerprint(images: Any) -> str:
    """A cheap content hash of a data set split's images: their shape and about 64 evenly spaced ones."""
    n = len(images)
    h = hashlib.sha256(f"{tuple(images.shape)}|{n}|".encode())
    for i in range(0, n, max(1, n // 64)):
        h.update(np.ascontiguousarray(np.asarray(images[i], dtype=np.float32)).tobytes())
    return h.hexdigest()[:32]


def chunk_name(first: int) -> str:
    """``chunk-<first data-set index, 6 digits>.npz``."""
    return f"chunk-{int(first):06d}.npz"


def entry_dir(root: str | os.PathLike, settings: Mapping[str, Any]) -> Path:
    """The folder of one settings entry: ``<root>/<what>/<sha256[:16]>/<settings_key>``."""
    return Path(root) / str(settings["what"]) / str(settings["sha256"])[:16] / settings_key(settings)


def default_root(zoo_path: str | os.PathLike) -> Path:
    """``$SCL_PRECOMPUTED``, else ``<zoo>/precomputed``."""
    env = os.environ.get(ENV_STORE)
    return Path(env).expanduser() if env else Path(zoo_path) / "precomputed"


# ----------------------------------------------------------------------------- files


def write_chunk(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays as an ``.npz`` atomically (``models.safe_output.replacing``: an earlier file is kept as
    ``.old-<timestamp>``), with fixed zip timestamps so the same arrays give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, value in arrays.items():
            with z.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    with replacing(path, folder=False) as staged:
        with open(staged.path, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


class CorruptChunk(ValueError):
    """A store file that cannot be read (truncated, not an npz, arrays missing)."""


_REPORTED: set[str] = set()


def read_chunk(path: str | os.PathLike, required: Sequence[str] = ("index",)) -> dict[str, np.ndarray]:
    """Every array of a chunk; CorruptChunk (one line naming the file) when it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CorruptChunk(f"{path} is unreadable ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in required if k not in out]
    if missing:
        raise CorruptChunk(f"{path} lacks {', '.join(missing)}")
    return out


def report_corrupt(exc: CorruptChunk) -> None:
    """Say once per file that it is ignored (then it is recomputed)."""
    text = str(exc)
    if text not in _REPORTED:
        _REPORTED.add(text)
        log.warning("precomputed store: %s; ignored, computed instead (rerun scl-precompute to replace it)", text)


def write_settings(folder: Path, settings: Mapping[str, Any]) -> None:
    """``settings.json`` of an entry, written once (its folder name is the hash of this very content)."""
    path = folder / "settings.json"
    if path.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with replacing(path, folder=False) as staged:
        staged.path.write_text(json.dumps(dict(settings), indent=1, sort_keys=True) + "\n")


def chunk_files(folder: Path) -> list[Path]:
    """The chunk files of an entry, by first index (temporary and moved-aside files are not chunks)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _CHUNK.match(p.name)), key=lambda p: p.name)


def write_index(root: str | os.PathLike) -> Path:
    """``index.json``: every entry's settings and how many images its chunks hold (derived from the files, so it
    is simply rewritten)."""
    root = Path(root)
    entries = {}
    for what in ("maps", "embeddings"):
        for settings_file in sorted(root.glob(f"{what}/*/*/settings.json")):
            folder = settings_file.parent
            try:
                settings = json.loads(settings_file.read_text())
            except (OSError, ValueError):
                continue
            count = 0
            for chunk in chunk_files(folder):
                try:
                    count += len(read_arrays(chunk, ("index",))["index"])
                except CorruptChunk:
                    continue
            entries[f"{what}/{folder.parent.name}/{folder.name}"] = {**settings, "images": count,
                                                                     "chunks": len(chunk_files(folder))}  # fmt: skip
    path = root / "index.json"
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".index.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- the dashboard's side


@dataclass(frozen=True)
class StoreRef:
    """Where a model's precomputed entries are: the store folder and the model's checkpoint sha256."""

    root: str
    sha256: str
    variant: str


def attach(zoo: Any, models: Mapping[str, Any] | None = None, root: str | os.PathLike | None = None) -> None:
    """Mark every model of a loaded zoo (``models.checkpoints.Zoo``), and ``models`` (variant -> a copy of its
    model), with its store (default :func:`default_root`) and checkpoint sha256 (from the verified manifest), so
    lookups know where to look; idempotent. A model without a sha256 in the manifest is never looked up.

    A lazy ``models`` mapping (one with ``peek(variant)``: the copy if it is made already, else None) is not made to
    copy anything: a ``copy.deepcopy`` of a marked model carries the mark."""
    folder = str(Path(root) if root is not None else default_root(zoo.path))
    listed = zoo.manifest.get("variants") or {}
    peek = getattr(models, "peek", None) or (models or {}).get
    for variant, entry in zoo.entries.items():  # an entry's own sha256: a replica's differs from the primary's
        sha = str(getattr(entry, "sha256", None) or (listed.get(variant) or {}).get("sha256") or "")
        for model in (entry.model, peek(variant)):
            if sha and model is not None:
                object.__setattr__(model, ATTRIBUTE, StoreRef(folder, sha, variant))


def _ref(model: Any) -> StoreRef | None:
    ref = getattr(model, ATTRIBUTE, None)
    return ref if isinstance(ref, StoreRef) and Path(ref.root).is_dir() else None


_DIGESTS: dict[int, tuple[Any, str]] = {}
_GUARD = threading.Lock()


def _digest_of(image: np.ndarray) -> str:
    """:func:`image_digest`, remembered for the array object while it lives (the page asks many times)."""
    key = id(image)
    with _GUARD:
        known = _DIGESTS.get(key)
    if known is not None and known[0]() is image:
        return known[1]
    digest = image_digest(image)
    try:
        ref = weakref.ref(image)
    except TypeError:
        return digest
    with _GUARD:
        if len(_DIGESTS) > 256:
            _DIGESTS.clear()
        _DIGESTS[key] = (ref, digest)
    return digest


@dataclass(frozen=True)
class _Row:
    """Where one image's maps are: its chunk file, row, the class they explain and the levels stored."""

    path: Path
    row: int
    target: int
    levels: tuple[int, ...]


_INDEXES: dict[str, tuple[int, dict[str, _Row]]] = {}


def read_arrays(path: str | os.PathLike, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Only the named arrays of a chunk (an ``.npz`` is read member by member); CorruptChunk when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in names if k not in z.files]
            if missing:
                raise CorruptChunk(f"{path} lacks {', '.join(missing)}")
            return {k: z[k] for k in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CorruptChunk(f"{path} is unreadable ({type(exc).__name__}: {exc})") from exc


def read_row(path: str | os.PathLike, name: str, row: int) -> np.ndarray:
    """Row ``row`` of array ``name`` of a chunk, read from the file alone (not the whole array: a chunk of 224-px
    maps is tens of MB); CorruptChunk when unreadable."""
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return read_arrays(path, (name,))[name][row]
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError("bad local header")
            f.seek(
                info.header_offset
                + 30
                + int.from_bytes(local[26:28], "little")
                + int.from_bytes(local[28:30], "little")
            )
            version = fmt.read_magic(f)
            shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            if fortran or not shape or not 0 <= row < shape[0] or dtype.hasobject:
                raise ValueError(f"row {row} of an array of shape {shape}")
            count = int(np.prod(shape[1:], dtype=np.int64))
            f.seek(row * count * dtype.itemsize, os.SEEK_CUR)
            data = np.fromfile(f, dtype=dtype, count=count)
        if data.size != count:
            raise ValueError("truncated")
        return data.reshape(shape[1:])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CorruptChunk(f"{path} is unreadable ({type(exc).__name__}: {exc})") from exc


def _maps_index(folder: Path) -> dict[str, _Row]:
    """digest -> :class:`_Row` of one maps entry, from the chunks' small arrays (digest, target, levels); rebuilt
    when the folder changes (every chunk is renamed into it, so its modification time moves: one stat a lookup)."""
    stamp = folder.stat().st_mtime_ns
    with _GUARD:
        known = _INDEXES.get(str(folder))
    if known is not None and known[0] == stamp:
        return known[1]
    index: dict[str, _Row] = {}
    for path in chunk_files(folder):
        try:
            z = read_arrays(path, ("digest", "target", "levels"))
        except CorruptChunk as exc:
            report_corrupt(exc)
            continue
        levels = tuple(int(lv) for lv in z["levels"].tolist())
        for row, (digest, target) in enumerate(zip(z["digest"].tolist(), z["target"].tolist(), strict=True)):
            index[str(digest)] = _Row(path, row, int(target), levels)
    with _GUARD:
        _INDEXES[str(folder)] = (stamp, index)
    return index


def _plain(value: Any) -> bool:
    """JSON-native option values (what a settings key can name exactly)."""
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _lookup(model: Any, image: np.ndarray, kind: str, method: str, options: Mapping[str, Any]) -> _Row | None:
    ref = _ref(model)
    if ref is None or not all(_plain(v) for k, v in options.items() if k not in RUNTIME_OPTIONS):
        return None  # a baseline image or other array option: not a settings key, computed as before
    shape = tuple(np.shape(image))
    folder = entry_dir(ref.root, map_settings(ref.variant, ref.sha256, kind, method, shape, options))
    if not folder.is_dir():
        return None
    return _maps_index(folder).get(_digest_of(image))


def _stored_levels(
    model: Any,
    image: np.ndarray,
    kind: str,
    method: str,
    target: int,
    levels: Sequence[int],
    options: Mapping[str, Any] | Iterable[tuple[str, Any]],
) -> tuple[_Row | None, list[int]]:
    """The index row of this image's maps (None: not stored for this target) and which of ``levels`` it holds."""
    found = _lookup(model, image, kind, method, dict(options))
    if found is None or found.target != int(target):
        return None, []
    return found, [int(lv) for lv in levels if int(lv) in found.levels]


def stored_maps(model: Any, image: np.ndarray, kind: str, method: str, target: int, levels: Sequence[int],
                options: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> dict[str, Any] | None:  # fmt: skip
    """The stored maps of ``levels`` (``level_maps``' dict, possibly fewer levels: those stored), or None when the
    model has no store or the image (an upload), settings or target are not in it, or its file is unreadable."""
    found, wanted = _stored_levels(model, image, kind, method, target, levels, options)
    if found is None:
        return None
    cols = [found.levels.index(lv) for lv in wanted]
    try:
        maps = read_row(found.path, "maps", found.row)
        with np.load(found.path, allow_pickle=False) as z:
            extras = {k[len("extra_") :]: z[k][found.row] for k in z.files if k.startswith("extra_")}
    except (CorruptChunk, OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        report_corrupt(exc if isinstance(exc, CorruptChunk) else CorruptChunk(f"{found.path} is unreadable ({exc})"))
        return None
    out_extras = []
    for c in cols:
        one: dict[str, float] = {}
        for name, values in extras.items():
            value = float(values[c])
            if not np.isnan(value):
                one[name] = int(value) if name in ("map_side", "n_segments") else value
        out_extras.append(one)
    return {"levels": wanted, "maps": np.asarray(maps[cols], dtype=np.float32), "extras": out_extras}


def has_maps(
    model: Any,
    image: np.ndarray,
    kind: str,
    method: str,
    target: int,
    levels: Sequence[int],
    options: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
) -> bool:
    """Whether every one of ``levels`` is stored for this image, settings and target (from the index alone)."""
    found, wanted = _stored_levels(model, image, kind, method, target, levels, options)
    return found is not None and len(wanted) == len(set(int(lv) for lv in levels))


def level_maps(model: Any, image: np.ndarray, kind: str, method: str, target: int,
               levels: Sequence[int] | None = None, **options: Any) -> dict[str, Any]:  # fmt: skip
    """``analysis.per_image.level_maps``, reading the stored levels and computing only the others."""
    from analysis.per_image import ALL_LEVELS
    from analysis.per_image import level_maps as compute

    levels = [int(lv) for lv in (ALL_LEVELS if levels is None else levels)]
    found = stored_maps(model, image, kind, method, target, levels, options)
    if found is None or not found["levels"]:
        return compute(model, image, kind, method, target, levels, **options)
    missing = [lv for lv in levels if lv not in found["levels"]]
    computed = compute(model, image, kind, method, target, missing, **options) if missing else None
    maps, extras = [], []
    for lv in levels:
        src = found if lv in found["levels"] else computed
        j = src["levels"].index(lv)
        maps.append(src["maps"][j])
        extras.append(src["extras"][j])
    return {"levels": levels, "maps": np.stack(maps).astype(np.float32), "extras": extras}


def _embedding_folder(model: Any, dataset: Sequence[Any], n_images: int, representation: str) -> Path | None:
    ref = _ref(model)
    if ref is None:
        return None
    folder = entry_dir(ref.root, embedding_settings(ref.variant, ref.sha256, representation, dataset, n_images))
    return folder if folder.is_dir() else None


def has_representations(model: Any, dataset: Sequence[Any], n_images: int, representation: str) -> bool:
    """Whether the store has chunks for this variant, data set split and representation (read to be sure)."""
    folder = _embedding_folder(model, dataset, n_images, representation)
    return folder is not None and bool(chunk_files(folder))


def stored_representations(model: Any, dataset: Sequence[Any], images: Any,
                           representation: str) -> dict[str, np.ndarray] | None:  # fmt: skip
    """``{"rep": (N, D) float32, "pred": (N,) int64}`` when every image of the split is stored (and the data's
    fingerprint matches), else None."""
    n = len(images)
    folder = _embedding_folder(model, dataset, n, representation)
    if folder is None:
        return None
    fingerprint = dataset_fingerprint(images)
    parts, covered = [], 0
    for path in chunk_files(folder):
        try:
            z = read_chunk(path, ("index", "rep", "pred", "fingerprint"))
        except CorruptChunk as exc:
            report_corrupt(exc)
            return None
        if str(z["fingerprint"]) != fingerprint:
            return None
        parts.append(z)
        covered += len(z["index"])
    if covered != n:
        return None
    order = np.concatenate([p["index"] for p in parts])
    if not np.array_equal(np.sort(order), np.arange(n)):
        return None
    rep = np.concatenate([p["rep"] for p in parts])[np.argsort(order, kind="stable")]
    pred = np.concatenate([p["pred"] for p in parts])[np.argsort(order, kind="stable")]
    return {"rep": rep.astype(np.float32), "pred": pred.astype(np.int64)}
