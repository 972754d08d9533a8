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
def app_env(tiny_zoo, monkeypatch, tmp_path):
    """SCL_ZOO at the tiny zoo; results looked up in an empty temporary folder."""
    from app import backend

    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    monkeypatch.setattr(backend, "RESULTS_ROOT", tmp_path / "results")
    monkeypatch.setattr(backend, "QUICK_SIZES", {"continuity": 24, "probes": 24, "robustness": 8})
    monkeypatch.setattr(backend, "QUICK_SETTINGS", {
        "neighbourhood_rank": {"n_anchors": 8},
        "eps_sweep": {"eps_values": (0.0, 8 / 255), "steps": 3},
        "attack_audit": {"steps_list": (2, 4), "restarts": 2, "losses": ("ce", "margin")},
    })  # fmt: skip
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


def array_length(value) -> int:
    """Length of a plotly JSON array: a list, or a typed array {"dtype", "bdata"[, "shape"]}."""
    if isinstance(value, dict):
        if "shape" in value:
            return int(str(value["shape"]).split(",")[0])
        import base64

        return len(base64.b64decode(value["bdata"])) // np.dtype(value["dtype"]).itemsize
    return len(value)


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


def test_saliency_grid_follows_kind_level_and_methods(app_env):
    at = open_app("saliency")
    specs = chart_specs(at, "sal_fig_")
    assert len(specs) == 4  # one row per variant
    for spec in specs:
        kinds = [t["type"] for t in spec["data"]]
        assert kinds == ["image", "image", "heatmap", "heatmap"]  # original, perturbed, IG, GradCAM
    titles = [a["text"] for a in specs[0]["layout"]["annotations"]]
    assert any(t.startswith("Integrated Gradients (δ =") for t in titles) and "GradCAM" in titles
    assert sum(c.value.startswith("IG completeness δ") for c in at.caption) == 4
    ds_before = [m.value for m in at.markdown if m.value.startswith("DS")]
    assert len(ds_before) == 4

    at.selectbox(key="sal_kind").set_value("hue")
    at.slider(key="sal_level").set_value(3)
    at.checkbox(key="sal_lime").check()
    at.select_slider(key="sal_lime_n").set_value(250)
    at.checkbox(key="sal_orig").check()
    at.run()
    assert_clean(at)
    assert any("hue +0.3" in c.value for c in at.caption)
    specs = chart_specs(at, "sal_fig_")
    assert len(specs) == 4
    for spec in specs:
        assert [t["type"] for t in spec["data"]].count("heatmap") == 6  # 3 methods x (perturbed, original)
        assert any("LIME" in a["text"] for a in spec["layout"]["annotations"])
    assert sum("vs original" in c.value for c in at.caption) >= 4  # map stability beside each row
    ds_after = [m.value for m in at.markdown if m.value.startswith("DS")]
    assert ds_after != ds_before  # hue at level 3 moves the logits differently from brightness at level 1

    at.slider(key="sal_level").set_value(0)
    at.checkbox(key="sal_lime").uncheck()
    at.run()
    assert_clean(at)
    assert all(m.value.endswith("0") for m in at.markdown if m.value.startswith("DS"))  # level 0: DS = 0


def test_saliency_gallery_class_filter(app_env):
    at = open_app("saliency")
    at.selectbox(key="sal_class").set_value("7")
    at.slider(key="sal_example").set_value(3)
    at.run()
    assert_clean(at)
    assert any("true class **7**" in m.value for m in at.markdown)
    assert len(chart_specs(at, "sal_fig_")) == 4


def test_saliency_upload_good_and_bad(app_env):
    at = open_app("saliency")
    at.radio(key="sal_source").set_value("Upload an image")
    at.run()
    assert_clean(at)
    assert at.file_uploader, "the installed Streamlit's AppTest should expose file_uploader"
    at.file_uploader(key="sal_upload").set_value(("photo.png", png_bytes(photo()), "image/png"))
    at.run()
    assert_clean(at)
    assert len(chart_specs(at, "sal_fig_")) == 4
    assert any("PNG 128x96" in c.value and "RGB 32x32" in c.value for c in at.caption)

    at.file_uploader(key="sal_upload").set_value(("notes.png", b"this is text, not a picture", "image/png"))
    at.run()
    assert_clean(at)
    assert any("was not accepted" in e.value and "not an image" in e.value for e in at.error)
    assert not chart_specs(at, "sal_fig_")  # no grid for a refused file

    at.file_uploader(key="sal_upload").set_value(("empty.jpg", b"", "image/jpeg"))
    at.run()
    assert_clean(at)
    assert any("empty" in e.value for e in at.error)


