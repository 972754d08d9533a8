"""models.zoo: imported torchvision / timm models and a lab checkpoint assembled into one zoo from the command line;
the zoo loads with roles and the same logits; mixed data sets, classes or input sizes are refused (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from models.checkpoints import atomic_torch_save, load_checkpoint, load_zoo, sha256_file
from models.import_model import main as import_main
from models.roles import ROLES, default_role
from models.zoo import main as zoo_main
from tests.conftest import make_tiny_zoo

ROOT = Path(__file__).resolve().parent.parent
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _probe(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict:
    """A torchvision resnet18 and a timm test_resnet (10 classes, digits, 32 px) imported with the CLI, plus a tiny
    lab zoo on digits; also the source models, to compare logits with."""
    folder = tmp_path_factory.mktemp("imported")
    torch.manual_seed(3)
    tv = torchvision.models.resnet18(num_classes=10).eval()
    tm = timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()
    torch.save(tv.state_dict(), folder / "tv.pth")
    safetensors_torch.save_file(tm.state_dict(), str(folder / "tm.safetensors"))
    common = ["--dataset", "digits", "--input-size", "32", "--num-threads", "1"]
    assert import_main([str(folder / "tv.pth"), "--arch", "torchvision:resnet18", "--out", str(folder / "tv.pt"),
                        "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25", *common]) == 0  # fmt: skip
    assert import_main([str(folder / "tm.safetensors"), "--arch", "timm:test_resnet", "--out", str(folder / "tm.pt"),
                        *common]) == 0  # fmt: skip
    tiny = make_tiny_zoo(tmp_path_factory.mktemp("tiny"))
    return {"folder": folder, "tv": tv, "tm": tm, "tiny": tiny}


def assemble(out: Path, *args: str) -> int:
    return zoo_main(["--out", str(out), *args])


def test_roles_are_one_vocabulary_with_defaults_for_every_registered_variant():
    from models.objectives import VARIANT_REGISTRY

    assert {"baseline", "constrained", "adversarial", "adversarial+constrained", "baseline+jitter",
            "adversarial-mixed", "other"} <= set(ROLES)  # fmt: skip
    assert all(isinstance(text, str) and text for text in ROLES.values())
    for name, variant in VARIANT_REGISTRY.items():
        assert variant.role in ROLES, (name, variant.role)
        assert default_role(name) == variant.role
    assert default_role("mine") == "other"


def test_imported_models_and_a_lab_checkpoint_make_a_zoo_with_roles(imported, tmp_path, capsys, one_thread):
    out = tmp_path / "zoo"
    rc = assemble(out, "--variant", f"standard={imported['tiny'] / 'standard.pt'}",
                  "--variant", f"torchvision-r18={imported['folder'] / 'tv.pt'}",
                  "--variant", f"mine={imported['folder'] / 'tm.pt'}", "--role", "mine=adversarial")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "mine: mine.pt (role adversarial)" in printed and "data set digits" in printed
    zoo = load_zoo(out)
    assert zoo.variants == ["standard", "torchvision-r18", "mine"]
    assert zoo.roles == {"standard": "baseline", "torchvision-r18": "other", "mine": "adversarial"}
    assert zoo.dataset["name"] == "digits"
    manifest = json.loads((out / "zoo.json").read_text())
    for name, item in manifest["variants"].items():
        assert item["sha256"] == sha256_file(out / item["file"]) and item["role"] == zoo.roles[name]
    assert manifest["variants"]["mine"]["card"]["imported_from"]["architecture"] == "timm:test_resnet"
    x = _probe()
    with torch.no_grad():
        assert torch.allclose(zoo["torchvision-r18"].model(x), imported["tv"]((x - 0.5) / 0.25), rtol=0, atol=1e-5)
        mine = zoo["mine"].model
        assert torch.allclose(mine(x), imported["tm"](mine.normalize(x)), rtol=0, atol=1e-5)


def test_control_variant_names_get_their_roles_and_run_folders_are_accepted(imported, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes((imported["tiny"] / "C.pt").read_bytes())
    out = tmp_path / "zoo"
    rc = assemble(out, "--variant", f"standard+jitter={imported['tiny'] / 'standard.pt'}",
                  "--variant", f"ADV-mixed={run}", "--variant", f"ADV+C={imported['tiny'] / 'ADV+C.pt'}")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    zoo = load_zoo(out)
    assert zoo.roles == {"standard+jitter": "baseline+jitter", "ADV-mixed": "adversarial-mixed",
                         "ADV+C": "adversarial+constrained"}  # fmt: skip
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "checkpoint.pt").write_bytes(b"x")
    assert assemble(tmp_path / "z2", "--variant", f"a={unfinished}") == 2
    assert "unfinished training run" in capsys.readouterr().err


def test_mixed_data_sets_classes_and_sizes_are_refused(imported, tmp_path, capsys, one_thread):
    fashion = make_tiny_zoo(tmp_path / "fashion", dataset={"name": "fashion-mnist-m", "split": "train",
                                                            "num_classes": 10})  # fmt: skip
    five = make_tiny_zoo(tmp_path / "five", num_classes=5)
    big = tmp_path / "big.pt"
    assert import_main([str(imported["folder"] / "tv.pth"), "--arch", "torchvision:resnet18", "--out", str(big),
                        "--dataset", "digits", "--input-size", "64"]) == 0  # fmt: skip
    capsys.readouterr()
    tv = f"tv={imported['folder'] / 'tv.pt'}"
    for other, what in ((f"f={fashion / 'C.pt'}", "dataset differ"), (f"f={five / 'C.pt'}", "num_classes differ"),
                        (f"f={big}", "input_size differ")):  # fmt: skip
        out = tmp_path / f"zoo-{what.split()[0]}"
        assert assemble(out, "--variant", tv, "--variant", other) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and what in err and err.count("\n") == 1, err
        assert not (out / "zoo.json").exists()


def test_bad_arguments_are_one_line_errors(imported, tmp_path, capsys):
    std = f"standard={imported['tiny'] / 'standard.pt'}"
    cases = [
        (["--variant", std, "--role", "standard=boss"], "unknown role 'boss'"),
        (["--variant", std, "--role", "other=baseline"], "--role given for other"),
        (["--variant", "standard"], "expected NAME=VALUE"),
        (["--variant", std, "--variant", std], "given twice"),
        (["--variant", f"x={tmp_path / 'nothing.pt'}"], "does not exist"),
        ([], "at least one --variant"),
    ]
    for args, message in cases:
        assert assemble(tmp_path / "zoo", *args) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
    assert assemble(tmp_path / "zoo", "--variant", std) == 0
    assert assemble(tmp_path / "zoo", "--variant", std) == 2 and "--force" in capsys.readouterr().err
    assert assemble(tmp_path / "zoo", "--variant", std, "--name", "again", "--force") == 0
    assert json.loads((tmp_path / "zoo" / "zoo.json").read_text())["name"] == "again"


def test_an_unsafe_file_is_refused_as_a_variant(imported, tmp_path, capsys):
    atomic_torch_save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    assert assemble(tmp_path / "zoo", "--variant", f"x={tmp_path / 'plain.pt'}") == 2
    assert "models.import_model" in capsys.readouterr().err
    load_checkpoint(imported["folder"] / "tv.pt")  # the imported one is a lab checkpoint


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_report_quick_and_dashboard_run_on_an_assembled_zoo(imported, tmp_path, monkeypatch):
    """End to end: the report (--quick, tiny settings) and every dashboard page on a zoo of imported models whose
    variant names are not the paper's."""
    from tests.test_report import TINY

    out = tmp_path / "zoo"
    assert assemble(out, "--variant", f"standard={imported['tiny'] / 'standard.pt'}",
                    "--variant", f"mine={imported['folder'] / 'tm.pt'}", "--role", "mine=constrained",
                    "--variant", f"tv={imported['folder'] / 'tv.pt'}") == 0  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    sets = [a for s in TINY for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--zoo", str(out), "--out", str(tmp_path / "rep"),
                           "--quick", "--no-progress", "--num-threads", "1", *sets], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2000)  # fmt: skip
    problems = [] if proc.returncode == 0 else [f"report exit status {proc.returncode}: {proc.stderr[-1500:]}"]
    summary_path = tmp_path / "rep" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"experiments": {}}
    not_applicable = {"tradeoff": "adversarially fine-tuned"}  # this zoo has none: skipped, with that reason
    problems += [f"report {k}: {e['status']} {e.get('reason', '')}" for k, e in summary["experiments"].items()
                 if e["status"] != "ok" and not (e["status"] == "skipped" and k in not_applicable
                                                 and not_applicable[k] in e.get("reason", ""))]  # fmt: skip

    from streamlit.testing.v1 import AppTest

    from app import results_store
    from tests.test_app import ENTRY, PAGES

    monkeypatch.setenv("SCL_ZOO", str(out))
    monkeypatch.setattr(results_store, "RESULTS_ROOT", tmp_path / "results")
    for page in PAGES:
        at = AppTest.from_file(str(ENTRY), default_timeout=300)
        at.run()
        if page != "zoo":
            at.switch_page(f"views/{page}.py").run()
        problems += [f"dashboard {page}: exception {e.value}" for e in at.exception]
        problems += [f"dashboard {page}: error {e.value}" for e in at.error]
    # torchvision's resnet18 on 32-pixel inputs: layer4's map is 1x1, so GradCAM reads layer3 (2x2); the page says so
    at = AppTest.from_file(str(ENTRY), default_timeout=300).run()
    at.switch_page("views/saliency.py").run()
    at.multiselect(key="sal_variants").set_value(["standard", "tv"]).run()
    warnings = [w.value for w in at.warning]
    if not any("GradCAM reads `layer3`: a 2x2 map at 32 px" in w and "--gradcam-layer layer2" in w for w in warnings):
        problems.append(f"dashboard saliency: no coarse-GradCAM warning for tv ({warnings})")
    assert not problems, "\n".join(problems)
