"""The dashboard's backend: the only place in ``app/`` that loads models and computes.

* Models are loaded once per (zoo folder, device, manifest time) with ``st.cache_resource``;
  CUDA is used when available, else the CPU.
* Computations go through ``analysis/`` and ``models/``. Each has a *pure* form (plain
  arguments, no Streamlit; tests and threads call these) and, where results are small
  and hashable, a cached form (``st.cache_data``) keyed by the zoo, a content hash of
  the image, the perturbation and the method: moving the level slider back and forth
  costs nothing after the first visit.
* Concurrent users share one loaded zoo. Attribution methods put hooks on a model while
  they run, so every forward pass here holds that model's lock
  (``analysis.attributions.model_lock``): one model serialises its callers, different
  models run in parallel, no user ever reads another user's activations.
* Start-up work (importing captum / lime / umap, compiling UMAP) happens once per server
  process inside ``st.cache_resource``, not on every rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from models.checkpoints import CheckpointError, Zoo, load_zoo, read_zoo_manifest
from models.data import DatasetError, ImageDataset, load_dataset
from models.evaluation import predict_logits
from models.objectives import distance_score
from models.perturbations import KINDS, MAX_LEVEL, TABLE1, perturb

ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "CheckpointError",
    "DatasetError",
    "DEFAULT_ZOO",
    "ENV_ZOO",
    "KINDS",
    "MAX_LEVEL",
    "METHODS",
    "RESULTS_ROOT",
    "ZooHandle",
    "device_name",
    "get_dataset",
    "get_zoo",
    "image_key",
    "open_zoo",
    "saliency_grid",
]

DEFAULT_ZOO = ROOT / "assets" / "zoo" / "default"
RESULTS_ROOT = ROOT / "assets" / "results"
ENV_ZOO = "SCL_ZOO"
METHODS: tuple[str, ...] = ("integrated_gradients", "gradcam", "lime")
OBJECTIVES = {  # what each variant optimises (the zoo trainer's card says the same, when there is a card)
    "standard": "cross-entropy",
    "C": "CE + α·DS(x, colour-jitter(x))",
    "ADV": "CE on PGD adversarial examples",
    "ADV+C": "adversarial logit pairing: (CE(x) + CE(x_adv))/2 + α·DS(x, x_adv)",
}
LEVEL_UNITS = {"brightness": "+{:g}/255", "contrast": "x{:g}", "saturation": "x{:g}", "hue": "+{:g}"}


# ----------------------------------------------------------------------------- settings


def device_name() -> str:
    """'cuda' when a GPU is usable, else 'cpu'."""
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


def level_label(kind: str, level: int) -> str:
    """Human text for a Table 1 cell, e.g. 'contrast x1.5' (level 0: 'none')."""
    if level <= 0:
        return "none (level 0)"
    return f"{kind} {LEVEL_UNITS.get(kind, '{:g}').format(TABLE1[kind][level - 1])}"


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

    @property
    def variants(self) -> list[str]:
        return self.zoo.variants

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.path, self.device, self.stamp)

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
    """The per-model lock shared with ``analysis.attributions`` (imported lazily: captum is slow to import)."""
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


def open_zoo(path: str | os.PathLike, device: str | None = None) -> ZooHandle:
    """Load a zoo folder (pure; raises CheckpointError). The cached form is :func:`get_zoo`."""
    device = device or device_name()
    path = str(Path(path).expanduser().resolve())
    stamp = manifest_stamp(path)
    zoo = load_zoo(path, device)
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
    )


@st.cache_resource(show_spinner="Loading the model zoo...", max_entries=4)
def _cached_zoo(path: str, device: str, stamp: int) -> ZooHandle:
    return open_zoo(path, device)


def get_zoo(path: str | os.PathLike, device: str | None = None) -> ZooHandle:
    """The loaded zoo at ``path`` (cached per server process; reloaded when its manifest changes)."""
    resolved = str(Path(path).expanduser().resolve())
    return _cached_zoo(resolved, device or device_name(), manifest_stamp(resolved))


@st.cache_resource(show_spinner="Loading the data set (built once, then cached on disk)...", max_entries=6)
def get_dataset(name: str, split: str = "test", root: str | None = None, image_size: int | None = None) -> ImageDataset:
    """A data set split, loaded once per server process (raises DatasetError / ValueError)."""
    return load_dataset(name, split, root or None, image_size=image_size)


@st.cache_resource(show_spinner="Importing captum and lime (once per server)...")
def attributions_module():
    """``analysis.attributions`` (imports captum, lime and scikit-image: seconds, so once)."""
    import analysis.attributions as attributions

    return attributions


@st.cache_resource(show_spinner="Compiling UMAP (once per server, about 10 s)...")
def embeddings_module(warm_umap: bool = True):
    """``analysis.embeddings`` with UMAP's numba code compiled."""
    import analysis.embeddings as embeddings

    if warm_umap:
        embeddings.warm_up_umap()
    return embeddings


