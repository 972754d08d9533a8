"""The embeddings page's finding and keeping (issue 24): search by class or test image number rings the matches in
every map and shows the first beside it, PCA axes carry sklearn's explained-variance ratio of the very points drawn,
the coordinates download as CSV with their provenance, and the whole-set offer goes once its map is drawn. Driven
with Streamlit's AppTest against the tiny zoo."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests import test_app, test_dashboard_pages
from tests.test_app import array_length, array_values, assert_clean, chart_specs, open_app

app_env = test_app.app_env  # SCL_ZOO at the tiny zoo, no results folder
downloads = test_dashboard_pages.downloads  # every file handed to a download button: name -> bytes


def test_search_rings_matches_and_pca_axes_carry_explained_variance(app_env, tmp_path, monkeypatch, downloads):
    from sklearn.decomposition import PCA

    from analysis.embeddings import Anchor, anchor_views
    from app.exports import read_csv_export
    from app.images import dataset_image
    from models.checkpoints import load_zoo
    from models.data import load_dataset
    from models.perturbations import KINDS

    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path / "cache"))
    at = open_app("embeddings")
    at.slider(key="emb_n").set_value(20)
    at.text_input(key="emb_more").set_value("3")
    at.text_input(key="emb_search").set_value("#3")
    at.run()
    assert_clean(at)
    header, points = read_csv_export(downloads["embedding_coordinates_pca_logits.csv"])
    assert header["method"] == "PCA" and header["representation"] == "logits" and header["zoo"] == "tiny"
    specs = chart_specs(at, "emb_plot_")
    assert len(specs) == 4
    for spec in specs:
        variant = spec["layout"]["title"]["text"]
        ring = [t for t in spec["data"] if t["name"] == "search matches"]
        own = points[(points["variant"] == variant) & (points["dataset_index"] == 3)]
        assert len(ring) == 1 and array_length(ring[0]["x"]) == len(own) == 1 + 4 * len(KINDS)  # anchor + copies
        assert np.allclose(sorted(array_values(ring[0]["x"])), sorted(own["x"]))
    assert any("First of 17 match(es)" in c.value for c in at.caption)
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(c == "anchor #3" for c in captions)  # the first match's image beside its map
    assert any("Search '#3'" in c.value for c in at.caption)

    # The axis titles are sklearn's explained_variance_ratio_ of the union of the drawn points' logits.
    test = load_dataset("digits", "test", image_size=32)
    anchors = []
    for name in dict.fromkeys(points.loc[points["role"] == "original", "anchor"]):
        image, label = dataset_image(test, int(name.lstrip("#")))
        anchors.append(Anchor(name, image, label, int(name.lstrip("#")), label))
    models = load_zoo(app_env).models
    variants = [s["layout"]["title"]["text"] for s in specs]
    view = anchor_views({v: models[v] for v in variants}, test.images, test.labels, anchors, "logits", "pca", 20)
    again = view["points"]
    shown = points.sort_values(["variant", "row"]).reset_index(drop=True)
    assert np.allclose(again.sort_values(["variant", "row"])["x"].to_numpy(), shown["x"].to_numpy(), atol=1e-4)
    ratio = PCA(n_components=2).fit(np.concatenate([view["reps"][v] for v in variants])).explained_variance_ratio_
    for spec in specs:
        assert spec["layout"]["xaxis"]["title"]["text"] == f"PC1 ({100 * ratio[0]:.1f}%)"
        assert spec["layout"]["yaxis"]["title"]["text"] == f"PC2 ({100 * ratio[1]:.1f}%)"

    # A class by name rings every point of that class; t-SNE axes have no title.
    cls = points.loc[points["dataset_index"] == 3, "true_name"].iloc[0]
    at.text_input(key="emb_search").set_value(str(cls))
    at.radio(key="emb_method").set_value("tsne")
    at.run()
    assert_clean(at)
    _, points = read_csv_export(downloads["embedding_coordinates_tsne_logits.csv"])
    for spec in chart_specs(at, "emb_plot_"):
        variant = spec["layout"]["title"]["text"]
        ring = next(t for t in spec["data"] if t["name"] == "search matches")
        expected = points[(points["variant"] == variant) & (points["true_name"].astype(str) == str(cls))]
        assert array_length(ring["x"]) == len(expected) > 17
        assert not spec["layout"]["xaxis"].get("title")
    at.text_input(key="emb_search").set_value("no such class")
    at.run()
    assert any("Nothing in these maps matches" in w.value for w in at.warning)


def test_whole_set_offer_goes_once_drawn_and_exports(app_env, tmp_path, monkeypatch, downloads):
    from app.exports import read_csv_export
    from models.data import load_dataset

    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path / "cache"))
    n = len(load_dataset("digits", "test"))
    at = open_app("embeddings")
    at.slider(key="emb_n").set_value(20)
    at.run()
    assert any("not cached yet" in i.value for i in at.info)
    at.button(key="emb_whole_compute").click()
    at.run()
    assert_clean(at)
    assert len(chart_specs(at, "emb_whole_")) == 4
    assert not any("not cached yet" in i.value for i in at.info)  # the offer is gone with the map drawn
    assert not [b for b in at.button if b.key == "emb_whole_compute"]
    header, table = read_csv_export(downloads["whole_set_coordinates_pca_logits.csv"])
    assert header["n images"] == str(n)
    assert set(table["variant"]) == set(at.multiselect(key="emb_variants").value)
    assert (table["row"] < n).sum() == 4 * n  # every test image of every variant, then the anchors' points
    spec = chart_specs(at, "emb_whole_")[0]
    pc1 = spec["layout"]["xaxis"]["title"]["text"]  # "PC1 (58.0%)", also in the CSV's header
    assert (
        pc1.startswith("PC1 (")
        and f"{spec['layout']['title']['text']}: {pc1[5:-1]}," in header["explained variance (PC1, PC2)"]
    )
    at.text_input(key="emb_search").set_value("#5")
    at.run()
    spec = chart_specs(at, "emb_whole_")[0]
    ring = next(t for t in spec["data"] if t["name"] == "search matches")
    assert array_length(ring["x"]) == 1
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(c.startswith("#5: predicted") for c in captions)  # its image beside the map
    pd.testing.assert_index_equal(table.columns[:1], pd.Index(["variant"]))
