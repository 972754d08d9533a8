"""Issue 20.2-3: the paper's variants of an imported network in one command (``models.train_zoo --from``), a zoo
with roles whose report measures the paper's pairs, experiments that train using the zoo's architecture or skipped
with the reason, and "not measured" claims that name the roles and the command that would measure them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from models.checkpoints import load_checkpoint, read_zoo_manifest, sha256_file
from models.import_model import main as import_main
from models.train_zoo import main as zoo_main

FAST = ["--train-limit", "60", "--epochs-scale", "0.01", "--pgd-eval-size", "32", "--no-progress",
        "--num-threads", "1"]  # fmt: skip
REPORT = ["--quick", "--no-progress", "--num-threads", "1", "--set", "n_images=16"]


def _write_cifar_folder(root: Path, n_train: int = 60, n_test: int = 40, seed: int = 0) -> None:
    """A CIFAR-10-format folder (python pickles) of two classes, 'dark' and 'bright' images."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 2, n)
        pixels = np.where(labels == 1, 0.6, 0.3)[:, None] + rng.normal(0, 0.1, (n, 3072))
        return {b"data": np.clip(pixels * 255, 0, 255).round().astype(np.uint8), b"labels": labels.tolist()}

    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"dark", b"bright"]}, protocol=2))
    for name, n in [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]:
        (d / name).write_bytes(pickle.dumps(batch(n), protocol=2))


def import_r18(src: dict, out: Path, *extra: str) -> int:
    """The README's import command on the generated folder (class names given, normalisation given)."""
    return import_main([str(src["weights"]), "--arch", "torchvision:resnet18", "--dataset", "cifar10",
                        "--data-root", str(src["root"]), "--input-size", "32", "--classes", "dark,bright",
                        "--mean", "0.45", "0.45", "0.45", "--std", "0.2", "0.2", "0.2", "--gradcam-layer", "layer2",
                        "--check-images", "0", "--num-threads", "1", "--out", str(out), *extra])  # fmt: skip


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict:
    """The CIFAR-format folder and a torchvision resnet18 (2 classes, seeded random weights) imported into the lab."""
    folder = tmp_path_factory.mktemp("imported-variants")
    _write_cifar_folder(folder / "cifar")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), folder / "resnet18.pth")
    found = {"folder": folder, "root": folder / "cifar", "weights": folder / "resnet18.pth"}
    assert import_r18(found, folder / "imported" / "resnet18.pt") == 0
    found["imported"] = folder / "imported" / "resnet18.pt"
    return found


@pytest.fixture(scope="module")
def mine(src, tmp_path_factory) -> dict:
    """`python -m models.train_zoo --from imported/resnet18.pt --variants C ADV --out zoos/mine`, at test size."""
    folder = tmp_path_factory.mktemp("zoos")
    zoo, work = folder / "mine", folder / "runs"
    args = ["--from", str(src["imported"]), "--variants", "C", "ADV", "--out", str(zoo), "--work-dir", str(work),
            *FAST]  # fmt: skip
    assert zoo_main(args) == 0
    return {"zoo": zoo, "work": work, "args": args}


def test_one_command_fine_tunes_each_variant_of_the_imported_network_into_a_zoo_with_roles(src, mine):
    manifest = read_zoo_manifest(mine["zoo"])
    assert {v: item["role"] for v, item in manifest["variants"].items()} == {
        "standard": "baseline", "C": "constrained", "ADV": "adversarial"}  # fmt: skip
    assert sha256_file(mine["zoo"] / "standard.pt") == sha256_file(src["imported"])  # the imported file, unchanged
    assert manifest["from"] == str(src["imported"].resolve()) and manifest["recipe"] == "from-baseline"
    imported = load_checkpoint(src["imported"])
    for variant in ("C", "ADV"):
        ckpt = load_checkpoint(mine["zoo"] / f"{variant}.pt")
        assert ckpt["network"] == imported["network"]  # the same architecture, normalisation, GradCAM layer, size
        assert ckpt["network"]["gradcam_layer"] == "layer2" and ckpt["network"]["input_size"] == 32
        cfg = ckpt["config"]
        assert cfg["variant"] == variant and cfg["init"] == str(mine["work"] / "standard" / "model.pt")
        assert cfg["dataset"] == "cifar10" and cfg["image_size"] == 32 and cfg["preset"] == "finetune"
        assert cfg["pgd_eps"] == pytest.approx(8 / 255)  # the paper's eps at 32 px
        changed = [k for k, v in ckpt["model"].items() if v.is_floating_point() and
                   not torch.equal(v, imported["model"][k])]  # fmt: skip
        assert changed, f"{variant} was not fine-tuned"
        card = manifest["variants"][variant]["card"]
        assert card["recipe"] == "from-baseline" and 0 <= card["metrics"]["test_clean_acc"] <= 1
        assert card["metrics"]["pgd_eval"]["images"] == 32
    assert load_checkpoint(mine["zoo"] / "C.pt")["config"]["alpha"] == 0.1  # the shipped recipe's, documented
    base_card = manifest["variants"]["standard"]["card"]
    assert base_card["imported_from"]["architecture"] == "torchvision:resnet18"
    assert any("alpha" in d and "--choose-alpha" in d for d in base_card["differences_from_paper"])