# ----------------------------------------------------------------------------- images


def image_key(image: np.ndarray) -> str:
    """Content hash of an image (shape, dtype and bytes): the cache key of everything computed from it."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(3,H,W) -> float32 tensor (1,3,H,W) on the CPU."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    return x.unsqueeze(0) if x.ndim == 3 else x


def perturbed_image(image: np.ndarray, kind: str, level: int) -> np.ndarray:
    """The Table 1 perturbation of one (3,H,W) image, as (3,H,W) float32."""
    return perturb(as_batch(image), kind, int(level))[0].numpy()


def dataset_image(ds: ImageDataset, index: int) -> tuple[np.ndarray, int]:
    """Image (3,H,W) float32 and label of ``ds[index]``."""
    return ds.images[int(index)].numpy().astype(np.float32), int(ds.labels[int(index)])


def gallery_indices(ds: ImageDataset, label: int | None = None, limit: int | None = None) -> np.ndarray:
    """Indices of the test images, optionally of one class."""
    labels = ds.labels.numpy()
    idx = np.arange(len(labels)) if label is None else np.flatnonzero(labels == label)
    return idx[:limit] if limit else idx


def class_examples(ds: ImageDataset, per_class: int = 1) -> tuple[list[np.ndarray], list[str]]:
    """The first ``per_class`` images of each class, for the data set overview."""
    images, titles = [], []
    labels = ds.labels.numpy()
    for c, name in enumerate(ds.classes):
        for i in np.flatnonzero(labels == c)[:per_class]:
            images.append(ds.images[i].numpy())
            titles.append(f"{name} (#{i})")
    return images, titles


# ----------------------------------------------------------------------------- predictions and maps (pure)


def logits_of(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """Logits (N, classes) as float64 numpy, computed under the model's lock."""
    with model_lock(model):
        return predict_logits(model, images).double().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def variant_prediction(model: torch.nn.Module, image: np.ndarray, kind: str, level: int) -> dict[str, Any]:
    """Predictions on the original and the perturbed image, and DS = ||F(x') - F(x)||^2 between their logits."""
    x = as_batch(image)
    both = torch.cat([x, perturb(x, kind, int(level))])
    logits = logits_of(model, both)
    probs = softmax(logits)
    ds = float(distance_score(torch.from_numpy(logits[:1]), torch.from_numpy(logits[1:]))[0])
    return {
        "logits": logits[0],
        "logits_perturbed": logits[1],
        "probs": probs[0],
        "probs_perturbed": probs[1],
        "pred": int(probs[0].argmax()),
        "conf": float(probs[0].max()),
        "pred_perturbed": int(probs[1].argmax()),
        "conf_perturbed": float(probs[1].max()),
        "ds": ds,
    }


