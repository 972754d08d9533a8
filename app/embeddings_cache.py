"""The embeddings page's computations, cached: anchors' neighbourhood views (``analysis.embeddings.anchor_views``:
test images or uploads with their perturbations and same-class images in one shared 2-D map), and the whole test
split's representations and fitted maps (``analysis.embeddings_whole_set``), cached on disk keyed by the
checkpoints' sha256s. Only caching and locking here; the computing is in ``analysis/``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from analysis import precomputed_store
from analysis.embeddings import Anchor
from analysis.service_api import AnchorViewRequest, PredictionsRequest, ProjectionRequest, RepresentationsRequest
from app import compute, long_lived
from app.images import image_key
from app.zoo_cache import ZooHandle, _cached_zoo, embeddings_module
from models.data import ImageDataset

__all__ = [
    "anchor_key",
    "cached_anchor_views",
    "checkpoint_hashes",
    "embeddings_cache_dir",
    "upload_anchor",
    "whole_set",
    "whole_set_ready",
]

# ----------------------------------------------------------------------------- anchors and their shared map


def anchor_key(anchor: Anchor) -> tuple:
    """What identifies an anchor in a cache key: its name, the image's content hash, its class and index."""
    return (anchor.name, image_key(anchor.image), int(anchor.label), int(anchor.index))


@st.cache_data(max_entries=32, show_spinner=False)
def cached_anchor_views(
    zoo_key: tuple,
    dataset: tuple,
    anchor_keys: tuple,
    _anchors: Sequence[Anchor],
    variants: tuple[str, ...],
    representation: str,
    method: str,
    n_same_class: int,
    kinds: tuple[str, ...],
    seed: int = 0,
) -> dict[str, Any]:
    """The compute service's anchor view (``analysis.embeddings.anchor_views``) as a dict, cached by the anchors'
    keys (:func:`anchor_key`); UMAP is compiled first when asked for."""
    embeddings_module(method == "umap")
    request = AnchorViewRequest(dataset, tuple(_anchors), tuple(variants), representation, method, int(n_same_class),
                                tuple(kinds), int(seed))  # fmt: skip
    return compute.service(_cached_zoo(*zoo_key)).anchor_view(request).as_dict()


def upload_anchor(handle: ZooHandle, name: str, image: np.ndarray, variant: str) -> Anchor:
    """An uploaded image as an anchor: its neighbourhood is the class ``variant`` predicts for it."""
    image = np.asarray(image, dtype=np.float32)
    pred = compute.service(handle).predictions(PredictionsRequest(variant, image, "", (0,))).pred
    return Anchor(name, image, int(pred[0]), -1, None)


# ----------------------------------------------------------------------------- the whole test set, cached on disk


def embeddings_cache_dir() -> Path:
    """Where whole-test-set embeddings are cached: ``$SCL_CACHE_DIR/embeddings`` (default ~/.cache/...)."""
    env = os.environ.get("SCL_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "semantic-continuity-lab"
    return base / "embeddings"


def checkpoint_hashes(handle: ZooHandle, variants: Sequence[str]) -> dict[str, str]:
    """Variant -> sha256 of its checkpoint (from the verified manifest)."""
    items = handle.zoo.manifest.get("variants", {})
    return {v: str((items.get(v) or {}).get("sha256") or f"{handle.path}:{v}:{handle.stamp}") for v in variants}


def _whole_set_paths(handle: ZooHandle, dataset: tuple, n: int, representation: str, variants: Sequence[str],
                     method: str, seed: int) -> tuple[dict[str, Path], Path | None]:  # fmt: skip
    from analysis.embeddings_whole_set import whole_set_key

    folder = embeddings_cache_dir()
    hashes = checkpoint_hashes(handle, variants)
    reps = {v: folder / f"rep-{whole_set_key({v: h}, repr(dataset), n, representation)}.npz" for v, h in hashes.items()}
    fitted = None
    if method != "pca":  # aligned to the first variant: the key keeps the variants' order
        key = whole_set_key(hashes, repr(dataset), n, representation, method, seed, *variants)
        fitted = folder / f"map-{key}.npz"
    return reps, fitted


def whole_set_ready(handle: ZooHandle, dataset: tuple, n: int, representation: str, variants: Sequence[str],
                    method: str, seed: int = 0) -> bool:  # fmt: skip
    """Whether the whole-set map is on disk already (then the page draws it without asking)."""
    reps, fitted = _whole_set_paths(handle, dataset, n, representation, variants, method, seed)
    stored = precomputed_store.has_representations  # scl-precompute's whole-set embeddings
    return all(p.is_file() or stored(handle.model(v), dataset, n, representation) for v, p in reps.items()) and (
        fitted is None or fitted.is_file()
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def _read_arrays(path: str, mtime: int) -> dict[str, np.ndarray] | None:
    from analysis.embeddings_whole_set import load_arrays

    return long_lived.freeze(load_arrays(path))


def whole_set(
    handle: ZooHandle,
    ds: ImageDataset,
    dataset: tuple,
    representation: str,
    variants: Sequence[str],
    method: str = "pca",
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray] | None]:
    """The whole test split's representation and predictions per variant, and for t-SNE / UMAP the fitted map,
    computed once and cached on disk (keyed by the checkpoints' sha256s): (data, fitted xy or None)."""
    from analysis.embeddings_whole_set import save_arrays

    service = compute.service(handle)
    progress = progress or (lambda f, t: None)
    n = len(ds)
    rep_paths, fitted_path = _whole_set_paths(handle, dataset, n, representation, variants, method, seed)
    data: dict[str, dict[str, np.ndarray]] = {}
    missing = [v for v, p in rep_paths.items() if _read_arrays(str(p), _mtime(p)) is None]
    for i, v in enumerate(variants):
        if v in missing:
            step = _scaled(progress, i, len(variants))
            one = service.representations(RepresentationsRequest(tuple(dataset), v, representation), step)
            save_arrays(rep_paths[v], {"rep": one.rep, "pred": one.pred})
        data[v] = _read_arrays(str(rep_paths[v]), _mtime(rep_paths[v]))
    fitted = None
    if fitted_path is not None:
        fitted = _read_arrays(str(fitted_path), _mtime(fitted_path))
        if fitted is None:
            progress(0.5, f"{method} of {n} points x {len(variants)} variants (once; then cached on disk)")
            reps = {v: data[v]["rep"] for v in variants}
            save_arrays(fitted_path, service.projection(ProjectionRequest(reps, method, seed, "procrustes")).xy)
            fitted = _read_arrays(str(fitted_path), _mtime(fitted_path))
    progress(1.0, "done")
    return data, fitted


def _scaled(progress: Callable[[float, str], None], i: int, n: int) -> Callable[[float, str], None]:
    """Variant ``i`` of ``n``'s progress as its share of the first half of the bar (the representations)."""
    return lambda fraction, text: progress(0.5 * (i + fraction) / n, text)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0
