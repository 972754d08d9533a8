"""Saliency side by side: one row per variant, the original and perturbed image, its maps and DS.

Kinds, variants and attribution methods come from their registries (``models.perturbations.KIND_REGISTRY``,
``models.objectives.VARIANT_REGISTRY``, ``analysis.attributions.METHOD_REGISTRY``). Maps are jobs of the server's
runner (:mod:`app.jobs`, :mod:`app.saliency_cache`): the level on screen is computed first for every variant and
drawn, the other levels fill in behind it; a progress bar and a Cancel button show while heavy work runs, and the
rows' fragment polls (``st.fragment(run_every=...)``) until it is done. Each row is drawn only from maps computed
for the widgets' current (image, kind, level, method settings); anything else shows as busy.
"""

import math
import os
import time

import streamlit as st

from analysis.gradcam_resolution import coarse_variants, gradcam_resolution, mark_table
from analysis.per_image import perturbed_image
from app import components, figures, jobs, map_figures, map_html, page_labels, pickers, saliency_cache
from app.images import image_key as content_key
from app.results_store import load_results
from models.perturbations import KINDS, MAX_LEVEL

POLL_S = 1.0  # how often the rows refresh while jobs run
WAIT_S = float(os.environ.get("SCL_SALIENCY_WAIT_S", "2"))  # a run waits this long for the shown level's maps
LIGHT_WAIT_S = 120.0  # predictions are light: a run waits for them (bounded)
KEEP_GROUPS = 3  # finished maps of this session's last few (image, kind, methods) stay for going back

