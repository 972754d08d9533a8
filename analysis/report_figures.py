"""The report's figures (matplotlib, Agg), in the dashboard's colours (``analysis.palette``: one per variant)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.claims import alpha_summary  # noqa: E402
from analysis.palette import variant_colour  # noqa: E402


def save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def legend_beside(ax) -> None:
    """The variants' legend to the right of ``ax`` (a row's last panel), outside the plots: inside, seven variants'
    entries hide the curves they label (``save`` keeps it in the image)."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _colour(variant: str, df: pd.DataFrame) -> str:
    return variant_colour(str(variant), [str(v) for v in dict.fromkeys(df["variant"])])


def _ci_error(g: pd.DataFrame, mean: str, scale: float = 1.0) -> np.ndarray | None:
    """Matplotlib's ``yerr`` (below, above) from a table's ``ci_low``/``ci_high`` around ``mean``; None without."""
    if "ci_low" not in g or g["ci_low"].isna().all():
        return None
    m = g[mean].to_numpy(float)
    low, high = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
    return scale * np.nan_to_num(np.clip(np.vstack([m - low, high - m]), 0, None))


def fig_continuity(ds: pd.DataFrame, path: Path, per_image: pd.DataFrame | None = None) -> str:
    """Fig. 3: mean DS against the perturbation level, one panel per kind, one line per variant (log scale), with
    the bootstrap 95% CI over the images where the per-image DS is given."""
    from analysis.curve_intervals import image_cis

    if per_image is not None and len(per_image):
        ds = image_cis(ds, per_image, ("variant", "kind", "level"), "ds")
    kinds = list(dict.fromkeys(ds["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 3.0), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for variant, g in ds[ds["kind"] == kind].groupby("variant", sort=False):
            ax.errorbar(g["level"], g["ds_mean"], yerr=_ci_error(g, "ds_mean"), fmt="o-", capsize=2, label=variant,
                        color=_colour(variant, ds))  # fmt: skip
        ax.set_yscale("log", nonpositive="mask")
        ax.set_title(kind)
        ax.set_xlabel("level (Table 1)")
        ax.set_xticks(sorted(ds["level"].unique()))
    axes[0][0].set_ylabel("mean DS (log)")
    legend_beside(axes[0][-1])
    bars = ", bars: 95% CI" if "ci_low" in ds else ""
    fig.suptitle(f"Fig. 3: distance score under non-semantic perturbations ({int(ds['n'].iloc[0])} images{bars})")
    fig.tight_layout()
    return save(fig, path)


def fig_alpha(alpha_df: pd.DataFrame, path: Path) -> str:
    """Fig. 4: accuracy (left) and level-1 DS sum (right) against alpha, mean ± sd over seeds."""
    s = alpha_summary(alpha_df)
    x = np.arange(len(s))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.0))
    a1.errorbar(x, 100 * s["acc_mean"], yerr=100 * s["acc_sd"].fillna(0), fmt="o-", capsize=3)
    a1.set_ylabel("test accuracy (%)")
    a2.errorbar(x, s["ds_mean"], yerr=s["ds_sd"].fillna(0), fmt="o-", capsize=3, color=variant_colour("C"))
    a2.set_ylabel("sum of level-1 DS (all kinds)")
    for ax in (a1, a2):
        ax.set_xticks(x, [f"{a:g}" for a in s["alpha"]])
        ax.set_xlabel("alpha")
    fig.suptitle(f"Fig. 4: C fine-tuned at several alphas ({int(s['n_seeds'].max())} seed(s))")
    fig.tight_layout()
    return save(fig, path)


def fig_probe(probes: pd.DataFrame, probe: str, path: Path, number: str, per_image: pd.DataFrame | None = None) -> str:
    """Figs. 6/8/10: accuracy against the probe level (clean first), one line per variant, with the bootstrap 95%
    CI over the images where the per-image correctness is given."""
    from analysis.curve_intervals import image_cis

    df = probes[probes["probe"] == probe]
    if per_image is not None and len(per_image) and {"probe", "level_label", "correct"} <= set(per_image):
        df = image_cis(df, per_image[per_image["probe"] == probe], ("variant", "probe", "level_label"), "correct")
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    labels: list[str] = []
    for variant, g in df.groupby("variant", sort=False):
        ax.errorbar(range(len(g)), 100 * g["accuracy"], yerr=_ci_error(g, "accuracy", 100.0), fmt="o-", capsize=2,
                    label=variant, color=_colour(variant, probes))  # fmt: skip
        labels = list(g["level_label"])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel(probe.replace("_", " "))
    legend_beside(ax)
    n = f", {int(df['n_images'].iloc[0])} images" if "n_images" in df and len(df) else ""
    n += ", bars: 95% CI" if "ci_low" in df else ""
    ax.set_title(f"Fig. {number}: {probe.replace('_', ' ')}{n}")
    return save(fig, path)


def fig_eps(eps: pd.DataFrame, path: Path) -> str:
    """Robust accuracy against the PGD-10 radius, n in the title."""
    from analysis.curve_intervals import accuracy_cis

    eps = accuracy_cis(eps) if "n_images" in eps else eps
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for variant, g in eps.groupby("variant", sort=False):
        ax.errorbar(g["eps_255"], 100 * g["accuracy"], yerr=_ci_error(g, "accuracy", 100.0), fmt="o-", capsize=2,
                    label=variant, color=_colour(variant, eps))  # fmt: skip
    ax.set_xlabel("PGD-10 radius eps (x/255), step eps/4")
    ax.set_ylabel("accuracy (%)")
    legend_beside(ax)
    ax.set_title(
        f"Robust accuracy against eps ({int(eps['n_images'].iloc[0])} test images, bars: Clopper-Pearson 95% CI)"
    )
    return save(fig, path)


def fig_tradeoff(curves: pd.DataFrame, matched: pd.DataFrame | None, path: Path) -> str:
    """Issue 23: PGD-10 against clean accuracy along each variant's weight interpolation from the baseline (points
    at each lambda, Clopper-Pearson 95% CIs both ways), the common clean accuracy dashed and the matched points
    marked; the title gives the paper pair's difference there with its paired-bootstrap 95% CI."""
    from analysis.curve_intervals import accuracy_cis

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for variant, g in curves.groupby("variant", sort=False):
        x = accuracy_cis(g, "clean_acc").rename(columns={"ci_low": "x_low", "ci_high": "x_high"})
        y = accuracy_cis(g, "robust_acc")
        xerr = 100 * np.nan_to_num(np.clip(np.vstack([x["clean_acc"] - x["x_low"], x["x_high"] - x["clean_acc"]]),
                                           0, None))  # fmt: skip
        ax.errorbar(100 * g["clean_acc"], 100 * g["robust_acc"], xerr=xerr, yerr=_ci_error(y, "robust_acc", 100.0),
                    fmt="o-", capsize=2, ms=3, label=variant, color=_colour(variant, curves))  # fmt: skip
        for lam, cx, cy in zip(g["lam"], g["clean_acc"], g["robust_acc"], strict=True):
            if lam in (0.0, 1.0):
                ax.annotate(f"lam {lam:g}", (100 * cx, 100 * cy), fontsize=6, xytext=(3, 3), textcoords="offset points")
    title = "Trade-off along the weight interpolation from the baseline"
    if matched is not None and len(matched):
        r = matched.iloc[0]
        ax.axvline(100 * r["level"], ls="--", lw=0.8, color="grey")
        for name, value in ((r["a"], r["robust_a"]), (r["b"], r["robust_b"])):
            if np.isfinite(value):
                ax.plot(100 * r["level"], 100 * value, "*", ms=11, color=_colour(name, curves), mec="black", mew=0.5)
        if r["status"] == "comparable":
            title += (f"\n{r['a']} - {r['b']} at clean {100 * r['level']:.1f}%: {100 * r['effect']:+.1f} points "
                      f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]")  # fmt: skip
        else:
            title += f"\n{r['a']} vs {r['b']}: not comparable at clean {100 * r['level']:.1f}%"
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("PGD-10 accuracy (%)")
    legend_beside(ax)
    ax.set_title(f"{title} ({int(curves['n_images'].iloc[0])} images)", fontsize=8)
    return save(fig, path)


def fig_bars(summary: pd.DataFrame, value: str, group: str | None, path: Path, title: str) -> str:
    """Bars of ``value`` mean ± sd per variant (grouped by ``group`` when given)."""
    groups = list(dict.fromkeys(summary[group])) if group else [None]
    variants = list(dict.fromkeys(summary["variant"]))
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(groups), 3.2))
    for i, variant in enumerate(variants):
        rows = [summary[(summary["variant"] == variant) & ((summary[group] == g) if group else True)] for g in groups]
        means = [100 * r[f"{value}_mean"].iloc[0] if len(r) else np.nan for r in rows]
        sds = [100 * np.nan_to_num(r[f"{value}_sd"].iloc[0]) if len(r) else 0 for r in rows]
        ax.bar(np.arange(len(groups)) + i * width, means, width, yerr=sds, capsize=2, label=variant,
               color=_colour(variant, summary))  # fmt: skip
    ax.set_xticks(np.arange(len(groups)) + width * (len(variants) - 1) / 2, [str(g) if g else "" for g in groups])
    ax.set_ylabel("accuracy (%)")
    legend_beside(ax)
    ax.set_title(title)
    return save(fig, path)