def test_the_same_command_again_resumes_and_retrains_nothing(mine, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in [*mine["work"].glob("*/model.pt"), mine["zoo"] / "zoo.json"]}
    capsys.readouterr()
    assert zoo_main(mine["args"]) == 0
    err = capsys.readouterr().err
    assert "fine-tuning" not in err and "already holds these variants" in err, err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert zoo_main(["--out", str(mine["zoo"]), "--summary"]) == 0
    table = capsys.readouterr().out
    assert "| standard |" in table and "imported (torchvision:resnet18)" in table and "alpha 0.1" in table


def test_the_report_on_that_zoo_measures_the_paper_pair_standard_vs_c(mine, tmp_path):
    import pandas as pd

    from analysis.report import main as report_main

    out = tmp_path / "report"
    assert report_main(["--zoo", str(mine["zoo"]), "--out", str(out), "--only", "continuity", *REPORT]) == 0
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    assert claims.loc["continuity", "verdict"] != "not measured"
    assert "C vs standard" in claims.loc["continuity", "effect_ci"]


def test_bad_input_is_one_error_line_and_trains_nothing(src, tmp_path, capsys):
    work = tmp_path / "runs"
    assert zoo_main(["--from", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "z"), "--work-dir", str(work),
                     *FAST]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: --from ") and "no such checkpoint" in err and err.count("\n") == 1, err
    numbered = tmp_path / "numbered.pt"  # imported without class names: 0, 1 are not dark, bright
    args = [str(src["weights"]), "--arch", "torchvision:resnet18", "--dataset", "cifar10", "--data-root",
            str(src["root"]), "--input-size", "32", "--check-images", "0", "--out", str(numbered)]  # fmt: skip
    assert import_main(args) == 0
    capsys.readouterr()
    assert zoo_main(["--from", str(numbered), "--out", str(tmp_path / "z"), "--work-dir", str(work), *FAST]) == 2
    err = capsys.readouterr().err
    assert "are not cifar10's" in err and "--classes-file" in err and err.count("\n") == 1, err
    assert zoo_main(["--from", str(src["imported"]), "--variants", "standard", "C", "--dataset", "digits",
                     "--out", str(tmp_path / "z"), "--work-dir", str(work), *FAST]) == 2  # fmt: skip
    assert "--dataset: with --from" in capsys.readouterr().err
    assert not (tmp_path / "z").exists() and not (work / "C").exists()


def test_the_recipe_is_fitted_to_input_size_and_data_and_alpha_follows_the_shipped_rules(src, tmp_path):
    import dataclasses

    from models.imported_recipe import (
        MAX_EPOCHS,
        MIN_STEPS,
        build_imported_configs,
        pick_adv_c_alpha,
        pick_c_alpha,
        read_baseline,
    )

    base = read_baseline(src["imported"])
    small = build_imported_configs(base, tmp_path, ["C", "ADV+C"], n_train=45000)
    assert small["C"].pgd_eps == pytest.approx(8 / 255) and small["C"].batch_size == 128
    assert small["C"].epochs == 2 and small["ADV+C"].epochs == 3 and small["ADV+C"].alpha == 0.03
    assert small["ADV+C"].pgd_step == pytest.approx(2.5 * small["ADV+C"].pgd_eps / 3)
    big = build_imported_configs(dataclasses.replace(base, input_size=224), tmp_path, ["C"], n_train=45000)
    assert big["C"].pgd_eps == pytest.approx(16 / 255) and big["C"].batch_size == 64 and big["C"].image_size == 224
    few = build_imported_configs(base, tmp_path, ["C"], n_train=2000)  # 16 steps an epoch: more epochs
    assert few["C"].epochs * 16 == pytest.approx(MIN_STEPS) and few["C"].epochs > 2
    assert build_imported_configs(base, tmp_path, ["C"], n_train=100)["C"].epochs == MAX_EPOCHS  # capped
    # the shipped zoo's one-epoch ADV+C runs (clean, PGD) against a baseline of 88% clean, 0% PGD: 0.03 was chosen
    shipped = {1.0: (0.407, 0.312), 0.1: (0.649, 0.388), 0.03: (0.705, 0.372), 0.01: (0.802, 0.330)}
    assert pick_adv_c_alpha(shipped, 0.88, 0.0) == 0.03
    # C: the largest alpha within 2 points of the baseline (alpha 1 cost the shipped C 5 points)
    assert pick_c_alpha({1.0: 0.825, 0.1: 0.89, 0.03: 0.893, 0.01: 0.894}, 0.894) == 0.1
    assert pick_c_alpha({1.0: 0.5, 0.1: 0.6}, 0.9) == 0.1  # none within the bar: the most accurate