ctx = components.context()
state = st.session_state
state["sal_level_force"] = not state.get("sal_level_mounted", False)  # was the slider drawn in the last full run?
state["sal_level_mounted"] = False
st.title("Saliency, side by side")
st.markdown(
    "Pick an image (from the test set or your own), a colour perturbation and its level (paper Table 1). "
    "Each row is one variant: its prediction before → after the perturbation, where it looks on the perturbed "
    "image, and how far its logits moved."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
runner = jobs.get_runner()
session = jobs.current_session_id()
runner.touch(session)

picked = pickers.image_picker(ctx, key="sal")
methods_info = saliency_cache.method_info()
c1, c2 = st.columns([1.2, 3.0])
with c1:
    kind = st.selectbox("Perturbation", list(KINDS), key="sal_kind",
                        help="Non-semantic colour perturbations (paper Table 1 and any registered kind).")  # fmt: skip
with c2:
    variants = pickers.variant_picker(handle, key="sal")
st.markdown("Maps")
method_cols = st.columns(max(1, len(methods_info)))
methods = []
for col, (name, info) in zip(method_cols, methods_info.items(), strict=False):
    options = ", ".join(f"{k} {v}" for k, v in info.defaults.items() if k != "seed")
    tip = f"{info.label} ({'signed' if info.signed else 'positive'} map{'; ' + options if options else ''})" + (
        "; slow: computed only for the level shown, row by row" if info.slow else ""
    )
    if col.checkbox(info.label, value=info.selected_by_default, key=f"sal_method_{name}", help=tip):
        methods.append(name)
method_options: dict[str, dict] = {}
with st.expander("Options"):
    for name, info in methods_info.items():
        if "num_samples" in info.defaults:
            n = int(info.defaults["num_samples"])
            choices = sorted({max(50, n // 4), max(50, n // 2), n, 2 * n})
            method_options[name] = {"num_samples": st.select_slider(f"{info.label} samples", choices, value=n,
                                                                    key=f"sal_{name}_samples")}  # fmt: skip
    with_original = st.checkbox("Also show the maps of the original image", value=False, key="sal_orig")

if picked is None:
    runner.release(session, keep=lambda job: job.state == "done")  # nothing to explain: stop what was running
    st.stop()
if not variants:
    st.warning("Choose at least one variant.")
    st.stop()

names = handle.classes or components.class_names(ctx, components.load_dataset(ctx, stop=False))
true_text = (f" · true class **{components.md_escape(components.class_name(names, picked.label))}**"
             if picked.label is not None else " · no true class (an upload)")  # fmt: skip
st.markdown(f"**Image:** {components.md_escape(picked.title)}{true_text}")
image_key = content_key(picked.image)
settings = saliency_cache.method_settings(methods, method_options)
group = (handle.key, image_key, kind, settings, tuple(variants))  # what the jobs are for, apart from the level
recent = [g for g in state.get("sal_recent_groups", []) if g != group][: KEEP_GROUPS - 1] + [group]
state["sal_recent_groups"] = recent
# a new image, kind or method set: this session's stale jobs stop; finished maps of the last few stay
runner.release(session, keep=lambda job: job.group == group or (job.group in recent and job.state == "done"))
polling = any(job.pending for job in runner.session_jobs(session, group))  # armed for this full run


def _class(index: int) -> str:
    return components.md_escape(components.class_name(names, index))


def _prediction_text(row: dict) -> str:
    """Original → perturbed prediction, wrong ones marked against the true class (gallery images)."""

    def one(label: str, pred: int, conf: float) -> str:
        wrong = picked.label is not None and pred != picked.label
        return f"{label}: **{_class(pred)}** ({100 * conf:.0f}%)" + (" :red[✗ wrong]" if wrong else "")

    changed = row["pred"] != row["pred_perturbed"]
    return (one("original", row["pred"], row["conf"]) + "  \n" + one("perturbed", row["pred_perturbed"],
            row["conf_perturbed"]) + ("  \n:orange[prediction changed]" if changed else ""))  # fmt: skip


def _top3(row: dict) -> str:
    probs = row["probs_perturbed"]
    return "top-3 (perturbed): " + ", ".join(f"{_class(c)} {100 * probs[c]:.0f}%" for c in row["top_perturbed"])


def _keep_level() -> None:
    state["sal_level_kept"] = int(state["sal_level"])


def _display_controls() -> tuple[int, bool, bool, bool, float, bool]:
    """The level and display controls: (level, overlay, raw, shared colour scale, opacity, interactive)."""
    d1, d2, d3, d4 = st.columns([2.0, 1.3, 1.5, 1.2])
    with d1:
        # The level lives in "sal_level_kept" (never cleaned up). When the slider was not on the page in the last
        # full run (an upload not chosen yet, another page), the browser has forgotten its value: the kept level
        # is written into the widget, which sends it to the browser, so slider, caption and rows agree. Otherwise
        # the browser's own value stands (forcing it every run would undo quick moves still in flight).
        if state.pop("sal_level_force", False) or "sal_level" not in state:
            state["sal_level"] = int(state.get("sal_level_kept", 1))
        level = st.slider("Level", 0, MAX_LEVEL, key="sal_level", on_change=_keep_level,
                          help="0 = the original image; 1-4 = Table 1 levels.")  # fmt: skip
        state["sal_level_mounted"] = True
        state["sal_level_kept"] = level
        st.caption(f"Applied: **{components.md_escape(page_labels.level_label(kind, level))}**")
    with d2:
        overlay = st.toggle("Overlay on greyscale", value=True, key="sal_overlay",
                            help="Each map drawn over a greyscale copy of the image it explains.")  # fmt: skip
        raw = st.toggle("Raw maps too", value=False, key="sal_raw", disabled=not overlay,
                        help="The bare maps in a row under the overlays.")  # fmt: skip
    with d3:
        scale_mode = st.radio("Colour scale", ["shared by the variants", "per map"], key="sal_scale",
                              help="Shared: one scale per method for every row, so colours compare across "
                              "variants. Per map: each map scaled by its own largest |value|.")  # fmt: skip
    with d4:
        opacity = st.slider("Map opacity", 0.1, 1.0, 0.6, 0.05, key="sal_opacity", disabled=not overlay)
        interactive = st.toggle("Interactive", value=False, key="sal_interactive",
                                help="Draw the rows as plotly charts: hover shows each pixel's value, zoom works; "
                                "slower to redraw than the default images.")  # fmt: skip
    return level, overlay, raw, scale_mode == "shared by the variants", opacity, interactive


def _busy_text(label: str, level: int, progress: jobs.JobProgress) -> str:
    """'Integrated Gradients for level 3: computing, 40%, about 12 s left' (or 'queued')."""
    pct, left = progress
    if pct <= 0 and left is None:
        return f"⏳ {label} for level {level}: queued"
    eta = f", about {left:.0f} s left" if left is not None else ""
    return f"⏳ {label} for level {level}: computing, {100 * pct:.0f}%{eta}"


def _row_header(variant: str, row: dict):
    """A variant's bordered row: name, help, predictions, DS (and IG's δ), a slot for the similarity caption
    (kept in ``row["similarity_slot"]``), what is still computing or failed; returns the empty slot its chart is
    drawn in."""
    params = row["computed_for"]
    with st.container(border=True, key=f"sal_row_{variant.replace('+', 'plus')}"):
        info, score = st.columns([5.0, 1.3], vertical_alignment="top")
        with info:
            st.markdown(f"### {components.md_escape(variant)}")
            st.caption(components.md_escape(page_labels.variant_help(variant)))
            st.markdown(_prediction_text(row))
            st.caption(_top3(row))
        with score:
            st.markdown(f"DS  \n### {row['ds']:.2g}", help=components.DS_CAPTION)
            delta = row["extras"].get("integrated_gradients", {}).get("delta")
            if delta is not None:
                st.caption(f"IG completeness δ = {delta:.2g}")
            side = row["extras"].get("gradcam", {}).get("map_side")
            if side is not None and side < 4:
                st.warning(gradcam_resolution(handle.zoo.models[variant], handle.image_size).caption())
            similarity = st.empty()
        for method, progress in row["pending"].items():
            st.caption(_busy_text(methods_info[method].label, params.level, progress))
        for method, error in row["failed"].items():
            st.error(f"{methods_info[method].label} failed for level {params.level}: {components.md_escape(error)}")
        if row.get("cancelled"):
            st.caption(f"Cancelled: {', '.join(methods_info[m].label for m in row['cancelled'])} not computed for "
                       f"level {params.level}.")  # fmt: skip
        chart = st.empty()
        row["similarity_slot"] = similarity
    return chart


def _rows_caption(shared: bool, elapsed: float, level: int) -> None:
    """What the rows show and how long they took to draw."""
    st.caption(
        f"{components.DS_CAPTION} Maps explain the class each variant predicts on the *original* image, computed "
        "on the perturbed image. Signed maps (IG: red = for the class, blue = against) use a diverging scale "
        "centred on 0, positive ones (GradCAM) a sequential scale; "
        + ("one scale per method is shared by every row, so colours compare across variants. " if shared else
           "each map is scaled by its own largest |value| (colours compare where, not how strongly). ")
        + "IG completeness δ = sum of attributions − (F(x)[class] − F(black)[class]); near 0 means the integration "
        "is accurate. ρ = Spearman rank correlation between the map of the perturbed and of the original image. "
        f"Images upscaled by nearest neighbour. Level {level} drawn in {elapsed * 1000:.0f} ms (the level shown is "
        "computed first, the others in the background; computed maps are kept)."
    )  # fmt: skip


def _progress(heavy_steps: list, level: int) -> bool:
    """The progress bar and Cancel button of this view's heavy jobs ((variant, method, level), job); True when the
    user cancelled."""
    heavy = [job for _, job in heavy_steps]
    if not any(job.pending for job in heavy):
        return False
    shown = [job for (_, _, lv), job in heavy_steps if lv == level]
    what = (f"Level {level} of every variant" if any(job.pending for job in shown)
            else "The other levels, in the background")  # fmt: skip
    fraction, left = jobs.overall_progress(heavy)
    done = sum(job.state == "done" for job in heavy)
    eta = f", about {left:.0f} s left" if left is not None else ""
    bar, button = st.columns([5.0, 1.0], vertical_alignment="center")
    bar.progress(min(1.0, fraction), text=f"{what}: {done}/{len(heavy)} maps done ({100 * fraction:.0f}%{eta})")
    return button.button("Cancel", key="sal_cancel", help="Stop the heavy maps (IG, LIME) of this view.")


def _arm(pending: bool) -> None:
    """Keep the rows' polling in step with the jobs: a full rerun arms (or disarms) ``run_every``."""
    if pending != polling:
        st.rerun()


def saliency_rows() -> None:
    """Level, display controls and the rows: reruns alone when one of its controls moves, and every ``POLL_S``
    while jobs for this view are running."""
    level, overlay, raw, shared, opacity, interactive = _display_controls()
    t0 = time.perf_counter()
    params = saliency_cache.RowParams(image_key, kind, level, settings)
    cancelled = state.get("sal_cancelled") == (group, level)
    preds = saliency_cache.submit_predictions(runner, session, handle, variants, picked.image, image_key, kind, group)
    for job in preds.values():
        job.wait(LIGHT_WAIT_S)
    failed = [f"{v}: {job.error}" for v, job in preds.items() if job.state == "failed"]
    if failed:
        st.error("Predictions failed: " + components.md_escape("; ".join(failed)))
        return
    if not all(job.state == "done" for job in preds.values()):
        st.info("⏳ Predicting every level...")
        _arm(True)
        return
    targets = {v: int(job.result["pred"][0]) for v, job in preds.items()}
    steps = saliency_cache.submit_maps(runner, session, handle, picked.image, image_key, kind, targets, methods,
                                       method_options, level, group, heavy=not cancelled)  # fmt: skip
    heavy_steps = [(k, job) for k, job in steps if job.kind == "heavy"]
    if state.get("sal_requeued") != (group, level):  # a new view or level: its level goes before all background
        runner.put_first([job for (_, _, lv), job in heavy_steps if lv == level])
        runner.requeue(job for (_, _, lv), job in heavy_steps if lv != level)  # then this view's own, in order
        state["sal_requeued"] = (group, level)
    by_step = dict(steps)
    needed = [job for (_, _, lv), job in steps if lv in (level, 0)]
    deadline = time.monotonic() + WAIT_S
    for job in needed:  # the shown level (and the original, for ρ) of every variant, a short while
        job.wait(max(0.0, deadline - time.monotonic()))

    rows = {}
    for v in variants:
        maps = {m: by_step[(v, m, level)] for m in methods if (v, m, level) in by_step}
        originals = {m: by_step.get((v, m, 0)) for m in methods}
        rows[v] = saliency_cache.job_row(v, preds[v].result, params, maps, originals, with_original)
        rows[v]["cancelled"] = [m for m in methods if (v, m, level) not in by_step]
    if _progress(heavy_steps, level):
        state["sal_cancelled"] = (group, level)
        runner.release(session, keep=lambda job: job.kind == "light" or job.state == "done")
        st.rerun()
    if cancelled and st.button("Compute the cancelled maps", key="sal_resume"):
        state.pop("sal_cancelled", None)
        st.rerun()
    perturbed = perturbed_image(picked.image, kind, level)
    applied = f"perturbed: {page_labels.level_label(kind, level)}" if level else "level 0 (= original)"

    def scales_of(variant: str, which: str) -> dict[str, float]:
        out = {}
        for m in rows[variant][which]:
            signed = methods_info[m].signed
            pool = [rows[v][which][m] for v in variants if m in rows[v][which]] if shared else [rows[variant][which][m]]
            if shared and with_original:  # one scale for the perturbed and the original maps
                pool += [rows[v]["original_maps" if which == "maps" else "maps"][m] for v in variants
                         if m in rows[v]["maps"] and m in rows[v]["original_maps"]]  # fmt: skip
            out[m] = map_figures.map_scale(pool, signed)
        return out

    for n, variant in enumerate(variants):
        row = rows[variant]
        chart = _row_header(variant, row)
        if row["computed_for"] != params:  # never maps of another image, kind or level under these widgets
            chart.info("⏳ Busy: these maps are for other settings.")
            continue
        draw_row = map_figures.saliency_comparison if interactive else map_html.saliency_comparison_html
        drawn = draw_row(
            picked.image, perturbed, row["maps"], signed={m: methods_info[m].signed for m in row["maps"]},
            scales=scales_of(variant, "maps"), labels={m: methods_info[m].label for m in row["maps"]},
            image_titles=("original", applied), overlay=overlay, opacity=opacity, raw=raw,
            original_maps=row["original_maps"] if with_original else None,
            original_scales=scales_of(variant, "original_maps") if with_original else None,
        )  # fmt: skip
        with chart.container():
            if interactive:
                st.plotly_chart(drawn, key=f"sal_fig_{variant}_{n}", width="content",
                                config={"displayModeBar": False})  # fmt: skip
            else:
                st.html(drawn)
        lines = [f"ρ({methods_info[m].label}) vs original = {rho:.2f}" for m, rho in row["similarity"].items()
                 if level and not math.isnan(rho)]  # fmt: skip
        if lines:
            row["similarity_slot"].caption("  \n".join(lines))

    elapsed = time.perf_counter() - t0
    _rows_caption(shared, elapsed, level)
    state["sal_last_ms"] = elapsed * 1000
    _arm(any(job.pending for job in runner.session_jobs(session, group)))


st.fragment(saliency_rows, run_every=POLL_S if polling else None)()

results = load_results(handle)
name, quality = results.find({"variant", "method", "mask_share", "deletion_auc", "insertion_auc"}, "attribution")
sname, stab = results.find({"variant", "method", "kind", "level", "spearman_mean"}, "stability")
if quality is not None or stab is not None:
    st.subheader("Attribution quality over the test set (from the report)")
    if quality is not None:
        st.caption(
            "Mask share: positive attribution inside the object mask (higher = more on the object). Deletion / "
            "insertion AUC: the class probability as the most important pixels are removed (lower = more faithful) "
            "or inserted (higher = more faithful)."
        )
        coarse = coarse_variants(handle.zoo.models, handle.image_size)
        components.show_table(mark_table(quality, coarse), name)
        for variant, res in coarse.items():  # the marked rows: GradCAM too coarse to localise
            st.caption(f"{components.md_escape(variant)}: {res.caption()}")
    if stab is not None:
        st.plotly_chart(figures.stability_lines(stab), key="sal_stability")
        st.caption("How much each map changes when the input is perturbed (1 = not at all).")
    components.report_status(results, "attributions", "stability")
