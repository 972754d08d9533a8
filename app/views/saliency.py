"""Saliency side by side: one row per variant, the original and perturbed image, IG, GradCAM, LIME and DS."""

import math
import time

import streamlit as st

from app import backend, components, figures

ctx = components.context()
st.title("Saliency, side by side")
st.markdown(
    "Pick an image (from the test set or your own), a colour perturbation and its level (paper Table 1). "
    "Each row is one variant: its prediction before → after the perturbation, where it looks on the perturbed "
    "image, and how far its logits moved."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)

picked = components.image_picker(ctx, key="sal")
c1, c2, c3 = st.columns([1.2, 1.6, 2.2])
with c1:
    kind = st.selectbox("Perturbation", list(backend.KINDS), key="sal_kind",
                        help="Non-semantic colour perturbations of Table 1.")  # fmt: skip
with c2:
    level = st.slider("Level", 0, backend.MAX_LEVEL, 1, key="sal_level",
                      help="0 = the original image; 1-4 = Table 1 levels.")  # fmt: skip
    st.caption(f"Applied: **{backend.level_label(kind, level)}**")
with c3:
    st.markdown("Maps")
    m1, m2, m3 = st.columns(3)
    use_ig = m1.checkbox("IG", value=True, key="sal_ig", help="Integrated Gradients, 50 steps, black baseline.")
    use_cam = m2.checkbox("GradCAM", value=True, key="sal_cam", help="On the last convolutional block.")
    use_lime = m3.checkbox("LIME", value=False, key="sal_lime", help="About 1 s per variant (1000 samples).")
    with st.expander("Options"):
        lime_samples = st.select_slider("LIME samples", [250, 500, 1000, 2000], value=1000, key="sal_lime_n")
        with_original = st.checkbox("Also show the maps of the original image", value=False, key="sal_orig")

methods = [m for m, on in (("integrated_gradients", use_ig), ("gradcam", use_cam), ("lime", use_lime)) if on]
if picked is None:
    st.stop()

names = handle.classes or components.class_names(ctx, components.load_dataset(ctx, stop=False))
st.markdown(f"**Image:** {picked.title}" + (f" · true class **{components.class_name(names, picked.label)}**"
                                             if picked.label is not None else ""))  # fmt: skip

t0 = time.perf_counter()
busy = "Explaining (LIME takes ~1 s per variant)..." if "lime" in methods else "Explaining..."
with st.spinner(busy):
    rows = backend.saliency_grid(
        handle, picked.image, kind, level, methods, lime_samples=lime_samples, with_original=with_original, cache=True
    )
elapsed = time.perf_counter() - t0
perturbed = backend.perturbed_image(picked.image, kind, level)

st.divider()
for variant, row in rows.items():
    with st.container(border=True, key=f"sal_row_{variant.replace('+', 'plus')}"):
        info, plot, score = st.columns([1.25, 6.0, 1.1], vertical_alignment="center")
        before = components.class_name(names, row["pred"])
        after = components.class_name(names, row["pred_perturbed"])
        with info:
            st.markdown(f"### {variant}")
            st.caption(components.VARIANT_HELP.get(variant, ""))
            changed = row["pred"] != row["pred_perturbed"]
            st.markdown(
                f"original: **{before}** ({100 * row['conf']:.0f}%)  \n"
                f"perturbed: **{after}** ({100 * row['conf_perturbed']:.0f}%)" + ("  \n:red[prediction changed]"
                                                                                  if changed else "")
            )  # fmt: skip
        titles = {}
        for method in methods:
            label = figures.METHOD_LABELS[method]
            extras = row["extras"].get(method, {})
            if method == "integrated_gradients" and "delta" in extras:
                label += f" (δ = {extras['delta']:.2g})"
            if method == "lime" and "n_segments" in extras:
                label += f" ({extras['n_segments']} segments)"
            titles[method] = label
        applied = f"perturbed: {backend.level_label(kind, level)}" if level else "level 0 (= original)"
        fig = figures.saliency_row(
            picked.image, perturbed, row["maps"], map_titles=titles, image_titles=("original", applied),
            original_maps=row["original_maps"], height=200,
        )  # fmt: skip
        with plot:
            st.plotly_chart(fig, key=f"sal_fig_{variant}", config={"displayModeBar": False})
        with score:
            st.markdown(f"DS  \n### {row['ds']:.2g}", help=components.DS_CAPTION)
            if "integrated_gradients" in row["extras"]:
                delta = row["extras"]["integrated_gradients"].get("delta")
                if delta is not None:
                    st.caption(f"IG completeness δ = {delta:.2g}")
            for method, rho in row["similarity"].items():
                if not math.isnan(rho):
                    st.caption(f"ρ({figures.METHOD_LABELS[method]}) vs original = {rho:.2f}")

st.caption(
    f"{components.DS_CAPTION} Maps explain the class each variant predicts on the *original* image, computed on "
    "the perturbed image. IG (red = for the class, blue = against) uses a diverging scale; GradCAM and LIME "
    "(positive segment weights) a positive scale; every map is scaled by its own max |value|. "
    "IG completeness δ = sum of attributions − (F(x)[class] − F(black)[class]); near 0 means the 50 steps "
    "integrated well. ρ = Spearman rank correlation between the map of the perturbed and of the original image. "
    f"Computed in {elapsed * 1000:.0f} ms (cached per image, perturbation, level and method)."
)

results = backend.load_results(handle)
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
        st.plotly_chart(figures.line_panels(stab.assign(series=stab["variant"] + " " + stab["method"]), "level",
                                            "spearman_mean", panel="kind", colour="series",
                                            y_title="Spearman ρ with the clean map"), key="sal_stability")  # fmt: skip
        st.caption("How much each map changes when the input is perturbed (1 = not at all).")
    components.report_status(results, "attributions", "stability")
