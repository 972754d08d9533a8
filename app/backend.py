"""The dashboard's backend: what the pages ask for, loaded and cached; the computing lives in ``analysis/``.

* The zoo, data sets and slow imports are cached once per server process (:mod:`app.zoo_cache`);
  precomputed and quick results are read by :mod:`app.results_store`. Both are re-exported here.
* Per-image computations go through ``analysis.per_image`` and ``analysis.ood``, wrapped in
  ``st.cache_data`` keyed by the zoo, a content hash of the image, the perturbation and the method.
  For one (image, kind) every level is computed in one batched pass, so a level slider is a lookup.
* Concurrent users share one loaded zoo. Attribution methods put hooks on a model while they run, so
  every forward pass holds that model's lock (``analysis.attributions.model_lock``): one model
  serialises its callers, different models run in parallel.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app.results_store import (  # noqa: F401  (re-exported for the pages)
    QUICK_EXPERIMENTS,
    QUICK_SETTINGS,
    QUICK_SIZES,
    RESULTS_ROOT,
    Results,
    compute_quick,
    load_results,
    quick_results,
    report_command,
    results_folders,
    run_quick,
)
from app.saliency_cache import (  # noqa: F401  (re-exported for the pages)
    level_set,
    logits_of,
    method_info,
    ood_assessment,
    per_image_module,
    saliency_grid,
    saliency_row,
    softmax,
)
from app.zoo_cache import (  # noqa: F401  (re-exported for the pages)
    DEFAULT_ZOO,
    ENV_ZOO,
    ROOT,
    ZooHandle,
    _cached_zoo,
    attributions_module,
    device_name,
    embeddings_module,
    get_dataset,
    get_zoo,
    initial_zoo_path,
    model_lock,
    open_zoo,
)
from models.checkpoints import CheckpointError
from models.data import DatasetError, ImageDataset
from models.evaluation import predict_logits
from models.objectives import VARIANT_REGISTRY, distance_score
from models.perturbations import KIND_REGISTRY, KINDS, MAX_LEVEL, perturb

__all__ = [
    "CheckpointError",
    "DatasetError",
    "DEFAULT_ZOO",
    "ENV_ZOO",
    "KINDS",
    "MAX_LEVEL",
    "RESULTS_ROOT",
    "ZooHandle",
    "device_name",
    "get_dataset",
    "get_zoo",
    "image_key",
    "open_zoo",
    "saliency_grid",
]


def level_label(kind: str, level: int) -> str:
    """Human text for a level of a registered kind, e.g. 'contrast x1.5' (level 0: 'none (level 0)')."""
    if level <= 0:
        return "none (level 0)"
    return KIND_REGISTRY[kind].label(int(level))


def variant_help(variant: str) -> str:
    """The registry's one-line description of a variant ('' for an imported model of another name)."""
    known = VARIANT_REGISTRY.get(variant)
    return known.help if known else ""


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
    """Every probe of ``analysis.probes`` at every level applied to one image: probe -> [(label, image)].

    The image is treated as image 0 of a batch (probes that draw per image, as the sliding puzzle does, seed
    each image by its index)."""
    from analysis.probes import PROBES

    x = as_batch(image)
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, probe in PROBES.items():
        out[name] = [("clean", x[0].numpy())] + [
            (label, probe.apply(x, level, seed, 0)[0].numpy()) for level, label in zip(probe.levels, probe.labels,
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
            "objective": card.get("objective") or (VARIANT_REGISTRY[v].objective if v in VARIANT_REGISTRY else ""),
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


# ----------------------------------------------------------------------------- embeddings page: anchors, shared maps


@dataclass
class Anchor:
    """One anchor of the embeddings page: a test image (``index`` >= 0) or an upload (``index`` -1, ``true`` None;
    its neighbourhood ``label`` is the class a variant predicts for it)."""

    name: str
    image: np.ndarray  # float32 (3, H, W) in [0, 1]
    label: int
    index: int = -1
    true: int | None = None

    @property
    def key(self) -> tuple:
        return (self.name, image_key(self.image), int(self.label), int(self.index))


def default_variants(variants: Sequence[str]) -> list[str]:
    """The variants a page shows first: the paper's four where the zoo has them, else all."""
    from models.objectives import PAPER_VARIANTS

    paper = [v for v in variants if v in PAPER_VARIANTS]
    return paper or list(variants)


def thumbnails(images: torch.Tensor, max_side: int = 64) -> np.ndarray:
    """(N, 3, H, W) float images -> (N, h, w, 3) uint8, shrunk to at most ``max_side`` pixels a side."""
    x = images.detach().float().cpu()
    if max(x.shape[-2:]) > max_side:
        scale = max_side / max(x.shape[-2:])
        size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
        x = torch.nn.functional.interpolate(x, size=size, mode="area")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def anchor_views(
    handle: ZooHandle,
    ds: ImageDataset,
    anchors: Sequence[Anchor],
    variants: Sequence[str],
    representation: str = "logits",
    method: str = "pca",
    n_same_class: int = 200,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
) -> dict[str, Any]:
    """The embeddings page's neighbourhood view (pure): several anchors, their perturbations and same-class images
    in one 2-D map shared by ``variants`` (logits: fitted on their union; features: Procrustes-aligned).

    Returns points (variant, x, y, row, role, kind, level, dataset_index, anchor, label, pred, pred_name,
    true_name, ds, ds_to), ranks (variant, anchor, kind, level, rank, n_candidates; by DS on logits), reps
    (variant -> (N, D) shown representation), thumbs ((N, h, w, 3) uint8 by row) and align.
    """
    emb = embeddings_module(method == "umap")
    images, meta = emb.anchored_set(ds.images, ds.labels, [(a.name, torch.from_numpy(np.asarray(a.image)), a.label,
                                                            a.index) for a in anchors],
                                    n_same_class=n_same_class, kinds=list(kinds), seed=seed)  # fmt: skip
    models = {v: handle.model(v) for v in variants}
    with handle.all_locks():
        logits = emb.embed(models, images, "logits")
        reps = logits if representation == "logits" else emb.embed(models, images, representation)
    align = "union" if representation == "logits" else "procrustes"
    xy = emb.shared_projection(reps, method, seed, align)
    labels = ds.labels.numpy()
    true = {a.name: a.true for a in anchors}
    true_idx = [
        (int(labels[i]) if role == "same_class" else true.get(a)) for role, a, i in
        zip(meta["role"], meta["anchor"], meta["dataset_index"], strict=True)
    ]  # fmt: skip
    first_of_class = {}
    for a in anchors:
        first_of_class.setdefault(int(a.label), a.name)
    ds_to = [a if a else first_of_class.get(int(lbl), "") for a, lbl in zip(meta["anchor"], meta["label"], strict=True)]
    origin = {a: int(i) for i, a in zip(np.flatnonzero(meta["role"] == "original"),
                                        meta.loc[meta["role"] == "original", "anchor"], strict=True)}  # fmt: skip
    points, ranks = [], []
    for variant in variants:
        z = logits[variant]
        ref = np.array([origin.get(a, i) for i, a in enumerate(ds_to)])
        frame = meta.reset_index(drop=True).copy()
        frame.insert(0, "row", np.arange(len(frame)))
        frame.insert(0, "y", xy[variant][:, 1])
        frame.insert(0, "x", xy[variant][:, 0])
        frame.insert(0, "variant", variant)
        frame["pred"] = z.argmax(1)
        frame["pred_name"] = [handle.class_name(int(p)) for p in frame["pred"]]
        frame["true_name"] = ["unknown (upload)" if t is None else handle.class_name(int(t)) for t in true_idx]
        frame["ds"] = ((z - z[ref]) ** 2).sum(1)
        frame["ds_to"] = ds_to
        points.append(frame)
        r = emb.anchored_ranks(z, meta)
        r.insert(0, "variant", variant)
        ranks.append(r)
    return {
        "points": pd.concat(points, ignore_index=True),
        "ranks": pd.concat(ranks, ignore_index=True),
        "reps": {v: np.asarray(reps[v], dtype=np.float32) for v in variants},
        "thumbs": thumbnails(images),
        "align": align,
    }


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
    return anchor_views(_cached_zoo(*zoo_key), get_dataset(*dataset), _anchors, variants, representation, method,
                        n_same_class, kinds, seed)  # fmt: skip


def upload_anchor(handle: ZooHandle, name: str, image: np.ndarray, variant: str) -> Anchor:
    """An uploaded image as an anchor: its neighbourhood is the class ``variant`` predicts for it."""
    pred = int(logits_of(handle.model(variant), as_batch(image)).argmax(1)[0])
    return Anchor(name, np.asarray(image, dtype=np.float32), pred, -1, None)


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
    from analysis.embeddings import whole_set_key

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
    return all(p.is_file() for p in reps.values()) and (fitted is None or fitted.is_file())


@st.cache_resource(max_entries=8, show_spinner=False)
def _read_arrays(path: str, mtime: int) -> dict[str, np.ndarray] | None:
    from analysis.embeddings import load_arrays

    return load_arrays(path)


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
    from analysis.embeddings import save_arrays, shared_projection, whole_set_representations

    progress = progress or (lambda f, t: None)
    n = len(ds)
    rep_paths, fitted_path = _whole_set_paths(handle, dataset, n, representation, variants, method, seed)
    data: dict[str, dict[str, np.ndarray]] = {}
    missing = [v for v, p in rep_paths.items() if _read_arrays(str(p), _mtime(p)) is None]
    for i, v in enumerate(variants):
        if v in missing:
            step = _scaled(progress, i, len(variants))
            with handle.lock(v):
                one = whole_set_representations({v: handle.model(v)}, ds.images, representation, progress=step)
            save_arrays(rep_paths[v], one[v])
        data[v] = _read_arrays(str(rep_paths[v]), _mtime(rep_paths[v]))
    fitted = None
    if fitted_path is not None:
        fitted = _read_arrays(str(fitted_path), _mtime(fitted_path))
        if fitted is None:
            progress(0.5, f"{method} of {n} points x {len(variants)} variants (once; then cached on disk)")
            xy = shared_projection({v: data[v]["rep"] for v in variants}, method, seed, "procrustes")
            save_arrays(fitted_path, xy)
            fitted = _read_arrays(str(fitted_path), _mtime(fitted_path))
    progress(1.0, "done")
    return data, fitted


def _scaled(progress: Callable[[float, str], None], i: int, n: int) -> Callable[[float, str], None]:
    """Variant ``i`` of ``n``'s progress as its share of the first half of the bar (the representations)."""
    return lambda fraction, text: progress(0.5 * (i + fraction) / n, text)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0
