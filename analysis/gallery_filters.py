"""Which test images a researcher wants to look at: the gallery's filters, from the report's per-image results.

The report measures its per-image tables (``continuity_per_image``: DS per variant, kind, level and image;
``robustness_per_image``: clean correctness per variant and image) on its evaluation subset, the first
``n_images`` of a seeded permutation of the test split kept in data set order (``analysis.transfer.
seeded_subset``); column ``image`` is the position in that subset. :func:`subset_indices` maps positions back to
test-set indices, and :func:`candidates` orders the test images for one filter:

* ``largest DS``: by the chosen variant's DS for the chosen kind and level, largest first;
* ``misclassified``: the images the variant gets wrong (clean);
* ``prediction changed``: the images whose predicted class the kind and level change (from ``changed``,
  computed by :func:`prediction_changes`, since the report keeps DS but not predictions per image);

each optionally restricted to one class. Pure functions of tables, arrays and a model (no Streamlit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.evaluation import predict_logits
from models.perturbations import perturb

ALL = "every test image"
LARGEST_DS = "largest DS"
CHANGED = "prediction changed"
MISCLASSIFIED = "misclassified"
FILTERS: tuple[str, ...] = (ALL, LARGEST_DS, CHANGED, MISCLASSIFIED)
DS_COLUMNS = {"variant", "kind", "level", "image", "ds"}
CORRECT_COLUMNS = {"variant", "image", "clean"}


class FilterError(ValueError):
    """A filter that these results cannot answer (no such table, variant, kind or level)."""


def subset_indices(n_test: int, n_images: int | None, seed: int) -> np.ndarray:
    """Test-set index of each position of the report's evaluation subset (as ``analysis.transfer.seeded_subset``
    draws it: the first ``n_images`` of a seeded permutation, in data set order; all images when it is larger)."""
    if not n_images or n_images >= n_test:
        return np.arange(n_test)
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(int(seed)))[: int(n_images)]
    return perm.sort().values.numpy()


@dataclass(frozen=True)
class PerImage:
    """A report's per-image results and where its images are in the test split."""

    indices: np.ndarray  # position in the evaluation subset -> test-set index
    ds: pd.DataFrame | None = None  # variant, kind, level, image, ds
    correct: pd.DataFrame | None = None  # variant, image, clean (bool)

    @classmethod
    def from_report(cls, tables: Mapping[str, pd.DataFrame], settings: Mapping[str, Any], n_test: int) -> PerImage:
        """From a results folder's tables (any names; found by their columns) and its summary's settings."""
        ds = next((df for df in tables.values() if DS_COLUMNS <= set(df.columns)), None)
        correct = next((df for n, df in tables.items() if CORRECT_COLUMNS <= set(df.columns) and "robust" in n), None)
        if correct is None:
            correct = next((df for df in tables.values() if CORRECT_COLUMNS <= set(df.columns)), None)
        indices = subset_indices(n_test, settings.get("n_images"), int(settings.get("subset_seed", 0) or 0))
        return cls(indices, ds, correct)

    def variants(self) -> list[str]:
        found = [df["variant"] for df in (self.ds, self.correct) if df is not None]
        return list(dict.fromkeys(str(v) for col in found for v in col))

    def positions_to_indices(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self.indices)):
            raise FilterError(f"the per-image results name image {int(pos.max())}, beyond the report's "
                              f"{len(self.indices)}-image subset: they belong to another data set")  # fmt: skip
        return self.indices[pos]


def largest_ds(per_image: PerImage, variant: str, kind: str, level: int) -> pd.DataFrame:
    """Test images by ``variant``'s DS under ``kind`` at ``level``, largest first: columns index, ds."""
    df = per_image.ds
    if df is None:
        raise FilterError("the report has no per-image DS (continuity_per_image)")
    rows = df[(df["variant"].astype(str) == variant) & (df["kind"] == kind) & (df["level"] == int(level))]
    if rows.empty:
        raise FilterError(f"no per-image DS for {variant}, {kind}, level {level}")
    rows = rows.sort_values("ds", ascending=False, kind="stable")
    return pd.DataFrame({"index": per_image.positions_to_indices(rows["image"]), "ds": rows["ds"].to_numpy()})


def misclassified(per_image: PerImage, variant: str) -> np.ndarray:
    """Test-set indices of the images ``variant`` classifies wrongly (clean), in data set order."""
    df = per_image.correct
    if df is None:
        raise FilterError("the report has no per-image correctness (robustness_per_image)")
    rows = df[df["variant"].astype(str) == variant]
    if rows.empty:
        raise FilterError(f"no per-image correctness for {variant}")
    wrong = rows.loc[~rows["clean"].astype(bool), "image"]
    return np.sort(per_image.positions_to_indices(wrong))


def prediction_changes(model: nn.Module, images: torch.Tensor, kind: str, level: int,
                       batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """Whether ``kind`` at ``level`` changes the model's predicted class, per image (N,) bool."""
    if int(level) == 0:
        return np.zeros(len(images), dtype=bool)
    clean = predict_logits(model, images, batch_size=batch_size).argmax(1)
    moved = predict_logits(model, images, batch_size=batch_size,
                           transform=lambda x: perturb(x, kind, int(level))).argmax(1)  # fmt: skip
    return (clean != moved).numpy()


def candidates(
    per_image: PerImage | None,
    choice: str,
    labels: np.ndarray,
    *,
    label: int | None = None,
    variant: str | None = None,
    kind: str | None = None,
    level: int | None = None,
    changed: np.ndarray | None = None,
) -> np.ndarray:
    """Test-set indices to show for filter ``choice`` (one of ``FILTERS``), in the filter's order, of class
    ``label`` only when given. ``changed``: :func:`prediction_changes` on the subset's images (``CHANGED``)."""
    labels = np.asarray(labels)
    if choice == ALL:
        idx = np.arange(len(labels))
    elif per_image is None:
        raise FilterError("no per-image results for this zoo and data set (run the report)")
    elif choice == LARGEST_DS:
        idx = largest_ds(per_image, str(variant), str(kind), int(level or 1))["index"].to_numpy()
    elif choice == MISCLASSIFIED:
        idx = misclassified(per_image, str(variant))
    elif choice == CHANGED:
        if changed is None or len(changed) != len(per_image.indices):
            raise FilterError("prediction changes not computed on the report's subset")
        idx = per_image.indices[np.asarray(changed, dtype=bool)]
    else:
        raise FilterError(f"unknown filter {choice!r}; known: {', '.join(FILTERS)}")
    idx = idx[idx < len(labels)]
    return idx if label is None else idx[labels[idx] == int(label)]
