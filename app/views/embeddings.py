"""Neighbourhood embeddings: where images' perturbed copies land among images of their class (paper Fig. 2), in
one 2-D map shared by the variants, and the whole test set in WebGL."""

import pandas as pd
import streamlit as st

from analysis.embeddings import Anchor
from analysis.embeddings_whole_set import whole_set_explained_variance, whole_set_tables
from app import (
    components,
    embedding_figures,
    embeddings_cache,
    exports,
    figures,
    images,
    page_labels,
    pickers,
    results_store,
    zoo_cache,
)
from app.uploads import ACCEPTED_EXTENSIONS, UploadError, validate_image_bytes
from models.perturbations import KINDS

PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
REPRESENTATIONS = {"logits": "Logits (the paper's)", "features": "Penultimate features"}

ctx = components.context()
st.title("Neighbourhood embeddings")
st.markdown(
    "Each variant maps anchor images ★, their Table 1 perturbations (coloured by kind, larger = higher level) and "
    "other test images of the anchor's class (grey) to a representation, projected to 2-D **once for all "
    "variants**, so the panels share their axes and compare. A semantically continuous model keeps the perturbed "
    "copies next to their anchor. Hover a point for its classes and DS; click it for its image and nearest "
    "neighbours; search a class or a test image number to ring its points. PCA axes carry their share of the "
    "variance; every map's coordinates download as CSV and the camera icon saves a map as SVG."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
ds = components.load_dataset(ctx)
components.check_classes(ctx, ds)
names = components.class_names(ctx, ds)

variants = st.multiselect(
    "Variants",
    handle.variants,
    default=page_labels.default_variants(handle.variants),
    key="emb_variants",
    help="The paper's four by default; controls and other variants of the zoo can be added.",
)
c1, c2, c3 = st.columns([1.4, 1.4, 2.2])
with c1:
    representation = st.radio(
        "Representation",
        list(REPRESENTATIONS),
        format_func=REPRESENTATIONS.get,
        key="emb_rep",
        help="Logits F(x), as in the paper, or the head's input.",
    )
with c2:
    method = st.radio(
        "Projection",
        list(PROJECTIONS),
        horizontal=True,
        key="emb_method",
        format_func=PROJECTIONS.get,
        help="PCA is instant; t-SNE and UMAP take seconds (UMAP compiles once per server).",
    )
with c3:
    kinds = st.multiselect("Perturbations", list(KINDS), default=list(KINDS), key="emb_kinds")
query = st.text_input(
    "Find points (class or test image number)",
    key="emb_search",
    placeholder="e.g. Dress, 12",
    help="Comma-separated terms: a class name or part of one (the true class), or a test image number (#12; a "
    "bare 12 unless a class is called 12). Their points are ringed in every map, and the first one is shown "
    "beside its map until you click another point.",
)
emb = zoo_cache.embeddings_module(False)
if not variants:
    st.info("Choose at least one variant.")
    st.stop()

tab_anchor, tab_whole = st.tabs(["Anchors and their neighbourhoods", "Whole test set"])


def axis_titles(explained: dict | None, variant: str, align: str) -> tuple[str, str] | None:
    """PCA axis titles with their shares of variance (None for t-SNE / UMAP, whose axes mean nothing)."""
    if explained is None:
        return None
    return embedding_figures.pca_axis_titles(
        explained[variant], aligned=align == "procrustes" and variant != variants[0]
    )


def search_caption(query: str, counts: dict[str, int]) -> None:
    """How many points of each map a search found (or that it found none)."""
    if not query.strip():
        return
    if not any(counts.values()):
        st.warning(f"Nothing in these maps matches {query!r} (a class name or a test image number).")
    else:
        st.caption(f"Search {query!r}: " + ", ".join(f"{v}: {n} point(s)" for v, n in counts.items()) + " ringed.")


def explained_header(explained: dict | None) -> dict[str, str]:
    """The explained variance of each PCA map for a CSV header."""
    if explained is None:
        return {}
    return {"explained variance (PC1, PC2)": "; ".join(f"{v}: {100 * r[0]:.1f}%, {100 * r[1]:.1f}%"
                                                        for v, r in explained.items())}  # fmt: skip


def show_point(col, view: dict, variant: str, row: int, key: str) -> None:
    """The clicked point's image and its nearest neighbours (in the shown representation) with thumbnails."""
    pts = view["points"]
    hit = pts[(pts["variant"] == variant) & (pts["row"] == row)]
    if hit.empty:
        return
    r = hit.iloc[0]
    what = (
        f"{r['anchor']}: {r['kind']} level {int(r['level'])}"
        if r["role"] == "perturbed"
        else f"anchor {r['anchor']}"
        if r["role"] == "original"
        else f"test image #{int(r['dataset_index'])}"
    )
    with col:
        st.image(view["thumbs"][row], caption=what, width=96)
        st.caption(f"predicted **{r['pred_name']}** · true **{r['true_name']}** · DS to {r['ds_to']}: {r['ds']:.3g}")
        rows, dist = zoo_cache.embeddings_module(False).nearest_neighbours(view["reps"][variant], row, k=6)
        st.markdown("**Nearest neighbours**")
        labels = {int(x["row"]): x for _, x in pts[pts["variant"] == variant].iterrows()}
        st.image(
            [view["thumbs"][i] for i in rows],
            width=48,
            caption=[f"{labels[int(i)]['true_name']} · {d:.3g}" for i, d in zip(rows, dist, strict=True)],
        )
        st.caption("Squared distance in the shown representation (DS for logits), nearest first.")


def selection(key: str) -> list:
    event = st.session_state.get(key)
    try:
        return list(event["selection"]["points"]) if event else []
    except (KeyError, TypeError):
        return []


with tab_anchor:
    picked = pickers.image_picker(ctx, key="emb", allow_upload=False)
    a1, a2, a3 = st.columns([1.4, 1.6, 2])
    with a1:
        more = st.text_input(
            "More anchors (test image numbers)",
            key="emb_more",
            placeholder="e.g. 12, 345",
            help="Comma-separated indices of further test images to add as anchors.",
        )
    with a2:
        uploads = st.file_uploader(
            "Upload images as anchors",
            type=ACCEPTED_EXTENSIONS,
            accept_multiple_files=True,
            key="emb_uploads",
            help="An upload's neighbourhood is the class the first chosen variant predicts.",
        )
    with a3:
        n_same = st.slider(
            "Same-class images per anchor class",
            20,
            300,
            200,
            step=10,
            key="emb_n",
            help="How many other test images of each anchor's class form the neighbourhood.",
        )
    anchors: list[Anchor] = []
    if picked is not None and picked.index is not None:
        anchors.append(
            Anchor(f"#{picked.index}", picked.image, int(picked.label), int(picked.index), int(picked.label))
        )
    for token in (more or "").replace(";", ",").split(","):
        token = token.strip().lstrip("#")
        if not token:
            continue
        if not token.isdigit() or not 0 <= int(token) < len(ds):
            st.warning(f"{token!r} is not a test image number (0 to {len(ds) - 1}).")
            continue
        image, label = images.dataset_image(ds, int(token))
        if all(a.index != int(token) for a in anchors):
            anchors.append(Anchor(f"#{int(token)}", image, label, int(token), label))
    for file in uploads or []:
        try:
            up = validate_image_bytes(file.getvalue(), handle.image_size)
        except UploadError as exc:
            st.error(f"**{file.name} was not accepted.** {exc}")
            continue
        anchors.append(embeddings_cache.upload_anchor(handle, file.name, up.pixels, variants[0]))
    if not anchors or not kinds:
        st.info("Choose an anchor and at least one perturbation kind.")
    else:
        with st.spinner(f"Embedding {len(anchors)} anchor(s) with {len(variants)} variants..."):
            if method == "umap":
                zoo_cache.embeddings_module(True)  # compile once per server, with its own spinner
            view = embeddings_cache.cached_anchor_views(
                handle.key,
                ctx.dataset_args,
                tuple(embeddings_cache.anchor_key(a) for a in anchors),
                anchors,
                tuple(variants),
                representation,
                method,
                n_same,
                tuple(kinds),
            )
        points, ranks = view["points"], view["ranks"]
        uploads_named = [a.name for a in anchors if a.index < 0]
        if uploads_named:
            st.caption(
                "Uploads' neighbourhoods: "
                + ", ".join(f"{a.name} → {handle.class_name(a.label)}" for a in anchors if a.index < 0)
                + f" (predicted by {variants[0]})."
            )
        align = (
            "fitted on the union of the variants' logits"
            if view["align"] == "union"
            else "each variant's features projected, then aligned onto the first by Procrustes"
        )
        st.caption(
            f"One {PROJECTIONS[method]} map for all panels ({align}). **Neighbour rank** under each plot: for each "
            "perturbed copy, 1 + the number of same-class images whose logits are nearer to the anchor's than the "
            "copy's (by DS); 1 = the copy is the anchor's nearest neighbour (continuous)."
        )
        ranges = embedding_figures.shared_ranges([points])
        worst = int(ranks["n_candidates"].max()) if len(ranks) else n_same + 1
        explained = emb.explained_variance(view["reps"], view["align"]) if method == "pca" else None
        if explained is not None:
            st.caption(
                "Axis titles: each principal component's share of the variance ("
                + ("of every variant's logits together: one PCA for all panels)." if view["align"] == "union" else
                   f"each variant's own PCA; the other panels are rotated onto {variants[0]}'s, so their axes are "
                   "no longer principal components and only their plane's share is given).")
            )  # fmt: skip
        counts = {}
        for start in range(0, len(variants), 2):
            cols = st.columns(2)
            for col, variant in zip(cols, variants[start : start + 2], strict=False):
                safe = variant.replace("+", "plus")
                key = f"emb_plot_{safe}"
                with col, st.container(border=True, key=f"emb_panel_{safe}"):
                    pts = points[points["variant"] == variant]
                    rk = ranks[ranks["variant"] == variant]
                    matches = emb.search_rows(pts, query) if query.strip() else None
                    counts[variant] = 0 if matches is None else len(matches)
                    fig = embedding_figures.embedding_scatter(pts, title=variant, ranges=ranges, highlight=matches,
                                                              axis_titles=axis_titles(explained, variant,
                                                                                      view["align"]))  # fmt: skip
                    plot, side = st.columns([3, 1])
                    with plot:
                        exports.chart(fig, key, f"embedding_{variant}_{method}", on_select="rerun",
                                      selection_mode="points")  # fmt: skip
                    rows = embedding_figures.selected_rows(fig, selection(key))
                    if rows:
                        show_point(side, view, variant, rows[0], key)
                    elif matches is not None and len(matches):
                        show_point(side, view, variant, int(matches[0]), key)
                        side.caption(f"First of {len(matches)} match(es); click a point for another.")
                    else:
                        side.caption("Click a point to see its image and nearest neighbours here.")
                    l1 = rk[rk["level"] == 1]["rank"]
                    m1, m2, m3 = st.columns(3)
                    m1.metric(
                        "Rank L1",
                        f"{l1.median():.0f}" if len(l1) else "n/a",
                        help="Median neighbour rank of the level-1 copies.",
                    )
                    m2.metric(
                        "Rank, all",
                        f"{rk['rank'].median():.0f}" if len(rk) else "n/a",
                        help="Median neighbour rank of every perturbed copy.",
                    )
                    m3.metric(
                        "Rank 1",
                        f"{int((rk['rank'] == 1).sum())}/{len(rk)}",
                        help="Perturbed copies that are their anchor's nearest neighbour.",
                    )
                    st.plotly_chart(
                        embedding_figures.rank_heatmap(rk, title="median neighbour rank by kind and level", zmax=worst),
                        key=f"emb_rank_{safe}",
                        config={"displayModeBar": False},
                    )
        search_caption(query, counts)
        settings = dict(variants=", ".join(variants), representation=representation, method=PROJECTIONS[method],
                        alignment=align, same_class_per_anchor_class=n_same, kinds=", ".join(kinds),
                        anchors=", ".join(a.name for a in anchors), seed=0)  # fmt: skip
        exports.csv_download(points, f"embedding_coordinates_{method}_{representation}",
                             exports.provenance(ctx, "computed on the page (analysis.embeddings.anchor_views)",
                                                **settings, **explained_header(explained)),
                             key="emb_points_csv", label="Coordinates of every map (CSV)")  # fmt: skip
        with st.expander("All neighbour ranks"):
            table = ranks.pivot_table(index=["anchor", "kind", "level"], columns="variant", values="rank")
            st.dataframe(table[[v for v in variants if v in table.columns]], width="stretch")
            exports.csv_download(
                ranks,
                f"neighbour_ranks_{method}_{representation}",
                exports.provenance(ctx, "computed on the page", **settings),
                key="emb_ranks_csv",
            )

with tab_whole:
    n = len(ds)
    st.markdown(
        f"All **{n:,}** test images of each variant in one WebGL scatter, coloured by class, with the anchors "
        "of the first tab and their perturbed copies on top. The representations (and t-SNE / UMAP maps) are "
        "computed once per zoo and cached on disk, keyed by the checkpoints' sha256s."
    )
    w1, w2 = st.columns([2, 2])
    with w1:
        colour_by = st.radio(
            "Colour by",
            ["true_name", "pred_name", "correct"],
            horizontal=True,
            key="emb_whole_colour",
            format_func={"true_name": "true class", "pred_name": "predicted class", "correct": "correct or not"}.get,
        )
    with w2:
        overlay_on = st.toggle("Show the anchors' perturbed copies", value=True, key="emb_whole_overlay")
    ready = embeddings_cache.whole_set_ready(handle, ctx.dataset_args, n, representation, variants, method)
    offer = st.empty()  # the "not cached yet" box and its button, gone once the map is drawn
    if not ready:
        cost = "about 8 s per variant for 10,000 images on two CPU cores" + (
            "" if method == "pca" else f", then {PROJECTIONS[method]} about 40 s per variant"
        )
        with offer.container():
            st.info(f"The whole-set map for these settings is not cached yet ({cost}; once per zoo).")
            go_on = st.button("Compute the whole-set map", key="emb_whole_compute", type="primary")
    else:
        go_on = True
    if go_on:
        offer.empty()
        bar = st.progress(0.0, text="whole test set: starting") if not ready else None
        data, fitted = embeddings_cache.whole_set(
            handle,
            ds,
            ctx.dataset_args,
            representation,
            variants,
            method,
            progress=(lambda f, t: bar.progress(min(1.0, f), text=t)) if bar else None,
        )
        if bar is not None:
            bar.empty()
        emb = zoo_cache.embeddings_module(False)
        overlay = overlay_on and anchors and kinds
        frames, overlays = whole_set_tables(data, ds.labels.numpy(), method, representation, fitted,
                                            view["points"] if overlay else None, view["reps"] if overlay else None,
                                            class_name=handle.class_name)  # fmt: skip
        ranges = embedding_figures.shared_ranges(list(frames.values()) + list(overlays.values()))
        explained = None
        if method == "pca":
            explained = whole_set_explained_variance(data, representation, view["points"] if overlay else None,
                                                     view["reps"] if overlay else None)  # fmt: skip
        if method != "pca" and overlays:
            st.caption(
                f"{PROJECTIONS[method]} has no out-of-sample transform: the anchors' copies are placed at the "
                "distance-weighted mean position of their 10 nearest test images."
            )
        whole_counts: dict[str, int] = {}
        for start in range(0, len(variants), 2):
            cols = st.columns(2)
            for col, variant in zip(cols, variants[start : start + 2], strict=False):
                safe = variant.replace("+", "plus")
                key = f"emb_whole_{safe}"
                with col, st.container(border=True):
                    both = pd.concat([frames[variant], overlays[variant]]) if variant in overlays else frames[variant]
                    matches = emb.search_rows(both, query) if query.strip() else None
                    whole_counts[variant] = 0 if matches is None else len(matches)
                    fig = embedding_figures.whole_set_scatter(
                        frames[variant], variant, overlays.get(variant), colour_by, ranges=ranges, highlight=matches,
                        axis_titles=axis_titles(explained, variant, "union" if representation == "logits" else
                                                "procrustes"),
                    )  # fmt: skip
                    exports.chart(fig, key, f"whole_set_{variant}_{method}", on_select="rerun",
                                  selection_mode="points")  # fmt: skip
                    rows = embedding_figures.selected_rows(fig, selection(key))
                    if not rows and matches is not None and len(matches):
                        rows = [int(matches[0])]
                        st.caption(f"First of {len(matches)} match(es) shown; click a point for another.")
                    if rows and rows[0] < n:
                        i = rows[0]
                        c_img, c_nn = st.columns([1, 3])
                        c_img.image(
                            components.backend_preview(ds.images[i].numpy()),
                            width=80,
                            caption=f"#{i}: predicted {frames[variant]['pred_name'][i]}, "
                            f"true {frames[variant]['true_name'][i]}",
                        )
                        nn_rows, dist = emb.nearest_neighbours(data[variant]["rep"], i, k=6)
                        c_nn.image(
                            [components.backend_preview(ds.images[j].numpy()) for j in nn_rows],
                            width=48,
                            caption=[f"#{j} · {d:.3g}" for j, d in zip(nn_rows, dist, strict=True)],
                        )
                    elif rows:
                        show_point(st.container(), view, variant, rows[0] - n, key)
        search_caption(query, whole_counts)
        table = pd.concat([pd.concat([frames[v], overlays[v]]).assign(variant=v) if v in overlays
                           else frames[v].assign(variant=v) for v in variants], ignore_index=True)  # fmt: skip
        exports.csv_download(
            table[["variant", *[c for c in table.columns if c != "variant"]]],
            f"whole_set_coordinates_{method}_{representation}",
            exports.provenance(ctx, "the whole test split (analysis.embeddings_whole_set)",
                               variants=", ".join(variants), representation=representation,
                               method=PROJECTIONS[method], n_images=n,
                               overlay="the anchors' points, rows numbered after the test set's" if overlays else None,
                               seed=0, **explained_header(explained)),
            key="emb_whole_csv", label="Coordinates of every map (CSV)",
        )  # fmt: skip

results = results_store.load_results(handle)
name, report_ranks = results.find({"variant", "anchor", "kind", "level", "rank"}, "embeddings")
if report_ranks is not None:
    with st.expander("Neighbour ranks over several anchors (from the report)"):
        shown = report_ranks[report_ranks["variant"].isin(variants)]
        medians = shown.groupby(["variant", "kind", "level"], as_index=False, sort=False)["rank"].median()
        exports.chart(figures.line_panels(medians, "level", "rank", panel="kind", y_title="median neighbour rank"),
                      "emb_report_ranks", "neighbour_ranks_report", medians,
                      exports.provenance(ctx, name, statistic="median over the report's anchors"))  # fmt: skip
        st.caption("Median rank over the report's anchors; no CI is drawn (a median over a handful of anchors per "
                   "point: the table below has every anchor's rank).")  # fmt: skip
        components.show_table(shown, name)
        components.report_status(results, "embeddings")
