"""What a reader of the dashboard's result pages sees (issue 24, points 3-5): the claims page with its figures and
a zip to keep, compact tables and p-values that never read 0.0000, warnings only where something is wrong, one
colour scheme that never confuses a variant with a perturbation or a class, and gallery filters backed by the
report's per-image results. Pages are driven with Streamlit's AppTest against the tiny zoo and the committed
report of the shipped zoo (assets/results/default)."""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_app import ENTRY, TIMEOUT, AppTest, assert_clean, chart_specs

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "assets" / "results" / "default"
FIGURE_LINK = re.compile(r"^!\[[^\]]*\]\((figures/[^)]+)\)$", re.M)


def _point_results_at(monkeypatch, root: Path) -> None:
    """Results looked up under ``root`` (every app module that holds the setting)."""
    import importlib

    for name in ("app.results_store", "app.backend"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "RESULTS_ROOT"):
            monkeypatch.setattr(module, "RESULTS_ROOT", root)


@pytest.fixture
def committed_env(tiny_zoo, monkeypatch, tmp_path, cache_dir):
    """The tiny zoo with the committed report of the shipped zoo as its results (a copy, found by the zoo
    folder's name and by its manifest's)."""
    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    for name in {tiny_zoo.name, "tiny"}:
        shutil.copytree(COMMITTED, tmp_path / "results" / name)
    _point_results_at(monkeypatch, tmp_path / "results")
    return tmp_path / "results" / tiny_zoo.name


