"""Semantic continuity measured: the distance score DS under Table 1 perturbations (paper eq. 1-2, Fig. 3, 4)
and the neighbourhood-rank analysis of paper section 2.

Reductions (the same as ``models.objectives``): ``DS(x, x') = ||F(x') - F(x)||^2`` on logits, **summed over
classes**, per image; tables report the mean, standard deviation (population, ddof=0) and median over images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from models.checkpoints import load_model
from models.data import load_dataset
from models.evaluation import predict_logits
from models.objectives import distance_score
from models.perturbations import KINDS, perturb
from models.train import FINAL_FILE, TrainConfig, pick_device, train

LEVELS: tuple[int, ...] = (1, 2, 3, 4)
RANK_COLUMNS = ["variant", "kind", "level", "share_closer_mean", "share_closer_std", "n_anchors"]


def _perturbation(kind: str, level: int):
    """A batch transform applying the Table 1 perturbation ``kind`` at ``level``."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        return perturb(x, kind, level)

    return transform


def ds_table(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = LEVELS,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """DS(x, P(x)) per variant x kind x level (paper Fig. 3): one row each, statistics over ``images``.

    Columns: variant, kind, level, ds_mean, ds_std, ds_median, n. Clean logits are computed once per variant.
    """
    rows = []
    bar = tqdm(total=len(models) * len(kinds) * len(levels), desc="DS", disable=not progress, unit="cell")
    for variant, model in models.items():
        clean = predict_logits(model, images, batch_size)
        for kind in kinds:
            for level in levels:
                bar.set_postfix_str(f"{variant} {kind} {level}")
                moved = predict_logits(model, images, batch_size, transform=_perturbation(kind, level))
                ds = distance_score(clean, moved).double().numpy()
                rows.append(
                    {
                        "variant": variant,
                        "kind": kind,
                        "level": int(level),
                        "ds_mean": float(ds.mean()) if len(ds) else math.nan,
                        "ds_std": float(ds.std()) if len(ds) else math.nan,
                        "ds_median": float(np.median(ds)) if len(ds) else math.nan,
                        "n": len(ds),
                    }
                )
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=["variant", "kind", "level", "ds_mean", "ds_std", "ds_median", "n"])


def ds_level1_sum(ds_df: pd.DataFrame) -> pd.Series:
    """Per variant, the sum over kinds of the mean DS at level 1: the continuity metric of the alpha figure
    (paper Fig. 4, right). Variants keep their order in ``ds_df``."""
    level1 = ds_df[ds_df["level"] == 1]
    return level1.groupby("variant", sort=False)["ds_mean"].sum().rename("ds_level1_sum")


def alpha_sweep(
    alphas: Sequence[float],
    base_config: TrainConfig,
    out_dir: str | Path,
    init: str | None = None,
    progress: bool = False,
    seeds: Sequence[int] = (0,),
    eval_images: torch.Tensor | None = None,
    kinds: Sequence[str] = KINDS,
) -> pd.DataFrame:
    """Train the C variant at each alpha (and seed) and measure accuracy and continuity (paper Fig. 4).

    Each run is ``models.train.train`` on ``base_config`` with ``variant="C"``, the given ``alpha`` and
    ``seed``, written to ``out_dir/alpha-<alpha>-seed-<seed>``; ``init`` (a checkpoint) overrides
    ``base_config.init`` to fine-tune from a trained network, as the paper does. Continuity is
    ``ds_level1_sum`` on the test split of ``base_config.dataset`` or on ``eval_images`` when given.

    Columns: alpha, seed, val_clean_acc, test_clean_acc (NaN when ``base_config.eval_test`` is off), ds_level1_sum.
    """
    out_dir = Path(out_dir)
    if eval_images is None:
        cfg = base_config
        eval_images = load_dataset(
            cfg.dataset, "test", cfg.data_root, cache_dir=cfg.cache_dir, seed=0, image_size=cfg.image_size
        ).images
    runs = [(float(a), int(s)) for a in alphas for s in seeds]
    rows = []
    for alpha, seed in tqdm(runs, desc="alpha sweep", disable=not progress, unit="run"):
        cfg = dataclasses.replace(
            base_config,
            variant="C",
            alpha=alpha,
            seed=seed,
            out=str(out_dir / f"alpha-{alpha:g}-seed-{seed}"),
            init=init if init is not None else base_config.init,
            resume=False,
        )
        metrics = train(cfg, progress=progress)
        if metrics.get("interrupted"):
            raise RuntimeError(f"alpha sweep: training at alpha={alpha:g}, seed={seed} was interrupted ({cfg.out})")
        model, _ = load_model(Path(cfg.out) / FINAL_FILE, pick_device(cfg.device))
        ds = ds_table({"C": model}, eval_images, kinds=kinds, levels=(1,))
        rows.append(
            {
                "alpha": alpha,
                "seed": seed,
                "val_clean_acc": float(metrics.get("val_clean_acc", math.nan)),
                "test_clean_acc": float(metrics.get("test_clean_acc", math.nan)),
                "ds_level1_sum": float(ds_level1_sum(ds).iloc[0]),
            }
        )
    return pd.DataFrame(rows, columns=["alpha", "seed", "val_clean_acc", "test_clean_acc", "ds_level1_sum"])


