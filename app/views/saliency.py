"""Saliency side by side: one row per variant, the original and perturbed image, its maps and DS.

Kinds, variants and attribution methods come from their registries (``models.perturbations.KIND_REGISTRY``,
``models.objectives.VARIANT_REGISTRY``, ``analysis.attributions.METHOD_REGISTRY``). For a chosen image and
kind, every level is computed in one batched pass per variant, and the level slider and display controls
live in a fragment: moving them redraws the rows only, from the cache.
"""

import math
import time

import streamlit as st

from analysis.per_image import perturbed_image
from app import components, figures, images, map_figures, map_html, page_labels, pickers, results_store, saliency_cache
from models.perturbations import KINDS, MAX_LEVEL

ctx = components.context()
st.title("Saliency, side by side")
st.markdown(
    "Pick an image (from the test set or your own), a colour perturbation and its level (paper Table 1). "
    "Each row is one variant: its prediction before → after the perturbation, where it looks on the perturbed "
    "image, and how far its logits moved."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)

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
    if col.checkbox(info.label, value=not info.slow, key=f"sal_method_{name}", help=tip):
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
    st.stop()
if not variants:
    st.warning("Choose at least one variant.")
    st.stop()

names = handle.classes or components.class_names(ctx, components.load_dataset(ctx, stop=False))
true_text = (f" · true class **{components.md_escape(components.class_name(names, picked.label))}**"
             if picked.label is not None else " · no true class (an upload)")  # fmt: skip
st.markdown(f"**Image:** {components.md_escape(picked.title)}{true_text}")
image_key = images.image_key(picked.image)


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


def _display_controls() -> tuple[int, bool, bool, bool, float, bool]:
    """The level and display controls: (level, overlay, raw, shared colour scale, opacity, interactive)."""
    d1, d2, d3, d4 = st.columns([2.0, 1.3, 1.5, 1.2])
    with d1:
        level = st.slider("Level", 0, MAX_LEVEL, 1, key="sal_level",
                          help="0 = the original image; 1-4 = Table 1 levels.")  # fmt: skip
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


def _row_header(variant: str, row: dict):
    """A variant's bordered row: name, help, predictions, DS (and IG's δ), a slot for the similarity caption
    (kept in ``row["similarity_slot"]``); returns the empty slot its chart is drawn in."""
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
                st.warning(f"GradCAM's map is only {side}×{side} before upsampling: too coarse to localise; "
                           "import the model with an earlier `--gradcam-layer` or use larger inputs.")  # fmt: skip
            similarity = st.empty()
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
        f"Images upscaled by nearest neighbour. Level {level} drawn in {elapsed * 1000:.0f} ms (every level of this "
        "perturbation is computed at once and cached)."
    )  # fmt: skip


@st.fragment
def saliency_rows() -> None:
    """Level, display controls and the rows: reruns alone when one of its controls moves."""
    level, overlay, raw, shared, opacity, interactive = _display_controls()
    t0 = time.perf_counter()
    fast = [m for m in methods if not methods_info[m].slow]
    slow = [m for m in methods if methods_info[m].slow]
    with st.spinner("Explaining every level of the chosen perturbation..."):
        rows = {v: saliency_cache.saliency_row(handle, v, picked.image, kind, level, fast,
                                               method_options=method_options, cache=True, img_key=image_key)
                for v in variants}  # fmt: skip
    perturbed = perturbed_image(picked.image, kind, level)
    applied = f"perturbed: {page_labels.level_label(kind, level)}" if level else "level 0 (= original)"
    draws = {"n": 0}

    def scales_of(variant: str, which: str) -> dict[str, float]:
        out = {}
        for m in rows[variant][which]:
            signed = methods_info[m].signed
            pool = [rows[v][which][m] for v in variants if m in rows[v][which]] if shared else [rows[variant][which][m]]
            if shared and with_original:  # one scale for the perturbed and the original maps
                pool += [rows[v]["original_maps" if which == "maps" else "maps"][m] for v in variants
                         if m in rows[v]["maps"]]  # fmt: skip
            out[m] = map_figures.map_scale(pool, signed)
        return out

    def draw(variant: str) -> None:
        row = rows[variant]
        draws["n"] += 1
        draw_row = map_figures.saliency_comparison if interactive else map_html.saliency_comparison_html
        drawn = draw_row(
            picked.image, perturbed, row["maps"], signed={m: methods_info[m].signed for m in row["maps"]},
            scales=scales_of(variant, "maps"), labels={m: methods_info[m].label for m in row["maps"]},
            image_titles=("original", applied), overlay=overlay, opacity=opacity, raw=raw,
            original_maps=row["original_maps"] if with_original else None,
            original_scales=scales_of(variant, "original_maps") if with_original else None,
        )  # fmt: skip
        with charts[variant].container():
            if interactive:
                st.plotly_chart(drawn, key=f"sal_fig_{variant}_{draws['n']}", width="content",
                                config={"displayModeBar": False})  # fmt: skip
            else:
                st.html(drawn)

    charts = {}
    for variant in variants:
        charts[variant] = _row_header(variant, rows[variant])
        draw(variant)

    for i, variant in enumerate(variants):  # slow methods (LIME): row by row, each row redrawn when it is done
        if not slow:
            break
        with st.spinner(f"{', '.join(methods_info[m].label for m in slow)}: {variant} ({i + 1}/{len(variants)})..."):
            more = saliency_cache.saliency_row(handle, variant, picked.image, kind, level, slow,
                                        method_options=method_options, cache=True, img_key=image_key)  # fmt: skip
        for part in ("maps", "original_maps", "extras", "similarity"):
            rows[variant][part].update(more[part])
        for done in variants[: i + 1]:  # a shared scale grows as rows finish: redraw the finished rows
            if shared or done == variant:
                draw(done)
    for variant in variants:
        row = rows[variant]
        lines = [f"ρ({methods_info[m].label}) vs original = {rho:.2f}" for m, rho in row["similarity"].items()
                 if level and not math.isnan(rho)]  # fmt: skip
        if lines:
            row["similarity_slot"].caption("  \n".join(lines))

    elapsed = time.perf_counter() - t0
    _rows_caption(shared, elapsed, level)
    st.session_state["sal_last_ms"] = elapsed * 1000


saliency_rows()

results = results_store.load_results(handle)
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
        components.show_table(quality, name)
    if stab is not None:
        st.plotly_chart(figures.stability_lines(stab), key="sal_stability")
        st.caption("How much each map changes when the input is perturbed (1 = not at all).")
    components.report_status(results, "attributions", "stability")
