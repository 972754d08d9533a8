"""Semantic continuity measured: the distance score DS under Table 1 perturbations (paper eq. 1-2, Fig. 3, 4)
and the neighbourhood-rank analysis of paper section 2.

Reductions (the same as ``models.objectives``): ``DS(x, x') = ||F(x') - F(x)||^2`` on logits, **summed over
classes**, per image; tables report the mean, standard deviation (population, ddof=0) and median over images.

Issue 23's unconfounded forms: ``normalise_ds`` divides DS by the variant's ``same_class_spread`` (DS moves with the
logits' scale), and ``trend_test`` / ``alpha_sweep_trend`` test alpha's effect across the whole sweep (Page's L).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn
from tqdm import tqdm

from analysis.precomputed_store import image_digest
from analysis.run_rows import normalised, store_row, stored_row
from analysis.statistics import TestResult, mean_ci, proportion
from models.checkpoints import load_model, sha256_file
from models.data import ImageDataset, load_dataset
from models.evaluation import accuracy, predict_logits
from models.objectives import distance_score
from models.perturbations import KINDS, perturb
from models.train import FINAL_FILE, TrainConfig, pick_device, train

LEVELS: tuple[int, ...] = (1, 2, 3, 4)
RANK_COLUMNS = ["variant", "kind", "level", "share_closer_mean", "share_closer_std", "n_anchors", "share_closer_ci_low",
                "share_closer_ci_high", "outranked_share", "n_candidates"]  # fmt: skip
PER_ANCHOR_COLUMNS = ["variant", "anchor", "kind", "level", "n_closer", "n_same", "share"]


def _perturbation(kind: str, level: int):
    """A batch transform applying the Table 1 perturbation ``kind`` at ``level``."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        return perturb(x, kind, level)

    return transform