def _ci_line(ax, x, g: pd.DataFrame, label: str, colour: str) -> None:
    """A mean line with its 95% CI as a shaded band."""
    ax.plot(x, g["mean"], "o-", label=label, color=colour, ms=3)
    ax.fill_between(x, g["ci_low"], g["ci_high"], color=colour, alpha=0.2, lw=0)


def fig_road(summary: pd.DataFrame, path: Path) -> str:
    """ROAD: per method (a group of bars), each variant's mean MoRF, LeRF and combined score with its 95% CI."""
    scores = list(dict.fromkeys(summary["score"]))
    methods = list(dict.fromkeys(summary["method"]))
    variants = list(dict.fromkeys(summary["variant"]))
    width = 0.8 / max(1, len(variants))
    fig, axes = plt.subplots(1, len(scores), figsize=(3.4 * len(scores), 3.2), squeeze=False)
    for ax, score in zip(axes[0], scores, strict=True):
        for i, variant in enumerate(variants):
            d = summary[(summary["score"] == score) & (summary["variant"] == variant)].set_index("method")
            d = d.reindex(methods)
            err = np.vstack([d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]])
            ax.bar(np.arange(len(methods)) + i * width, d["mean"], width, yerr=np.nan_to_num(err), capsize=2,
                   label=variant, color=_colour(variant, summary))  # fmt: skip
        ax.set_xticks(np.arange(len(methods)) + width * (len(variants) - 1) / 2, methods, fontsize=7, rotation=20)
        ax.axhline(0, color="grey", lw=0.5)
        better = "lower" if score == "morf" else "higher"
        ax.set_title(f"ROAD {score} ({better} = more faithful)", fontsize=9)
    axes[0][0].set_ylabel("change of the target's probability")
    legend_beside(axes[0][-1])
    fig.tight_layout()
    return save(fig, path)


