"""Explanation continuity of one image: how far each variant's attribution map moves from the clean image's map
along each perturbation (rank correlation, SSIM, top-k overlap), beside how far its logits move (DS); and the
variants' maps of one level side by side (normalised, the signed difference from a reference variant, the rank
correlation between every pair). Computed on demand (a button), for the picked image or (with 95% CIs) the first
test images, by
``analysis.explanation_continuity`` and ``analysis.map_comparison``."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from app import components, figures, pickers, saliency_cache, sanity_flags
from app.images import image_key as content_key
from app.zoo_cache import attributions_module
from models.objectives import variant_colour
from models.perturbations import KINDS, MAX_LEVEL

MEASURES = {"spearman": "Rank correlation (Spearman)", "ssim": "SSIM", "top_k_overlap": "Top-10% overlap"}

ctx = components.context()
st.title("Explanation continuity")
st.markdown(
    "How far each variant's **explanation** moves when the image is perturbed: its attribution map of each "
    "perturbed copy against its map of the clean image (1 = unchanged), beside how far its logits move (DS). "
    "Computed for the picked image when you press *Compute*."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
picked = pickers.image_picker(ctx, key="ec")
variants = pickers.variant_picker(handle, key="ec")
methods = saliency_cache.method_info()
names = list(methods)
c1, c2 = st.columns(2)
method = c1.selectbox("Method", names, index=names.index("gradcam") if "gradcam" in names else 0, key="ec_method",
                      format_func=lambda m: methods[m].label)  # fmt: skip
measure = c2.selectbox("Measure", list(MEASURES), format_func=MEASURES.get, key="ec_measure")
info = methods[method]
st.caption(f"{info.label}: {'signed' if info.signed else 'positive'} maps" + (f"; cost {info.cost}" if info.cost
           else "") + ". Each variant explains the class it predicts on the clean image, at every level.")  # fmt: skip
sanity_flags.warn_flagged(handle, [method])  # a method whose maps survive randomisation (sanity checks)
if picked is None or not variants:
    st.stop()

scope = st.radio("Images", ["The picked image", "The first test images (95% CIs)"], horizontal=True, key="ec_scope")
n_images = (st.select_slider("Test images", [8, 16, 32, 64], value=16, key="ec_n")
            if scope != "The picked image" else 1)  # fmt: skip
key = (handle.key, content_key(picked.image) if n_images == 1 else ("test", n_images), method, tuple(variants))
store = st.session_state.setdefault("ec_results", {})
if st.button("Compute", key="ec_compute", type="primary"):
    per_image = attributions_module()  # captum and lime imported once per server
    from analysis.explanation_continuity import continuity_summary, explanation_continuity

    if n_images == 1:
        batch = [np.ascontiguousarray(picked.image, dtype=np.float32)]
    else:
        test = components.load_dataset(ctx)
        batch = [test.images[i].numpy().astype(np.float32) for i in range(min(n_images, len(test.images)))]
    x = torch.from_numpy(np.stack(batch))
    levels = tuple(range(MAX_LEVEL + 1))
    with st.spinner(f"{info.label} maps of {len(batch)} image(s) x {len(variants)} variants x {len(KINDS)} kinds x "
                    f"{len(levels)} levels"):  # fmt: skip
        moved = explanation_continuity({v: handle.model(v) for v in variants}, x, method, KINDS, levels)
        ds = pd.DataFrame([{"variant": v, "kind": k, "level": lv, "image": i, "ds": d} for v in variants
                           for k in KINDS for i, image in enumerate(batch)
                           for lv, d in zip(levels, per_image.level_predictions(handle.model(v), image, k)["ds"],
                                            strict=True)])  # fmt: skip
        ds = ds.groupby(["variant", "kind", "level"], sort=False, as_index=False)["ds"].agg(
            ds_mean="mean", ds_std="std"
        )
        summary = continuity_summary(moved, n_resamples=2000) if len(batch) > 1 else None
    store.clear()  # one computation's results at a time
    store[key] = {"moved": moved, "ds": ds, "summary": summary}


def ci_panels(summary: pd.DataFrame, metric: str) -> go.Figure:
    """Mean per level with its 95% CI (error bars), one line per variant, one panel per kind."""
    kinds = list(dict.fromkeys(summary["kind"]))
    shown = summary[summary["metric"] == metric]
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=kinds, shared_yaxes=True, horizontal_spacing=0.03)
    for c, kind in enumerate(kinds, start=1):
        for v in dict.fromkeys(shown["variant"]):
            d = shown[(shown["kind"] == kind) & (shown["variant"] == v)].sort_values("level")
            fig.add_trace(go.Scatter(x=d["level"], y=d["mean"], mode="lines+markers", name=v, legendgroup=v,
                                     showlegend=c == 1, line=dict(color=variant_colour(v, list(variants))),
                                     error_y=dict(type="data", symmetric=False, array=d["ci_high"] - d["mean"],
                                                  arrayminus=d["mean"] - d["ci_low"], thickness=1)),
                          row=1, col=c)  # fmt: skip
    fig.update_xaxes(title="Level", dtick=1)
    fig.update_yaxes(title=MEASURES[metric], row=1, col=1)
    fig.update_layout(height=340, margin=dict(l=0, r=0, t=30, b=0), legend=figures.SIDE_LEGEND)
    return fig


def show_continuity(result: dict) -> None:
    """The curves (with CIs over several images), the DS beside them and the table."""
    moved, ds, summary = result["moved"], result["ds"], result["summary"]
    st.subheader(f"{MEASURES[measure]} to the clean image's map")
    if summary is None:
        st.plotly_chart(figures.line_panels(moved, "level", measure, panel="kind", y_title=MEASURES[measure]),
                        key="ec_moved")  # fmt: skip
        st.caption("One image: no interval. A value of 1 at level 0 is the clean map compared with itself.")
    else:
        st.plotly_chart(ci_panels(summary, measure), key="ec_moved")
        st.caption(f"Mean over the first {moved['image'].nunique()} test images, with its percentile bootstrap 95% CI "
                   "(2,000 resamples). Level 0 is the clean map compared with itself.")  # fmt: skip
    st.plotly_chart(figures.ds_curves(ds[ds["level"] > 0], error=None), key="ec_ds")
    st.caption(components.DS_CAPTION)
    with st.expander("Table"):
        components.show_table(moved if summary is None else summary, None)


result = store.get(key)
if result is None:
    st.info("Press **Compute** to measure the explanations along every perturbation.")
else:
    show_continuity(result)

st.subheader("The variants' maps compared")
c1, c2, c3 = st.columns(3)
kind = c1.selectbox("Perturbation", list(KINDS), key="ec_kind")
level = c2.slider("Level", 0, MAX_LEVEL, 1, key="ec_level")
reference = c3.selectbox("Reference variant", variants, key="ec_reference")
maps_key = ("maps", handle.key, content_key(picked.image), method, tuple(variants), kind, level, reference)
if st.button("Compare the maps", key="ec_compare"):
    per_image = attributions_module()
    from analysis.map_comparison import compare_variants

    target = picked.label
    if target is None:  # an upload: the reference variant's prediction on the clean image
        target = int(per_image.level_predictions(handle.model(reference), picked.image, kind, (0,))["pred"][0])
    maps = {v: per_image.level_maps(handle.model(v), picked.image, kind, method, target, (level,))["maps"][0]
            for v in variants}  # fmt: skip
    store[maps_key] = (target, compare_variants(maps, reference, info.signed))
compared = store.get(maps_key)
if compared is not None:
    target, comp = compared
    fig = make_subplots(rows=2, cols=len(variants), horizontal_spacing=0.02, vertical_spacing=0.08,
                        subplot_titles=[*variants, *[f"{v} − {reference}" for v in variants]])  # fmt: skip
    for c, v in enumerate(variants, start=1):
        fig.add_trace(go.Heatmap(z=comp.normalised[v][::-1], zmin=-1 if info.signed else 0, zmax=1,
                                 colorscale="RdBu_r" if info.signed else "Inferno", showscale=c == len(variants),
                                 colorbar=dict(y=0.78, len=0.45)), row=1, col=c)  # fmt: skip
        fig.add_trace(
            go.Heatmap(
                z=comp.difference[v][::-1],
                zmin=-1,
                zmax=1,
                colorscale="RdBu_r",
                showscale=c == len(variants),
                colorbar=dict(y=0.22, len=0.45),
            ),
            row=2,
            col=c,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=420, margin=dict(l=0, r=0, t=30, b=0))
    st.plotly_chart(fig, key="ec_difference")
    st.caption(f"Maps of class {components.class_name(components.class_names(ctx), target)} at {kind} level "
               f"{level}, each divided by its largest magnitude; second row: the difference from {reference} "
               "(red: more than the reference, blue: less).")  # fmt: skip
    st.markdown("Rank correlation (Spearman) between the variants' maps")
    st.dataframe(comp.correlation.round(3))