def ds_tables(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = LEVELS,
    batch_size: int = 512,
    progress: bool = False,
    labels: torch.Tensor | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DS(x, P(x)) per variant x kind x level (paper Fig. 3): the summary over ``images`` and every image's DS.

    Summary columns: variant, kind, level, ds_mean, ds_std, ds_median, n. Per-image columns: variant, kind, level,
    image, ds. Clean logits are computed once per variant. With ``labels``, DS on each variant's own logit scale
    too: the summary gains ``spread`` (``same_class_spread`` of the clean logits) and ``ds_normalised_mean``, the
    per-image table ``ds_normalised`` (ds / spread).
    """
    rows, per_image = [], []
    spreads: dict[str, float] = {}
    bar = tqdm(total=len(models) * len(kinds) * len(levels), desc="DS", disable=not progress, unit="cell")
    for variant, model in models.items():
        clean = predict_logits(model, images, batch_size)
        if labels is not None:
            spreads[variant] = same_class_spread(clean, labels)
        for kind in kinds:
            for level in levels:
                bar.set_postfix_str(f"{variant} {kind} {level}")
                moved = predict_logits(model, images, batch_size, transform=_perturbation(kind, level))
                ds = distance_score(clean, moved).double().numpy()
                rows.append({"variant": variant, "kind": kind, "level": int(level),
                             "ds_mean": float(ds.mean()) if len(ds) else math.nan,
                             "ds_std": float(ds.std()) if len(ds) else math.nan,
                             "ds_median": float(np.median(ds)) if len(ds) else math.nan, "n": len(ds)})  # fmt: skip
                per_image.append(pd.DataFrame({"variant": variant, "kind": kind, "level": int(level),
                                               "image": np.arange(len(ds)), "ds": ds}))  # fmt: skip
                bar.update(1)
    bar.close()
    summary = pd.DataFrame(rows, columns=["variant", "kind", "level", "ds_mean", "ds_std", "ds_median", "n"])
    each = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame()
    if spreads and len(each):
        each = normalise_ds(each, spreads)
        summary["spread"] = summary["variant"].map(spreads)
        summary["ds_normalised_mean"] = summary["ds_mean"] / summary["spread"]
    return summary, each


def ds_table(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = LEVELS,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """The summary of ``ds_tables``: one row per variant x kind x level."""
    return ds_tables(models, images, kinds, levels, batch_size, progress)[0]


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
    data: ImageDataset | None = None,
    test_set: ImageDataset | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Train the C variant at each alpha (and seed) and measure accuracy and continuity (paper Fig. 4).

    Each run is ``models.train.train`` on ``base_config`` with ``variant="C"``, the given ``alpha`` and
    ``seed``, written to ``out_dir/alpha-<alpha>-seed-<seed>``; ``init`` (a checkpoint) overrides
    ``base_config.init`` to fine-tune from a trained network, as the paper does. Continuity is
    ``ds_level1_sum`` on the test split of ``base_config.dataset`` or on ``eval_images`` when given. ``data``: the
    training set in memory (``models.train.train(cfg, data=...)``) instead of loading ``base_config.dataset``.

    ``test_set``: also score each run's accuracy on these images (column ``test_acc``, batches of
    ``batch_size``).

    Each scored run leaves ``alpha_row.json`` in its folder (``analysis.run_rows``): a rerun with the same
    configuration, initial checkpoint (by its bytes), evaluation images and kinds takes the row from there without
    training, even when the run's checkpoints are gone, so an interrupted sweep (Ctrl-C, or a session's end) loses
    only the run it was in.

    Columns: alpha, seed, val_clean_acc, test_clean_acc (NaN when ``base_config.eval_test`` is off), ds_level1_sum,
    and test_acc with ``test_set``.
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
        identity = _alpha_row_identity(cfg, data, eval_images, kinds, test_set)
        row = stored_row(cfg.out, identity, ALPHA_ROW_FILE)
        if row is None:
            metrics = train(cfg, progress=progress, data=data, raise_on_interrupt=True)  # Ctrl-C: TrainingInterrupted
            model, _ = load_model(Path(cfg.out) / FINAL_FILE, pick_device(cfg.device))
            ds = ds_table({"C": model}, eval_images, kinds=kinds, levels=(1,))
            row = {
                "alpha": alpha,
                "seed": seed,
                "val_clean_acc": float(metrics.get("val_clean_acc", math.nan)),
                "test_clean_acc": float(metrics.get("test_clean_acc", math.nan)),
                "ds_level1_sum": float(ds_level1_sum(ds).iloc[0]),
            }
            if test_set is not None:
                row["test_acc"] = accuracy(model, test_set.images, test_set.labels, batch_size)
            store_row(cfg.out, identity, row, ALPHA_ROW_FILE)
        rows.append(row)
    columns = ["alpha", "seed", "val_clean_acc", "test_clean_acc", "ds_level1_sum"]
    return pd.DataFrame(rows, columns=[*columns, *(["test_acc"] if test_set is not None else [])])


ALPHA_ROW_FILE = "alpha_row.json"  # a scored alpha-sweep run's row (analysis.run_rows)


def _alpha_row_identity(
    cfg: TrainConfig,
    data: ImageDataset | None,
    eval_images: torch.Tensor,
    kinds: Sequence[str],
    test_set: ImageDataset | None,
) -> dict[str, object]:
    """What an alpha-sweep run's stored row was computed from: the run (``analysis.transfer.run_identity``,
    without its folders), the initial checkpoint's bytes, the DS images and kinds, the accuracy images."""
    from analysis.transfer import run_identity

    config, trained_on = run_identity(cfg, data, without_folders=True)
    init = sha256_file(cfg.init) if cfg.init else None
    test = None if test_set is None else {"described": test_set.describe(), "images": image_digest(test_set.images)}
    return normalised({"config": config, "trained_on": trained_on, "init_sha256": init,
                       "ds_images": image_digest(eval_images), "kinds": list(kinds), "test": test})  # fmt: skip


