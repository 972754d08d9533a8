"""Saliency side by side: one row per variant, the original and perturbed image, its maps and DS.

Kinds, variants and attribution methods come from their registries (``models.perturbations.KIND_REGISTRY``,
``models.objectives.VARIANT_REGISTRY``, ``analysis.attributions.METHOD_REGISTRY``). Maps are jobs of the server's
runner (:mod:`app.jobs`, :mod:`app.saliency_cache`): the level on screen is computed first for every variant and
drawn, the other levels fill in behind it; a progress bar and a Cancel button show while heavy work runs, and the
rows' fragment polls (``st.fragment(run_every=...)``) until it is done. Each row is drawn only from maps computed
for the widgets' current (image, kind, level, method settings); anything else shows as busy.
"""

import inspect
import math
import os
import time

import streamlit as st

from analysis import gallery_filters as gf
from analysis.attribution_baselines import BASELINES, DEFAULT_BASELINE, PAIR_BASELINES, baseline_parameter
from analysis.gradcam_layers import default_layer, layer_candidates
from analysis.gradcam_resolution import coarse_variants, gradcam_resolution, mark_table
from analysis.map_comparison import compare_variants
from analysis.per_image import perturbed_image
from analysis.service_client import BackendUnavailable
from app import (
    components,
    figures,
    jobs,
    map_export,
    map_figures,
    map_html,
    page_labels,
    pickers,
    saliency_cache,
    view_state,
)
from app.images import image_key as content_key
from app.results_store import load_results
from app.sanity_flags import warn_flagged
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

methods_info = saliency_cache.method_info()
names = handle.classes or components.class_names(ctx, components.load_dataset(ctx, stop=False))
SHAP_BASELINES = (*PAIR_BASELINES, *BASELINES)  # GradientSHAP's own default first: black and white
BASELINE_DEFAULTS = {"baseline": DEFAULT_BASELINE, "baselines": PAIR_BASELINES[0]}  # what the methods do unasked
manifest = view_state.manifest_hash(handle.zoo.manifest)


def _takes(method: str, option: str) -> bool:
    """Whether the registered method's function takes ``option`` (``baseline``, ``baselines``, ``layer``)."""
    return option in inspect.signature(methods_info[method].function).parameters


def _open_link() -> list[str]:
    """A link's view (the URL's query parameters, :mod:`app.view_state`) written into the widgets' state, once per
    session, before they are drawn; returns one line per parameter that could not be used."""
    params = st.query_params.to_dict()
    if not params:
        return []
    ds = components.load_dataset(ctx, stop=False)
    choices = view_state.Choices(kinds=list(KINDS), max_level=MAX_LEVEL, variants=handle.variants,
                                 methods=list(methods_info), baselines=BASELINES, shap_baselines=SHAP_BASELINES,
                                 n_images=len(ds) if ds is not None else None,
                                 n_classes=len(names) if names else None)  # fmt: skip
    link, problems = view_state.from_query_params(params, choices)
    if link.zoo and link.zoo != handle.name:
        problems.append(f"the link was made on zoo {link.zoo!r}; this page shows zoo {handle.name!r}")
    elif link.manifest and link.manifest != manifest:
        problems.append(f"the zoo's manifest changed since the link was made (hash {link.manifest}, now {manifest}): "
                        "the maps may differ")  # fmt: skip
    if link.image is not None and ds is not None:
        state.update(sal_source="Test-set gallery", sal_class="any class", sal_filter=gf.ALL, sal_example=link.image)
    elif link.upload:
        state["sal_source"] = "Upload an image"
        state["sal_link_upload"] = link.upload
    if link.kind:
        state["sal_kind"] = link.kind
    if link.level is not None:
        state["sal_level_kept"] = link.level
        state.pop("sal_level", None)  # the slider takes the kept level (see _display_controls)
    if link.variants:
        state["sal_variants"] = list(link.variants)
    if link.methods:
        state.update({f"sal_method_{m}": m in link.methods for m in methods_info})
    for field, key in (("target", "sal_target"), ("baseline", "sal_baseline"), ("shap_baseline", "sal_shap_baseline"),
                       ("layer", "sal_layer"), ("diff", "sal_diff_ref")):  # fmt: skip
        if getattr(link, field):
            state[key] = getattr(link, field)
    state["sal_diff"] = bool(link.diff)
    return problems


