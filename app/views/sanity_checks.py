"""Sanity checks of the attribution methods (Adebayo et al. 2018): each variant's blocks re-initialised from the
head down on a copy of the model, and how close the maps stay to the trained model's (rank correlation, SSIM) over
the first test images, with bootstrap 95% CIs; a method whose maps survive full randomisation is flagged, here and
on every page that shows it (``app.sanity_flags``: this page's results and the report's). Computed on demand by
``analysis.sanity_checks``."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from app import components, figures, pickers, saliency_cache, sanity_flags
from app.zoo_cache import attributions_module
from models.objectives import variant_colour

MEASURES = {"spearman": "Rank correlation (Spearman)", "spearman_abs": "Rank correlation of |map|", "ssim": "SSIM"}

ctx = components.context()
st.title("Sanity checks")
st.markdown(
    "Does a map explain the **model**? Each variant's blocks are re-initialised one after another from the "
    "classifier down (on a copy), and each step's maps of the same images and classes are compared with the "
    "trained model's. Maps that barely change once every block is random do not depend on what the model learned "
    "(Adebayo et al. 2018, cascading model-parameter randomisation)."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
variants = pickers.variant_picker(handle, key="sc")
methods = saliency_cache.method_info()
names = list(methods)
c1, c2, c3 = st.columns(3)
method = c1.selectbox("Method", names, index=names.index("gradcam") if "gradcam" in names else 0, key="sc_method",
                      format_func=lambda m: methods[m].label)  # fmt: skip
n_images = c2.select_slider("Test images", [4, 8, 16, 32], value=8, key="sc_n")
measure = c3.selectbox("Measure", list(MEASURES), format_func=MEASURES.get, key="sc_measure")
info = methods[method]
if info.cost:
    st.caption(f"{info.label}: {info.cost}, for each of the network's blocks and the trained model.")
if not variants:
    st.stop()

key = (handle.key, method, n_images, tuple(variants))
store = st.session_state.setdefault("sc_results", {})
if st.button("Run the sanity check", key="sc_run", type="primary"):
    attributions_module()  # captum and lime imported once per server
    from analysis.sanity_checks import cascading_randomisation, sanity_summary, survives_randomisation

    test = components.load_dataset(ctx)
    x = torch.from_numpy(np.stack([test.images[i].numpy().astype(np.float32)
                                   for i in range(min(n_images, len(test.images)))]))  # fmt: skip
    with st.spinner(f"{info.label}: {len(variants)} variants, every block randomised in turn, {len(x)} images"):
        per_image = pd.concat([cascading_randomisation(handle.model(v), x, method).assign(variant=v)
                               for v in variants], ignore_index=True)  # fmt: skip
        summary = pd.concat([sanity_summary(per_image[per_image["variant"] == v], n_resamples=2000).assign(variant=v)
                             for v in variants], ignore_index=True)  # fmt: skip
        flags = {v: survives_randomisation(per_image[per_image["variant"] == v], method) for v in variants}
    store.clear()
    store[key] = {"per_image": per_image, "summary": summary, "flags": flags}
    sanity_flags.record(handle, per_image)  # every page that shows the method flags it from now on
result = store.get(key)
if result is None:
    sanity_flags.warn_flagged(handle, [method])  # known from the report or an earlier run in this session
    st.info("Press **Run the sanity check** to randomise each variant's blocks and compare the maps.")
    st.stop()

summary, flags = result["summary"], result["flags"]
survived = [v for v, flag in flags.items() if flag]
if survived:
    st.warning(f"**{info.label} fails the sanity check** for {', '.join(survived)}: with every block random its "
               "maps still rank-correlate at least 0.5 with the trained model's, so they say little about what the "
               "model learned.")  # fmt: skip
else:
    st.success(f"{info.label} passes for every variant shown: its maps decorrelate (mean rank correlation below "
               "0.5) once the model's weights are random.")  # fmt: skip
shown = summary[summary["metric"] == measure]
fig = make_subplots(rows=1, cols=1)
for v in variants:
    d = shown[shown["variant"] == v].sort_values("step")
    fig.add_trace(go.Scatter(x=d["layer"], y=d["mean"], mode="lines+markers", name=v,
                             line=dict(color=variant_colour(v, list(variants))),
                             error_y=dict(type="data", symmetric=False, array=d["ci_high"] - d["mean"],
                                          arrayminus=d["mean"] - d["ci_low"], thickness=1)))  # fmt: skip
fig.update_xaxes(title="Randomised down to (cumulative, from the head)", type="category")
fig.update_yaxes(title=MEASURES[measure])
fig.update_layout(height=380, margin=dict(l=0, r=0, t=30, b=0), legend=figures.SIDE_LEGEND)
st.plotly_chart(fig, key="sc_curves")
st.caption(f"Mean over {int(result['per_image']['image'].nunique())} test images with its percentile bootstrap 95% "
           "CI (2,000 resamples); the first point is the trained model (1 by definition).")  # fmt: skip
with st.expander("Table"):
    components.show_table(summary, None)