def method_options(method: str, lime_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Options passed to ``explain`` per method (IG: 50 steps, as DESIGN section 6)."""
    if method == "integrated_gradients":
        return {"n_steps": 50}
    if method == "lime":
        return {"num_samples": int(lime_samples), "seed": int(seed)}
    return {}


def variant_map(
    model: torch.nn.Module,
    image: np.ndarray,
    kind: str,
    level: int,
    method: str,
    target: int,
    lime_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """One attribution map (H, W) of the perturbed image for class ``target``, with its scalar extras."""
    attributions = attributions_module()
    x = perturb(as_batch(image), kind, int(level))
    ex = attributions.explain(method, model, x, [int(target)], **method_options(method, lime_samples, seed))
    extras: dict[str, Any] = {}
    if "delta" in ex.extras:
        extras["delta"] = float(np.asarray(ex.extras["delta"]).reshape(-1)[0])
    if "n_segments" in ex.extras:
        extras["n_segments"] = int(np.asarray(ex.extras["n_segments"]).reshape(-1)[0])
    if "score" in ex.extras:
        extras["score"] = float(np.asarray(ex.extras["score"]).reshape(-1)[0])
    return {"map": np.asarray(ex.maps[0], dtype=np.float32), "extras": extras}


def map_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps over pixels (1 = same ranking; NaN if a map is constant)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if np.array_equal(a, b):
        return 1.0
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


# ----------------------------------------------------------------------------- cached forms


@st.cache_data(max_entries=4096, show_spinner=False)
def _cached_prediction(zoo_key: tuple, variant: str, img_key: str, _image: np.ndarray, kind: str, level: int):
    handle = _cached_zoo(*zoo_key)
    return variant_prediction(handle.model(variant), _image, kind, level)


@st.cache_data(max_entries=4096, show_spinner=False)
def _cached_map(
    zoo_key: tuple,
    variant: str,
    img_key: str,
    _image: np.ndarray,
    kind: str,
    level: int,
    method: str,
    target: int,
    lime_samples: int,
    seed: int,
):
    handle = _cached_zoo(*zoo_key)
    return variant_map(handle.model(variant), _image, kind, level, method, target, lime_samples, seed)


def saliency_grid(
    handle: ZooHandle,
    image: np.ndarray,
    kind: str,
    level: int,
    methods: Sequence[str] = ("integrated_gradients", "gradcam"),
    *,
    lime_samples: int = 1000,
    seed: int = 0,
    with_original: bool = False,
    cache: bool = False,
    variants: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The saliency page's grid: per variant, predictions, DS and the maps of the perturbed image.

    Maps explain the class the variant predicts on the *original* image, so the explained class
    stays fixed while the level slider moves. ``with_original`` adds the maps of the original image
    and each map's Spearman correlation with it (how much the explanation moved). ``cache=True``
    goes through ``st.cache_data`` (the dashboard); ``cache=False`` is the pure computation (tests,
    threads).
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    key = image_key(image)
    level = int(level)

    def prediction(variant: str) -> dict[str, Any]:
        if cache:
            return _cached_prediction(handle.key, variant, key, image, kind, level)
        return variant_prediction(handle.model(variant), image, kind, level)

    def one_map(variant: str, lvl: int, method: str, target: int) -> dict[str, Any]:
        if cache:
            return _cached_map(handle.key, variant, key, image, kind, lvl, method, target, lime_samples, seed)
        return variant_map(handle.model(variant), image, kind, lvl, method, target, lime_samples, seed)

    rows: dict[str, dict[str, Any]] = {}
    for variant in variants or handle.variants:
        t0 = time.perf_counter()
        row = {"variant": variant, **prediction(variant)}
        target = row["pred"]
        row["target"] = target
        row["maps"], row["extras"] = {}, {}
        for method in methods:
            res = one_map(variant, level, method, target)
            row["maps"][method], row["extras"][method] = res["map"], res["extras"]
        row["original_maps"], row["similarity"] = None, {}
        if with_original:
            row["original_maps"] = {}
            for method in methods:
                orig = row["maps"][method] if level == 0 else one_map(variant, 0, method, target)["map"]
                row["original_maps"][method] = orig
                row["similarity"][method] = map_similarity(orig, row["maps"][method])
        row["seconds"] = time.perf_counter() - t0
        rows[variant] = row
    return rows


# ----------------------------------------------------------------------------- neighbourhood embeddings


def neighbourhood(
    handle: ZooHandle,
    ds: ImageDataset,
    index: int,
    method: str = "pca",
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Projected logits of the original, its perturbations and same-class images, per variant.

    Returns (points, ranks): points has columns variant, x, y, row, role, kind, level, dataset_index;
    ranks has variant, kind, level, rank, n_candidates (rank 1 = the perturbed copy is the
    original's nearest neighbour among the same-class images, by DS).
    """
    emb = embeddings_module(method == "umap")
    images, meta = emb.visualize_set(ds.images, ds.labels, int(index), n_same_class=n_same_class, kinds=list(kinds),
                                     seed=seed)  # fmt: skip
    with handle.all_locks():
        logits = emb.embed_logits(handle.zoo.models, images)
    points, ranks = [], []
    for variant in handle.variants:
        xy = emb.project(logits[variant], method, seed)
        frame = meta.reset_index(drop=True).copy()
        frame.insert(0, "row", np.arange(len(frame)))
        frame.insert(0, "y", xy[:, 1])
        frame.insert(0, "x", xy[:, 0])
        frame.insert(0, "variant", variant)
        points.append(frame)
        r = emb.neighbour_ranks(logits[variant], meta)
        r.insert(0, "variant", variant)
        ranks.append(r)
    return pd.concat(points, ignore_index=True), pd.concat(ranks, ignore_index=True)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_neighbourhood(
    zoo_key: tuple,
    dataset: tuple,
    index: int,
    method: str,
    n_same_class: int,
    kinds: tuple[str, ...],
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return neighbourhood(_cached_zoo(*zoo_key), get_dataset(*dataset), index, method, n_same_class, kinds, seed)


def neighbourhood_image(ds: ImageDataset, row: pd.Series | dict, original_index: int) -> np.ndarray:
    """The image behind one point of a neighbourhood plot."""
    if row["role"] == "perturbed":
        return perturbed_image(ds.images[int(original_index)].numpy(), str(row["kind"]), int(row["level"]))
    return ds.images[int(row["dataset_index"])].numpy()


# ----------------------------------------------------------------------------- adversarial examples and probes


def adversarial_example(
    handle: ZooHandle,
    variant: str,
    image: np.ndarray,
    label: int | None,
    eps_255: float = 8.0,
    steps: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """A white-box PGD example of one image against one variant (label None: attack the clean prediction)."""
    from analysis.robustness import adversarial_examples

    model = handle.model(variant)
    x = as_batch(image)
    with model_lock(model):
        if label is None:
            label = int(predict_logits(model, x).argmax(1)[0])
        step = max(eps_255 / 4, 0.5) / 255  # the paper's 2/255 at 8/255
        adv, table = adversarial_examples(model, x, torch.tensor([int(label)]), eps=eps_255 / 255, step_size=step,
                                          steps=int(steps), seed=seed)  # fmt: skip
        ds = float(distance_score(predict_logits(model, x), predict_logits(model, adv))[0])
    row = table.iloc[0]
    return {
        "adversarial": adv[0].numpy(),
        "label": int(label),
        "clean_pred": int(row["clean_pred"]),
        "clean_conf": float(row["clean_conf"]),
        "adv_pred": int(row["adv_pred"]),
        "adv_conf": float(row["adv_conf"]),
        "linf_255": float(row["linf"]) * 255,
        "ds": ds,
    }


@st.cache_data(max_entries=512, show_spinner=False)
def cached_adversarial(zoo_key: tuple, variant: str, img_key: str, _image: np.ndarray, label: int | None,
                       eps_255: float, steps: int, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    return adversarial_example(_cached_zoo(*zoo_key), variant, _image, label, eps_255, steps, seed)


def probe_examples(image: np.ndarray, seed: int = 0) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every probe of ``analysis.probes`` at every level applied to one image: probe -> [(label, image)]."""
    from analysis.probes import PROBES

    x = as_batch(image)
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, probe in PROBES.items():
        out[name] = [("clean", x[0].numpy())] + [
            (label, probe.apply(x, level, seed)[0].numpy()) for level, label in zip(probe.levels, probe.labels,
                                                                                  strict=True)
        ]  # fmt: skip
    return out


def probe_predictions(handle: ZooHandle, image: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Each variant's prediction on each probe level of one image: variant, probe, level_label, pred, conf."""
    examples = probe_examples(image, seed)
    rows = []
    for variant in handle.variants:
        for probe, items in examples.items():
            probs = softmax(logits_of(handle.model(variant), torch.from_numpy(np.stack([im for _, im in items]))))
            for (label, _), p in zip(items, probs, strict=True):
                rows.append({"variant": variant, "probe": probe, "level_label": label, "pred": int(p.argmax()),
                             "class": handle.class_name(int(p.argmax())), "conf": float(p.max())})  # fmt: skip
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- precomputed results


@dataclass
class Results:
    """Tables (CSV) and documents (JSON) found in a results folder.

    The layout written by ``python -m analysis.report``: ``summary.json`` (status, settings and files of
    every experiment), ``claims.csv``/``claims.json``, ``REPORT.md``, ``results/<experiment>.csv`` (plus
    ``results/<experiment>_<part>.csv``) and ``results/<experiment>.json`` (settings, notes, tables).
    Tables are found by their columns, so other layouts with the same tidy tables work too.
    """

    folder: Path | None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        doc = self.documents.get("summary.json")
        return doc if isinstance(doc, dict) else {}

    def experiment(self, name: str) -> dict[str, Any]:
        """The report's record of one experiment: status (ok / failed / skipped), notes, settings, elapsed time."""
        record = dict((self.summary.get("experiments") or {}).get(name) or {})
        doc = self.documents.get(f"results/{name}.json") or self.documents.get(f"{name}.json")
        if isinstance(doc, dict):
            for key in ("notes", "settings", "title", "paper", "mode", "elapsed_s"):
                if key in doc:
                    record.setdefault(key, doc[key])
        return record

    @property
    def report_markdown(self) -> str | None:
        path = self.folder / "REPORT.md" if self.folder else None
        try:
            return path.read_text() if path and path.is_file() else None
        except OSError:
            return None

    def find(self, columns: set[str], name_hint: str | None = None) -> tuple[str, pd.DataFrame] | tuple[None, None]:
        """The first table having all ``columns`` (preferring names containing ``name_hint``)."""
        matches = [(n, df) for n, df in self.tables.items() if columns <= set(df.columns)]
        if name_hint:
            matches.sort(key=lambda item: name_hint not in item[0])
        return matches[0] if matches else (None, None)

    def named(self, *hints: str) -> dict[str, Any]:
        """Tables (and JSON documents that are not tables) whose file name contains one of ``hints``.

        A JSON file beside a CSV of the same name (the report writes both) and the report's
        per-experiment metadata are left out: they repeat the CSV.
        """
        found: dict[str, Any] = {}
        stems = {n.rsplit(".", 1)[0] for n in self.tables if n.endswith(".csv")}
        for n, obj in {**self.tables, **self.documents}.items():
            if n.endswith(".json") and (n.rsplit(".", 1)[0] in stems or n == "summary.json"):
                continue
            if any(h in Path(n).name.lower() for h in hints):
                found.setdefault(n, obj)
        return found


def results_folders(handle: ZooHandle) -> list[Path]:
    """Where a zoo's precomputed results may live, in order: assets/results/<zoo name>/, reports/<zoo name>/
    (the report command's default), <zoo folder>/results/. The zoo name is the manifest's, then the folder's."""
    names = list(dict.fromkeys([handle.name, Path(handle.path).name]))
    folders = [RESULTS_ROOT / n for n in names] + [ROOT / "reports" / n for n in names]
    folders.append(Path(handle.path) / "results")
    return list(dict.fromkeys(folders))


def report_command(handle: ZooHandle) -> str:
    out = RESULTS_ROOT / handle.name
    try:
        out_text = str(out.relative_to(Path.cwd()))
    except ValueError:
        out_text = str(out)
    return f"python -m analysis.report --zoo {handle.path} --out {out_text}"


def _folder_stamp(folder: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.suffix in (".csv", ".json")))


@st.cache_data(max_entries=16, show_spinner=False)
def _read_results(folder: str, stamp: tuple) -> Results:
    res = Results(Path(folder))
    for path in sorted(Path(folder).rglob("*")):
        name = str(path.relative_to(folder))
        try:
            if path.suffix == ".csv":
                res.tables[name] = pd.read_csv(path)
            elif path.suffix == ".json":
                doc = json.loads(path.read_text())
                res.documents[name] = doc
                if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
                    res.tables[name] = pd.DataFrame(doc)
        except Exception as exc:  # a broken file is reported on the page, not raised
            res.problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return res


def load_results(handle: ZooHandle) -> Results:
    """The first results folder that exists, read (cached until a file in it changes); empty Results if none."""
    for folder in results_folders(handle):
        if folder.is_dir() and any(p.suffix in (".csv", ".json") for p in folder.rglob("*")):
            return _read_results(str(folder), _folder_stamp(folder))
    return Results(None)


# ----------------------------------------------------------------------------- quick on-demand experiments

QUICK_EXPERIMENTS = ("continuity", "probes", "robustness")
QUICK_SIZES = {"continuity": 256, "probes": 256, "robustness": 64}
# Lighter than the report: the audit keeps its point (more steps, a margin loss, a restart) with fewer attacks.
QUICK_SETTINGS: dict[str, dict[str, Any]] = {
    "neighbourhood_rank": {"n_anchors": 50},
    "eps_sweep": {"eps_values": tuple(e / 255 for e in (0, 2, 4, 8, 16))},
    "attack_audit": {"steps_list": (10, 50), "restarts": 2, "losses": ("ce", "margin")},
}


@st.cache_resource
def _quick_store() -> dict[tuple, dict[str, pd.DataFrame]]:
    """Quick results computed in this server process (shared by all sessions, lost on restart)."""
    return {}


def quick_key(handle: ZooHandle, dataset: tuple, experiment: str, n_images: int) -> tuple:
    return (handle.key, dataset, experiment, int(n_images))


def quick_results(handle: ZooHandle, dataset: tuple, experiment: str, n_images: int) -> dict[str, pd.DataFrame] | None:
    """Quick results computed earlier in this server for these settings, or None."""
    return _quick_store().get(quick_key(handle, dataset, experiment, n_images))


def compute_quick(
    handle: ZooHandle,
    ds: ImageDataset,
    experiment: str,
    n_images: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """A small version of one report experiment on the first ``n_images`` test images (pure)."""
    if experiment not in QUICK_EXPERIMENTS:
        raise ValueError(f"no quick version of {experiment!r}; known: {', '.join(QUICK_EXPERIMENTS)}")
    n = min(int(n_images), len(ds))
    images, labels = ds.images[:n], ds.labels[:n]
    progress = progress or (lambda fraction, text: None)
    parts: dict[str, list[pd.DataFrame]] = {}
    variants = handle.variants
    for i, variant in enumerate(variants):
        progress(i / len(variants), f"{experiment}: {variant} ({i + 1}/{len(variants)})")
        one = {variant: handle.model(variant)}
        with handle.lock(variant):
            if experiment == "continuity":
                from analysis.continuity import ds_table, neighbourhood_rank_table

                parts.setdefault("ds", []).append(ds_table(one, images))
                opts = dict(QUICK_SETTINGS["neighbourhood_rank"])
                opts["n_anchors"] = min(int(opts.get("n_anchors", 50)), n)
                parts.setdefault("neighbourhood_rank", []).append(neighbourhood_rank_table(one, images, labels, **opts))
            elif experiment == "probes":
                from analysis.probes import probe_table

                parts.setdefault("probes", []).append(probe_table(one, images, labels))
            else:
                from analysis.robustness import attack_audit, eps_sweep, robustness_table

                parts.setdefault("robustness", []).append(robustness_table(one, images, labels))
                parts.setdefault("eps_sweep", []).append(eps_sweep(one, images, labels, **QUICK_SETTINGS["eps_sweep"]))
                parts.setdefault("attack_audit", []).append(
                    attack_audit(one, images, labels, **QUICK_SETTINGS["attack_audit"])
                )
    progress(1.0, f"{experiment}: done")
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def run_quick(
    handle: ZooHandle,
    dataset: tuple,
    experiment: str,
    n_images: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute (or reuse) the quick results and keep them for every session of this server."""
    key = quick_key(handle, dataset, experiment, n_images)
    store = _quick_store()
    if key not in store:
        store[key] = compute_quick(handle, get_dataset(*dataset), experiment, n_images, progress)
    return store[key]


# ----------------------------------------------------------------------------- small helpers for pages


def masking_warnings(audit: pd.DataFrame) -> list[str]:
    """Signs of gradient masking in an attack-audit table (``analysis.robustness.masking_warnings``)."""
    from analysis.robustness import masking_warnings as _warnings

    try:
        return _warnings(audit)
    except (KeyError, ValueError) as exc:  # a table from an older report: say so instead of failing
        return [f"could not check the audit table for gradient masking ({type(exc).__name__}: {exc})"]


def card_metrics(handle: ZooHandle) -> pd.DataFrame:
    """One row per variant: objective and the card's headline metrics (NaN where a card lacks them)."""
    rows = []
    for v in handle.variants:
        card = handle.card(v)
        m = card.get("metrics", {}) or {}
        row = {
            "variant": v,
            "objective": card.get("objective") or OBJECTIVES.get(v, ""),
            "test_clean_acc": m.get("test_clean_acc", math.nan),
            "test_pgd10_acc": m.get("test_pgd10_acc", math.nan),
            "ds_level1_sum": m.get("ds_level1_sum", math.nan),
        }
        for kind, value in (m.get("ds_level1") or {}).items():
            row[f"ds_level1_{kind}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def card_markdown(handle: ZooHandle, variant: str) -> str | None:
    """The zoo's human-readable card (cards/<variant>.md), if it has one."""
    path = Path(handle.path) / "cards" / f"{variant}.md"
    try:
        return path.read_text() if path.is_file() else None
    except OSError:
        return None