if not state.get("sal_link_read"):  # a link opens its view once; afterwards the widgets rule
    state["sal_link_read"] = True
    state["sal_link_problems"] = _open_link()
for problem in state.get("sal_link_problems", []):  # shown until the view moves away from the link's
    st.warning(f"Link: {components.md_escape(problem)}.")

picked = pickers.image_picker(ctx, key="sal")
c1, c2 = st.columns([1.2, 3.0])
with c1:
    kind = st.selectbox("Perturbation", list(KINDS), key="sal_kind",
                        help="Non-semantic colour perturbations (paper Table 1 and any registered kind).")  # fmt: skip
with c2:
    variants = pickers.variant_picker(handle, key="sal")
st.markdown("Maps")
PER_LINE = 4  # method checkboxes per line: every label readable at 1280 px, however many methods are registered
method_cols = [col for start in range(0, max(1, len(methods_info)), PER_LINE)
               for col in st.columns(PER_LINE)][: max(1, len(methods_info))]  # fmt: skip
methods = []
for col, (name, info) in zip(method_cols, methods_info.items(), strict=False):
    options = ", ".join(f"{k} {v}" for k, v in info.defaults.items() if k != "seed")
    tip = f"{info.label} ({'signed' if info.signed else 'positive'} map{'; ' + options if options else ''})" + (
        "; slow: computed only for the level shown, row by row" if info.slow else ""
    )
    if col.checkbox(info.label, value=info.selected_by_default, key=f"sal_method_{name}", help=tip):
        methods.append(name)
warn_flagged(handle, methods)  # a ticked method whose maps survive randomisation (sanity checks, issue 22)


@st.cache_data(max_entries=64, show_spinner=False)
def _layers_of(zoo_key: tuple, variant: str, size: int, _model) -> tuple[list, object]:
    """GradCAM's candidate layers of one variant at the zoo's input size, and its default (one probe each)."""
    return layer_candidates(_model, size), default_layer(_model, size)


layers = {v: _layers_of(handle.key, v, handle.image_size, handle.model(v)) for v in variants}
common = [c.name for c in layers[variants[0]][0] if all(c.name in {d.name for d in layers[v][0]} for v in variants)] \
    if variants else []  # fmt: skip
sizes = {c.name: c.label for c in layers[variants[0]][0]} if variants else {}
defaults = {v: layers[v][1] for v in variants}


def _target_label(code: str) -> str:
    if code == "predicted":
        return "predicted on the original"
    if code == "true":
        return "true class" + ("" if picked is not None and picked.label is not None else " (gallery images only)")
    return f"class: {components.class_name(names, int(code.split(':')[1]))}"


def _layer_label(code: str) -> str:
    if code != "auto":
        return sizes.get(code, code)
    shown = {d.label for d in defaults.values()}
    return "default: " + (next(iter(shown)) if len(shown) == 1 else "each variant's finest map not 1x1")


n_classes = len(names) if names else 0
target_codes = ["predicted", "true", *[f"class:{i}" for i in range(n_classes)]]
layer_codes = ["auto", *common]
for key, codes, fallback in (("sal_target", target_codes, "predicted"), ("sal_layer", layer_codes, "auto")):
    if state.get(key, fallback) not in codes:  # a link's or an earlier zoo's value this page cannot offer
        what = "Target" if key == "sal_target" else "GradCAM layer"
        st.warning(f"{what} {components.md_escape(repr(state[key]))} is not available here: {fallback} instead.")
        state[key] = fallback
t1, t2, t3, t4 = st.columns(4)
target_mode = t1.selectbox("Explain class", target_codes, key="sal_target", format_func=_target_label,
                           help="Which class the maps explain: each variant's prediction on the original image "
                           "(default), the image's true class, or any class.")  # fmt: skip