def neighbourhood_rank(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = LEVELS,
    n_anchors: int = 50,
    seed: int = 0,
    variant: str | None = None,
    batch_size: int = 512,
) -> pd.DataFrame:
    """Paper section 2 as a number: how often a different image of the same class is closer than a perturbation.

    For ``n_anchors`` seeded anchors x_A (each with at least one other image of its class in ``images``), the
    share of same-class images x_B != x_A with ``DS(x_A, x_B) < DS(x_A, P(x_A))``, per kind and level. 0 means
    the perturbed copy is the anchor's nearest same-class neighbour (continuity); 1 means every other image of
    the class is nearer than it. Columns: variant, kind, level, share_closer_mean, share_closer_std (ddof=0),
    n_anchors (the anchors actually used).
    """
    labels = torch.as_tensor(labels).cpu()
    clean = predict_logits(model, images, batch_size)
    counts = torch.bincount(labels)
    eligible = torch.nonzero(counts[labels] >= 2).flatten()
    gen = torch.Generator().manual_seed(seed)
    anchors = eligible[torch.randperm(len(eligible), generator=gen)[:n_anchors]].sort().values
    if len(anchors) == 0:
        return pd.DataFrame(columns=RANK_COLUMNS)
    # DS from each anchor to every image (A, N), and which images are its same-class others.
    to_all = torch.stack([distance_score(clean[a].expand_as(clean), clean) for a in anchors.tolist()])
    same = labels[None, :] == labels[anchors][:, None]
    same[torch.arange(len(anchors)), anchors] = False
    anchor_images = images[anchors.to(images.device)]
    rows = []
    for kind in kinds:
        for level in levels:
            moved = predict_logits(model, anchor_images, batch_size, transform=_perturbation(kind, level))
            to_perturbed = distance_score(clean[anchors], moved)  # (A,)
            closer = (to_all < to_perturbed[:, None]) & same
            share = (closer.sum(1).double() / same.sum(1).double()).numpy()
            rows.append(
                {
                    "variant": variant,
                    "kind": kind,
                    "level": int(level),
                    "share_closer_mean": float(share.mean()),
                    "share_closer_std": float(share.std()),
                    "n_anchors": len(share),
                }
            )
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def neighbourhood_rank_table(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = LEVELS,
    n_anchors: int = 50,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """``neighbourhood_rank`` for every variant (the same anchors for all), concatenated into one table."""
    frames = [
        neighbourhood_rank(model, images, labels, kinds, levels, n_anchors, seed, variant=variant,
                           batch_size=batch_size)
        for variant, model in tqdm(models.items(), desc="neighbourhood rank", disable=not progress, unit="variant")
    ]  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RANK_COLUMNS)
