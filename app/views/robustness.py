"""Robustness: PGD accuracy (paper Table 2), the attack audit, and adversarial examples."""

import streamlit as st

from app import components, compute, exports, figures, images, intervals, map_figures, pickers

ctx = components.context()
st.title("Robustness")
st.markdown(
    "White-box L∞ PGD on pixels in [0, 1] (paper Table 2: ε = 8/255, step 2/255, 10 steps). Because logit "
    "pairing is known to mask gradients, the PGD-10 number is **audited** with more steps, restarts and a margin "
    "loss: accuracy that keeps falling as the attack grows means PGD-10 overstates robustness."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
results, quick = components.results_or_quick(ctx, "robustness", "Robustness")
shown = set()
CP_CAPTION = ("Error bars: Clopper-Pearson 95% CI of each accuracy over its n_images (the report keeps no per-image "
              "correctness for every attack strength, and an accuracy k/n needs none).")  # fmt: skip
NO_COUNTS = "The table has no image counts: no CI is drawn."

name, rob = components.pick(results, quick, "robustness", {"variant", "clean_acc", "pgd_acc"}, "robust")
if rob is not None:
    shown.add(name)
    st.subheader("Clean and PGD-10 accuracy")
    exports.chart(figures.accuracy_bars(rob, {"clean_acc": "clean", "pgd_acc": "PGD-10"}), "rob_bars", "robustness",
                  rob, exports.provenance(ctx, name))  # fmt: skip
    components.report_status(results, "robustness")
    components.show_table(rob, name, percent_columns=("clean_acc", "pgd_acc"))

name, audit = components.pick(results, quick, "attack_audit", {"variant", "attack", "steps", "loss", "accuracy"},
                              "audit")  # fmt: skip
if audit is not None:
    shown.add(name)
    st.subheader("Attack audit")
    single = audit[audit["restarts"] == 1] if "restarts" in audit else audit
    if "n_images" in single:
        single = intervals.accuracy_cis(single)
    exports.chart(figures.line_panels(single.assign(step_label=single["steps"].astype(str)), "steps", "accuracy",
                                      panel="loss", x_labels="step_label", percent=True, y_title="accuracy (%)",
                                      ci=("ci_low", "ci_high")),
                  "rob_audit", "attack_audit", single,
                  exports.provenance(ctx, name, restarts=1 if "restarts" in audit else None))  # fmt: skip
    st.caption(
        "Accuracy under PGD with more steps (x), per loss (panels); restarts are in the table. "
        + (CP_CAPTION if "n_images" in single else NO_COUNTS)
    )
    if results.experiment("attack_audit").get("notes") is None:  # the report states its own warnings
        messages = compute.masking_warnings(audit)
        warnings = [m for m in messages if components.note_is_warning(m)]
        for message in messages:
            if message in warnings:
                st.warning(message, icon="⚠️")
            else:
                st.caption(message)
        if not warnings:
            st.success("No sign of gradient masking: no stronger attack beats PGD-10 by "
                       f"{components.MASKING_GAP_POINTS:g} points or more.")  # fmt: skip
    components.report_status(results, "attack_audit")
    with st.expander("Audit table"):
        components.show_table(audit, name, percent_columns=("accuracy",))

name, sweep = components.pick(results, quick, "eps_sweep", {"variant", "eps_255", "accuracy"}, "eps")
if sweep is not None:
    shown.add(name)
    st.subheader("Accuracy against the attack radius ε")
    if "n_images" in sweep:
        sweep = intervals.accuracy_cis(sweep)
    exports.chart(figures.line_panels(sweep, "eps_255", "accuracy", percent=True, y_title="accuracy (%)",
                                      ci=("ci_low", "ci_high")), "rob_eps", "eps_sweep", sweep,
                  exports.provenance(ctx, name))  # fmt: skip
    st.caption(
        "x: ε in units of 1/255; PGD-10 with step ε/4; ε = 0 is the clean accuracy. "
        + (CP_CAPTION if "n_images" in sweep else NO_COUNTS)
    )
    components.report_status(results, "eps_sweep")

st.subheader("Adversarial examples")
st.caption("A PGD attack on one image against each variant, computed now (white box, seeded).")
picked = pickers.image_picker(ctx, key="rob")
c1, c2 = st.columns(2)
eps = c1.select_slider("ε (/255)", [1, 2, 4, 8, 16], value=8, key="rob_eps_value")
steps = c2.select_slider("PGD steps", [10, 20, 50], value=10, key="rob_steps")
variants = pickers.variant_picker(handle, key="rob")
if picked is not None and variants:
    names = components.class_names(ctx, components.load_dataset(ctx, stop=False))

    def cls(index: int) -> str:
        return components.md_escape(components.class_name(names, index))

    def outcome(res: dict) -> str:
        """Fooled / held against the attacked label; 'already wrong' when the clean prediction missed the true class."""
        if picked.label is not None and res["clean_pred"] != picked.label:
            return ":orange[already wrong]"
        return ":red[fooled]" if res["adv_pred"] != res["label"] else ":green[held]"

    key = images.image_key(picked.image)
    cols = st.columns(len(variants))
    with st.spinner("Attacking..."):
        for col, variant in zip(cols, variants, strict=True):
            res = compute.cached_adversarial(handle.key, variant, key, picked.image, picked.label, float(eps),
                                             int(steps))  # fmt: skip
            diff = (res["adversarial"] - picked.image) * (0.5 / max(eps / 255, 1e-6)) + 0.5
            with col, st.container(border=True):
                st.markdown(f"**{components.md_escape(variant)}**")
                grid = map_figures.image_grid([picked.image, res["adversarial"], diff], None, cols=3,
                                              panel_height=120)  # fmt: skip
                grid.update_layout(annotations=[], margin=dict(l=0, r=0, t=0, b=0), height=120)  # named below
                st.plotly_chart(grid, key=f"rob_adv_{variant}", config={"displayModeBar": False})
                st.caption(f"clean · adversarial · perturbation ×{0.5 / max(eps / 255, 1e-6):.0f} (grey = unchanged)")
                st.markdown(f"clean: **{cls(res['clean_pred'])}** ({100 * res['clean_conf']:.0f}%)  \n"
                            f"adversarial: **{cls(res['adv_pred'])}** ({100 * res['adv_conf']:.0f}%)  \n"
                            + outcome(res))  # fmt: skip
                st.caption(f"max |Δpixel| = {res['linf_255']:.1f}/255 · DS = {res['ds']:.3g}")
    if picked.label is None:
        st.caption("Uploaded image: the attack pushes each variant away from its own clean prediction.")
    else:
        st.caption(f"True class: **{cls(picked.label)}**. *Already wrong*: the variant misclassifies the clean "
                   "image, so there is nothing for the attack to fool.")  # fmt: skip
components.other_files(results, ("robust", "audit", "eps", "adversarial", "pgd"), shown)
