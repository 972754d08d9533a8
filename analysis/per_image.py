"""Per-image computations behind the dashboard's saliency page: predictions, perturb-then-explain, map similarity.

Pure functions of models and arrays (no Streamlit, no zoo handle), so tests and threads call them directly.
Everything for one (image, kind) is computed for *all* levels in one batched pass: the original (level 0)
and the ``MAX_LEVEL`` perturbed copies go through the model (and through IG's interpolation batches)
together, so moving a level slider afterwards is a lookup.

* :func:`level_predictions`: logits, probabilities, top-k classes and DS = ||F(x') - F(x)||² per level.
* :func:`level_maps`: one attribution method's maps of every level, for one fixed target class.
* :func:`map_similarity`: Spearman rank correlation of two maps (``analysis.attributions``' own).
* :func:`perturbed_image`: one image at one level of a Table 1 kind.
* :func:`adversarial_example`: a white-box PGD example of one image and its DS (the robustness page).
* :func:`probe_examples` / :func:`probe_predictions`: every probe level of one image and each variant's
  prediction on it (the probes page).

Forward passes hold the model's lock (``analysis.attributions.model_lock``): one shared model serialises
its callers, so concurrent users never read each other's activations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.attribution_quality import _spearman
from analysis.attributions import METHOD_REGISTRY, explain, get_method, model_lock
from models.evaluation import predict_logits
from models.objectives import distance_score
from models.perturbations import MAX_LEVEL, perturb

__all__ = ["ALL_LEVELS", "METHOD_REGISTRY", "adversarial_example", "level_batch", "level_maps", "level_predictions",
           "logits_of", "map_similarity", "model_lock", "perturbed_image", "probe_examples", "probe_predictions",
           "softmax"]  # fmt: skip

ALL_LEVELS: tuple[int, ...] = tuple(range(MAX_LEVEL + 1))  # 0 = the original image

map_similarity = _spearman  # one Spearman for maps: 1.0 for identical maps, NaN when one is constant


def as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(3,H,W) or (N,3,H,W) -> float32 tensor (N,3,H,W) on the CPU."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    return x.unsqueeze(0) if x.ndim == 3 else x


def level_batch(image: np.ndarray, kind: str, levels: Sequence[int] = ALL_LEVELS) -> torch.Tensor:
    """The image at each of ``levels`` of perturbation ``kind`` (level 0 = unchanged), stacked (L,3,H,W)."""
    x = as_batch(image)
    return torch.cat([x if int(level) == 0 else perturb(x, kind, int(level)) for level in levels])


def logits_of(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Logits (N, classes) as float64 numpy, computed under the model's lock."""
    with model_lock(model):
        return predict_logits(model, images).double().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def level_predictions(
    model: nn.Module, image: np.ndarray, kind: str, levels: Sequence[int] = ALL_LEVELS, top: int = 3
) -> dict[str, Any]:
    """One forward pass over every level: ``levels``, ``logits`` (L,C), ``probs`` (L,C), ``pred`` (L,),
    ``conf`` (L,), ``top`` (L, top) class indices by probability, ``ds`` (L,) against the *original* image."""
    levels = [int(level) for level in levels]
    x = level_batch(image, kind, levels)
    original = as_batch(image)
    logits = logits_of(model, torch.cat([original, x]))
    base, logits = logits[:1], logits[1:]
    probs = softmax(logits)
    ds = distance_score(torch.from_numpy(np.repeat(base, len(levels), 0)), torch.from_numpy(logits)).numpy()
    return {
        "levels": levels,
        "logits": logits,
        "probs": probs,
        "pred": probs.argmax(1),
        "conf": probs.max(1),
        "top": np.argsort(-probs, axis=1)[:, :top],
        "ds": np.asarray(ds, dtype=np.float64),
    }


