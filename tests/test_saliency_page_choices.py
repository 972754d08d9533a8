"""The saliency page's choices, difference view, links and exports, driven with AppTest on the tiny zoo (issue 24:
target class, IG baseline, GradCAM layer; issue 22: difference maps 4a, export and share 6)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.test_app import (  # noqa: F401
    ENTRY,
    TIMEOUT,
    AppTest,
    app_env,
    assert_clean,
    open_app,
    saliency_rows_html,
    unescape,
)

IG = "integrated_gradients"


def link_of(at) -> dict[str, str]:
    """The page's query parameters as it wrote them (one value each)."""
    return {k: v if isinstance(v, str) else v[-1] for k, v in at.query_params.items()}


@pytest.fixture
def page_env(app_env, monkeypatch):  # noqa: F811  (the fixture imported above)
    """The tiny zoo and a fresh job runner (no map computed for another test's settings is reused)."""
    from app import jobs

    jobs.reset_runner()
    yield app_env
    jobs.reset_runner()


class Calls:
    """Wraps ``analysis.per_image.level_maps``: records (method, target, options) of every map computed."""

    def __init__(self, monkeypatch) -> None:
        import analysis.per_image as per_image

        self.original = per_image.level_maps
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int, dict]] = []
        monkeypatch.setattr(per_image, "level_maps", self)

    def __call__(self, model, image, kind, method, target, levels, **options):
        with self.lock:
            self.seen.append((method, int(target), dict(options), tuple(levels), kind, image))
        return self.original(model, image, kind, method, target, levels, **options)

    def of(self, method: str) -> list[tuple]:
        with self.lock:
            return [c for c in self.seen if c[0] == method]


def test_target_baseline_and_layer_reach_the_attribution_call(page_env, monkeypatch):
    from analysis.attribution_baselines import baseline_images
    from analysis.per_image import level_batch
    from app import zoo_cache

    handle = zoo_cache.get_zoo(str(page_env), "cpu")
    label = int(zoo_cache.get_dataset(handle.dataset_name, "test", None, handle.image_size).labels[0])
    chosen = (label + 1) % 10
    calls = Calls(monkeypatch)
    at = open_app("saliency")
    assert at.selectbox(key="sal_target").value == "predicted" and at.selectbox(key="sal_baseline").value == "black"
    layers = at.selectbox(key="sal_layer")
    assert layers.value == "auto" and layers.options[0] == "default: layer4 (4x4)"  # the default, named
    assert {"layer3 (8x8)", "layer4 (4x4)"} <= set(layers.options)
    first = calls.of(IG)
    assert first and all("baseline" not in c[2] for c in first)  # black by default: IG's own (pixels 0)
    assert all("baseline black" in unescape(c.value) for c in at.caption if c.value.startswith("Computed for"))
    assert calls.of("gradcam") and all("layer" not in c[2] for c in calls.of("gradcam"))  # gradcam's own default

    calls.seen.clear()
    at.selectbox(key="sal_target").set_value(f"class:{chosen}")
    at.selectbox(key="sal_baseline").set_value("blurred")
    at.selectbox(key="sal_layer").set_value("layer3")
    at.run()
    assert_clean(at)
    # (maps of the earlier settings may still be finishing in the background: only the new target's are checked)
    ig, cam = [c for c in calls.of(IG) if c[1] == chosen], [c for c in calls.of("gradcam") if c[1] == chosen]
    assert ig and cam
    for _, _, options, levels, kind, image in ig:  # the blurred copy of the very image explained, at its level
        assert torch.allclose(options["baseline"], baseline_images("blurred", level_batch(image, kind, levels)))
    assert all(c[2]["layer"] == "layer3" for c in cam)
    captions = [unescape(c.value) for c in at.caption if c.value.startswith("Computed for")]
    assert len(captions) == 4 and all(f"class {chosen} (chosen)" in c and "baseline blurred" in c
                                      and "layer layer3" in c for c in captions)  # fmt: skip
    assert len(saliency_rows_html(at)) == 4

    calls.seen.clear()
    at.selectbox(key="sal_target").set_value("true")
    at.run()
    assert_clean(at)
    targets = {c[1] for c in calls.of(IG)}
    assert label in targets and targets <= {label, chosen}
    captions = [unescape(c.value) for c in at.caption if c.value.startswith("Computed for")]
    assert len(captions) == 4 and all(f"class {label} (the true class)" in c for c in captions)


