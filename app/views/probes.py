"""Semantic probes: accuracy when non-semantic structure is destroyed (paper 4.3)."""

import streamlit as st

from app import components, compute, figures, map_figures, pickers
from app.choices import only, variant_choice

ctx = components.context()
st.title("Semantic probes")
st.markdown(
    "Three probes that keep or destroy parts of the image (paper 4.3): **channel translation** shifts the red and "
    "green channels, **randomised centre** shuffles the pixels of a central square, **sliding puzzle** permutes "
    "tiles. Accuracy that survives a probe says which information a variant relies on."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
results, quick = components.results_or_quick(ctx, "probes", "Semantic probes")
shown = set()

name, df = components.pick(results, quick, "probes", {"variant", "probe", "level", "accuracy"}, "probe")
chosen = variant_choice(df["variant"] if df is not None else handle.variants, key="probe_variants")
df = only(df, chosen)
if df is not None:
    shown.add(name)
    x_labels = "level_label" if "level_label" in df else None
    st.plotly_chart(figures.line_panels(df, "level", "accuracy", panel="probe", x_labels=x_labels, percent=True,
                                        y_title="accuracy (%)"), key="probe_curves")  # fmt: skip
    st.caption("Accuracy on the test split at each probe level; 'clean' is the unprobed accuracy.")
    components.report_status(results, "probes")
    with st.expander("Table"):
        components.show_table(df, name)
else:
    st.info("No probe table yet.")

st.subheader("What the probes do to one image")
picked = pickers.image_picker(ctx, key="probe")
if picked is not None:
    probed = compute.probes(handle, picked.image)
    examples, preds = probed.examples, only(probed.predictions, chosen)
    for probe, items in examples.items():
        st.markdown(f"**{probe.replace('_', ' ')}**")
        st.plotly_chart(map_figures.image_grid([im for _, im in items], [lbl for lbl, _ in items], cols=len(items),
                                           panel_height=130), key=f"probe_ex_{probe}")  # fmt: skip
        table = preds[preds["probe"] == probe].pivot_table(index="variant", columns="level_label", values="class",
                                                           aggfunc="first", sort=False)  # fmt: skip
        st.dataframe(table[[lbl for lbl, _ in items]], width="stretch")
    st.caption("Each variant's predicted class on every probe level of this image.")
components.other_files(results, ("probe",), shown)
