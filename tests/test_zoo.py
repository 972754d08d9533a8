"""The shipped zoo (assets/zoo/default) and the zoo recipes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import torch

from models.checkpoints import CHECKPOINT_FORMAT, load_zoo, sha256_file
from models.data import load_dataset
from models.evaluation import accuracy
from models.objectives import PAPER_VARIANTS
from models.train import FINAL_FILE, train
from models.train_zoo import RECIPES, build_configs, card_markdown, quality_bars
from tests.test_data import make_cifar100, make_imagefolder

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "zoo" / "default"


def test_shipped_zoo_is_complete_small_and_verified():
    manifest = json.loads((SHIPPED / "zoo.json").read_text())
    # the paper's four, then the three controls (C's jitter from scratch, and on C's path; ADV+C with alpha 0)
    assert list(manifest["variants"]) == [*PAPER_VARIANTS, "standard+jitter", "C-control", "ADV-mixed"]
    for variant, item in manifest["variants"].items():
        path = SHIPPED / item["file"]
        assert path.stat().st_size <= 4 * 1024 * 1024, f"{path} is over 4 MB"
        assert sha256_file(path) == item["sha256"]
        assert (SHIPPED / "cards" / f"{variant}.md").is_file()
        raw = torch.load(path, map_location="cpu", weights_only=True)  # never executes code
        assert raw["format"] == CHECKPOINT_FORMAT and "training_state" not in raw
    zoo = load_zoo(SHIPPED)  # verifies every sha256
    assert zoo.dataset["name"] == "fashion-mnist-m"


def test_shipped_cards_state_accuracies_the_models_reproduce():
    zoo = load_zoo(SHIPPED)
    test = load_dataset("fashion-mnist-m", "test")
    # The whole test split (10k images, seconds on a CPU): a 1,000-image subset drifts ~1-2 points by chance.
    subset = test
    for variant, entry in zoo.entries.items():
        stated = entry.card["metrics"]["test_clean_acc"]
        measured = accuracy(entry.model, subset.images, subset.labels)
        assert abs(measured - stated) <= 0.002, f"{variant}: card says {stated:.4f}, measured {measured:.4f}"


def test_readme_states_the_zoo_figures_and_bars_exactly_as_the_summary_command_prints_them():
    proc = subprocess.run(
        [sys.executable, "-m", "models.train_zoo", "--out", str(SHIPPED), "--summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in (ROOT / "README.md").read_text()
    bars = quality_bars(json.loads((SHIPPED / "zoo.json").read_text()))
    assert [bar for bar, _, _ in bars][:3] == [
        "standard clean accuracy >= 88%",
        "C clean accuracy within 2 points of standard",
        "C level-1 DS sum <= half of standard's",
    ]


def test_cpu_recipe_fine_tunes_from_standard(tmp_path):
    configs = build_configs("cpu-default", tmp_path)
    assert configs["standard"].init is None and configs["standard"].preset == "scratch"
    for variant in ("C", "ADV", "ADV+C"):
        assert configs[variant].init == str(tmp_path / "standard" / FINAL_FILE)
    assert configs["ADV"].pgd_steps * configs["ADV"].pgd_step >= configs["ADV"].pgd_eps  # steps can reach eps


def test_paper_cifar100_recipe_builds_the_papers_configs_and_runs_a_step(tmp_path):
    make_cifar100(tmp_path / "data")
    configs = build_configs("paper-cifar100", tmp_path / "runs", data_root=str(tmp_path / "data"))
    adv_c = configs["ADV+C"].resolved()
    assert (adv_c.network, adv_c.width, adv_c.dataset) == ("resnet18-cifar", 64, "cifar100")
    assert (adv_c.optimizer, adv_c.lr, adv_c.alpha) == ("adam", 1e-5, 1.0)
    assert (adv_c.pgd_eps, adv_c.pgd_step, adv_c.pgd_steps) == (8 / 255, 2 / 255, 10)
    quick = dataclasses.replace(
        configs["ADV+C"], init=None, epochs=1, eval_pgd_subset=2, eval_test=False, num_threads=1
    )
    metrics = train(quick, progress=False)  # 4 images: one step of the paper-size network
    assert metrics["step"] == 1
    assert (tmp_path / "runs" / "ADV+C" / FINAL_FILE).is_file()


def test_paper_imagenet_recipe_builds_resnet50_configs_and_runs_a_step(tmp_path):
    make_imagefolder(tmp_path / "imagenet")
    configs = build_configs("paper-imagenet", tmp_path / "runs", data_root=str(tmp_path / "imagenet"))
    adv = configs["ADV"].resolved()
    assert (adv.network, adv.image_size, adv.pgd_eps, adv.pgd_steps) == ("resnet50", 224, 16 / 255, 10)
    quick = dataclasses.replace(configs["standard"], epochs=1, eval_test=False, num_threads=1, image_size=64)
    assert train(quick, progress=False)["step"] == 1


def test_card_markdown_lists_metrics_and_differences():
    card = {
        "network": "resnet18-cifar (width 16)",
        "dataset": {"name": "digits", "size": 10},
        "objective": "CE",
        "recipe": "cpu-default",
        "config": {"epochs": 1},
        "train_seconds": 3.0,
        "device": "cpu",
        "git_commit": "abc",
        "differences_from_paper": RECIPES["cpu-default"]["differences_from_paper"],
        "metrics": {
            "test_clean_acc": 0.9,
            "test_pgd10_acc": 0.1,
            "pgd_eval": {"eps": 8 / 255, "images": 5},
            "ds_level1": {"hue": 0.5},
            "ds_level1_sum": 0.5,
        },
    }
    text = card_markdown("standard", card)
    assert "90.00%" in text and "width-16" in text and "DS level 1, hue" in text
    assert "training time: 3 s on cpu" in text
    # a run trained before the zoo command that evaluated it: no time is invented for it
    untimed = card_markdown("standard", {**card, "train_seconds": None})
    assert "training time: not recorded" in untimed and " 0 s " not in untimed
