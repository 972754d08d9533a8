"""Experiments that measure the zoo's checkpoints as they are (no training): DS, section 2, probes, robustness,
attributions, stability, embeddings. Each keeps its per-image results (parts ``per_image`` / ``per_anchor``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from analysis import roles as R
from analysis.experiments.drawing import draw_continuity, draw_eps_sweep, draw_probes, draw_tradeoff
from analysis.experiments.registry import Context, ExperimentSkipped, Output, experiment, figure_dir, quiet


@experiment(
    "continuity",
    "Distance score under Table 1 perturbations",
    "4.2, Fig. 3",
    ("n_images", "batch_size"),
    draw=draw_continuity,
)
def run_continuity(ctx: Context) -> Output:
    from analysis.continuity import ds_tables

    ds, per_image = ds_tables(ctx.models, ctx.eval.images, batch_size=ctx.settings.batch_size, progress=ctx.progress,
                              labels=ctx.eval.labels)  # fmt: skip
    parts = {"continuity": ds, "per_image": per_image}
    return Output(parts, figures=draw_continuity(parts, figure_dir(ctx)), ran={"n_images": len(ctx.eval)})


@experiment("neighbourhood_rank", "Same-class images nearer than a perturbed copy", "2.2, Figs. 1-2",
            ("rank_anchors", "rank_whole_test_split", "subset_seed"))  # fmt: skip
def run_neighbourhood_rank(ctx: Context) -> Output:
    from analysis.continuity import neighbourhood_tables

    s = ctx.settings
    pool = ctx.test if s.rank_whole_test_split else ctx.eval
    summary, per_anchor, existence = neighbourhood_tables(
        ctx.models, pool.images, pool.labels, n_anchors=s.rank_anchors, seed=s.subset_seed,
        batch_size=s.batch_size, progress=ctx.progress)  # fmt: skip
    n_anchors = int(per_anchor["anchor"].nunique()) if len(per_anchor) else 0
    notes = [
        f"{n_anchors} seeded anchors; candidates: every same-class image of the "
        f"{'whole test split' if s.rank_whole_test_split else 'evaluation subset'} ({len(pool)} images)"
    ]
    return Output({"neighbourhood_rank": summary, "existence": existence, "per_anchor": per_anchor}, notes,
                  ran={"n_anchors": n_anchors, "n_candidate_images": len(pool)})  # fmt: skip


@experiment(
    "probes", "Semantic probes", "4.3, Figs. 6, 8, 10", ("n_images", "batch_size", "probe_seed"), draw=draw_probes
)
def run_probes(ctx: Context) -> Output:
    from analysis.probes import probe_tables

    df, per_image = probe_tables(ctx.models, ctx.eval.images, ctx.eval.labels, seed=ctx.settings.probe_seed,
                                 batch_size=ctx.settings.batch_size, progress=ctx.progress)  # fmt: skip
    figs = draw_probes({"probes": df, "per_image": per_image}, figure_dir(ctx))
    notes = sorted({f"channel translation {lab}: {d}" for lab, d in zip(df["level_label"], df["detail"], strict=True)
                    if "rounds to 0" in str(d)})  # fmt: skip
    notes.append("sliding puzzle: one seeded tile permutation per image (never the identity)")
    return Output({"probes": df, "per_image": per_image}, notes, figs, ran={"n_images": len(ctx.eval)})


@experiment("robustness", "Clean and PGD-10 accuracy", "4.4, Table 2", ("pgd_images", "batch_size"))
def run_robustness(ctx: Context) -> Output:
    from analysis.robustness import ensemble_tables

    data = ctx.first(ctx.settings.pgd_images)
    summary, _, per_image = ensemble_tables(ctx.models, data.images, data.labels, progress=ctx.progress,
                                            attacks=("pgd10",), batch_size=ctx.settings.batch_size)  # fmt: skip
    table = summary[["variant", "clean_acc", "pgd_acc", "n_images"]]
    return Output({"robustness": table, "per_image": per_image[["variant", "image", "clean", "pgd10"]]},
                  [f"PGD-10, eps 8/255, step 2/255, seeded random start, on {len(data)} test images"],
                  ran={"n_images": len(data), "pgd_steps": 10})  # fmt: skip


@experiment("tradeoff", "Clean vs PGD-10 accuracy along the weight interpolation from the baseline",
            "4.4 (matched clean accuracy)", ("tradeoff_images", "tradeoff_lambdas", "batch_size"),
            uses=(R.BASELINE, R.ADVERSARIAL, R.ADVERSARIAL_CONSTRAINED, R.MIXED_CONTROL),
            draw=draw_tradeoff)  # fmt: skip
def run_tradeoff(ctx: Context) -> Output:
    """Issue 23: each adversarial variant's trade-off curve from the baseline it was fine-tuned from, and ADV+C vs
    ADV (and its control) read off at a common clean accuracy (``analysis.tradeoff``)."""
    from analysis.tradeoff import ATTACK, LEVEL_RULE, MIDWAY, MIDWAY_RULE, init_notes, matched_table, tradeoff_tables

    roles, s = ctx.roles, ctx.settings
    base = R.with_role(roles, R.BASELINE)
    curved = [v for v, r in roles.items() if r in (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL, R.MIXED_CONTROL)]
    if base is None or not curved:
        raise ExperimentSkipped("needs the baseline and at least one adversarially fine-tuned variant")
    data = ctx.first(s.tradeoff_images)
    curves, per_image = tradeoff_tables(ctx.models, base, curved, data.images, data.labels, s.tradeoff_lambdas,
                                        batch_size=s.batch_size, progress=ctx.progress)  # fmt: skip
    comps = R.comparisons(roles, [(R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL)])
    tables = [matched_table(per_image, c.a, c.b, level).assign(kind=c.kind, level_rule=rule) for c in comps
              for rule, level in (("higher endpoint", None), ("both blended", MIDWAY))]  # fmt: skip
    matched = pd.concat(tables, ignore_index=True) if tables else None
    lams = ", ".join(f"{x:g}" for x in s.tradeoff_lambdas)
    notes = [f"theta(lam) = (1 - lam) theta_{base} + lam theta_V (float parameters and BatchNorm statistics; integer "
             f"buffers from V), assuming V was fine-tuned from {base} (the recipes' init); {ATTACK} on the first "
             f"{len(data)} test images of the subset at lam {lams}",
             f"equal clean accuracy along the interpolation path, not along retrained alphas; {LEVEL_RULE}; "
             f"also {MIDWAY_RULE}",
             *init_notes({v: ctx.zoo[v].card for v in curved}, base, curved)]  # fmt: skip
    if matched is not None:
        notes += [f"{r.a} vs {r.b}: {r.reason}" for r in matched.itertuples() if r.reason]
    parts = {"tradeoff": curves, **({"matched": matched} if matched is not None else {}), "per_image": per_image}
    ran = {"n_images": len(data), "lambdas": len(s.tradeoff_lambdas), "pgd_steps": 10}
    return Output(parts, notes, draw_tradeoff(parts, figure_dir(ctx)), ran)


@experiment(
    "eps_sweep", "PGD-10 accuracy against eps", "4.4 (extension)", ("eps_images", "eps_values_255"), draw=draw_eps_sweep
)
def run_eps_sweep(ctx: Context) -> Output:
    from analysis.robustness import eps_sweep, large_eps_warnings

    data = ctx.first(ctx.settings.eps_images)
    df = eps_sweep(ctx.models, data.images, data.labels, tuple(e / 255 for e in ctx.settings.eps_values_255),
                   batch_size=ctx.settings.batch_size, progress=ctx.progress)  # fmt: skip
    return Output({"eps_sweep": df}, large_eps_warnings(df), draw_eps_sweep({"eps_sweep": df}, figure_dir(ctx)),
                  ran={"n_images": len(data), "pgd_steps": 10})  # fmt: skip


@experiment("attack_audit", "Attack ensemble: PGD-10, APGD-CE, APGD-T; per-image worst case", "4.4 (check)",
            ("audit_images", "audit_steps", "audit_restarts", "apgd_targets", "batch_size"))  # fmt: skip
def run_attack_audit(ctx: Context) -> Output:
    from analysis.robustness import ensemble_tables, masking_warnings

    s = ctx.settings
    data = ctx.first(s.audit_images)
    summary, audit, per_image = ensemble_tables(ctx.models, data.images, data.labels, progress=ctx.progress,
                                                apgd_steps=max(s.audit_steps), apgd_targets=s.apgd_targets,
                                                apgd_restarts=s.audit_restarts, batch_size=s.batch_size)  # fmt: skip
    eps = ctx.results.get("eps_sweep", {}).get("eps_sweep")
    notes = masking_warnings(audit, eps)
    return Output({"attack_audit": audit, "summary": summary, "per_image": per_image}, notes,
                  ran={"n_images": len(data), "apgd_steps": max(s.audit_steps), "apgd_restarts": s.audit_restarts,
                       "apgd_targets": s.apgd_targets})  # fmt: skip


def _attribution_rows(ctx: Context, variant, data, masks, method, options, steps) -> tuple[dict, pd.DataFrame]:
    from analysis.attribution_quality import deletion_insertion, mask_share

    model = ctx.models[variant]
    ex = ctx.explain_first(variant, method, len(data), options)
    share = mask_share(ex.maps, masks)
    curves = deletion_insertion(model, data.images, ex.maps, ex.targets, steps=steps)
    row = {"variant": variant, "method": method,
           "mask_share": float(np.nanmean(share)) if np.isfinite(share).any() else float("nan"),
           "deletion_auc": float(curves["deletion_auc"].mean()), "insertion_auc": float(curves["insertion_auc"].mean()),
           "n_images": len(data)}  # fmt: skip
    each = pd.DataFrame({"variant": variant, "method": method, "image": np.arange(len(data)), "mask_share": share,
                         "deletion_auc": np.asarray(curves["deletion_auc"]),
                         "insertion_auc": np.asarray(curves["insertion_auc"])})  # fmt: skip
    return row, each


@experiment("attributions", "Attribution quality: mask share, deletion / insertion", "4.5, Figs. 11-13",
            ("attr_images", "attr_slow_images", "attr_method_names", "ig_steps", "lime_samples",
             "deletion_steps"))  # fmt: skip
def run_attributions(ctx: Context) -> Output:
    from analysis.attributions import get_method

    s = ctx.settings
    sizes = {m: min(s.attr_images_for(m), len(ctx.eval)) for m in s.attr_method_names}  # slow methods: fewer
    data = ctx.first(max(sizes.values(), default=0))
    has_masks = data.masks is not None
    masks = data.masks if has_masks else torch.ones(len(data), 1, *data.images.shape[-2:], dtype=torch.bool)
    rows, frames = [], []
    jobs = [(v, m) for v in ctx.models for m in s.attr_method_names]
    for variant, method in tqdm(jobs, desc="attributions", disable=not ctx.progress, unit="map set"):
        with quiet(not ctx.progress):  # lime draws a progress bar per image whatever it is told
            row, each = _attribution_rows(ctx, variant, ctx.first(sizes[method]),
                                          masks[: sizes[method]].numpy(), method, get_method(method).options(s),
                                          s.deletion_steps)  # fmt: skip
        rows.append(row)
        frames.append(each)
    df, per_image = pd.DataFrame(rows), pd.concat(frames, ignore_index=True)
    counts = ", ".join(f"{m} {n}" for m, n in sizes.items())
    notes = [f"maps explain the true label of the first test images of the subset ({counts}); "
             "mask share = positive attribution inside the "
             "object mask / all positive attribution; AUCs of the target's softmax probability as the top-ranked "
             f"pixels are deleted (lower = more faithful) or inserted (higher = more faithful), {s.deletion_steps} "
             "steps"]  # fmt: skip
    if not has_masks:
        df["mask_share"] = per_image["mask_share"] = np.nan
        notes.append("the data set has no object masks: mask share not measured")
    ran = {"n_images": len(data), "images per method": counts,
           **{m: get_method(m).options(s) for m in s.attr_method_names}}  # fmt: skip
    return Output({"attributions": df, "per_image": per_image}, notes, ran=ran)


@experiment("stability", "Attribution stability under Table 1 perturbations", "4.5 (extension)",
            ("stability_images", "stability_method_names", "stability_levels", "ig_steps"))  # fmt: skip
def run_stability(ctx: Context) -> Output:
    from analysis.attribution_quality import stability
    from analysis.attributions import get_method

    s = ctx.settings
    data = ctx.first(s.stability_images)
    frames = []
    jobs = [(v, m) for v in ctx.models for m in s.stability_method_names]
    for variant, method in tqdm(jobs, desc="stability", disable=not ctx.progress, unit="map set"):
        df = stability(method, ctx.models[variant], data.images, data.labels, levels=s.stability_levels,
                       **get_method(method).options(s))  # fmt: skip
        df.insert(0, "method", method)
        df.insert(0, "variant", variant)
        frames.append(df)
    return Output({"stability": pd.concat(frames, ignore_index=True)},
                  [f"Spearman correlation between the map of a clean image and of its perturbed copy (true label), "
                   f"{len(data)} images"], ran={"n_images": len(data)})  # fmt: skip


@experiment("embeddings", "Neighbour ranks of perturbed copies in logit space", "2.2, Fig. 2",
            ("embed_anchors", "embed_same_class"))  # fmt: skip
def run_embeddings(ctx: Context) -> Output:
    from analysis.embeddings import embed_logits, neighbour_ranks, visualize_set

    s = ctx.settings
    gen = torch.Generator().manual_seed(s.subset_seed + 1)
    anchors = torch.randperm(len(ctx.test), generator=gen)[: s.embed_anchors].tolist()
    frames = []
    for anchor in tqdm(anchors, desc="embeddings", disable=not ctx.progress, unit="anchor"):
        images, meta = visualize_set(ctx.test.images, ctx.test.labels, anchor, n_same_class=s.embed_same_class)
        for variant, logits in embed_logits(ctx.models, images).items():
            df = neighbour_ranks(logits, meta)
            df.insert(0, "anchor", anchor)
            df.insert(0, "variant", variant)
            frames.append(df)
    return Output({"embeddings": pd.concat(frames, ignore_index=True)},
                  ["rank 1: the perturbed copy is the anchor's nearest neighbour (by DS) among same-class test "
                   "images; the PCA / t-SNE / UMAP projections are on the dashboard"],
                  ran={"n_anchors": len(anchors)})  # fmt: skip
