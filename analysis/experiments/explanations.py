"""Experiments on the explanations themselves: ROAD faithfulness (on the attributions' methods and images), sanity
checks (cascading model-parameter randomisation) and explanation continuity (how far a map moves along each
perturbation). Each keeps its per-image results (part ``per_image``), from which the claims and CIs are computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.experiments.drawing import draw_explanation_continuity, draw_road, draw_sanity_checks
from analysis.experiments.registry import Context, Output, experiment, figure_dir, quiet
from models.perturbations import KINDS


def _sizes(ctx: Context) -> dict[str, int]:
    """method -> how many images of the evaluation subset the attribution experiments explain with it."""
    s = ctx.settings
    return {m: min(s.attr_images_for(m), len(ctx.eval)) for m in s.attr_method_names}


@experiment("road", "Faithfulness by ROAD (most / least relevant first)", "4.5 (extension)",
            ("attr_images", "attr_slow_images", "attr_method_names", "ig_steps", "lime_samples", "road_percentiles",
             "batch_size"), draw=draw_road)  # fmt: skip
def run_road(ctx: Context) -> Output:
    from analysis.attributions import get_method
    from analysis.road import road_paired, road_scores, road_summary

    s = ctx.settings
    sizes = _sizes(ctx)
    frames = []
    jobs = [(v, m) for v in ctx.models for m in sizes]
    for variant, method in tqdm(jobs, desc="road", disable=not ctx.progress, unit="map set"):
        data, model = ctx.first(sizes[method]), ctx.models[variant]
        with quiet(not ctx.progress):  # lime draws a progress bar per image whatever it is told
            ex = ctx.explain_first(variant, method, sizes[method], get_method(method).options(s))  # attributions' maps
        scores = road_scores(model, data.images, ex.maps, ex.targets, s.road_percentiles, batch_size=s.batch_size)
        frames.append(pd.DataFrame({"variant": variant, "method": method, "image": np.arange(len(data)),
                                    "target": ex.targets, **scores}))  # fmt: skip
    per_image = pd.concat(frames, ignore_index=True)
    summary = road_summary(per_image)
    counts = ", ".join(f"{m} {n}" for m, n in sizes.items())
    notes = [f"ROAD (pytorch-grad-cam's ROADMostRelevantFirstAverage / ROADLeastRelevantFirstAverage): the "
             "attributions experiment's maps (reused within one report run, else recomputed: the methods are "
             "deterministic or seeded), of the true label "
             f"on the same first test images ({counts}); removed shares "
             f"{', '.join(f'{100 - p}%' for p in s.road_percentiles)} filled by noisy linear imputation; each score "
             "is the change of the target's softmax probability, averaged over the shares; morf lower, lerf and "
             "combined ((lerf - morf) / 2) higher = more faithful. Paired CIs: paired bootstrap over the same "
             "images (10,000 resamples), Holm-adjusted within a method and score"]  # fmt: skip
    ran = {"n_images": max(sizes.values(), default=0), "images per method": counts,
           "percentiles": list(s.road_percentiles)}  # fmt: skip
    return Output({"road": summary, "paired": road_paired(per_image, ctx.roles), "per_image": per_image}, notes,
                  draw_road({"road": summary}, figure_dir(ctx)), ran)  # fmt: skip


@experiment("sanity_checks", "Sanity checks: cascading model-parameter randomisation", "4.5 (extension)",
            ("sanity_images", "sanity_method_names", "ig_steps", "lime_samples", "subset_seed"),
            draw=draw_sanity_checks)  # fmt: skip
def run_sanity_checks(ctx: Context) -> Output:
    from analysis.attributions import get_method
    from analysis.sanity_checks import cascading_randomisation, flagged_methods, sanity_summary

    s = ctx.settings
    data = ctx.first(s.sanity_images)
    frames, summaries = [], []
    jobs = [(v, m) for v in ctx.models for m in s.sanity_method_names]
    for variant, method in tqdm(jobs, desc="sanity checks", disable=not ctx.progress, unit="cascade"):
        with quiet(not ctx.progress):
            df = cascading_randomisation(ctx.models[variant], data.images, method, data.labels, seed=s.subset_seed,
                                         **get_method(method).options(s))  # fmt: skip
        df.insert(0, "variant", variant)
        frames.append(df)
        summaries.append(sanity_summary(df).assign(variant=variant))
    per_image = pd.concat(frames, ignore_index=True)
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary[["variant", *[c for c in summary.columns if c != "variant"]]]
    flags = flagged_methods(per_image)
    notes = [f"{len(data)} test images (true label); each variant's blocks re-initialised cumulatively from the "
             "head down on a copy (PyTorch's reset_parameters, seeded); Spearman of the maps and of |map|, SSIM of "
             "the normalised maps, to the trained model's map; mean over images with a bootstrap 95% CI"]  # fmt: skip
    notes += [f"**flagged: {m}** {why}" for m, why in flags.items()] or [
        "no method's maps survive randomisation (mean rank correlation below 0.5 once every block is random)"
    ]
    return Output({"sanity_checks": summary, "per_image": per_image}, notes,
                  draw_sanity_checks({"sanity_checks": summary}, figure_dir(ctx)),
                  {"n_images": len(data), "methods": ", ".join(s.sanity_method_names),
                   "flagged": ", ".join(flags) or "none"})  # fmt: skip


@experiment("explanation_continuity", "Explanation continuity: how far the maps move under Table 1 perturbations",
            "4.5 (extension)", ("map_continuity_images", "map_continuity_method_names", "map_continuity_levels",
                                "ig_steps", "lime_samples"), draw=draw_explanation_continuity)  # fmt: skip
def run_explanation_continuity(ctx: Context) -> Output:
    from analysis.attributions import get_method
    from analysis.explanation_continuity import continuity_summary, explanation_continuity

    s = ctx.settings
    data = ctx.first(s.map_continuity_images)
    frames = []
    methods = s.map_continuity_method_names
    for method in tqdm(methods, desc="explanation continuity", disable=not ctx.progress, unit="method"):
        with quiet(not ctx.progress):
            frames.append(explanation_continuity(ctx.models, data.images, method, KINDS, s.map_continuity_levels,
                                                 data.labels, **get_method(method).options(s)))  # fmt: skip
    per_image = pd.concat(frames, ignore_index=True)
    summary = continuity_summary(per_image)
    notes = [f"{len(data)} test images (true label, the same at every level); each variant's map of the perturbed "
             "copy against its map of the clean image: Spearman, SSIM, top-10% overlap (1 = unchanged); mean over "
             "images with a bootstrap 95% CI"]  # fmt: skip
    return Output({"explanation_continuity": summary, "per_image": per_image}, notes,
                  draw_explanation_continuity({"explanation_continuity": summary}, figure_dir(ctx)),
                  {"n_images": len(data), "methods": ", ".join(methods),
                   "levels": list(s.map_continuity_levels)})  # fmt: skip
