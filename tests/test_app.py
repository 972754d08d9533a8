"""The dashboard driven with Streamlit's AppTest against the tiny zoo, plus its backend under threads.

Every page is opened, widgets are moved (kinds, levels, methods, projections, uploads, quick
experiments), and each run must render its grid / plots with no exception. The backend's pure
compute functions are checked for exact agreement between 8 concurrent threads and a serial run.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "app" / "streamlit_app.py"
PAGES = ["zoo", "saliency", "embeddings", "continuity", "probes", "robustness", "transfer", "fairness", "claims"]
VARIANTS = ["standard", "C", "ADV", "ADV+C"]
TIMEOUT = 240  # seconds per script run: the first run imports captum/lime and builds caches on a busy CPU

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture
def app_env(tiny_zoo, monkeypatch, tmp_path, cache_dir):
    """SCL_ZOO at the tiny zoo; results looked up in an empty temporary folder; caches (OOD calibrations) in the
    session's temporary cache."""
    import dataclasses

    from analysis import results_store as stored
    from app import results_store

    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "600")  # each run draws the shown level's maps, however busy the CPU
    monkeypatch.setattr(results_store, "RESULTS_ROOT", tmp_path / "results")
    # The quick buttons run the registry's experiments with its QUICK settings, shrunk here for the tiny zoo.
    small = dataclasses.replace(stored.QUICK, n_images=24, rank_anchors=8, pgd_images=8, eps_images=8,
                                eps_values_255=(0, 8), audit_images=8, audit_steps=(4,), audit_restarts=1)  # fmt: skip
    monkeypatch.setattr(stored, "QUICK", small)
    monkeypatch.setattr(results_store, "QUICK_SIZES", {g: stored.quick_size(g, small) for g in stored.QUICK_GROUPS})
    return tiny_zoo


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    if page and page != "zoo":
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(at: AppTest) -> list:
    return list(at.get("plotly_chart"))


def chart_specs(at: AppTest, prefix: str = "") -> list[dict]:
    return [json.loads(c.proto.spec) for c in charts(at) if prefix in c.proto.id]


def saliency_rows_html(at: AppTest) -> list[str]:
    """The saliency page's rows of maps as drawn by default (HTML: images and CSS colour bars)."""
    return [h.value for h in at.get("html") if "scl-saliency" in h.value]


def array_length(value) -> int:
    """Length of a plotly JSON array: a list, or a typed array {"dtype", "bdata"[, "shape"]}."""
    if isinstance(value, dict):
        if "shape" in value:
            return int(str(value["shape"]).split(",")[0])
        import base64

        return len(base64.b64decode(value["bdata"])) // np.dtype(value["dtype"]).itemsize
    return len(value)