baseline = t2.selectbox("IG baseline", BASELINES, index=BASELINES.index(DEFAULT_BASELINE), key="sal_baseline",
                        help="What Integrated Gradients integrates from: a black image, a blurred copy of the "
                        "image (Gaussian, sigma = side/16) or uniform noise (seeded).")  # fmt: skip
shap_baseline = t3.selectbox("GradientSHAP baselines", SHAP_BASELINES, key="sal_shap_baseline",
                             help="GradientSHAP's reference distribution: black and white (its default), or "
                             "one of IG's baselines.")  # fmt: skip
layer = t4.selectbox("GradCAM layer", layer_codes, key="sal_layer", format_func=_layer_label,
                     help="The layer GradCAM and the other CAMs read (map size in brackets). Default: the declared "
                     "layer unless its map is 1x1, then the finest layer whose map is not 1x1.")  # fmt: skip
method_options: dict[str, dict] = {}
with st.expander("Options"):
    for name, info in methods_info.items():
        if "num_samples" in info.defaults:  # the default fitted to the zoo's input size (LIME: 300 at 224 px)
            n = int(info.options(input_size=handle.image_size)["num_samples"])
            choices = sorted({max(50, n // 4), max(50, n // 2), n, 2 * n})
            method_options[name] = {"num_samples": st.select_slider(f"{info.label} samples", choices, value=n,
                                                                    key=f"sal_{name}_samples")}  # fmt: skip
    with_original = st.checkbox("Also show the maps of the original image", value=False, key="sal_orig")
for name in methods_info:  # the choices above, as options of the methods that take them (part of the cache keys)
    takes = baseline_parameter(methods_info[name].function)  # IG's "baseline", GradientSHAP's "baselines"
    chosen = {"baseline": baseline, "baselines": shap_baseline}
    # the methods' own defaults are left out: default requests stay batchable across sessions by the compute service
    extra = {takes: chosen[takes]} if takes and chosen[takes] != BASELINE_DEFAULTS[takes] else {}
    if layer != "auto" and _takes(name, "layer"):
        extra["layer"] = layer
    method_options.setdefault(name, {}).update(extra)

if state.get("sal_link_upload") and (picked is None or picked.source == "upload"):
    wanted = state["sal_link_upload"]
    if picked is None:
        st.caption(f"The link was made for an upload (content hash `{wanted[:12]}`): upload the same file to see "
                   "that view.")  # fmt: skip
    elif content_key(picked.image) == wanted:
        st.caption("This upload is the image the link was made for.")
    else:
        st.warning(f"This upload is not the image the link was made for (hash `{wanted[:12]}`).")
if picked is None:
    runner.release(session, keep=lambda job: job.state == "done")  # nothing to explain: stop what was running
    st.stop()
if not variants:
    st.warning("Choose at least one variant.")
    st.stop()

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
    """The slider's callback: the level is kept, and the link follows it at once (see :func:`_link_follows`)."""
    state["sal_level_kept"] = int(state["sal_level"])
    _link_follows()


def _link_follows() -> None:
    """Callback of the widgets inside the rows' fragment (level, difference view): the view into the URL now. A
    callback runs before the fragment's rerun, so a copied link names the level on screen without a full run."""
    _write_link(int(state.get("sal_level_kept", 1)))


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


def _busy_text(label: str, level: int, progress: jobs.JobProgress, ahead: int | None = None) -> str:
    """'Integrated Gradients for level 3: computing, 40%, about 12 s left' (or 'queued: N ahead')."""
    pct, left = progress
    if pct <= 0 and left is None:
        return f"⏳ {label} for level {level}: queued" + (f": {ahead} ahead" if ahead else "")
    eta = f", about {left:.0f} s left" if left is not None else ""
    return f"⏳ {label} for level {level}: computing, {100 * pct:.0f}%{eta}"


def _row_header(variant: str, row: dict):
    """A variant's bordered row: name, help, predictions, DS (and IG's δ), a slot for the similarity caption
    (kept in ``row["similarity_slot"]``), what is still computing or failed; returns the slot its chart is drawn in.

    The slots are containers, not ``st.empty()``: a placeholder holds an element in one run and a block in the
    next at the same delta path. With placeholders the two-session test in tests/test_browser.py blanked the
    first tab in 3 of 7 runs (the browser's "'setIn' cannot be called on an ElementNode", a delta into a node it
    held as an element), with containers in none of 8."""
    params = row["computed_for"]
    with st.container(border=True, key=f"sal_row_{variant.replace('+', 'plus')}"):
        info, score = st.columns([5.0, 1.3], vertical_alignment="top")
        with info:
            st.markdown(f"### {components.md_escape(variant)}")
            st.caption(components.md_escape(page_labels.variant_help(variant)))
            st.markdown(_prediction_text(row))
            st.caption(_top3(row))
            st.caption(row["settings_text"])
        with score:
            st.markdown(f"DS  \n### {row['ds']:.2g}", help=components.DS_CAPTION)
            delta = row["extras"].get("integrated_gradients", {}).get("delta")
            if delta is not None:
                st.caption(f"IG completeness δ = {delta:.2g}")
            side = row["extras"].get("gradcam", {}).get("map_side")
            if side is not None and side < 4:
                st.warning(gradcam_resolution(handle.zoo.models[variant], handle.image_size).caption())
            similarity = st.container()
        for method, progress in row["pending"].items():
            st.caption(_busy_text(methods_info[method].label, params.level, progress, row["ahead"].get(method)))
        for method, error in row["failed"].items():
            st.error(f"{methods_info[method].label} failed for level {params.level}: {components.md_escape(error)}")
        if row.get("cancelled"):
            st.caption(f"Cancelled: {', '.join(methods_info[m].label for m in row['cancelled'])} not computed for "
                       f"level {params.level}.")  # fmt: skip
        chart = st.container()
        row["similarity_slot"] = similarity
    return chart


def _rows_caption(shared: bool, elapsed: float, level: int) -> None:
    """What the rows show and how long they took to draw."""
    st.caption(
        f"{components.DS_CAPTION} Maps explain the class each row names (by default the class the variant "
        "predicts on the *original* image), computed on the perturbed image. "
        "Signed maps (IG: red = for the class, blue = against) use a diverging scale "
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


def _targets(preds: dict) -> tuple[dict[str, int], dict[str, str]]:
    """The class each variant's maps explain (the "Explain class" choice) and how to say it: its prediction on the
    original image, the true class (gallery images; an upload has none: the prediction), or the chosen class."""
    predicted = {v: int(job.result["pred"][0]) for v, job in preds.items()}
    if target_mode == "true" and picked.label is not None:
        return {v: int(picked.label) for v in preds}, {v: "the true class" for v in preds}
    if target_mode.startswith("class:"):
        return {v: int(target_mode[6:]) for v in preds}, {v: "chosen" for v in preds}
    why = "its prediction on the original" + (" (an upload has no true class)" if target_mode == "true" else "")
    return predicted, {v: why for v in preds}


def _settings_text(variant: str, params: saliency_cache.RowParams, target: int, why: str) -> str:
    """What a row was computed for: the image, kind and level, the explained class, each method's options (with the
    layer GradCAM reads by default named)."""
    where = f"test image #{picked.index}" if picked.index is not None else f"upload {params.image_key[:12]}"
    parts = [f"{where} · {page_labels.level_label(params.kind, params.level)} · class {_class(target)} ({why})"]
    for method, options in params.settings:
        opts = {k: v for k, v in methods_info[method].options(input_size=handle.image_size, **dict(options)).items()
                if k not in ("memory_budget", "progress", "should_stop")}  # fmt: skip
        takes = baseline_parameter(methods_info[method].function)
        if takes and not isinstance(opts.get(takes), str):  # the method's own default baseline
            opts[takes] = BASELINE_DEFAULTS[takes]
        if _takes(method, "layer") and opts.get("layer") is None:
            opts["layer"] = f"{defaults[variant].label}, default"
        text = ", ".join(f"{k} {components.md_escape(v)}" for k, v in opts.items())
        parts.append(f"{methods_info[method].label}" + (f": {text}" if text else ""))
    return "Computed for: " + " · ".join(parts)


def _view(level: int) -> view_state.ViewState:
    """The view on screen, as a link names it (:mod:`app.view_state`)."""
    return view_state.ViewState(
        zoo=handle.name, manifest=manifest, image=picked.index, upload=image_key if picked.index is None else None,
        kind=kind, level=int(level), variants=tuple(variants), methods=tuple(methods), target=target_mode,
        baseline=baseline, shap_baseline=shap_baseline, layer=layer,
        diff=_diff_reference() if state.get("sal_diff") else None,
    )  # fmt: skip


def _diff_reference() -> str | None:
    """The difference view's reference variant: the chosen one while it is shown, else the first variant."""
    chosen = state.get("sal_diff_ref")
    return chosen if chosen in variants else (variants[0] if variants else None)


def _export_buttons(variant: str, row: dict, perturbed, applied: str, scales: dict, overlay: bool, opacity: float,
                    provenance: dict[str, str]) -> None:  # fmt: skip
    """PNG and CSV downloads of one row (made when clicked), carrying the view's provenance."""
    maps, signed = dict(row["maps"]), {m: methods_info[m].signed for m in row["maps"]}
    labels = {m: methods_info[m].label for m in row["maps"]}
    numbers = {"pred": _plain(row["pred"]), "conf": row["conf"], "pred_perturbed": _plain(row["pred_perturbed"]),
               "conf_perturbed": row["conf_perturbed"], "ds": row["ds"],
               **{f"rho_{m}": rho for m, rho in row["similarity"].items()},
               **{f"delta_{m}": ex["delta"] for m, ex in row["extras"].items() if "delta" in ex}}  # fmt: skip
    originals = dict(row["original_maps"])
    key = variant.replace("+", "plus")
    stem = f"saliency-{key}-{kind}-level{int(row['computed_for'].level)}"
    b1, b2, _ = st.columns([1, 1, 6])
    b1.download_button("PNG", lambda: map_export.row_png(picked.image, perturbed, maps, signed=signed, scales=scales,
                       labels=labels, image_titles=("original", applied), overlay=overlay, opacity=opacity,
                       provenance=provenance), file_name=f"{stem}.png", mime="image/png", key=f"sal_png_{key}",
                       on_click="ignore", help="This row as a PNG (the view in its metadata).")  # fmt: skip
    b2.download_button("CSV", lambda: map_export.row_csv(variant, numbers, maps, originals, provenance),
                       file_name=f"{stem}.csv", mime="text/csv", key=f"sal_csv_{key}", on_click="ignore",
                       help="This row's numbers and every map value as CSV (the view in its header).")  # fmt: skip


def _plain(index: int) -> str:
    return f"{index} ({components.class_name(names, index)})"


def _differences(rows: dict, params: saliency_cache.RowParams) -> None:
    """The difference view (issue 22, 4a): per method, each variant's normalised map minus a reference variant's,
    and Spearman's ρ between every pair of variants' maps (``analysis.map_comparison.compare_variants``)."""
    tip = ("Per method: each variant's map, normalised by its largest |value|, minus the reference variant's; and "
           "the rank correlation of every pair.")  # fmt: skip
    if not st.toggle("Difference maps", key="sal_diff", help=tip, on_change=_link_follows):
        return
    if state.get("sal_diff_ref") not in variants:
        state["sal_diff_ref"] = variants[0]
    reference = st.selectbox("Reference variant", variants, key="sal_diff_ref", on_change=_link_follows)
    for method in methods:
        label = methods_info[method].label
        maps = {v: rows[v]["maps"][method] for v in variants
                if rows[v]["computed_for"] == params and method in rows[v]["maps"]}  # fmt: skip
        if len(maps) < len(variants):
            st.caption(f"⏳ {label}: waiting for every variant's map.")
            continue
        cmp = compare_variants(maps, reference, methods_info[method].signed)
        st.markdown(f"**{label}**: normalised map − {components.md_escape(reference)}'s")
        st.html(map_html.difference_row_html(label, cmp.difference, reference, cmp.correlation[reference].to_dict()))
        st.dataframe(cmp.correlation.round(3), key=f"sal_diff_rho_{method}", width="content")
        st.caption(f"{label}: Spearman's ρ between every pair of variants' maps (1 = same ranking of pixels).")
        st.download_button("Correlations (CSV)", view_state.provenance_text(view_state.provenance(_view(params.level)))
                           + cmp.correlation.to_csv(), file_name=f"saliency-correlations-{method}.csv",
                           mime="text/csv", key=f"sal_diff_csv_{method}", on_click="ignore")  # fmt: skip


def _write_link(level: int) -> None:
    """The view into the URL's query parameters (a copied link reopens it), when it changed."""
    wanted = view_state.to_query_params(_view(level))
    if state.setdefault("sal_link_opened", wanted) != wanted:
        state.pop("sal_link_problems", None)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def _notices(messages: list[str]) -> None:
    """Messages that are not failures (a backend not reachable, a quota), each once; Retry asks again."""
    for message in dict.fromkeys(messages):
        st.warning(components.md_escape(message))
    if messages and st.button("Retry", key="sal_retry", help="Ask the compute backend again."):
        st.rerun()


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
    try:
        preds = saliency_cache.submit_predictions(runner, session, handle, variants, picked.image, image_key, kind,
                                                  group)  # fmt: skip
    except BackendUnavailable as exc:  # the compute backend is down or restarting: say so, offer Retry
        _notices([str(exc)])
        return
    for job in preds.values():
        job.wait(LIGHT_WAIT_S)
    notices = [saliency_cache.notice(job.error) for job in preds.values() if job.state == "failed"]
    if any(notices):
        _notices([n for n in notices if n])
        return
    failed = [f"{v}: {job.error}" for v, job in preds.items() if job.state == "failed"]
    if failed:
        st.error("Predictions failed: " + components.md_escape("; ".join(failed)))
        return
    if not all(job.state == "done" for job in preds.values()):
        st.info("⏳ Predicting every level...")
        _arm(True)
        return
    targets, target_text = _targets(preds)
    try:
        steps = saliency_cache.submit_maps(runner, session, handle, picked.image, image_key, kind, targets, methods,
                                           method_options, level, group, heavy=not cancelled)  # fmt: skip
    except BackendUnavailable as exc:
        _notices([str(exc)])
        return
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
        rows[v]["cancelled"] = [m for m in methods if (v, m, level) not in by_step and not steps.quota]
    _notices(([steps.quota] if steps.quota else []) + [n for v in variants for n in rows[v]["notices"]])
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

    provenance_of = {v: view_state.provenance(_view(level), variant=v, version=components.version_caption())
                     for v in variants}  # fmt: skip
    for n, variant in enumerate(variants):
        row = rows[variant]
        row["settings_text"] = _settings_text(variant, params, targets[variant], target_text[variant])
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
        with chart:
            if interactive:
                st.plotly_chart(drawn, key=f"sal_fig_{variant}_{n}", width="content",
                                config={"displayModeBar": False})  # fmt: skip
            else:
                st.html(drawn)
            if row["maps"]:
                _export_buttons(variant, row, perturbed, applied, scales_of(variant, "maps"), overlay, opacity,
                                provenance_of[variant])  # fmt: skip
        lines = [f"ρ({methods_info[m].label}) vs original = {rho:.2f}" for m, rho in row["similarity"].items()
                 if level and not math.isnan(rho)]  # fmt: skip
        if lines:
            row["similarity_slot"].caption("  \n".join(lines))

    _differences(rows, params)
    elapsed = time.perf_counter() - t0
    _rows_caption(shared, elapsed, level)
    state["sal_last_ms"] = elapsed * 1000
    _arm(any(job.pending for job in runner.session_jobs(session, group)))


st.fragment(saliency_rows, run_every=POLL_S if polling else None)()
# The link is written on full runs, and from the callbacks of the widgets inside the rows (_link_follows): never from
# the fragment's body, which reruns every POLL_S while maps compute.
_write_link(int(state.get("sal_level_kept", 1)))

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