def fig_sanity(summary: pd.DataFrame, path: Path, metric: str = "spearman") -> str:
    """Cascading randomisation: ``metric`` to the trained model's map as the blocks are re-initialised from the
    head down, one panel per method, one line (95% CI band) per variant."""
    shown = summary[summary["metric"] == metric]
    methods = list(dict.fromkeys(shown["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 3.4), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        layers: list[str] = []
        for variant, g in shown[shown["method"] == method].groupby("variant", sort=False):
            g = g.sort_values("step")
            _ci_line(ax, g["step"].to_numpy(), g, str(variant), _colour(variant, summary))
            layers = list(g["layer"])
        ax.set_xticks(range(len(layers)), [str(lay).split(" ")[0] for lay in layers], rotation=60, fontsize=6)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(method)
        ax.set_xlabel("randomised down to (cumulative)")
    axes[0][0].set_ylabel(f"{metric} to the trained map")
    legend_beside(axes[0][-1])
    fig.suptitle(f"Sanity check: cascading randomisation ({int(shown['n_images'].max())} images, 95% CIs)")
    fig.tight_layout()
    return save(fig, path)


def fig_map_continuity(summary: pd.DataFrame, path: Path, metric: str = "spearman") -> str:
    """Explanation continuity: ``metric`` of each level's map to the clean image's map, one row of panels per
    method, one panel per kind, one line (95% CI band) per variant."""
    shown = summary[summary["metric"] == metric]
    methods, kinds = list(dict.fromkeys(shown["method"])), list(dict.fromkeys(shown["kind"]))
    fig, axes = plt.subplots(len(methods), len(kinds), figsize=(3.0 * len(kinds), 2.8 * len(methods)),
                             squeeze=False, sharey=True)  # fmt: skip
    for r, method in enumerate(methods):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            d = shown[(shown["method"] == method) & (shown["kind"] == kind)]
            for variant, g in d.groupby("variant", sort=False):
                g = g.sort_values("level")
                _ci_line(ax, g["level"].to_numpy(), g, str(variant), _colour(variant, summary))
            ax.set_title(f"{method}: {kind}", fontsize=9)
            ax.set_xticks(sorted(d["level"].unique()))
            ax.set_xlabel("level (Table 1)")
        axes[r][0].set_ylabel(f"{metric} to the clean map")
    legend_beside(axes[0][-1])
    fig.suptitle(f"Explanation continuity ({int(shown['n_images'].max())} images, 95% CIs; 1 = unchanged)")
    fig.tight_layout()
    return save(fig, path)
