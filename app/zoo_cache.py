"""The dashboard's model and data caches: the loaded zoo (one per folder, device and manifest time), data sets,
and the slow-to-import analysis modules, each loaded once per server process with ``st.cache_resource``.

CUDA is used when available, else the CPU. Concurrent users share one loaded zoo; every forward pass on a
shared model holds that model's lock (``analysis.attributions.model_lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from analysis import precomputed_store
from app import long_lived
from models.assets import default_zoo
from models.checkpoints import CheckpointError, Zoo, load_zoo, read_zoo_manifest
from models.data import ImageDataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZOO = default_zoo()  # the clone's assets/zoo/default, an installed wheel's copy, or under $SCL_ASSETS
ENV_ZOO = "SCL_ZOO"

# ----------------------------------------------------------------------------- settings


def device_name() -> str:
    """``$SCL_DEVICE`` (``scl-dashboard --device``) when it names cpu or cuda, else 'cuda' when a GPU is usable."""
    chosen = os.environ.get("SCL_DEVICE", "auto")
    if chosen in ("cpu", "cuda"):
        return chosen
    return "cuda" if torch.cuda.is_available() else "cpu"


def initial_zoo_path(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> str:
    """The zoo to open first: ``-- --zoo PATH`` on the command line, else ``$SCL_ZOO``, else the shipped default."""
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--zoo", default=None)
    try:
        args, _ = parser.parse_known_args(argv)
    except SystemExit:  # a malformed command line must not take the app down
        args = argparse.Namespace(zoo=None)
    return str(args.zoo or environ.get(ENV_ZOO) or DEFAULT_ZOO)


# ----------------------------------------------------------------------------- zoo


@dataclass
class ZooHandle:
    """A loaded zoo plus what the pages need to know about it."""

    path: str
    device: str
    stamp: int  # manifest mtime (ns): part of every cache key, so a retrained zoo is reloaded
    zoo: Zoo
    name: str
    dataset_name: str
    data_root: str | None
    image_size: int
    classes: list[str] | None = None
    seed: int | None = None  # the replicas of this seed (models.replicas); None: each variant's primary checkpoint

    @property
    def variants(self) -> list[str]:
        return self.zoo.variants

    @property
    def key(self) -> tuple[str, str, int, int | None]:
        """The arguments of the cached loader: also the key of everything computed about this zoo."""
        return (self.path, self.device, self.stamp, self.seed)

    @property
    def hashes(self) -> dict[str, str]:
        """The manifest's sha256 of each variant's checkpoint (the key of anything stored about this zoo)."""
        return {v: str(self.zoo.entries[v].sha256 or "") for v in self.variants}  # a replica's own with a seed

    def model(self, variant: str) -> torch.nn.Module:
        return self.zoo.entries[variant].model

    def card(self, variant: str) -> dict[str, Any]:
        return self.zoo.entries[variant].card or {}

    def meta(self, variant: str) -> dict[str, Any]:
        return self.zoo.entries[variant].meta or {}

    def lock(self, variant: str) -> threading.RLock:
        return model_lock(self.model(variant))

    @contextlib.contextmanager
    def all_locks(self) -> Iterator[None]:
        """Hold every model's lock (always in the same order, so two holders cannot deadlock)."""
        with contextlib.ExitStack() as stack:
            for variant in sorted(self.variants):
                stack.enter_context(self.lock(variant))
            yield

    def class_name(self, index: int) -> str:
        if self.classes and 0 <= index < len(self.classes):
            return str(self.classes[index])
        return str(index)


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The per-model lock of ``analysis.attributions`` (through :func:`attributions_module`: captum is slow to
    import)."""
    return attributions_module().model_lock(model)


def manifest_stamp(path: str | os.PathLike) -> int:
    """Modification time of the zoo's manifest; CheckpointError when there is none."""
    manifest = Path(path) / "zoo.json"
    if not manifest.is_file():
        read_zoo_manifest(path)  # raises CheckpointError with the helpful message
    return manifest.stat().st_mtime_ns


def _image_size(dataset: dict[str, Any], config: dict[str, Any]) -> int:
    shape = dataset.get("image_shape")
    if isinstance(shape, list | tuple) and len(shape) >= 2:
        return int(shape[-1])
    if config.get("image_size"):
        return int(config["image_size"])
    return 224 if dataset.get("name") == "imagefolder" else 32


def open_zoo(path: str | os.PathLike, device: str | None = None, seed: int | None = None) -> ZooHandle:
    """Load a zoo folder (pure; raises CheckpointError), with the checkpoints of ``seed`` when given. The cached
    form is :func:`get_zoo`."""
    device = device or device_name()
    path = str(Path(path).expanduser().resolve())
    stamp = manifest_stamp(path)
    zoo = load_zoo(path, device, seed=seed)
    precomputed_store.attach(zoo)  # gallery maps and embeddings from scl-precompute, if any
    if not zoo.entries:
        raise CheckpointError(f"zoo {path} lists no variants")
    first = next(iter(zoo.entries.values()))
    dataset = dict(zoo.dataset or first.meta.get("dataset") or {})
    config = dict(first.meta.get("config") or {})
    return ZooHandle(
        path=path,
        device=device,
        stamp=stamp,
        zoo=zoo,
        name=str(zoo.manifest.get("name") or Path(path).name),
        dataset_name=str(dataset.get("name") or config.get("dataset") or "fashion-mnist-m"),
        data_root=config.get("data_root"),
        image_size=_image_size(dataset, config),
        classes=list(dataset["classes"]) if dataset.get("classes") else None,
        seed=seed,
    )


@st.cache_resource(show_spinner="Loading the model zoo...", max_entries=4)
def _cached_zoo(path: str, device: str, stamp: int, seed: int | None = None) -> ZooHandle:
    return long_lived.freeze(open_zoo(path, device, seed))


def get_zoo(path: str | os.PathLike, device: str | None = None, seed: int | None = None) -> ZooHandle:
    """The loaded zoo at ``path`` (cached per server process; reloaded when its manifest changes); ``seed``: the
    checkpoints trained with that seed instead of the primary ones."""
    resolved = str(Path(path).expanduser().resolve())
    return _cached_zoo(resolved, device or device_name(), manifest_stamp(resolved), seed)


@st.cache_resource(show_spinner="Loading the data set (built once, then cached on disk)...", max_entries=6)
def get_dataset(name: str, split: str = "test", root: str | None = None, image_size: int | None = None) -> ImageDataset:
    """A data set split, loaded once per server process (raises DatasetError / ValueError)."""
    return long_lived.freeze(load_dataset(name, split, root or None, image_size=image_size))


@st.cache_resource(show_spinner="Importing captum and lime (once per server)...")
def attributions_module():
    """``analysis.per_image``, the attribution entry point of the pages (it imports captum, lime and scikit-image
    through ``analysis.attributions``: seconds, so once). It carries ``METHOD_REGISTRY`` and ``model_lock``."""
    import analysis.per_image as per_image

    return long_lived.freeze(per_image)


@st.cache_resource(show_spinner="Compiling UMAP (once per server, about 10 s)...")
def embeddings_module(warm_umap: bool = True):
    """``analysis.embeddings`` with UMAP's numba code compiled."""
    import analysis.embeddings as embeddings

    if warm_umap:
        embeddings.warm_up_umap()
    return long_lived.freeze(embeddings)