def array_values(value) -> list:
    """The values of a plotly JSON array: a list, or a typed array {"dtype", "bdata"[, "shape"]} (plotly 7)."""
    if isinstance(value, dict):
        import base64

        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def photo() -> np.ndarray:
    """A colourful 96x128 RGB test picture."""
    y, x = np.mgrid[0:96, 0:128]
    return (np.stack([x / 128, y / 96, 0.5 + 0.5 * np.sin(x / 9)], -1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- pages


def test_zoo_page_shows_cards_and_sidebar(app_env):
    at = open_app()
    assert at.title[0].value == "The model zoo"
    metric_labels = [m.label for m in at.metric]
    assert metric_labels.count("Clean accuracy") == 4 and metric_labels.count("PGD-10 accuracy") == 4
    assert any("10.0%" == m.value for m in at.metric)  # the tiny cards' test_clean_acc = 0.1
    assert len(charts(at)) >= 2  # accuracy bars and the data set's class examples
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    assert "Device: **cpu**" in sidebar_text or "Device: **cuda**" in sidebar_text
    assert at.sidebar.text_input(key="scl_zoo_path").value == str(app_env)
    assert at.sidebar.selectbox(key="scl_dataset").value == "digits"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app_env, page):
    at = open_app(page)
    assert at.title, f"page {page} has no title"
    assert not [e.value for e in at.error], [e.value for e in at.error]


def unescape(markdown: str) -> str:
    """Text as shown: Markdown backslash escapes removed."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)


def heatmaps(spec: dict) -> list[dict]:
    return [t for t in spec["data"] if t["type"] == "heatmap"]


def open_interactive_saliency() -> AppTest:
    """The saliency page with its rows drawn as plotly charts (the "Interactive" toggle on)."""
    at = open_app("saliency")
    assert not chart_specs(at, "sal_fig_") and len(saliency_rows_html(at)) == 4  # images by default
    at.toggle(key="sal_interactive").set_value(True)
    at.run()
    assert_clean(at)
    assert not saliency_rows_html(at)
    return at


def test_saliency_grid_follows_kind_level_and_methods(app_env):
    at = open_interactive_saliency()
    specs = chart_specs(at, "sal_fig_")
    assert len(specs) == 4  # one row per variant: the paper's four of the six in the zoo
    for spec in specs:
        kinds = [t["type"] for t in spec["data"]]
        # original, perturbed, then per method a greyscale backdrop under the map (IG, GradCAM)
        assert kinds == ["image", "image", "image", "heatmap", "image", "heatmap"]
    titles = [a["text"] for a in specs[0]["layout"]["annotations"]]
    assert "Integrated Gradients" in titles and "GradCAM" in titles
    assert not any("δ" in t for t in titles)  # δ is printed once, beside the row, not in a title
    assert sum(c.value.startswith("IG completeness δ") for c in at.caption) == 4
    ds_before = [m.value for m in at.markdown if m.value.startswith("DS")]
    assert len(ds_before) == 4

    at.selectbox(key="sal_kind").set_value("hue")
    at.slider(key="sal_level").set_value(3)
    at.checkbox(key="sal_method_lime").check()
    at.select_slider(key="sal_lime_samples").set_value(250)
    at.checkbox(key="sal_orig").check()
    at.run()
    assert_clean(at)
    assert any("hue +0.3" in unescape(c.value) for c in at.caption)
    specs = chart_specs(at, "sal_fig_")
    assert len(specs) == 4
    for spec in specs:
        assert len(heatmaps(spec)) == 6  # 3 methods x (perturbed, original)
        assert any("LIME" in a["text"] for a in spec["layout"]["annotations"])
    assert sum("vs original" in c.value for c in at.caption) >= 4  # map stability beside each row
    ds_after = [m.value for m in at.markdown if m.value.startswith("DS")]
    assert ds_after != ds_before  # hue at level 3 moves the logits differently from brightness at level 1

    at.slider(key="sal_level").set_value(0)
    at.checkbox(key="sal_method_lime").uncheck()
    at.run()
    assert_clean(at)
    assert all(m.value.endswith("0") for m in at.markdown if m.value.startswith("DS"))  # level 0: DS = 0


def test_saliency_methods_come_from_the_registry(app_env):
    from analysis.attributions import METHOD_REGISTRY

    at = open_app("saliency")
    for name, method in METHOD_REGISTRY.items():
        box = at.checkbox(key=f"sal_method_{name}")
        assert box.label == method.label and box.value == method.selected_by_default


def png_size(uri: str) -> tuple[int, int]:
    import base64

    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size


def test_saliency_display_controls(app_env):
    """Overlay, raw maps, opacity, shared / per-map colour scale: what each control changes in the figures."""
    at = open_interactive_saliency()
    specs = chart_specs(at, "sal_fig_")
    for spec in specs:
        images = [t for t in spec["data"] if t["type"] == "image"]
        assert all(min(png_size(t["source"])) >= 224 for t in images)  # 32 px upscaled x7 by nearest neighbour
        maps = heatmaps(spec)
        assert all(h["opacity"] == 0.6 and h["showscale"] for h in maps)  # overlays, one colour bar per method
        assert [h.get("zmid") for h in maps] == [0.0, None]  # IG signed (diverging), GradCAM positive
    # shared scale (default): every row's IG uses the same limits, the largest |IG| of the four rows
    ig_limits = {(heatmaps(s)[0]["zmin"], heatmaps(s)[0]["zmax"]) for s in specs}
    assert len(ig_limits) == 1
    ((zmin, zmax),) = ig_limits
    assert zmin == -zmax and zmax > 0

    at.radio(key="sal_scale").set_value("per map")
    at.slider(key="sal_opacity").set_value(0.35)
    at.run()
    assert_clean(at)
    specs = chart_specs(at, "sal_fig_")
    per_map = [heatmaps(s)[0]["zmax"] for s in specs]
    assert len(set(per_map)) == 4 and max(per_map) == pytest.approx(zmax)  # each its own; the largest is the shared
    assert all(h["opacity"] == 0.35 for s in specs for h in heatmaps(s))

    at.toggle(key="sal_raw").set_value(True)
    at.run()
    assert_clean(at)
    for spec in chart_specs(at, "sal_fig_"):
        maps = heatmaps(spec)
        assert len(maps) == 4 and [h["opacity"] for h in maps] == [0.35, 0.35, 1.0, 1.0]  # overlays, then raw maps
        assert any(a["text"].startswith("raw: ") for a in spec["layout"]["annotations"])

    at.toggle(key="sal_overlay").set_value(False)
    at.run()
    assert_clean(at)
    for spec in chart_specs(at, "sal_fig_"):
        assert [t["type"] for t in spec["data"]] == ["image", "image", "heatmap", "heatmap"]  # bare maps only
        assert all(h["opacity"] == 1.0 for h in heatmaps(spec))


def html_images(row: str) -> list[tuple[str, str]]:
    """(alt text, data URI) of every image of one HTML row."""
    import re

    return [(alt, uri) for uri, alt in re.findall(r'<img src="([^"]+)"[^>]* alt="([^"]*)"', row)]


def colour_bar_limits(row: str) -> list[str]:
    """The upper limit of each colour bar of one HTML row, as labelled ("colour scale: LOW to HIGH")."""
    import re

    return re.findall(r'title="colour scale: [^"]* to ([^"]+)"', row)


def test_saliency_default_rows_are_images_with_colour_bars(app_env):
    """The default drawing (fast HTML): images of at least 224 px, one colour bar per map, a shared scale that
    every row labels alike, per-map scales that differ, raw maps and overlays that follow the controls."""
    import html as html_lib

    at = open_app("saliency")
    rows = saliency_rows_html(at)
    assert len(rows) == 4
    for row in rows:
        images = html_images(row)
        assert [alt for alt, _ in images] == ["original", "perturbed: brightness +16/255", "Integrated Gradients",
                                              "GradCAM"]  # fmt: skip
        assert all(min(png_size(html_lib.unescape(uri))) >= 224 for _, uri in images)
        assert len(colour_bar_limits(row)) == 2  # one per method
    shared = {tuple(colour_bar_limits(row)) for row in rows}
    assert len(shared) == 1  # one scale per method for every row
    overlay_06 = html_images(rows[0])[2][1]

    at.radio(key="sal_scale").set_value("per map")
    at.slider(key="sal_opacity").set_value(0.35)
    at.run()
    assert_clean(at)
    rows = saliency_rows_html(at)
    assert len({colour_bar_limits(row)[0] for row in rows}) == 4  # each row's IG its own scale
    assert html_images(rows[0])[2][1] != overlay_06  # the map over the greyscale image at another opacity

    at.toggle(key="sal_raw").set_value(True)
    at.run()
    assert_clean(at)
    for row in saliency_rows_html(at):
        alts = [alt for alt, _ in html_images(row)]
        assert alts[-2:] == ["raw: Integrated Gradients", "raw: GradCAM"] and len(colour_bar_limits(row)) == 4

    at.toggle(key="sal_overlay").set_value(False)
    at.run()
    assert_clean(at)
    for row in saliency_rows_html(at):
        assert not any(alt.startswith("raw: ") for alt, _ in html_images(row))  # bare maps: no second row


def test_saliency_variant_multiselect_offers_the_controls(app_env):
    at = open_app("saliency")
    chooser = at.multiselect(key="sal_variants")
    assert chooser.value == VARIANTS and {"standard+jitter", "ADV-mixed"} <= set(chooser.options)
    chooser.set_value(["standard", "standard+jitter"])
    at.run()
    assert_clean(at)
    assert len(saliency_rows_html(at)) == 2
    assert any(m.value == "### standard\\+jitter" for m in at.markdown)  # the name, escaped
    assert any("Control for C" in c.value for c in at.caption)  # the registry's help text


def test_saliency_true_class_top3_and_wrong_predictions(app_env):
    from app import saliency_cache, zoo_cache
    from models.data import load_dataset

    at = open_app("saliency")
    assert any("true class **" in m.value for m in at.markdown)
    assert sum(c.value.startswith("top-3 (perturbed): ") for c in at.caption) == 4
    ds = load_dataset("digits", "test")
    handle = zoo_cache.open_zoo(app_env, "cpu")
    image, label = ds.images[0].numpy(), int(ds.labels[0])
    wrong = sum(int(saliency_cache.logits_of(handle.model(v), torch_batch(image)).argmax()) != label for v in VARIANTS)
    marked = [m.value for m in at.markdown if m.value.startswith("original: ")]
    assert len(marked) == 4 and sum("original: " in m and "wrong" in m.split("\n")[0] for m in marked) == wrong


def torch_batch(image: np.ndarray):
    import torch

    return torch.from_numpy(image)[None]


def test_saliency_gallery_class_filter(app_env):
    at = open_app("saliency")
    at.selectbox(key="sal_class").set_value("7")
    at.slider(key="sal_example").set_value(3)
    at.run()
    assert_clean(at)
    assert any("true class **7**" in m.value for m in at.markdown)
    assert len(saliency_rows_html(at)) == 4


def test_saliency_upload_good_and_bad(app_env):
    at = open_app("saliency")
    at.radio(key="sal_source").set_value("Upload an image")
    at.run()
    assert_clean(at)
    assert at.file_uploader, "the installed Streamlit's AppTest should expose file_uploader"
    at.file_uploader(key="sal_upload").set_value(("photo.png", png_bytes(photo()), "image/png"))
    at.run()
    assert_clean(at)
    assert len(saliency_rows_html(at)) == 4
    assert any("PNG 128x96" in c.value and "RGB 32x32" in c.value for c in at.caption)

    at.file_uploader(key="sal_upload").set_value(("notes.png", b"this is text, not a picture", "image/png"))
    at.run()
    assert_clean(at)
    assert any("was not accepted" in e.value and "not an image" in e.value for e in at.error)
    assert not saliency_rows_html(at)  # no grid for a refused file

    at.file_uploader(key="sal_upload").set_value(("empty.jpg", b"", "image/jpeg"))
    at.run()
    assert_clean(at)
    assert any("empty" in e.value for e in at.error)


def test_saliency_upload_names_escaped_svg_refused_and_ood_checked(app_env):
    at = open_app("saliency")
    at.radio(key="sal_source").set_value("Upload an image")
    at.run()
    hostile = "**bold** [x](javascript:alert(1)) :red[y].png"
    at.file_uploader(key="sal_upload").set_value((hostile, png_bytes(photo()), "image/png"))
    at.run()
    assert_clean(at)
    assert len(saliency_rows_html(at)) == 4
    shown = next(c.value for c in at.caption if c.value.startswith("Uploaded "))
    assert "\\*\\*bold\\*\\*" in shown and "\\[x\\]\\(javascript\\:" in shown and "\\:red\\[y\\]" in shown
    assert "**bold**" not in shown.replace("\\*", "")  # no live Markdown left
    ood = [c.value for c in at.caption if "energy score, threshold at the 5th percentile" in c.value]
    assert len(ood) == 1 and "This image:" in ood[0] and "know only its 10 classes" in ood[0]

    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40"/></svg>'
    at.file_uploader(key="sal_upload").set_value(("drawing.svg", svg, "image/svg+xml"))
    at.run()
    assert_clean(at)
    assert any("drawing\\.svg was not accepted" in e.value and "not an image" in e.value for e in at.error)
    assert not saliency_rows_html(at)  # the previous upload's grid is gone


def test_embeddings_projections(app_env, tmp_path, monkeypatch):
    """PCA, t-SNE and UMAP in one map shared by the paper's four variants, logits and penultimate features, with
    the neighbour ranks under each plot and several anchors."""
    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path / "cache"))
    at = open_app("embeddings")
    assert at.multiselect(key="emb_variants").value == VARIANTS  # the paper's four, controls on offer
    assert set(at.multiselect(key="emb_variants").options) > set(VARIANTS)
    at.slider(key="emb_n").set_value(40)
    previous = None
    for rep, method in (("logits", "pca"), ("logits", "tsne"), ("logits", "umap"), ("features", "pca")):
        at.radio(key="emb_rep").set_value(rep)
        at.radio(key="emb_method").set_value(method)
        at.run()
        assert_clean(at)
        specs = chart_specs(at, "emb_plot_")
        assert len(specs) == 4, method
        for spec in specs:
            names = [t.get("name") for t in spec["data"]]
            assert "anchor" in names and "same class" in names and "hue" in names
            sizes = {t["name"]: array_length(t["x"]) for t in spec["data"]}
            assert sizes.pop("anchor") == 1 and 0 < sizes.pop("same class") <= 40
            assert sizes == {kind: 4 for kind in ("brightness", "contrast", "saturation", "hue")}  # 4 levels each
            assert all(t.get("mode") == "markers" for t in spec["data"])  # no text labels piling up on the star
            hover = spec["data"][1]["hovertext"][0]
            assert "predicted" in hover and "true" in hover and "DS to" in hover
        # one projection shared by the variants: every panel has the same axes
        assert len({json.dumps([s["layout"]["xaxis"]["range"], s["layout"]["yaxis"]["range"]]) for s in specs}) == 1
        assert specs != previous, method  # a different projection draws different coordinates
        previous = specs
        assert len(chart_specs(at, "emb_rank_")) == 4
        labels = [m.label for m in at.metric]
        assert labels.count("Rank L1") == 4 and labels.count("Rank, all") == 4 and labels.count("Rank 1") == 4
    at.text_input(key="emb_more").set_value("3, 7, nonsense")
    at.run()
    assert_clean(at)
    assert any("'nonsense' is not a test image number" in w.value for w in at.warning)
    for spec in chart_specs(at, "emb_plot_"):
        assert array_length(next(t for t in spec["data"] if t["name"] == "anchor")["x"]) == 3


def test_embeddings_upload_as_anchor_and_variant_choice(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path / "cache"))
    at = open_app("embeddings")
    at.slider(key="emb_n").set_value(20)
    at.multiselect(key="emb_variants").set_value(["standard", "C", "standard+jitter"])
    at.file_uploader(key="emb_uploads").set_value([("photo.png", png_bytes(photo()), "image/png")])
    at.run()
    assert_clean(at)
    specs = chart_specs(at, "emb_plot_")
    assert [s["layout"]["title"]["text"] for s in specs] == ["standard", "C", "standard+jitter"]
    assert any("photo.png →" in c.value and "predicted by standard" in c.value for c in at.caption)
    hover = " ".join(" ".join(t.get("hovertext") or []) for t in specs[0]["data"])
    assert "unknown (upload)" in hover


def test_embeddings_whole_test_set(app_env, tmp_path, monkeypatch):
    """The whole test split in WebGL, computed on a button with a progress bar, then read from the disk cache."""
    from models.data import load_dataset

    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path / "cache"))
    n = len(load_dataset("digits", "test"))
    at = open_app("embeddings")
    at.slider(key="emb_n").set_value(20)
    at.run()
    assert not chart_specs(at, "emb_whole_")
    at.button(key="emb_whole_compute").click()
    at.run()
    assert_clean(at)
    specs = chart_specs(at, "emb_whole_")
    assert len(specs) == 4
    for spec in specs:
        gl = [t for t in spec["data"] if t["type"] == "scattergl"]
        assert len(gl) == len(spec["data"])
        assert sum(array_length(t["x"]) for t in gl if t["name"] not in ("anchor", *backend_kinds())) == n
    assert len({json.dumps(s["layout"]["xaxis"]["range"]) for s in specs}) == 1
    cached = list((tmp_path / "cache" / "embeddings").glob("rep-*.npz"))
    assert len(cached) == 4  # one per variant, keyed by its checkpoint sha256
    at = open_app("embeddings")  # a new session: drawn from the disk cache, no button
    at.slider(key="emb_n").set_value(20)
    at.radio(key="emb_whole_colour").set_value("correct")
    at.run()
    assert_clean(at)
    assert len(chart_specs(at, "emb_whole_")) == 4
    assert not [b for b in at.button if b.key == "emb_whole_compute"]


def backend_kinds() -> tuple[str, ...]:
    from models.perturbations import KINDS

    return tuple(KINDS)


def test_bad_zoo_path_gives_a_message(app_env, tmp_path):
    at = open_app()
    at.sidebar.text_input(key="scl_zoo_path").set_value(str(tmp_path / "no-such-zoo"))
    at.run()
    assert_clean(at)
    assert any("No model zoo could be loaded" in e.value for e in at.error)
    at.switch_page("views/saliency.py").run()
    assert_clean(at)
    assert any("No model zoo could be loaded" in e.value for e in at.error)


def test_experiment_pages_without_results_offer_command_and_quick_run(app_env):
    for page, button, chart_prefix in (
        ("continuity", "quick_continuity", "cont_"),
        ("probes", "quick_probes", "probe_curves"),
        ("robustness", "quick_robustness", "rob_"),
    ):
        at = open_app(page)
        assert any("python -m analysis.report --zoo" in i.value for i in at.info), page
        at.button(key=button).click()
        at.run()
        assert_clean(at)
        assert any("Quick results" in c.value for c in at.caption), page
        assert chart_specs(at, chart_prefix), page
    for page in ("transfer", "fairness", "claims"):
        at = open_app(page)
        assert any("python -m analysis.report --zoo" in i.value for i in at.info), page


@pytest.fixture(scope="module")
def report_folder(tiny_zoo, tmp_path_factory):
    """What `python -m analysis.report --quick` writes for the tiny zoo (shrunk further), run once per module.

    Transfer and fairness train networks, so their tables are written here in the report's format instead.
    """
    import dataclasses

    from analysis.report import QUICK, run_report
    from analysis.transfer import summarise

    out = tmp_path_factory.mktemp("results") / tiny_zoo.name  # found from the zoo folder's name, never the manifest's
    settings = dataclasses.replace(
        QUICK, n_images=48, rank_anchors=6, pgd_images=8, eps_images=8, eps_values_255=(0, 8), audit_images=4,
        audit_steps=(2, 4), audit_restarts=2, attr_images=2, ig_steps=8, lime_samples=40, deletion_steps=4,
        stability_images=2, stability_levels=(1,), embed_anchors=1, embed_same_class=20,
    )  # fmt: skip
    only = ["continuity", "neighbourhood_rank", "probes", "robustness", "eps_sweep", "attack_audit", "attributions",
            "stability", "embeddings"]  # fmt: skip
    run_report(tiny_zoo, out, settings, only=only, device="cpu", progress=False, log=lambda msg: None)
    res = out / "results"
    rng = np.random.default_rng(0)
    transfer = pd.DataFrame([{"variant": v, "target": t, "seed": 0, "test_acc": rng.random(), "n_train": 64,
                              "n_test": 64, "epochs": 1.0, "train_seconds": 1.0}
                             for v in VARIANTS for t in ("digits", "fashion-mnist")])  # fmt: skip
    transfer.to_csv(res / "transfer.csv", index=False)
    summarise(transfer).to_csv(res / "transfer_summary.csv", index=False)
    fairness = pd.DataFrame([{"variant": v, "seed": 0, "test_acc": rng.random(), "test_acc_red": rng.random(),
                              "test_acc_blue": rng.random(), "n_red": 10, "n_blue": 190, "val_acc": 0.9,
                              "train_seconds": 1.0} for v in VARIANTS])  # fmt: skip
    fairness.to_csv(res / "fairness.csv", index=False)
    summary = pd.concat([summarise(fairness, c, by=("variant",)).set_index("variant").drop(columns="n_seeds")
                         for c in ("test_acc", "test_acc_red", "test_acc_blue")], axis=1).reset_index()  # fmt: skip
    summary.to_csv(res / "fairness_summary.csv", index=False)
    shortcut = pd.DataFrame([{"variant": v, "seed": seed, "design": "shortcut", "test_acc": rng.random(),
                              "test_acc_red": rng.random(), "test_acc_blue": rng.random(), "n_red": 100, "n_blue": 100,
                              "val_acc": 0.9, "train_seconds": 1.0, "test_acc_on_colour": 0.9 - 0.1 * seed,
                              "test_acc_off_colour": 0.2 + 0.1 * i, "n_on_colour": 20}
                             for i, v in enumerate(VARIANTS) for seed in (0, 1)])  # fmt: skip
    shortcut.to_csv(res / "fairness_shortcut.csv", index=False)
    (res / "broken.csv").write_bytes(b"\x00\xff not, a\n csv")
    return out


def test_experiment_pages_read_the_reports_results(app_env, report_folder, monkeypatch):
    from app import results_store

    monkeypatch.setattr(results_store, "RESULTS_ROOT", report_folder.parent)
    expectations = {
        "continuity": ("cont_ds", "cont_rank"),
        "probes": ("probe_curves",),
        "robustness": ("rob_bars", "rob_audit", "rob_eps"),
        "transfer": ("transfer_bars",),
        "fairness": ("fair_bars",),
        "saliency": ("sal_stability",),
        "embeddings": ("emb_report_ranks",),
    }
    for page, prefixes in expectations.items():
        at = open_app(page)
        if page not in ("saliency", "embeddings"):
            assert any(str(report_folder) in c.value for c in at.caption), page
            assert not any("Quick results" in c.value for c in at.caption), page
        for prefix in prefixes:
            assert chart_specs(at, prefix), (page, prefix)
        assert not [e.value for e in at.error], (page, [e.value for e in at.error])
    at = open_app("continuity")
    assert any("report mode **quick**" in c.value for c in at.caption)
    at = open_app("claims")
    claims = next(d.value for d in at.dataframe if "Claim" in d.value.columns)  # compact, key pinned
    assert claims.index.name == "Verdict" and len(claims) >= 5
    # text badges, no emoji; a quick report decides no claim
    assert set(claims.index) <= {
        "HOLDS",
        "PARTLY",
        "DOES NOT HOLD",
        "INCONCLUSIVE",
        "NOT MEASURED",
        "NOT DECIDED AT QUICK SCALE",
    }
    assert "NOT DECIDED AT QUICK SCALE" in set(claims.index)  # a quick report decides nothing...
    assert not set(claims.index) & {"HOLDS", "PARTLY", "DOES NOT HOLD", "INCONCLUSIVE"}  # ... either way
    assert {"Claim", "This zoo", "Rule"} <= set(claims.columns)
    assert any("-badge[" in m.value for m in at.markdown)
    assert any(e.label == "REPORT.md" for e in at.expander)
    assert any("broken.csv" in w.value for w in at.warning)  # an unreadable file is reported, not raised


def test_robustness_adversarial_examples(app_env):
    at = open_app("robustness")
    assert len(chart_specs(at, "rob_adv_")) == 4
    assert sum("max |Δpixel|" in c.value for c in at.caption) == 4
    at.select_slider(key="rob_eps_value").set_value(2)
    at.run()
    assert_clean(at)
    linf = [float(c.value.split("= ")[1].split("/")[0]) for c in at.caption if "max |Δpixel|" in c.value]
    assert len(linf) == 4 and max(linf) <= 2.0 + 1e-3


def test_robustness_already_wrong_and_variant_choice(app_env):
    """A clean prediction that already misses the true class is 'already wrong', never 'fooled'."""
    from app import saliency_cache, zoo_cache
    from models.data import load_dataset

    at = open_app("robustness")
    ds = load_dataset("digits", "test")
    handle = zoo_cache.open_zoo(app_env, "cpu")
    image, label = ds.images[0].numpy(), int(ds.labels[0])
    wrong = [int(saliency_cache.logits_of(handle.model(v), torch_batch(image)).argmax()) != label for v in VARIANTS]
    outcomes = [m.value for m in at.markdown if m.value.startswith("clean: ")]
    assert len(outcomes) == 4
    for is_wrong, text in zip(wrong, outcomes, strict=True):
        assert ("already wrong" in text) == is_wrong and (("fooled" in text or "held" in text) != is_wrong)
    assert any(wrong), "the untrained tiny zoo misclassifies image 0 somewhere: the check above is not vacuous"
    at.multiselect(key="rob_variants").set_value(["ADV", "ADV-mixed"])
    at.run()
    assert_clean(at)
    assert len(chart_specs(at, "rob_adv_")) == 2


def test_probe_examples_on_an_upload(app_env):
    at = open_app("probes")
    at.radio(key="probe_source").set_value("Upload an image")
    at.run()
    at.file_uploader(key="probe_upload").set_value(("p.png", png_bytes(photo()), "image/png"))
    at.run()
    assert_clean(at)
    assert len(chart_specs(at, "probe_ex_")) == 3


# ----------------------------------------------------------------------------- backend


def test_initial_zoo_path_precedence():
    from app import zoo_cache

    assert zoo_cache.initial_zoo_path(["--zoo", "/a"], {"SCL_ZOO": "/b"}) == "/a"
    assert zoo_cache.initial_zoo_path([], {"SCL_ZOO": "/b"}) == "/b"
    assert zoo_cache.initial_zoo_path(["-q", "tests"], {}) == str(zoo_cache.DEFAULT_ZOO)
    assert zoo_cache.initial_zoo_path(["--zoo"], {}) == str(zoo_cache.DEFAULT_ZOO)  # malformed: no crash


def test_saliency_concurrent_threads_equal_serial(tiny_zoo):
    """8 threads explain 8 different images through one shared zoo: results equal a serial run exactly."""
    from app import saliency_cache, zoo_cache
    from models.data import load_dataset

    handle = zoo_cache.open_zoo(tiny_zoo, "cpu")
    images = load_dataset("digits", "test").images[:8].numpy()
    settings = [("brightness", 1), ("contrast", 2), ("saturation", 3), ("hue", 4)] * 2
    methods = ("integrated_gradients", "gradcam", "lime")

    def compute(i: int) -> dict:
        kind, level = settings[i]
        return saliency_cache.saliency_grid(
            handle, images[i], kind, level, methods, lime_samples=50, with_original=i < 2
        )

    serial = [compute(i) for i in range(8)]
    results: list[dict | None] = [None] * 8
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            start.wait(timeout=60)
            results[i] = compute(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    for i in range(8):
        for variant in VARIANTS:
            a, b = serial[i][variant], results[i][variant]
            assert a["pred"] == b["pred"] and a["ds"] == b["ds"]
            np.testing.assert_array_equal(a["logits"], b["logits"])
            for method in methods:
                np.testing.assert_array_equal(a["maps"][method], b["maps"][method], err_msg=f"{i} {variant} {method}")
                if i < 2:
                    np.testing.assert_array_equal(a["original_maps"][method], b["original_maps"][method])
                assert a["extras"][method] == b["extras"][method]
    # different images really give different maps (the comparison above is not vacuous)
    assert not np.array_equal(serial[0]["standard"]["maps"]["gradcam"], serial[1]["standard"]["maps"]["gradcam"])
    for model in handle.zoo.models.values():
        assert not model.training
        assert all(p.grad is None for p in model.parameters())


def test_saliency_cache_makes_revisits_free(tiny_zoo):
    """The cached path (what the page uses) returns the same numbers and answers a revisit from the cache."""
    from app import saliency_cache, zoo_cache
    from models.data import load_dataset

    handle = zoo_cache.get_zoo(tiny_zoo, "cpu")
    image = load_dataset("digits", "test").images[5].numpy()
    fresh = saliency_cache.saliency_grid(handle, image, "contrast", 2, cache=False)
    first = saliency_cache.saliency_grid(handle, image, "contrast", 2, cache=True)
    t0 = time.perf_counter()
    again = saliency_cache.saliency_grid(handle, image, "contrast", 2, cache=True)
    assert time.perf_counter() - t0 < 0.5
    for v in VARIANTS:
        ig = "integrated_gradients"
        np.testing.assert_array_equal(fresh[v]["maps"][ig], again[v]["maps"][ig])
        assert first[v]["ds"] == again[v]["ds"] == fresh[v]["ds"]


# ----------------------------------------------------------------------------- figures (pure)


def test_figures_are_pure_functions_of_arrays():
    from app import figures, map_figures

    rng = np.random.default_rng(0)
    chw = rng.random((3, 8, 8)).astype(np.float32)
    hwc = figures.to_uint8_hwc(chw)
    assert hwc.shape == (8, 8, 3) and hwc.dtype == np.uint8
    assert np.array_equal(figures.to_uint8_hwc(hwc), hwc)
    signed, scale = figures.normalise_map(np.array([[-2.0, 1.0], [0.0, 0.5]]), signed=True)
    assert scale == 2.0 and signed.min() == -1.0 and signed.max() == 0.5
    positive, _ = figures.normalise_map(np.array([[-2.0, 1.0], [0.0, 0.5]]), signed=False)
    assert positive.min() == 0.0 and positive.max() == 1.0
    flat, scale = figures.normalise_map(np.zeros((2, 2)), signed=True)
    assert scale == 0.0 and not flat.any()
    maps = {"integrated_gradients": rng.normal(size=(8, 8)), "gradcam": rng.random((8, 8))}
    fig = map_figures.saliency_row(chw, chw, maps)
    ig, cam = fig.data[2], fig.data[3]
    assert ig.colorscale != cam.colorscale and ig.zmid == 0 and cam.zmin == 0
    df = pd.DataFrame({"variant": ["a", "a", "b", "b"], "kind": ["hue"] * 4, "level": [1, 2, 1, 2],
                       "ds_mean": [0.1, 0.2, 0.0, 0.3]})  # fmt: skip
    assert len(figures.ds_curves(df).data) == 2
    assert len(figures.ds_curves(df, log_y=True).data[1].x) == 1  # DS = 0 is not drawn on a log axis


def test_column_labels_and_the_percent_rule():
    from app.tables import column_label, display_table, is_accuracy

    assert column_label("test_clean_acc") == "Clean accuracy (test) (%)"
    assert column_label("test_acc_mean") == "Accuracy (test), mean (%)"
    assert column_label("n_seeds") == "Seeds" and column_label("n_seeds_test_acc") == "Seeds, accuracy (test)"
    assert column_label("some_new_thing") == "Some new thing"
    for col in ("test_acc", "accuracy", "test_pgd10_acc", "test_acc_sd", "val_clean_acc"):
        assert is_accuracy(col), col
    for col in ("n_seeds", "n_seeds_test_acc", "ds_level1_sum", "rank", "alpha", "train_seconds"):
        assert not is_accuracy(col), col  # "n_seeds..." once showed as 300.0%
    df = pd.DataFrame({"variant": ["standard"], "test_acc_mean": [0.5], "n_seeds_test_acc": [3], "ds_mean": [0.25]})
    shown = display_table(df)
    assert list(shown.columns) == ["Variant", "Accuracy (test), mean (%)", "Seeds, accuracy (test)", "DS (mean)"]
    assert shown.iloc[0].tolist() == ["standard", 50.0, 3, 0.25]
    both = display_table(pd.DataFrame({"level": [1], "level_label": ["a"]}))
    assert both.columns.is_unique


def test_log_axes_have_full_tick_labels_and_variants_one_colour():
    from app import figures
    from models.objectives import variant_colour

    df = pd.DataFrame({"variant": ["standard"] * 4 + ["C"] * 4, "kind": ["hue"] * 8, "level": [1, 2, 3, 4] * 2,
                       "ds_mean": [0.02, 0.3, 4.0, 50.0, 0.001, 0.01, 0.1, 1.0]})  # fmt: skip
    fig = figures.ds_curves(df, log_y=True)
    axis = fig.layout.yaxis
    assert axis.type == "log"
    assert list(axis.ticktext) == ["0.001", "0.01", "0.1", "1", "10", "100"]
    assert list(axis.tickvals) == pytest.approx([1e-3, 1e-2, 1e-1, 1, 10, 100])
    assert axis.range[0] <= -3 and axis.range[1] >= 2  # every value inside the labelled decades
    colours = {t.name: t.line.color for t in fig.data}
    assert colours == {"standard": variant_colour("standard"), "C": variant_colour("C")}
    bars = figures.metric_bars({"standard": 11.4, "C": 0.52, "ADV-mixed": 3.0}, log_y=True)
    assert all(str(t) in ("0.01", "0.1", "1", "10", "100") for t in bars.layout.yaxis.ticktext)
    assert list(bars.data[0].marker.color) == [variant_colour(v) for v in ("standard", "C", "ADV-mixed")]
    wide = figures.log_ticks([1e-7, 1e5])
    assert len(wide["ticktext"]) <= 9 and all(t.startswith("1e") or t.replace(".", "").isdigit()
                                              for t in wide["ticktext"])  # fmt: skip


def test_line_panels_dash_per_method_percent_and_categorical_alpha():
    from app import figures

    df = pd.DataFrame({"variant": ["standard", "standard", "C", "C"] * 2, "level": [1, 2] * 4,
                       "method": ["gradcam"] * 4 + ["integrated_gradients"] * 4,
                       "spearman": np.linspace(0, 1, 8)})  # fmt: skip
    fig = figures.line_panels(df, "level", "spearman", dash="method")
    dashes = {t.name: t.line.dash for t in fig.data}
    assert dashes["standard, GradCAM"] == dashes["C, GradCAM"] != dashes["C, Integrated Gradients"]
    assert fig.data[0].line.color == fig.data[1].line.color  # one colour per variant, whatever the method
    alpha = pd.DataFrame({"alpha": [0.0, 0.01, 0.1, 1.0], "test_acc": [0.9, 0.89, 0.85, 0.7], "series": "C"})
    alpha["α"] = [f"{a:g}" for a in alpha["alpha"]]
    fig = figures.line_panels(alpha, "alpha", "test_acc", colour="series", x_labels="α", percent=True)
    assert fig.layout.xaxis.type == "category" and list(fig.data[0].x) == ["0", "0.01", "0.1", "1"]
    assert list(fig.data[0].y) == pytest.approx([90, 89, 85, 70]) and "(%)" in fig.layout.yaxis.title.text


def test_selected_rows_come_from_the_figure_not_the_browser():
    """Plotly 7 sends customdata as typed arrays; the selection is resolved by curve number and point index."""
    from app import embedding_figures

    df = pd.DataFrame({"x": [0.0, 1, 2, 3, 4], "y": [0.0, 1, 0, 1, 0], "row": [10, 11, 12, 13, 14],
                       "role": ["original", "perturbed", "perturbed", "same_class", "same_class"],
                       "kind": ["none", "hue", "hue", "none", "none"], "level": [0, 1, 2, 0, 0],
                       "dataset_index": [5, 5, 5, 6, 7], "anchor": ["#5", "#5", "#5", "", ""]})  # fmt: skip
    fig = embedding_figures.embedding_scatter(df)
    names = [t.name for t in fig.data]
    points = [
        {"curve_number": names.index("hue"), "point_index": 1, "customdata": {"dtype": "i8", "bdata": "AA=="}},
        {"curve_number": names.index("same class"), "point_number": 0},
        {"curve_number": 99, "point_index": 0},
        "not a point",
    ]
    assert embedding_figures.selected_rows(fig, points) == [12, 13]
    overlay = df.assign(row=df["row"] + 100)
    gl = embedding_figures.whole_set_scatter(df.assign(pred_name="a", true_name="b"), overlay=overlay)
    assert {t.type for t in gl.data} == {"scattergl"}
    overlay_curve = [t.name for t in gl.data].index("hue")
    assert embedding_figures.selected_rows(gl, [{"curve_number": overlay_curve, "point_index": 0}]) == [111]


def test_result_pages_read_right(app_env, report_folder, monkeypatch):
    """Human column names, % only for accuracies, the paper's four by default, α on a categorical axis."""
    from app import results_store

    monkeypatch.setattr(results_store, "RESULTS_ROOT", report_folder.parent)
    alpha = pd.DataFrame({"alpha": [0.0, 0.0, 0.1, 1.0], "seed": [0, 1, 0, 0], "test_clean_acc": [0.9, 0.88, 0.85, 0.7],
                          "ds_level1_sum": [12.0, 11.0, 5.0, 0.5]})  # fmt: skip
    alpha.to_csv(report_folder / "results" / "alpha_sweep.csv", index=False)
    at = open_app("continuity")
    spec = chart_specs(at, "cont_alpha_test_clean_acc")[0]
    assert spec["layout"]["xaxis"]["type"] == "category" and spec["data"][0]["x"] == ["0", "0.1", "1"]
    assert array_values(spec["data"][0]["y"])[0] == pytest.approx(89.0)  # mean over seeds, in %
    ds_spec = chart_specs(at, "cont_ds")[0]
    assert ds_spec["layout"]["yaxis"]["type"] == "log" and "ticktext" in ds_spec["layout"]["yaxis"]
    at = open_app("fairness")
    summary = next(d.value for d in at.dataframe if "Accuracy (test), mean (%)" in d.value.columns)
    assert "Seeds, accuracy (test)" not in summary.columns or summary["Seeds, accuracy (test)"].max() < 10
    runs = next(d.value for d in at.dataframe if "Accuracy, red background (test) (%)" in d.value.columns)
    assert runs["Red images"].max() == 10  # a count stays a count
    assert runs["Accuracy, red background (test) (%)"].max() <= 100 and runs["Accuracy (test) (%)"].max() > 1
    assert len(runs) == len(VARIANTS)  # the paper's design: its one seed per variant, not the shortcut design's runs
    # the shortcut design has its own bars: per variant, the mean over its two seeds on and off its class's colour
    bars = chart_specs(at, "fair_shortcut_bars")[0]
    assert [t["name"] for t in bars["data"]] == list(VARIANTS)
    for i, trace in enumerate(bars["data"]):
        on, off = array_values(trace["y"])[1:3]
        assert on == pytest.approx(85.0) and off == pytest.approx(100 * (0.2 + 0.1 * i))
    assert any(e.label == "Every training run (shortcut design)" for e in at.expander)
    at = open_app("transfer")
    bars = chart_specs(at, "transfer_bars")[0]
    assert {t["name"] for t in bars["data"]} == set(VARIANTS)
    at = open_app("probes")
    assert {t["name"] for t in chart_specs(at, "probe_curves")[0]["data"]} == set(VARIANTS)


def test_zoo_page_offers_the_controls(app_env):
    at = open_app()
    choice = at.multiselect(key="zoo_variants")
    assert choice.value == VARIANTS and "ADV-mixed" in choice.options
    choice.set_value([*VARIANTS, "ADV-mixed"])
    at.run()
    assert_clean(at)
    assert [m.label for m in at.metric].count("Clean accuracy") == 5
    table = next(d.value for d in at.dataframe if "Variant" in d.value.columns)
    assert "Clean accuracy (test) (%)" in table.columns and table["Clean accuracy (test) (%)"].max() == 10.0