def neighbourhood_per_anchor(
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
    """Paper section 2 per anchor: how many same-class images are nearer to an anchor than its perturbed copy.

    ``images`` are the candidates (all same-class images of the set are compared); ``n_anchors`` seeded anchors x_A
    (each with another image of its class) are drawn from them. For each kind and level: n_closer = #{x_B != x_A
    of the class: DS(x_A, x_B) < DS(x_A, P(x_A))}, n_same = the class's other images, share = n_closer / n_same.
    Columns: PER_ANCHOR_COLUMNS.
    """
    labels = torch.as_tensor(labels).cpu()
    clean = predict_logits(model, images, batch_size)
    counts = torch.bincount(labels)
    eligible = torch.nonzero(counts[labels] >= 2).flatten()
    gen = torch.Generator().manual_seed(seed)
    anchors = eligible[torch.randperm(len(eligible), generator=gen)[:n_anchors]].sort().values
    if len(anchors) == 0:
        return pd.DataFrame(columns=PER_ANCHOR_COLUMNS)
    to_all = torch.stack([distance_score(clean[a].expand_as(clean), clean) for a in anchors.tolist()])  # (A, N)
    same = labels[None, :] == labels[anchors][:, None]
    same[torch.arange(len(anchors)), anchors] = False
    n_same = same.sum(1).numpy()
    anchor_images = images[anchors.to(images.device)]
    frames = []
    for kind in kinds:
        for level in levels:
            moved = predict_logits(model, anchor_images, batch_size, transform=_perturbation(kind, level))
            to_perturbed = distance_score(clean[anchors], moved)  # (A,)
            n_closer = ((to_all < to_perturbed[:, None]) & same).sum(1).numpy()
            frames.append(pd.DataFrame({"variant": variant, "anchor": anchors.numpy(), "kind": kind,
                                        "level": int(level), "n_closer": n_closer, "n_same": n_same,
                                        "share": n_closer / n_same}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def summarise_ranks(per_anchor: pd.DataFrame) -> pd.DataFrame:
    """Per variant x kind x level: the mean share of same-class images nearer than the copy (pool-size free), its
    sd (ddof=0) and bootstrap 95% CI over anchors, and the share of anchors whose copy is outranked at all.
    Columns: RANK_COLUMNS."""
    rows = []
    for (variant, kind, level), g in per_anchor.groupby(["variant", "kind", "level"], sort=False, dropna=False):
        mean, lo, hi = mean_ci(g["share"].to_numpy(float))
        rows.append({"variant": variant, "kind": kind, "level": int(level), "share_closer_mean": mean,
                     "share_closer_std": float(g["share"].std(ddof=0)), "n_anchors": len(g),
                     "share_closer_ci_low": lo, "share_closer_ci_high": hi,
                     "outranked_share": float((g["n_closer"] > 0).mean()),
                     "n_candidates": int(g["n_same"].median())})  # fmt: skip
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def existence_table(per_anchor: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the share of anchors with at least one perturbed copy (any kind or level) outranked by a
    same-class image, with its Clopper-Pearson 95% CI. Columns: variant, n_anchors, outranked_anchors, share,
    ci_low, ci_high, median_candidates."""
    rows = []
    for variant, g in per_anchor.groupby("variant", sort=False, dropna=False):
        any_closer = g.groupby("anchor")["n_closer"].max() > 0
        res = proportion(int(any_closer.sum()), len(any_closer))
        rows.append({"variant": variant, "n_anchors": len(any_closer), "outranked_anchors": int(any_closer.sum()),
                     "share": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high,
                     "median_candidates": int(g["n_same"].median())})  # fmt: skip
    return pd.DataFrame(rows)


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
    """``summarise_ranks`` of ``neighbourhood_per_anchor``: 0 means the perturbed copy is the anchor's nearest
    same-class neighbour (continuity), 1 that every other image of the class is nearer than it."""
    per_anchor = neighbourhood_per_anchor(model, images, labels, kinds, levels, n_anchors, seed, variant, batch_size)
    return summarise_ranks(per_anchor) if len(per_anchor) else pd.DataFrame(columns=RANK_COLUMNS)


def neighbourhood_tables(
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[int] = LEVELS,
    n_anchors: int = 50,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """For every variant (the same anchors for all): (summary, per_anchor, existence)."""
    frames = [
        neighbourhood_per_anchor(model, images, labels, kinds, levels, n_anchors, seed, variant, batch_size)
        for variant, model in tqdm(models.items(), desc="neighbourhood rank", disable=not progress, unit="variant")
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=RANK_COLUMNS), pd.DataFrame(columns=PER_ANCHOR_COLUMNS), pd.DataFrame()
    per_anchor = pd.concat(frames, ignore_index=True)
    return summarise_ranks(per_anchor), per_anchor, existence_table(per_anchor)


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
    """The summary of ``neighbourhood_tables``, one row per variant x kind x level."""
    return neighbourhood_tables(models, images, labels, kinds, levels, n_anchors, seed, batch_size, progress)[0]


# --- issue 23: DS on the variant's own logit scale, and alpha's trend over the whole sweep ---


def same_class_spread(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean DS between two distinct random images of the same class (the first drawn uniformly from the images of
    classes with >= 2 of them): the variant's own same-class logit scale.

    Exact, not sampled: over the ordered pairs i != j of a class, mean ||z_i - z_j||^2 = 2 x (the sum over logits
    of the class's variance with ddof=1); classes weigh by their image counts.
    """
    z = torch.as_tensor(logits).double().cpu()
    y = torch.as_tensor(labels).cpu()
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"logits must be (N, classes) with one label per row, got {tuple(z.shape)} and {len(y)}")
    total, weight = 0.0, 0
    for c in torch.unique(y).tolist():
        zc = z[y == c]
        if len(zc) >= 2:
            total += len(zc) * float(2 * zc.var(dim=0, unbiased=True).sum())
            weight += len(zc)
    if weight == 0:
        raise ValueError("no class has two images: the same-class spread is undefined")
    return total / weight


def logit_spreads(
    models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512
) -> dict[str, float]:
    """``same_class_spread`` of every variant's clean logits on ``images``."""
    return {v: same_class_spread(predict_logits(m, images, batch_size), labels) for v, m in models.items()}


def normalise_ds(per_image: pd.DataFrame, spreads: Mapping[str, float]) -> pd.DataFrame:
    """``ds_tables``' per-image table with ``ds_normalised`` = ds / the variant's same-class spread added.

    DS is a squared logit distance, so a variant with larger logits has a larger DS for the same relative move;
    divided by its own same-class spread, DS is scale-free (multiplying a model's logits by k leaves it unchanged).
    """
    missing = sorted(set(per_image["variant"]) - set(spreads))
    if missing:
        raise ValueError(f"no same-class spread for variant(s) {', '.join(map(str, missing))}")
    out = per_image.copy()
    out["ds_normalised"] = out["ds"] / out["variant"].map(spreads).astype(float)
    return out


def level1_sum_per_image(per_image: pd.DataFrame, value: str = "ds") -> pd.DataFrame:
    """Per variant and image, ``value`` at level 1 summed over the kinds (the per-image form of
    ``ds_level1_sum``). Columns: variant, image, ``value``."""
    level1 = per_image[per_image["level"] == 1]
    return level1.groupby(["variant", "image"], sort=False)[value].sum().reset_index()


@dataclass(frozen=True)
class TrendResult:
    """Page's L trend test across ordered treatments (alphas) within blocks (images or seeds)."""

    statistic: float
    p: float
    spearman_rho: float
    n_blocks: int
    n_levels: int
    test: str


def trend_test(
    table: pd.DataFrame, treatment: str = "alpha", block: str = "image", value: str = "ds",
    direction: str = "decreasing",
) -> TrendResult:  # fmt: skip
    """Is ``value`` monotone in ``treatment`` across the whole sweep, not only between its ends?

    Page's L test (scipy.stats.page_trend_test, one-sided) with ``block`` as rows (each block is ranked across
    the treatments on its own, so per-image differences in level do not matter) and the treatments in ascending
    order, predicted to rise ("increasing") or fall ("decreasing"). Blocks missing a treatment are dropped.
    ``spearman_rho``: Spearman's correlation of the treatment with the per-treatment mean (descriptive).
    Needs >= 3 treatments and >= 2 blocks.
    """
    if direction not in ("increasing", "decreasing"):
        raise ValueError("direction must be 'increasing' or 'decreasing'")
    wide = table.pivot_table(index=block, columns=treatment, values=value, aggfunc="mean").sort_index(axis=1)
    wide = wide.dropna()
    if wide.shape[1] < 3 or wide.shape[0] < 2:
        raise ValueError(f"a trend test needs >= 3 values of {treatment!r} and >= 2 complete {block}s, got "
                         f"{wide.shape[1]} and {wide.shape[0]}")  # fmt: skip
    data = wide.to_numpy(float)
    res = stats.page_trend_test(data if direction == "increasing" else data[:, ::-1])
    means = data.mean(axis=0)
    rho = float(stats.spearmanr(wide.columns.to_numpy(float), means).statistic) if np.ptp(means) > 0 else math.nan
    return TrendResult(float(res.statistic), float(res.pvalue), rho, wide.shape[0], wide.shape[1],
                       f"Page's L trend test ({res.method}), {direction} in {treatment}, blocks: {block}")  # fmt: skip


def alpha_sweep_trend(sweep: pd.DataFrame, value: str = "ds_level1_sum", direction: str = "decreasing") -> TrendResult:
    """``trend_test`` over ``alpha_sweep``'s table: alphas as treatments, seeds as blocks (use ``trend_test`` with
    ``block="image"`` on per-image DS at each alpha when those are kept)."""
    return trend_test(sweep, "alpha", "seed", value, direction)


def alpha_trend_result(
    sweep: pd.DataFrame, value: str = "ds_level1_sum", direction: str = "decreasing", block: str = "seed"
) -> TestResult:
    """Alpha's trend over the whole sweep as a comparison for the claims' verdict rule: ``effect`` the mean over
    blocks of each block's Spearman rho between alpha and ``value``, its percentile-bootstrap 95% CI over blocks,
    and the two-sided p of Page's L test (twice the smaller one-sided p, at most 1). ``n_seeds``: the blocks."""
    down = trend_test(sweep, "alpha", block, value, "decreasing")
    up = trend_test(sweep, "alpha", block, value, "increasing")
    wide = sweep.pivot_table(index=block, columns="alpha", values=value, aggfunc="mean").sort_index(axis=1).dropna()
    alphas = wide.columns.to_numpy(float)
    rhos = [float(stats.spearmanr(alphas, row).statistic) if np.ptp(row) > 0 else 0.0 for row in wide.to_numpy(float)]
    mean, lo, hi = mean_ci(rhos)
    p = min(1.0, 2 * min(down.p, up.p))
    chosen = down if direction == "decreasing" else up
    return TestResult(mean, lo, hi, p, f"{chosen.test}; two-sided; effect: mean Spearman rho per {block}",
                      n_seeds=chosen.n_blocks)  # fmt: skip