def test_choose_alpha_sweeps_on_validation_and_records_the_choice(src, tmp_path):
    from models.imported_recipe import ALPHA_GRID, pick_c_alpha

    zoo, work = tmp_path / "zoo", tmp_path / "runs"
    args = ["--from", str(src["imported"]), "--variants", "C", "--choose-alpha", "--out", str(zoo), "--work-dir",
            str(work), *FAST]  # fmt: skip
    assert zoo_main(args) == 0
    choice = json.loads((work / "alpha_choice.json").read_text())
    runs = {r["alpha"]: r["val_clean_acc"] for r in choice["runs"] if r["variant"] == "C"}
    assert sorted(runs) == sorted(ALPHA_GRID)
    assert choice["chosen"]["C"] == pick_c_alpha(runs, choice["baseline"]["val_clean_acc"])
    assert load_checkpoint(zoo / "C.pt")["config"]["alpha"] == choice["chosen"]["C"]
    assert read_zoo_manifest(zoo)["alpha_choice"]["chosen"] == choice["chosen"]
    # other settings (here twice the epochs): the run made under the earlier ones is moved aside and redone
    before = load_checkpoint(zoo / "C.pt")["config"]["epochs"]
    assert zoo_main([*[a for a in args if a != "--choose-alpha"], "--epochs-scale", "0.02"]) == 0  # the later wins
    assert load_checkpoint(zoo / "C.pt")["config"]["epochs"] == pytest.approx(2 * before)
    (old,) = work.glob("C.old-*")
    assert load_checkpoint(old / "model.pt")["config"]["epochs"] == before  # kept, not deleted


def test_experiments_that_train_use_the_zoo_architecture_or_are_skipped_with_the_reason(src, mine, tmp_path):
    """The colour-bias experiment trains the zoo's own architecture (a torchvision resnet18 here, not the lab's
    width-8 network); a 64-px imported network cannot be trained on the 32-px colour-bias and transfer sets as the
    zoo uses it, so both are skipped with that reason in REPORT.md and summary.json; and the claims a lone baseline
    cannot measure name the roles and the command that makes them."""
    import pandas as pd

    from analysis.experiments import QUICK
    from analysis.experiments.training import fairness_network
    from analysis.report import build_context
    from analysis.report import main as report_main
    from models.zoo import main as assemble_main

    ctx = build_context(mine["zoo"], tmp_path / "r0", QUICK, tmp_path / "w0")
    assert fairness_network(ctx) == ("torchvision:resnet18", None)

    big = tmp_path / "big.pt"
    assert import_r18(src, big, "--input-size", "64") == 0
    zoo, out = tmp_path / "zoo64", tmp_path / "report"
    assert assemble_main(["--out", str(zoo), "--variant", f"resnet18={big}", "--role", "resnet18=baseline"]) == 0
    only = "continuity,transfer,fairness"
    assert report_main(["--zoo", str(zoo), "--out", str(out), "--only", only, *REPORT]) == 0
    status = json.loads((out / "summary.json").read_text())["experiments"]
    report = (out / "REPORT.md").read_text()
    for name in ("transfer", "fairness"):
        assert status[name]["status"] == "skipped" and "takes 64-px inputs" in status[name]["reason"], status[name]
        assert f"experiment `{name}` skipped (the zoo's torchvision:resnet18 takes 64-px inputs" in report
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    ours = claims.loc["continuity", "ours"]
    assert claims.loc["continuity", "verdict"] == "not measured" and "constrained vs baseline (C vs standard)" in ours
    assert "`python -m models.train_zoo --from <resnet18's checkpoint> --variants C ADV ADV+C --out <zoo>`" in ours


def test_the_installed_backend_finds_its_settings_and_the_shipped_zoo_through_models_assets(tmp_path, monkeypatch):
    """scl-backend's defaults (backend.yaml, the shipped zoo) come from models.assets: in an installed package they
    are under <prefix>/share/semantic-continuity-lab, not beside site-packages."""
    import analysis.backend_service as backend
    from models import assets

    assert backend.DEFAULT_CONFIG == assets.backend_config() and backend.DEFAULT_ZOO == assets.default_zoo()
    share = tmp_path / "prefix" / assets.SHARE
    (share / "assets" / "zoo" / "default").mkdir(parents=True)
    (share / "backend.yaml").write_text("port: 8000\n")
    monkeypatch.setattr(assets, "REPO", tmp_path / "site-packages")  # an installed wheel: no clone around it
    monkeypatch.setattr(assets, "installed_roots", lambda: [share])
    monkeypatch.delenv(assets.ENV_ASSETS, raising=False)
    assert assets.backend_config() == share / "backend.yaml"
    assert assets.default_zoo() == share / "assets" / "zoo" / "default"