def test_difference_toggle_shows_maps_and_every_pair_correlation(page_env):
    from analysis import per_image
    from analysis.map_comparison import spearman
    from app import zoo_cache

    at = open_app("saliency")
    assert not [h for h in at.get("html") if "scl-difference" in h.value]
    at.toggle(key="sal_diff").set_value(True)
    at.run()
    assert_clean(at)
    at.selectbox(key="sal_diff_ref").set_value("C")
    at.run()
    assert_clean(at)
    variants = ["standard", "C", "ADV", "ADV+C"]
    rows = [h.value for h in at.get("html") if "scl-difference" in h.value]
    assert len(rows) == 2 and all("C (reference)" in r and "standard − C" in r for r in rows)  # IG and GradCAM
    tables = [d.value for d in at.dataframe if list(d.value.index) == variants]
    assert len(tables) == 2
    # GradCAM's maps recomputed here: the table is Spearman's rho between every pair of variants' maps
    handle = zoo_cache.get_zoo(str(page_env), "cpu")
    ds = zoo_cache.get_dataset(handle.dataset_name, "test", None, handle.image_size)
    image = ds.images[0].numpy().astype(np.float32)
    maps = {}
    for v in variants:
        model = handle.model(v)
        target = int(per_image.level_predictions(model, image, "brightness")["pred"][0])
        maps[v] = per_image.level_maps(model, image, "brightness", "gradcam", target, (1,))["maps"][0]
    cam = tables[1]
    for a in variants:
        for b in variants:
            assert cam.loc[a, b] == pytest.approx(spearman(maps[a], maps[b]), abs=1e-3)
    assert link_of(at)["diff"] == "C"


def test_a_link_opens_its_view(page_env):
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    for key, value in {"kind": "hue", "level": "3", "image": "5", "variants": "standard,ADV+C",
                       "methods": "gradcam,saliency", "target": "class:2", "layer": "layer3",
                       "baseline": "purple"}.items():  # fmt: skip
        at.query_params[key] = value
    at.run()
    at.switch_page("views/saliency.py").run()
    assert_clean(at)
    assert at.selectbox(key="sal_kind").value == "hue" and at.slider(key="sal_level").value == 3
    assert at.slider(key="sal_example").value == 5 and at.multiselect(key="sal_variants").value == ["standard", "ADV+C"]
    assert at.checkbox(key="sal_method_gradcam").value and at.checkbox(key="sal_method_saliency").value
    assert not at.checkbox(key=f"sal_method_{IG}").value
    assert at.selectbox(key="sal_target").value == "class:2" and at.selectbox(key="sal_layer").value == "layer3"
    warnings = [unescape(w.value) for w in at.warning]
    assert any("baseline='purple' was ignored" in w for w in warnings)  # one line for the bad value, the rest opened
    captions = [unescape(c.value) for c in at.caption if c.value.startswith("Computed for")]
    assert len(captions) == 2 and all(c.startswith("Computed for: test image #5 · hue") for c in captions)
    rows = saliency_rows_html(at)
    assert len(rows) == 2 and all('alt="Saliency"' in r and 'alt="GradCAM"' in r for r in rows)
    written = link_of(at)
    assert written["kind"] == "hue" and written["level"] == "3" and written["image"] == "5"
    assert written["baseline"] == "black" and written["zoo"] == "tiny" and len(written["manifest"]) == 12


