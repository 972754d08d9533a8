"""Neighbourhood embeddings: where an image's perturbed copies land among images of its class (paper Fig. 2)."""

import streamlit as st

from app import backend, components, figures

ctx = components.context()
st.title("Neighbourhood embeddings")
st.markdown(
    "Each variant maps the original image ★, its 16 Table 1 perturbations (coloured by kind, larger = higher "
    "level) and other test images of the same class (grey) to logits, projected to 2-D. A semantically continuous "
    "model keeps the perturbed copies next to the original; the paper found them scattered among, or beyond, "
    "other images of the class."
)
handle = components.require_zoo(ctx)
components.zoo_header(ctx)
ds = components.load_dataset(ctx)
components.check_classes(ctx, ds)
names = components.class_names(ctx, ds)

picked = components.image_picker(ctx, key="emb", allow_upload=False)
st.caption("Embeddings use test-set images: the neighbourhood is made of other images of the same class.")
c1, c2, c3 = st.columns([1.2, 1.5, 2.3])
with c1:
    method = st.radio("Projection", ["pca", "tsne", "umap"], horizontal=True, key="emb_method",
                      format_func={"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}.get,
                      help="PCA is instant; t-SNE ~1.5 s, UMAP ~0.6 s per variant (UMAP compiles once).")  # fmt: skip
with c2:
    n_same = st.slider("Same-class images", 20, 300, 200, step=10, key="emb_n",
                       help="How many other test images of the class form the neighbourhood.")  # fmt: skip
with c3:
    kinds = st.multiselect("Perturbations", list(backend.KINDS), default=list(backend.KINDS), key="emb_kinds")
if picked is None or not kinds:
    st.stop()

with st.spinner(f"Embedding {n_same + 1 + 4 * len(kinds)} images with {len(handle.variants)} variants..."):
    if method == "umap":
        backend.embeddings_module(True)  # compile once per server, with its own spinner
    points, ranks = backend.cached_neighbourhood(handle.key, ctx.dataset_args, picked.index, method, n_same,
                                                 tuple(kinds))  # fmt: skip

worst = int(ranks["n_candidates"].max()) if len(ranks) else n_same + 1
st.caption(
    "**Neighbour rank** beside each plot: for each perturbed copy, 1 + the number of same-class images whose logits "
    "are nearer to the original's than the copy's (by DS). 1 = the copy is the original's nearest neighbour "
    f"(continuous); {worst} = every other image of the class is nearer. Click a point to see its image."
)
variants = handle.variants
for start in range(0, len(variants), 2):
    cols = st.columns(2)
    for col, variant in zip(cols, variants[start : start + 2], strict=False):
        with col, st.container(border=True):
            pts = points[points["variant"] == variant].reset_index(drop=True)
            rk = ranks[ranks["variant"] == variant]
            plot, stats = st.columns([3, 1])
            with plot:
                event = st.plotly_chart(
                    figures.embedding_scatter(pts, title=f"{variant}"),
                    key=f"emb_plot_{variant}", on_select="rerun", selection_mode="points",
                )  # fmt: skip
            with stats:
                l1 = rk[rk["level"] == 1]["rank"]
                st.metric("Median rank L1", f"{l1.median():.0f}" if len(l1) else "n/a",
                          help="Median over the kinds of the level-1 copies' neighbour ranks.")  # fmt: skip
                st.metric("Median rank, all", f"{rk['rank'].median():.0f}")
                st.metric("Rank-1 copies", f"{int((rk['rank'] == 1).sum())}/{len(rk)}",
                          help="Perturbed copies that are the original's nearest neighbour.")  # fmt: skip
            st.plotly_chart(figures.rank_heatmap(rk, title="neighbour rank by kind and level", zmax=worst),
                            key=f"emb_rank_{variant}", config={"displayModeBar": False})  # fmt: skip
            selected = (event.selection.points if event is not None and hasattr(event, "selection") else []) or []
            for point in selected[:1]:
                custom = point.get("customdata") if isinstance(point, dict) else None
                if not custom:
                    continue
                row = pts.iloc[int(custom[0])]
                img = backend.neighbourhood_image(ds, row, picked.index)
                what = (f"{row['kind']} level {int(row['level'])}" if row["role"] == "perturbed"
                        else f"{row['role'].replace('_', ' ')} image #{int(row['dataset_index'])}")  # fmt: skip
                st.image(components.backend_preview(img), caption=what, width=96)

with st.expander("All neighbour ranks"):
    st.dataframe(ranks.pivot_table(index=["kind", "level"], columns="variant", values="rank"), width="stretch")

results = backend.load_results(handle)
name, report_ranks = results.find({"variant", "anchor", "kind", "level", "rank"}, "embeddings")
if report_ranks is not None:
    with st.expander("Neighbour ranks over several anchors (from the report)"):
        st.plotly_chart(figures.line_panels(report_ranks.groupby(["variant", "kind", "level"], as_index=False,
                                                                 sort=False)["rank"].median(),
                                            "level", "rank", panel="kind", y_title="median neighbour rank"),
                        key="emb_report_ranks")  # fmt: skip
        components.show_table(report_ranks, name)
        components.report_status(results, "embeddings")