@pytest.fixture
def downloads(monkeypatch):
    """Every file a run hands to Streamlit's media storage (download buttons, images): name -> bytes."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            seen[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    if page != "zoo":
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
    return at


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def column_configs(at: AppTest, column: str) -> dict:
    """The column configuration Streamlit sends for the dataframe that has ``column``."""
    for d in at.dataframe:
        if column in d.value.columns:
            return json.loads(d.proto.columns or "{}")
    raise AssertionError(column)


# ----------------------------------------------------------------------------- claims


def test_claims_page_shows_the_reports_figures_and_downloads_them(committed_env, downloads):
    at = open_page("claims")
    report = (committed_env / "REPORT.md").read_text()
    linked = FIGURE_LINK.findall(report)
    assert sorted(linked) == sorted(f"figures/{p.name}" for p in (committed_env / "figures").glob("*.png"))  # each once
    images = list(at.get("image"))
    assert len(images) == len(linked)  # every figure of REPORT.md drawn in its place, none broken
    captions = [c for img in images for c in (i.caption for i in img.proto.imgs)]
    assert sorted(captions) == sorted(Path(p).stem for p in linked)
    labels = [b.proto.label for b in at.get("download_button")]
    assert any("zip" in label for label in labels), labels
    name = next(n for n in downloads if n.endswith(".zip"))
    with zipfile.ZipFile(io.BytesIO(downloads[name])) as zf:
        names = set(zf.namelist())
        assert {"REPORT.md", "claims.csv", "claim_tests.csv"} <= names
        assert set(linked) <= names  # REPORT.md's links resolve inside the unpacked zip
        assert zf.read(linked[0]) == (committed_env / linked[0]).read_bytes()
    embedded = downloads["REPORT.md"].decode()
    assert embedded.count("](data:image/png;base64,") == len(linked) and "](figures/" not in embedded


def test_claims_tables_are_compact_with_seeds_and_p_in_scientific_notation(committed_env):
    from analysis.formatting import p_number

    at = open_page("claims")
    claims = frame_with(at, "Claim")
    assert claims.index.name == "Verdict" and len(claims) == len(pd.read_csv(committed_env / "claims.csv"))
    assert {"Key", "Images", "Seeds"} <= set(claims.columns) and "n" not in claims.columns
    raw = pd.read_csv(committed_env / "claims.csv").set_index("key")
    by_key = claims.set_index("Key")
    for key in raw.index:  # "1 seed x 200 images", "3 seed(s)", "1000 images": seeds under Seeds, images under Images
        n = str(raw.loc[key, "n"])
        seeds, images = re.findall(r"(\d+) seed", n), re.findall(r"(\d+) images?", n)
        assert by_key.loc[key, "Seeds"] == (str(max(map(int, seeds))) if seeds else "–"), key
        assert by_key.loc[key, "Images"] == (str(max(map(int, images))) if images else "–"), key
    assert column_configs(at, "Claim")["Key"].get("pinned") is True  # the key stays visible when scrolling
    tests = pd.read_csv(committed_env / "claim_tests.csv")
    comparisons = frame_with(at, "Holm p")
    assert len(comparisons) == len(tests)
    smallest = tests.loc[tests["p"].idxmin()]
    assert smallest["p"] < 1e-40
    row = comparisons[(comparisons["Key"] == smallest["key"]) & (comparisons["Comparison"] == smallest["comparison"])]
    assert row["p"].iloc[0] == p_number(smallest["p"]) and "e-" in row["p"].iloc[0]
    assert not comparisons["p"].isin(["0.0000", "0.000", "0"]).any()
    assert {"Effect [95% CI]", "Images", "Seeds", "Verdict"} <= set(comparisons.columns)
    configs = column_configs(at, "Holm p")
    first = ["Key", "Comparison", "Effect [95% CI]", "p", "Holm p", "Images", "Seeds", "Verdict"]
    assert list(comparisons.columns[: len(first)]) == first
    assert sum(configs[c]["width"] for c in first) <= 780  # every number fits in the expander at 1280 px
    at.multiselect(key="claims_filter_keys").set_value(["continuity"]).run()
    at.text_input(key="claims_filter_text").set_value("jitter").run()
    assert_clean(at)
    shown = frame_with(at, "Holm p")
    expected = tests[(tests["key"] == "continuity") & tests["comparison"].str.contains("jitter")]
    assert len(shown) == len(expected) >= 1 and set(shown["Key"]) == {"continuity"}


def test_p_values_below_a_thousandth_in_scientific_notation_everywhere():
    from analysis.claims import Claim
    from analysis.formatting import p_number, p_value

    assert p_number(1.0580407265197449e-49) == "1.1e-49"
    assert p_number(0.00019998) == "2.0e-04" and p_number(0.001) == "0.001" and p_number(0.216) == "0.216"
    assert p_value(None) == "p n/a" and p_value(3e-7) == "p = 3.0e-07"
    test = {"comparison": "C vs standard", "effect": -0.1, "ci_low": -0.2, "ci_high": -0.05, "test": "McNemar",
            "p": 2e-12, "p_holm": 4e-12, "n_images": 100, "unit": "points"}  # fmt: skip
    row = Claim("k", "a claim", "4.2", "Fig. 3", "ours", "holds", "rule", [test]).row()
    assert "p = 2.0e-12" in row["p"] and "Holm in claim = 4.0e-12" in row["p"]  # the report's claims.csv, the same way


# ----------------------------------------------------------------------------- one colour scheme


def _lab(colour: str) -> np.ndarray:
    from skimage.color import rgb2lab

    rgb = np.array([[[int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]]])
    return rgb2lab(rgb)[0, 0]


def delta_e(a: str, b: str) -> float:
    """CIE76 colour difference."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def test_variants_kinds_and_classes_never_share_a_colour():
    from analysis import palette

    sets = {
        "variants": [*palette.variant_colours().values(), *palette.VARIANT_FALLBACK],
        "kinds": [*palette.KIND_COLOURS.values(), *palette.KIND_FALLBACK],
        "classes": list(palette.CLASS_COLOURS),
    }
    for (na, a), (nb, b) in itertools.combinations(sets.items(), 2):
        closest = min((delta_e(x, y), x, y) for x in a for y in b)
        assert closest[0] > palette.MIN_DELTA_E, (na, nb, closest)
    for name, colours in sets.items():
        closest = min((delta_e(x, y), x, y) for x, y in itertools.combinations(colours, 2))
        assert closest[0] > palette.MIN_DELTA_E, (name, closest)
    assert delta_e("#DB4437", "#D62728") < palette.MIN_DELTA_E  # the pair (contrast vs Dress) would fail


