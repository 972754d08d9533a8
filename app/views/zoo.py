"""The zoo: the four variants, their cards, and the data set."""

import json

import numpy as np
import streamlit as st

from analysis.formatting import round_significant
from analysis.seed_spread import seed_card_table, seed_spread
from app import cards, components, figures, images, map_figures, seed_figures
from app.choices import only, variant_choice
from models.objectives import get_variant

ctx = components.context()
st.title("The model zoo")
st.markdown(
    "Four variants of one classifier, trained with different objectives (paper section 3): "
    "**standard** (cross-entropy), **C** (plus the semantic continuity constraint α·DS(x, P(x)) with colour "
    "perturbations P), **ADV** (adversarial training) and **ADV+C** (adversarial logit pairing)."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)

chosen = variant_choice(handle.variants, key="zoo_variants")
metrics = only(cards.card_metrics(handle), chosen).reset_index(drop=True)
st.subheader("Model cards")
st.caption(
    "Measured on the test split when the zoo was trained. PGD-10: white-box L∞ attack, ε = 8/255, step 2/255. "
    + components.DS_CAPTION
)
cols = st.columns(max(1, len(metrics)))
for col, (_, row) in zip(cols, metrics.iterrows(), strict=True):
    with col, st.container(border=True):
        st.markdown(f"#### {row['variant']}")
        known = get_variant(row["variant"])
        st.caption(row["objective"] or (known.help if known else ""))
        clean, pgd, ds = row["test_clean_acc"], row["test_pgd10_acc"], row["ds_level1_sum"]
        st.metric("Clean accuracy", "n/a" if np.isnan(clean) else f"{100 * clean:.1f}%")
        st.metric("PGD-10 accuracy", "n/a" if np.isnan(pgd) else f"{100 * pgd:.1f}%")
        st.metric("DS, level 1", "n/a" if np.isnan(ds) else f"{round_significant(ds):g}",
                  help="Summed over the four kinds of Table 1; lower = more continuous.")  # fmt: skip

left, right = st.columns(2)
with left:
    if metrics[["test_clean_acc", "test_pgd10_acc"]].notna().any().any():
        st.plotly_chart(
            figures.accuracy_bars(metrics, {"test_clean_acc": "clean", "test_pgd10_acc": "PGD-10"},
                                  title="Accuracy on the test split (%)"),
            key="zoo_acc",
        )  # fmt: skip
with right:
    ds_values = {r["variant"]: float(r["ds_level1_sum"]) for _, r in metrics.iterrows() if r["ds_level1_sum"] > 0}
    if ds_values:
        st.plotly_chart(figures.metric_bars(ds_values, "DS at level 1, summed over kinds (log scale)", "DS",
                                            log_y=True), key="zoo_ds")  # fmt: skip

kind_cols = [c for c in metrics.columns if c.startswith("ds_level1_") and c != "ds_level1_sum"]
ds_cols = [c for c in metrics.columns if c.startswith("ds_level1_")]
table = metrics.assign(**{c: metrics[c].map(round_significant) for c in ds_cols})
components.show_table(table[[c for c in table.columns if c != "objective"] + ["objective"]])  # numbers first
st.caption("Accuracies in %; DS level 1 per kind and summed over kinds, to 3 significant digits as on the cards.")

seed_rows = seed_card_table(handle.zoo.manifest)
if seed_rows["seed"].nunique() > 1:
    st.subheader("Seeds: how much a variant moves between training runs")
    spread = seed_spread(seed_rows[seed_rows["variant"].isin(chosen)])
    st.caption(
        "This zoo holds several training runs (seeds) per variant; each fine-tune starts from the same seed's "
        "standard. Mean over seeds, with the sample standard deviation and the range; a difference between "
        "variants smaller than this spread says little about the training method. The sidebar's *Training seed* "
        "chooses the checkpoints the other pages show."
    )
    st.plotly_chart(seed_figures.seed_spread_bars(seed_rows[seed_rows["variant"].isin(chosen)]), key="zoo_seeds")
    components.show_table(spread, "seed_spread")
    with st.expander("Every checkpoint's card metrics"):
        components.show_table(seed_rows[seed_rows["variant"].isin(chosen)], "seed_cards")

st.subheader("Cards in full")
for variant in chosen:
    with st.expander(f"{variant}: card and checkpoint"):
        text = cards.card_markdown(handle, variant)
        if text:
            st.markdown(text)
        card = handle.card(variant)
        meta = handle.meta(variant)
        if card.get("differences_from_paper"):
            st.markdown("**Differences from the paper:** " + "; ".join(card["differences_from_paper"]))
        st.markdown("**Card (zoo.json)**")
        st.json(json.loads(json.dumps(card, default=str)), expanded=False)
        st.markdown("**Checkpoint**")
        st.json({k: meta.get(k) for k in ("variant", "network", "config", "git_commit", "created") if k in meta},
                expanded=False)  # fmt: skip

st.subheader("Data set")
ds = components.load_dataset(ctx, stop=False)
if ds is not None:
    components.check_classes(ctx, ds)
    shape = tuple(ds.images.shape[1:])
    st.markdown(
        f"**{ds.name}**, test split: {len(ds)} images of {shape[1]}×{shape[2]} pixels, {len(ds.classes)} classes"
        + (", with object masks" if ds.masks is not None else "")
        + f". The networks take {handle.image_size}×{handle.image_size} RGB inputs in [0, 1]."
    )
    counts = np.bincount(ds.labels.numpy(), minlength=len(ds.classes))
    st.caption("Classes: " + ", ".join(f"{n} ({c})" for n, c in zip(ds.classes, counts, strict=True)))
    examples, titles = images.class_examples(ds, per_class=1)
    st.plotly_chart(
        map_figures.image_grid(examples, titles, cols=min(10, len(examples)), panel_height=120), key="zoo_grid"
    )