def test_the_link_follows_the_level_and_the_difference_view(page_env):
    """The level slider and the difference toggle sit in the rows' fragment: their callbacks write the link, so it
    names the level on screen (AppTest reruns the whole script; tests/test_saliency_browser.py checks the fragment-
    only rerun in a browser). The link then reopens that view in a new session."""
    at = open_app("saliency")
    assert link_of(at)["level"] == "1" and "diff" not in link_of(at)
    at.slider(key="sal_level").set_value(3).run()
    assert_clean(at)
    assert link_of(at)["level"] == "3"
    at.toggle(key="sal_diff").set_value(True).run()
    assert_clean(at)
    assert link_of(at)["diff"] == "standard"  # the reference shown by default: the first variant
    at.selectbox(key="sal_diff_ref").set_value("ADV").run()
    at.slider(key="sal_level").set_value(0).run()
    assert_clean(at)
    link = link_of(at)
    assert link["level"] == "0" and link["diff"] == "ADV"
    again = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)  # the copied link, in a new session
    again.query_params.update(link)
    again.run()
    again.switch_page("views/saliency.py").run()
    assert_clean(again)
    assert again.slider(key="sal_level").value == 0 and again.toggle(key="sal_diff").value
    assert again.selectbox(key="sal_diff_ref").value == "ADV" and link_of(again) == link


class Deferred:
    """Records the callables of deferred download buttons (``st.download_button(data=callable)``) by file name."""

    def __init__(self, monkeypatch) -> None:
        from streamlit.runtime.media_file_manager import MediaFileManager

        self.data: dict[str, object] = {}
        original = MediaFileManager.add_deferred

        def add(mgr, data_callable, mimetype, coordinates, file_name=None, **kw):
            self.data[file_name] = data_callable
            return original(mgr, data_callable, mimetype, coordinates, file_name, **kw)

        monkeypatch.setattr(MediaFileManager, "add_deferred", add)


def test_every_row_exports_png_and_csv_with_the_views_provenance(page_env, monkeypatch):
    files = Deferred(monkeypatch)
    at = open_app("saliency")
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["PNG", "CSV"] * 4
    png_name, csv_name = "saliency-ADVplusC-brightness-level1.png", "saliency-ADVplusC-brightness-level1.csv"
    assert {png_name, csv_name} <= set(files.data)
    link = link_of(at)
    with Image.open(io.BytesIO(files.data[png_name]())) as png:
        assert png.format == "PNG" and png.width > 4 * 100
        text = dict(png.text)
    assert text["scl.variant"] == "ADV+C" and all(text[f"scl.{k}"] == v for k, v in link.items())
    csv = files.data[csv_name]()
    head = {line[2:].split(": ", 1)[0]: line[2:].split(": ", 1)[1] for line in csv.splitlines() if line[:1] == "#"}
    assert head["scl.kind"] == "brightness" and head["scl.image"] == "0" and float(head["row.ds"]) >= 0
    table = pd.read_csv(io.StringIO(csv), comment="#")
    assert set(table.method) == {IG, "gradcam"} and len(table) == 2 * 32 * 32  # every pixel of both maps
    assert set(table.image) == {"perturbed"}  # the original's maps only when they are shown ("Also show...")


def test_a_link_to_an_upload_asks_for_the_file_and_checks_its_hash(page_env):
    from app.images import image_key
    from app.uploads import validate_image_bytes
    from tests.test_app import photo, png_bytes

    data = png_bytes(photo())
    wanted = image_key(validate_image_bytes(data, 32).pixels)
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.query_params["upload"] = wanted
    at.query_params["kind"] = "contrast"
    at.run()
    at.switch_page("views/saliency.py").run()
    assert_clean(at)
    assert at.radio(key="sal_source").value == "Upload an image" and at.selectbox(key="sal_kind").value == "contrast"
    assert any("upload the same file" in c.value and wanted[:12] in c.value for c in at.caption)
    at.file_uploader(key="sal_upload").set_value(("photo.png", data, "image/png"))
    at.run()
    assert_clean(at)
    assert any("This upload is the image the link was made for" in c.value for c in at.caption)
    assert link_of(at)["upload"] == wanted and "image" not in link_of(at)
    other = png_bytes(np.ascontiguousarray(photo()[::-1]))
    at.file_uploader(key="sal_upload").set_value(("other.png", other, "image/png"))
    at.run()
    assert_clean(at)
    assert any("not the image the link was made for" in w.value for w in at.warning)