def test_report_and_dashboard_figures_use_the_palette(tmp_path):
    from analysis import palette, report_figures
    from app import embedding_figures, figures

    df = pd.DataFrame({"variant": ["standard", "C", "imported"] * 2, "kind": ["hue"] * 6, "level": [1] * 3 + [2] * 3,
                       "ds_mean": np.linspace(0.1, 1, 6), "n": 10})  # fmt: skip
    app_colours = {t.name: t.line.color for t in figures.ds_curves(df).data}
    assert app_colours == {v: palette.variant_colour(v, ["standard", "C", "imported"]) for v in app_colours}
    assert app_colours["imported"] == palette.VARIANT_FALLBACK[0]
    import matplotlib.pyplot as plt

    captured = []
    original = plt.Axes.errorbar  # the report's curves are drawn with their CIs
    try:
        plt.Axes.errorbar = lambda self, *a, **k: captured.append(k.get("color")) or original(self, *a, **k)
        report_figures.fig_continuity(df, tmp_path / "fig3.png")
    finally:
        plt.Axes.errorbar = original
    assert set(captured) == set(app_colours.values())  # the report draws each variant in the dashboard's colour
    assert {figures.kind_colour(k) for k in palette.KIND_COLOURS} == set(palette.KIND_COLOURS.values())
    points = pd.DataFrame({"x": np.arange(10.0), "y": np.zeros(10), "row": np.arange(10),
                           "dataset_index": np.arange(10), "pred_name": "a",
                           "true_name": [f"class {i}" for i in range(10)]})  # fmt: skip
    scatter = embedding_figures.whole_set_scatter(points)
    assert {t.marker.color for t in scatter.data} == set(palette.CLASS_COLOURS)


# ----------------------------------------------------------------------------- smaller faults


def test_masking_notes_warn_only_from_half_a_point():
    from app.components import MASKING_GAP_POINTS, note_is_warning

    assert MASKING_GAP_POINTS == 0.5
    fact = "standard: PGD-10 overestimates robust accuracy by {} points (0.0% vs 0.0% under PGD-10 on 1000 images)"
    assert not note_is_warning(fact.format("0.0")) and not note_is_warning(fact.format("0.4"))
    assert note_is_warning(fact.format("0.5")) and note_is_warning(fact.format("1.2"))
    assert note_is_warning(fact.format("5.8") + "; WARNING: report the stronger number")
    assert not note_is_warning("C: sanity check passed: 0.0% at eps 32/255")
    assert note_is_warning("ADV: WARNING: 9.0% accuracy at eps 32/255 (a sound attack reaches about 0)")


def test_robustness_page_warns_where_pgd10_overestimates(committed_env):
    at = open_page("robustness")
    audit = pd.read_csv(committed_env / "results" / "attack_audit.csv")
    gaps = {v: g.loc[g["attack"] == "PGD-10", "accuracy"].iloc[0] - g["accuracy"].min()
            for v, g in audit.groupby("variant", sort=False)}  # fmt: skip
    warned = [w.value for w in at.warning]
    assert not [w for w in warned if "by 0.0 points" in w]
    overstated = {v for v, gap in gaps.items() if 100 * gap >= 0.5}
    assert overstated and {w.split(":")[0] for w in warned if "overestimates" in w} == overstated
    assert any("by 0.0 points" in c.value for c in at.caption)  # the facts are still stated
    for spec in chart_specs(at, "rob_adv_"):  # adversarial examples: no panel titles to overlap
        assert not [a for a in spec["layout"].get("annotations", []) if a.get("text")]
    assert any("clean · adversarial · perturbation" in c.value for c in at.caption)


def test_bar_labels_clear_of_error_bars_and_legends_outside_the_axes():
    from app import figures

    df = pd.DataFrame({"variant": ["standard", "C"] * 2, "target": ["digits"] * 2 + ["svhn"] * 2,
                       "test_acc_mean": [0.8, 0.82, 0.9, 0.91], "test_acc_sd": [0.02, 0.03, 0.01, 0.02]})  # fmt: skip
    with_err = figures.grouped_bars(df, "target", "test_acc_mean", error="test_acc_sd")
    assert all(t.textposition == "inside" and t.insidetextanchor == "start" for t in with_err.data)
    without = figures.grouped_bars(df, "target", "test_acc_mean")
    assert all(t.textposition == "outside" for t in without.data)
    stab = pd.read_csv(COMMITTED / "results" / "stability.csv")
    fig = figures.stability_lines(stab)
    series = {(t.name, t.line.color, t.line.dash) for t in fig.data if t.showlegend}
    pairs = stab[["variant", "method"]].drop_duplicates()
    assert len(series) == len(pairs) > 6  # once 12 series in 6 colours
    assert len({(c, d) for _, c, d in series}) == len(pairs)  # every series told apart
    for f in (with_err, fig, figures.line_panels(stab, "level", "spearman_mean", panel="kind")):
        assert f.layout.legend.x >= 1 and f.layout.legend.xanchor == "left"  # right of the plot, off the titles


