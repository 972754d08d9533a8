"""The dashboard's backend: what the pages ask for, loaded and cached; the computing lives in ``analysis/``.

* The zoo, data sets and slow imports are cached once per server process (:mod:`app.zoo_cache`);
  precomputed and quick results are read by :mod:`app.results_store`; the saliency page's per-image
  computations live in :mod:`app.saliency_cache`, the embeddings page's in :mod:`app.embeddings_cache`,
  image helpers in :mod:`app.images`. All are re-exported here.
* Per-image computations go through ``analysis.per_image`` and ``analysis.ood``, wrapped in
  ``st.cache_data`` keyed by the zoo, a content hash of the image, the perturbation and the method.
  For one (image, kind) every level is computed in one batched pass, so a level slider is a lookup.
* Concurrent users share one loaded zoo. Attribution methods put hooks on a model while they run, so
  every forward pass holds that model's lock (``analysis.attributions.model_lock``): one model
  serialises its callers, different models run in parallel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app.embeddings_cache import (  # noqa: F401  (re-exported for the pages)
    Anchor,
    anchor_views,
    cached_anchor_views,
    cached_neighbourhood,
    checkpoint_hashes,
    embeddings_cache_dir,
    neighbourhood,
    neighbourhood_image,
    thumbnails,
    upload_anchor,
    whole_set,
    whole_set_ready,
)
from app.images import (  # noqa: F401  (re-exported for the pages)
    as_batch,
    class_examples,
    dataset_image,
    gallery_indices,
    image_key,
    perturbed_image,
)
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
from models.data import DatasetError
from models.evaluation import predict_logits
from models.objectives import VARIANT_REGISTRY, distance_score
from models.perturbations import KIND_REGISTRY, KINDS, MAX_LEVEL

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


def default_variants(variants: Sequence[str]) -> list[str]:
    """The variants a page shows first: the paper's four where the zoo has them, else all."""
    from models.objectives import PAPER_VARIANTS

    paper = [v for v in variants if v in PAPER_VARIANTS]
    return paper or list(variants)