def test_embeddings_projections(app_env):
    """PCA, t-SNE and UMAP scatter plots per variant, with the neighbour rank beside each (UMAP compiles once)."""
    at = open_app("embeddings")
    at.slider(key="emb_n").set_value(40)
    previous = None
    for method in ("pca", "tsne", "umap"):
        at.radio(key="emb_method").set_value(method)
        at.run()
        assert_clean(at)
        specs = chart_specs(at, "emb_plot_")
        assert len(specs) == 4, method
        for spec in specs:
            names = [t.get("name") for t in spec["data"]]
            assert "original" in names and "same class" in names and "hue" in names
            sizes = {t["name"]: array_length(t["x"]) for t in spec["data"]}
            assert sizes.pop("original") == 1 and 0 < sizes.pop("same class") <= 40
            assert sizes == {kind: 4 for kind in ("brightness", "contrast", "saturation", "hue")}  # 4 levels each
        assert specs != previous, method  # a different projection draws different coordinates
        previous = specs
        assert len(chart_specs(at, "emb_rank_")) == 4  # the neighbour rank statistic beside each plot
        assert sum(m.label == "Median rank L1" for m in at.metric) == 4


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

    out = tmp_path_factory.mktemp("results") / "tiny"
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
    (res / "broken.csv").write_bytes(b"\x00\xff not, a\n csv")
    return out


def test_experiment_pages_read_the_reports_results(app_env, report_folder, monkeypatch):
    from app import backend

    monkeypatch.setattr(backend, "RESULTS_ROOT", report_folder.parent)
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
    frames = [d.value for d in at.dataframe]
    claims = next(f for f in frames if "verdict" in f.columns)
    assert set(claims.iloc[:, 0]) <= {"✅", "🟡", "❌", "⏳"} and len(claims) >= 5
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
    from app import backend

    assert backend.initial_zoo_path(["--zoo", "/a"], {"SCL_ZOO": "/b"}) == "/a"
    assert backend.initial_zoo_path([], {"SCL_ZOO": "/b"}) == "/b"
    assert backend.initial_zoo_path(["-q", "tests"], {}) == str(backend.DEFAULT_ZOO)
    assert backend.initial_zoo_path(["--zoo"], {}) == str(backend.DEFAULT_ZOO)  # malformed: no crash


def test_saliency_concurrent_threads_equal_serial(tiny_zoo):
    """8 threads explain 8 different images through one shared zoo: results equal a serial run exactly."""
    from app import backend
    from models.data import load_dataset

    handle = backend.open_zoo(tiny_zoo, "cpu")
    images = load_dataset("digits", "test").images[:8].numpy()
    settings = [("brightness", 1), ("contrast", 2), ("saturation", 3), ("hue", 4)] * 2
    methods = ("integrated_gradients", "gradcam", "lime")

    def compute(i: int) -> dict:
        kind, level = settings[i]
        return backend.saliency_grid(handle, images[i], kind, level, methods, lime_samples=50, with_original=i < 2)

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
    from app import backend
    from models.data import load_dataset

    handle = backend.get_zoo(tiny_zoo, "cpu")
    image = load_dataset("digits", "test").images[5].numpy()
    fresh = backend.saliency_grid(handle, image, "contrast", 2, cache=False)
    first = backend.saliency_grid(handle, image, "contrast", 2, cache=True)
    t0 = time.perf_counter()
    again = backend.saliency_grid(handle, image, "contrast", 2, cache=True)
    assert time.perf_counter() - t0 < 0.5
    for v in VARIANTS:
        ig = "integrated_gradients"
        np.testing.assert_array_equal(fresh[v]["maps"][ig], again[v]["maps"][ig])
        assert first[v]["ds"] == again[v]["ds"] == fresh[v]["ds"]


# ----------------------------------------------------------------------------- figures (pure)


def test_figures_are_pure_functions_of_arrays():
    from app import figures

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
    fig = figures.saliency_row(chw, chw, maps)
    ig, cam = fig.data[2], fig.data[3]
    assert ig.colorscale != cam.colorscale and ig.zmid == 0 and cam.zmin == 0
    df = pd.DataFrame({"variant": ["a", "a", "b", "b"], "kind": ["hue"] * 4, "level": [1, 2, 1, 2],
                       "ds_mean": [0.1, 0.2, 0.0, 0.3]})  # fmt: skip
    assert len(figures.ds_curves(df).data) == 2
    assert len(figures.ds_curves(df, log_y=True).data[1].x) == 1  # DS = 0 is not drawn on a log axis
