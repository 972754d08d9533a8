"""Semantic probes: accuracy when non-semantic structure is destroyed (paper 4.3)."""

import streamlit as st

from app import components, compute, exports, figures, intervals, map_figures, pickers
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
PER_IMAGE = {"variant", "probe", "level_label", "image", "correct"}
name_p, per_image = components.pick(results, quick, "probes_per_image", PER_IMAGE, "probes_per_image")
chosen = variant_choice(df["variant"] if df is not None else handle.variants, key="probe_variants")
df = only(df, chosen)
if df is not None:
    shown.add(name)
    x_labels = "level_label" if "level_label" in df else None
    if per_image is not None and x_labels:
        shown.add(name_p)
        df = intervals.per_image_cis(df, per_image, ("variant", "probe", "level_label"), "correct")
        how = ("Error bars: percentile-bootstrap 95% CI of the accuracy over the test images "
               f"({intervals.CURVE_RESAMPLES:,} resamples of `{name_p}`).")  # fmt: skip
    elif "n_images" in df:
        df = intervals.accuracy_cis(df)
        how = ("The stored results have no per-image correctness, so the error bars are the Clopper-Pearson 95% CI "
               "of each accuracy over its n_images.")  # fmt: skip
    else:
        how = "The stored results have neither per-image correctness nor image counts: no CI is drawn."
    exports.chart(figures.line_panels(df, "level", "accuracy", panel="probe", x_labels=x_labels, percent=True,
                                      y_title="accuracy (%)", ci=("ci_low", "ci_high")),
                  "probe_curves", "probe_curves", df,
                  exports.provenance(ctx, name, variants=", ".join(chosen), ci=how))  # fmt: skip
    st.caption(f"Accuracy on the test split at each probe level; 'clean' is the unprobed accuracy. {how}")
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
        grid = map_figures.image_grid([im for _, im in items], [lbl for lbl, _ in items], cols=len(items),
                                      panel_height=130)  # fmt: skip
        exports.chart(grid, f"probe_ex_{probe}", f"probe_{probe}_example")
        table = preds[preds["probe"] == probe].pivot_table(index="variant", columns="level_label", values="class",
                                                           aggfunc="first", sort=False)  # fmt: skip
        st.dataframe(table[[lbl for lbl, _ in items]], width="stretch")
    st.caption("Each variant's predicted class on every probe level of this image.")
components.other_files(results, ("probe",), shown)
