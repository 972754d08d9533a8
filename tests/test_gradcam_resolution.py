"""GradCAM's resolution travels with its numbers: the map size from a probe forward at the zoo's input size, a finer
layer named, and every GradCAM result of REPORT.md marked when its map is below 4x4 (an imported torchvision resnet18
on 32 px digits declares ``layer4``, 1x1; GradCAM then reads ``layer3``, 2x2: still too coarse)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from analysis.gradcam_resolution import MIN_SIDE, gradcam_resolution
from models.checkpoints import load_model
from models.import_model import main as import_main
from models.networks import create_network
from models.zoo import main as zoo_main


def test_the_map_size_comes_from_a_probe_forward_and_a_finer_layer_is_named(one_thread):
    tv = create_network("torchvision:resnet18", 10, input_size=32)
    at32, at64, at128 = (gradcam_resolution(tv, size) for size in (32, 64, 128))
    assert (at32.layer, at32.size, at32.coarse) == ("layer3", "2x2", True)  # the layer gradcam reads at 32 px
    assert (at32.finer, at32.finer_height) == ("layer2", 4)  # 32 / 8: the last stage still at 4x4
    assert "--gradcam-layer layer2" in at32.caption() and "too coarse" in at32.caption()
    assert (at64.size, at64.finer) == ("2x2", "layer3")
    assert (at128.size, at128.coarse, at128.finer) == ("4x4", False, None) and "too coarse" not in at128.caption()
    own = gradcam_resolution(create_network("resnet18-cifar", 10, width=4), 32)  # the lab's own CIFAR ResNet
    assert min(own.height, own.width) >= MIN_SIDE and not own.coarse
    finer = create_network("torchvision:resnet18", 10, input_size=32, gradcam_layer="layer2")
    assert not gradcam_resolution(finer, 32).coarse


@pytest.fixture(scope="module")
def imported_zoos(tmp_path_factory) -> dict[str, Path]:
    """Two one-variant zoos of the same seeded torchvision resnet18 on digits at 32 px: GradCAM on the default
    layer (layer4 is 1x1, so layer3, 2x2) and, re-imported as the mark advises, on layer2 (4x4)."""
    folder = tmp_path_factory.mktemp("gradcam-zoos")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).eval().state_dict(), folder / "tv.pth")
    zoos = {}
    for name, extra in (("coarse", []), ("fine", ["--gradcam-layer", "layer2"])):
        ckpt = folder / f"{name}.pt"
        assert import_main([str(folder / "tv.pth"), "--arch", "torchvision:resnet18", "--dataset", "digits",
                            "--input-size", "32", "--out", str(ckpt), "--check-images", "0", "--num-threads", "1",
                            *extra]) == 0  # fmt: skip
        assert zoo_main(["--out", str(folder / name), "--variant", f"tv={ckpt}"]) == 0
        zoos[name] = folder / name
    return zoos


def _report(zoo: Path, out: Path) -> str:
    from analysis.report import main as report_main

    args = ["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1",
            "--only", "attributions,stability", "--set", "attr_methods=gradcam", "--set", "attr_images=4"]  # fmt: skip
    assert report_main(args) == 0
    return (out / "REPORT.md").read_text()


def test_report_marks_every_coarse_gradcam_result_and_names_a_finer_layer(imported_zoos, tmp_path, one_thread):
    text = _report(imported_zoos["coarse"], tmp_path / "coarse")
    section = text.split("## Section 4.5", 1)[1].split("\n## ", 1)[0]
    gradcam_rows = [line for line in section.splitlines() if line.startswith("| tv ") and "gradcam" in line]
    assert len(gradcam_rows) == 2, section  # the attribution-quality row and the stability row
    assert all("gradcam (**2x2 map**)" in row for row in gradcam_rows), gradcam_rows
    assert "GradCAM reads `layer3`: a 2x2 map at 32 px" in section and "--gradcam-layer layer2" in section
    claims = text.split("## Claims", 1)[1].split("\n## ", 1)[0]
    assert "GradCAM resolution" not in claims  # one variant, no masks in digits: the GradCAM claim is not measured

    fine = _report(imported_zoos["fine"], tmp_path / "fine")  # the advised layer: nothing marked
    assert "gradcam |" in fine.split("## Section 4.5", 1)[1]
    assert "map**)" not in fine and "GradCAM resolution" not in fine


def test_a_measured_gradcam_claim_on_coarse_maps_gets_a_line_under_the_claims(imported_zoos, one_thread):
    from types import SimpleNamespace

    from analysis.claims import Claim
    from analysis.report_sections import gradcam_claims_note
    from models.checkpoints import load_zoo

    zoo = load_zoo(imported_zoos["coarse"])
    ctx = SimpleNamespace(models=zoo.models, test=SimpleNamespace(images=torch.zeros(1, 3, 32, 32)))
    measured = Claim("interpretability_gradcam", "maps on the object", "4.5", "-", "0.5", "inconclusive", "rule",
                     tests=[{"comparison": "C - standard"}])  # fmt: skip
    unmeasured = Claim("interpretability_gradcam", "maps on the object", "4.5", "-", "-", "not measured", "rule")
    note = gradcam_claims_note(ctx, [measured])
    assert note.startswith("**GradCAM resolution:** `interpretability_gradcam` rests on GradCAM maps below 4x4")
    assert "`tv` 2x2 (`layer3`)" in note
    assert gradcam_claims_note(ctx, [unmeasured]) == ""
    fine = load_zoo(imported_zoos["fine"])
    assert gradcam_claims_note(SimpleNamespace(models=fine.models, test=ctx.test), [measured]) == ""


def test_checkpoint_advice_matches_the_import_flag(imported_zoos, one_thread):
    model, _ = load_model(imported_zoos["coarse"] / "tv.pt")
    res = gradcam_resolution(model, 32)
    assert res.imported and res.advice() == "a finer layer is `layer2` (4x4): import the model again with " \
        "`--gradcam-layer layer2`"  # fmt: skip


def test_dashboard_saliency_rows_say_the_map_size_and_the_finer_layer(imported_zoos, monkeypatch, tmp_path, cache_dir):
    """The saliency page of the imported zoo: once GradCAM's map is drawn, the row carries the one-line caption, and
    the report's attribution table (found in the zoo's results/ folder) marks the GradCAM row."""
    from streamlit.testing.v1 import AppTest

    from app import results_store

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for item in imported_zoos["coarse"].iterdir():
        (zoo / item.name).write_bytes(item.read_bytes())
    _report(zoo, zoo / "results")
    monkeypatch.setenv("SCL_ZOO", str(zoo))
    monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "120")  # wait for the shown level's maps (a busy CPU)
    monkeypatch.setattr(results_store, "RESULTS_ROOT", tmp_path / "results")
    entry = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    at = AppTest.from_file(str(entry), default_timeout=240)
    at.run()
    at.switch_page("views/saliency.py").run()
    assert not at.exception, [e.value for e in at.exception]
    want = "GradCAM reads `layer3`: a 2x2 map at 32 px, below 4x4: too coarse to localise; a finer layer is " \
        "`layer2` (4x4): import the model again with `--gradcam-layer layer2`."  # fmt: skip
    assert want in [w.value for w in at.warning], [w.value for w in at.warning]
    methods = [m for table in at.dataframe for m in table.value.get("method", table.value.get("Method", []))]
    assert "gradcam (2x2 map)" in methods, [t.value for t in at.dataframe]
    assert f"tv: {want}" in [c.value for c in at.caption]
