"""95% confidence intervals for the dashboard's curves, from what the stored results hold behind each point.

* ``image_cis``: a per-image table (the report's ``<experiment>_per_image.csv``: DS, correctness) -> per curve point
  the mean and its percentile-bootstrap 95% CI over the images (``analysis.statistics.mean_ci``).
* ``seed_cis``: one row per training seed (the alpha sweep) -> the mean and its Student-t 95% CI over the seeds (a
  percentile bootstrap of two or three seeds would be far too narrow); NaN with fewer than two seeds.
* ``accuracy_cis``: an accuracy over ``n`` images with no per-image table (the eps sweep, the attack audit) -> its
  Clopper-Pearson 95% CI (``analysis.statistics.proportion``): exact, since an accuracy is k/n.

Each returns the table it was given with ``ci_low`` and ``ci_high`` (and ``ci_n``, what the interval is over).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.statistics import LEVEL, mean_ci, proportion

__all__ = ["CURVE_RESAMPLES", "accuracy_cis", "image_cis", "seed_cis"]

CURVE_RESAMPLES = 2_000  # per curve point: a display interval (the claims use statistics.N_RESAMPLES)


def image_cis(
    summary: pd.DataFrame,
    per_image: pd.DataFrame,
    keys: Sequence[str],
    value: str,
    n_resamples: int = CURVE_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """``summary`` with ``ci_low``, ``ci_high`` and ``ci_n`` (images) per row: the bootstrap 95% CI of the mean of
    ``per_image[value]`` over the images of the row's ``keys``. Rows with no per-image values get NaN."""
    keys = list(keys)
    missing = [c for c in [*keys, value] if c not in per_image.columns]
    if missing:
        raise ValueError(f"the per-image table lacks {', '.join(missing)}; it has {', '.join(per_image.columns)}")
    column = per_image[value]
    if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
        column = pd.to_numeric(column.map(_as_number), errors="coerce")
    frame = per_image[keys].assign(_value=column.astype(float))
    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        values = group["_value"].to_numpy(float)
        _, lo, hi = mean_ci(values, n_resamples, seed)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)), "ci_low": lo,
                     "ci_high": hi, "ci_n": int(np.isfinite(values).sum())})  # fmt: skip
    cis = pd.DataFrame(rows, columns=[*keys, "ci_low", "ci_high", "ci_n"])
    return _merge(summary, cis, keys)


def seed_cis(df: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """Per value of ``keys``: the mean of ``value`` over the rows (one per seed), its Student-t 95% CI and the
    number of seeds. Columns: keys, ``value``, ci_low, ci_high, ci_n."""
    keys = list(keys)
    rows = []
    for key, group in df.groupby(keys, sort=False, dropna=False):
        v = pd.to_numeric(group[value], errors="coerce").to_numpy(float)
        v = v[np.isfinite(v)]
        mean = float(v.mean()) if len(v) else math.nan
        lo = hi = math.nan
        if len(v) >= 2:
            sem = float(stats.sem(v))
            lo, hi = (mean, mean) if sem == 0 else stats.t.interval(LEVEL, len(v) - 1, loc=mean, scale=sem)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)), value: mean,
                     "ci_low": float(lo), "ci_high": float(hi), "ci_n": len(v)})  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, value, "ci_low", "ci_high", "ci_n"])


def accuracy_cis(df: pd.DataFrame, accuracy: str = "accuracy", n: str = "n_images") -> pd.DataFrame:
    """``df`` with the Clopper-Pearson 95% CI of each row's ``accuracy`` over its ``n`` images (k = round(acc n))."""
    out = df.copy()
    lows, highs = [], []
    for acc, count in zip(df[accuracy], df[n], strict=True):
        if not (np.isfinite(acc) and np.isfinite(count)) or count <= 0:
            lows.append(math.nan)
            highs.append(math.nan)
            continue
        res = proportion(round(float(acc) * int(count)), int(count))
        lows.append(res.ci_low)
        highs.append(res.ci_high)
    out["ci_low"], out["ci_high"], out["ci_n"] = lows, highs, df[n].to_numpy()
    return out


def _as_number(v: object) -> object:
    """CSV booleans ("True"/"False") as 1/0; anything else as is."""
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return float(v.strip().lower() == "true")
    return float(v) if isinstance(v, bool | np.bool_) else v


def _merge(summary: pd.DataFrame, cis: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``summary`` with the CI columns of ``cis`` joined on ``keys`` (key dtypes aligned: CSV levels read as floats)."""
    left = summary.drop(columns=[c for c in ("ci_low", "ci_high", "ci_n") if c in summary]).copy()
    right = cis.copy()
    for k in keys:
        if k in left and pd.api.types.is_numeric_dtype(left[k]) and pd.api.types.is_numeric_dtype(right[k]):
            left[k], right[k] = left[k].astype(float), right[k].astype(float)
        else:
            left[k], right[k] = left[k].astype(str), right[k].astype(str)
    merged = left.merge(right, on=keys, how="left")
    for k in keys:  # the summary's own key values back (e.g. integer levels)
        merged[k] = summary[k].to_numpy()
    return merged