def test_zoo_table_rounds_ds_as_the_cards_do(tiny_zoo, tmp_path, monkeypatch, cache_dir):
    zoo = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, zoo)
    manifest = json.loads((zoo / "zoo.json").read_text())
    for i, entry in enumerate(manifest["variants"].values()):
        entry["card"]["metrics"]["ds_level1_sum"] = 11.3709 - 7.6 * (i % 2)  # 11.4 and 3.77
    (zoo / "zoo.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("SCL_ZOO", str(zoo))
    _point_results_at(monkeypatch, tmp_path / "results")
    at = open_page("zoo")
    cards = [m.value for m in at.metric if m.label.startswith("DS, level 1")]
    table = frame_with(at, "DS level 1 (sum of kinds)")["DS level 1 (sum of kinds)"].tolist()
    assert cards[:2] == ["11.4", "3.77"] and [f"{v:g}" for v in table[: len(cards)]] == cards


def test_ood_wording_agrees_with_the_verdict():
    from app.pickers import ood_verdict

    six = dict.fromkeys(["standard", "C", "ADV", "ADV+C", "standard+jitter", "ADV-mixed"], 0.0)
    one = ood_verdict({"below": ["standard+jitter"], "thresholds": six})
    assert one.startswith("1 of 6 models (standard+jitter) scores it below") and "at least half" in one
    assert ood_verdict({"below": [], "thresholds": six}) == "all 6 models score it above their threshold"


# ----------------------------------------------------------------------------- gallery filters


def per_image_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """A report's per-image parts (stored as .csv.gz, or .csv by an older report), named <experiment>_per_image."""
    from analysis.results_store import read_results

    return {f"{name}_per_image": parts["per_image"] for name, parts in read_results(folder)[1].items()
            if "per_image" in parts}  # fmt: skip


def committed_per_image():
    from analysis import gallery_filters as gf

    summary = json.loads((COMMITTED / "summary.json").read_text())
    tables = per_image_tables(COMMITTED)
    return gf.PerImage.from_report(tables, summary["settings"], 10_000), summary, tables


def test_gallery_filters_on_the_committed_per_image_results():
    from analysis import gallery_filters as gf
    from analysis.transfer import seeded_subset

    per_image, summary, tables = committed_per_image()
    settings = summary["settings"]

    class Positions:  # what seeded_subset keeps, without loading 10,000 images
        def __len__(self):
            return 10_000

        def subset(self, idx):
            return idx.numpy()

    assert np.array_equal(per_image.indices, seeded_subset(Positions(), settings["n_images"], settings["subset_seed"]))
    ds = tables["continuity_per_image"]
    top = gf.largest_ds(per_image, "standard", "hue", 2)
    rows = ds[(ds["variant"] == "standard") & (ds["kind"] == "hue") & (ds["level"] == 2)]
    assert len(top) == len(rows) and top["ds"].is_monotonic_decreasing
    assert top["ds"].iloc[0] == rows["ds"].max()
    assert top["index"].iloc[0] == per_image.indices[rows.loc[rows["ds"].idxmax(), "image"]]
    robust = tables["robustness_per_image"]
    wrong = gf.misclassified(per_image, "C")
    assert len(wrong) == (~robust[robust["variant"] == "C"]["clean"]).sum() > 0
    labels = np.arange(10_000) % 10
    of_class = gf.candidates(per_image, gf.MISCLASSIFIED, labels, label=3, variant="C")
    assert set(of_class) == {i for i in wrong if labels[i] == 3}
    by_ds = gf.candidates(per_image, gf.LARGEST_DS, labels, label=5, variant="standard", kind="hue", level=2)
    assert list(by_ds) == [i for i in top["index"] if labels[i] == 5]
    changed = np.zeros(len(per_image.indices), dtype=bool)
    changed[[3, 7]] = True
    assert list(gf.candidates(per_image, gf.CHANGED, labels, changed=changed)) == list(per_image.indices[[3, 7]])
    with pytest.raises(gf.FilterError, match="no per-image DS for nobody"):
        gf.largest_ds(per_image, "nobody", "hue", 1)


def test_largest_ds_images_are_the_shipped_models_largest(one_thread):
    """The index mapping is right: the shipped model's DS on the images the filter names is the report's."""
    import torch

    from analysis import gallery_filters as gf
    from models.checkpoints import load_zoo
    from models.data import load_dataset
    from models.evaluation import predict_logits
    from models.objectives import distance_score
    from models.perturbations import perturb

    per_image, summary, _ = committed_per_image()
    data = load_dataset(summary["dataset"], "test")  # ./lab installs its source: a failure here is a real one
    model = load_zoo(ROOT / "assets" / "zoo" / "default", device="cpu").models["standard"]
    top = gf.largest_ds(per_image, "standard", "saturation", 1).head(4)
    x = data.images[torch.tensor(top["index"].to_numpy())]
    ds = distance_score(predict_logits(model, x), predict_logits(model, perturb(x, "saturation", 1))).numpy()
    assert ds == pytest.approx(top["ds"].to_numpy(), rel=1e-3)
    wrong = gf.misclassified(per_image, "standard")[:16]
    predicted = predict_logits(model, data.images[torch.as_tensor(wrong)]).argmax(1).numpy()
    assert (predicted != data.labels.numpy()[wrong]).all()
    changed = gf.prediction_changes(model, data.images[torch.as_tensor(per_image.indices[:64])], "hue", 4)
    clean = predict_logits(model, data.images[torch.as_tensor(per_image.indices[:64])]).argmax(1)
    moved = predict_logits(model, perturb(data.images[torch.as_tensor(per_image.indices[:64])], "hue", 4)).argmax(1)
    assert np.array_equal(changed, (clean != moved).numpy())


@pytest.fixture(scope="module")
def tiny_report(tiny_zoo, tmp_path_factory):
    """The report's per-image results (continuity, robustness) for the tiny zoo on 40 digits test images."""
    import dataclasses

    from analysis.report import QUICK, run_report

    out = tmp_path_factory.mktemp("gallery-results") / tiny_zoo.name
    settings = dataclasses.replace(QUICK, n_images=40, pgd_images=12)
    run_report(tiny_zoo, out, settings, only=["continuity", "robustness"], device="cpu", progress=False,
               log=lambda msg: None)  # fmt: skip
    return out


def test_saliency_gallery_filters_pick_from_the_per_image_results(tiny_zoo, tiny_report, monkeypatch, cache_dir):
    from analysis import gallery_filters as gf

    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    _point_results_at(monkeypatch, tiny_report.parent)
    summary = json.loads((tiny_report / "summary.json").read_text())
    tables = per_image_tables(tiny_report)
    from models.data import load_dataset

    data = load_dataset("digits", "test")
    per_image = gf.PerImage.from_report(tables, summary["settings"], len(data))
    at = open_page("saliency")
    assert at.selectbox(key="sal_filter").options == list(gf.FILTERS)
    at.selectbox(key="sal_filter").set_value(gf.LARGEST_DS).run()
    assert_clean(at)
    kind = at.selectbox(key="sal_kind").value
    variant = at.selectbox(key="sal_filter_variant").value
    top = gf.largest_ds(per_image, variant, kind, 1)
    title = next(m.value for m in at.markdown if "**Image:**" in m.value)
    assert f"#{int(top['index'].iloc[0])} " in title  # the largest DS first
    assert any(f"{len(top)} of the {len(per_image.indices)} test images" in c.value for c in at.caption)
    at.selectbox(key="sal_filter").set_value(gf.MISCLASSIFIED).run()
    assert_clean(at)
    wrong = gf.misclassified(per_image, variant)
    title = next(m.value for m in at.markdown if "**Image:**" in m.value)
    assert int(re.search(r"#(\d+)", title).group(1)) in set(wrong)


# ----------------------------------------------------------------------------- screenshots (headless Chromium)

SCREENSHOT_PAGES = (
    "zoo",
    "saliency",
    "explanation_continuity",
    "sanity_checks",
    "faithfulness",
    "embeddings",
    "continuity",
    "probes",
    "robustness",
    "transfer",
    "fairness",
    "claims",
)  # every page
SCREENSHOT_WIDTHS = (1280, 1920)
EXPAND_ON = {"claims": ("Every comparison behind the verdicts",)}  # expanders opened for the shot
EXPAND_AFTER = {"claims": ("REPORT.md",)}  # opened after it: still no wider than the window


@pytest.mark.browser
@pytest.mark.slow
def test_result_pages_fit_the_screen_and_are_photographed(tmp_path, monkeypatch):
    """Each result page of the shipped zoo at 1280 and 1920 px: nothing wider than the window (tables scroll
    inside themselves), no exception; a screenshot of each, written to docs/screenshots/ with
    SCL_UPDATE_SCREENSHOTS=1 (else test-artifacts/screenshots/)."""
    import os

    from PIL import Image

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, running_dashboard, wait_idle

    if not Path(CHROMIUM).exists():
        pytest.fail(f"needs Debian's chromium at {CHROMIUM} (./lab test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("STREAMLIT_SERVER_FILE_WATCHER_TYPE", "none")  # edits elsewhere in the tree: no rerun prompt
    update = os.environ.get("SCL_UPDATE_SCREENSHOTS", "") == "1"
    out = ROOT / ("docs" if update else "test-artifacts") / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    overflow = """() => {
        const main = document.querySelector('[data-testid="stMain"]');
        return {page: document.documentElement.scrollWidth - window.innerWidth,
                main: main ? main.scrollWidth - main.clientWidth : 0, height: main ? main.scrollHeight : 1000};
    }"""
    top = """() => { const main = document.querySelector('[data-testid="stMain"]'); if (main) main.scrollTo(0, 0);
                      window.scrollTo(0, 0); }"""
    with running_dashboard(ROOT / "assets" / "zoo" / "default", tmp_path / "streamlit.log") as (url, proc, log):
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
            try:
                for width in SCREENSHOT_WIDTHS:
                    page = browser.new_page(viewport={"width": width, "height": 1000})
                    page.set_default_timeout(240_000)
                    for name in SCREENSHOT_PAGES:
                        page.goto(url if name == "zoo" else f"{url}/{name}", wait_until="domcontentloaded")
                        try:
                            page.locator("h1").first.wait_for()
                            wait_idle(page, 240)
                        except Exception:
                            page.screenshot(path=str(out / f"failed-{name}-{width}.png"), full_page=True)
                            raise
                        for label in EXPAND_ON.get(name, ()):
                            page.locator('[data-testid="stExpander"] summary', has_text=label).first.click()
                        page.wait_for_timeout(1500)
                        assert page.locator('[data-testid="stException"]').count() == 0, name
                        dims = page.evaluate(overflow)
                        assert dims["page"] <= 0 and dims["main"] <= 0, (name, width, dims)
                        page.set_viewport_size({"width": width, "height": min(6000, dims["height"] + 80)})
                        page.wait_for_timeout(1500)  # plotly redraws at the new size
                        page.evaluate(top)
                        page.wait_for_timeout(500)
                        shot = out / f"{name}-{width}.png"
                        page.screenshot(path=str(shot))
                        Image.open(shot).convert("RGB").quantize(256).save(shot, optimize=True)  # a third the size
                        page.set_viewport_size({"width": width, "height": 1000})
                        for label in EXPAND_AFTER.get(name, ()):
                            page.locator('[data-testid="stExpander"] summary', has_text=label).first.click()
                            page.wait_for_timeout(2000)
                            dims = page.evaluate(overflow)
                            assert dims["page"] <= 0 and dims["main"] <= 0, (name, width, label, dims)
                    page.close()
            finally:
                browser.close()
        assert proc.poll() is None, "the server died"
    assert "Traceback" not in (tmp_path / "streamlit.log").read_text()
    for name in SCREENSHOT_PAGES:
        for width in SCREENSHOT_WIDTHS:
            assert (out / f"{name}-{width}.png").stat().st_size > 20_000, (name, width)


def test_saliency_prediction_changed_filter_counts_what_the_model_does(tiny_zoo, tiny_report, monkeypatch, cache_dir):
    import torch

    from analysis import gallery_filters as gf
    from models.checkpoints import load_zoo
    from models.data import load_dataset

    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    _point_results_at(monkeypatch, tiny_report.parent)
    summary = json.loads((tiny_report / "summary.json").read_text())
    data = load_dataset("digits", "test")
    indices = gf.subset_indices(len(data), summary["settings"]["n_images"], summary["settings"]["subset_seed"])
    at = open_page("saliency")
    at.selectbox(key="sal_filter").set_value(gf.CHANGED).run()
    assert_clean(at)
    kind, variant = at.selectbox(key="sal_kind").value, at.selectbox(key="sal_filter_variant").value
    level = max(1, int(at.session_state["sal_level"]) if "sal_level" in at.session_state else 1)
    model = load_zoo(tiny_zoo, device="cpu").models[variant]
    changed = gf.prediction_changes(model, data.images[torch.as_tensor(indices)], kind, level)
    texts = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert changed.any()  # the untrained tiny models do change some predictions: the count is not a trivial 0
    assert any(f"{int(changed.sum())} of the {len(indices)} test images" in t for t in texts), texts