def _scalar_extras(extras: dict[str, Any], i: int) -> dict[str, float]:
    """The per-image scalar extras of an explanation (IG's delta, LIME's segment count and fit score, and
    ``map_side``, the shorter side of GradCAM's map before upsampling)."""
    out: dict[str, float] = {}
    if "raw" in extras:
        out["map_side"] = int(min(np.shape(extras["raw"])[-2:]))
    for key in ("delta", "n_segments", "score"):
        if key in extras:
            value = np.asarray(extras[key]).reshape(-1)
            if len(value) > i:
                out[key] = int(value[i]) if key == "n_segments" else float(value[i])
    return out


def level_maps(
    model: nn.Module,
    image: np.ndarray,
    kind: str,
    method: str,
    target: int,
    levels: Sequence[int] = ALL_LEVELS,
    **options: Any,
) -> dict[str, Any]:
    """Maps (L,H,W) float32 of ``method`` for class ``target`` on the image at each of ``levels``, in one
    batched ``explain`` call (IG integrates every level in the same interpolation batches), plus per-level
    scalar ``extras`` (a list of dicts). ``options`` override the method's registered defaults (fitted to the input
    size: ``analysis.attribution_defaults``)."""
    levels = [int(level) for level in levels]
    x = level_batch(image, kind, levels)
    opts = get_method(method).options(input_size=tuple(x.shape[1:]), **options)  # defaults fitted to the size
    ex = explain(method, model, x, [int(target)] * len(levels), **opts)
    return {
        "levels": levels,
        "maps": np.asarray(ex.maps, dtype=np.float32),
        "extras": [_scalar_extras(ex.extras, i) for i in range(len(levels))],
    }


def perturbed_image(image: np.ndarray, kind: str, level: int) -> np.ndarray:
    """The Table 1 perturbation of one (3,H,W) image, as (3,H,W) float32 (level 0: the image itself)."""
    return level_batch(image, kind, (int(level),))[0].numpy()


def adversarial_example(
    model: nn.Module,
    image: np.ndarray,
    label: int | None,
    eps_255: float = 8.0,
    steps: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """A white-box PGD example of one image against ``model`` (``label`` None: attack the clean prediction), with
    step size eps/4 (the paper's 2/255 at 8/255; at least 0.5/255) and its DS against the clean image.

    Returns adversarial (3,H,W), label, clean_pred, clean_conf, adv_pred, adv_conf, linf_255 and ds."""
    from analysis.robustness import adversarial_examples

    x = as_batch(image)
    with model_lock(model):
        if label is None:
            label = int(predict_logits(model, x).argmax(1)[0])
        step = max(eps_255 / 4, 0.5) / 255
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


def probe_examples(image: np.ndarray, seed: int = 0) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every probe of ``analysis.probes`` at every level applied to one image: probe -> [(label, image)].

    The image is treated as image 0 of a batch (probes that draw per image, as the sliding puzzle does, seed
    each image by its index)."""
    from analysis.probes import PROBES

    x = as_batch(image)
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, probe in PROBES.items():
        levels = zip(probe.levels, probe.labels, strict=True)
        out[name] = [("clean", x[0].numpy())] + [(label, probe.apply(x, level, seed, 0)[0].numpy())
                                                 for level, label in levels]  # fmt: skip
    return out


def probe_predictions(
    models: Mapping[str, nn.Module],
    image: np.ndarray,
    seed: int = 0,
    class_name: Callable[[int], str] = str,
) -> pd.DataFrame:
    """Each variant's prediction on each probe level of one image: variant, probe, level_label, pred, class, conf."""
    examples = probe_examples(image, seed)
    rows = []
    for variant, model in models.items():
        for probe, items in examples.items():
            probs = softmax(logits_of(model, torch.from_numpy(np.stack([im for _, im in items]))))
            for (label, _), p in zip(items, probs, strict=True):
                rows.append({"variant": variant, "probe": probe, "level_label": label, "pred": int(p.argmax()),
                             "class": class_name(int(p.argmax())), "conf": float(p.max())})  # fmt: skip
    return pd.DataFrame(rows)
