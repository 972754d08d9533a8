"""How each zoo variant is trained: the recipes and the TrainConfig each one gives.

A *recipe* says how each variant is trained. ``cpu-default`` (the shipped zoo)
trains ``standard`` from scratch and fine-tunes C, ADV and ADV+C from it; the
``paper-*`` recipes use the paper's networks and hyper-parameters for a GPU.
``python -m models.train_zoo --recipe NAME`` trains one. Every recipe with a ``C`` gets the matched control
``C-control`` (``matched_control``): C's entry with alpha 0, so it is fine-tuned from standard for C's epochs with
C's jitter as augmentation and no DS term.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.errors import SettingsError
from models.objectives import VARIANTS
from models.runs import FINAL_FILE
from models.train_config import TrainConfig

__all__ = ["EPS", "RECIPES", "build_configs", "matched_control", "recipe_variants"]

EPS = 8 / 255

# Per recipe: settings shared by all variants, then each variant's own.
RECIPES: dict[str, dict[str, Any]] = {
    "cpu-default": {
        "common": {
            "dataset": "fashion-mnist-m",
            "network": "resnet18-cifar",
            "width": 16,
            "batch_size": 128,
            "val_size": 5000,
            "seed": 0,
            "pgd_eps": EPS,
        },
        "standard": {"preset": "scratch", "epochs": 6},
        # alpha 0.1 for C: alpha 1 cost 5 points of validation accuracy (82.5% after epoch 1 vs 89.4%).
        "C": {"preset": "finetune", "epochs": 2, "alpha": 0.1, "init": "standard"},
        # ADV gets the epochs of ADV+C, so that the pairing term is the only difference (the shipped ADV had 2).
        "ADV": {"preset": "finetune", "epochs": 3, "pgd_steps": 3, "pgd_step": 2.5 * EPS / 3, "init": "standard"},
        # alpha 0.03 for ADV+C, chosen on the validation split by one-epoch runs (clean / PGD-10 accuracy):
        # alpha 1: 40.7% / 31.2%; 0.1: 64.9% / 38.8%; 0.03: 70.5% / 37.2%; 0.01: 80.2% / 33.0%. Rule, fixed before
        # the 0.03 run: the largest min(clean - 75, PGD - 40) points, i.e. the nearest to both bars.
        "ADV+C": {
            "preset": "finetune",
            "epochs": 3,
            "pgd_steps": 3,
            "pgd_step": 2.5 * EPS / 3,
            "alpha": 0.03,
            "init": "standard",
        },
        # Controls (trained only when named in --variants): C-control (added below: C's path, jitter, no DS);
        # standard+jitter, "standard+jitter (scratch)": standard's recipe with C's jitter as augmentation, kept
        # beside the matched one; and Kannan et al.'s mixed clean/adversarial CE (alpha 0) on ADV+C's epochs.
        "standard+jitter": {"preset": "scratch", "epochs": 6},
        "ADV-mixed": {
            "preset": "finetune",
            "epochs": 3,
            "pgd_steps": 3,
            "pgd_step": 2.5 * EPS / 3,
            "alpha": 0.0,
            "init": "standard",
        },
        "quality_bars": True,  # the bars of quality_bars() are defined for this recipe (and no overrides)
        "differences_from_paper": [
            "width-16 CIFAR ResNet18 (paper: width 64) so that the zoo trains on a 2-core CPU",
            "data set fashion-mnist-m (paper: CIFAR-100 / ImageNet), which needs no download",
            "standard trained from scratch with SGD+Nesterov, lr 0.05, cosine, 6 epochs (paper: not stated)",
            "C fine-tuned from standard for 2 epochs, ADV and ADV+C for 3, with SGD lr 0.01 cosine "
            "(paper: Adam lr 1e-5)",
            "C uses alpha 0.1 and ADV+C alpha 0.03 (paper: 1.0), both chosen on the validation split: DS is summed "
            "over classes, and alpha 1 cost C 5 points and ADV+C 26 points of validation accuracy",
            "training PGD uses 3 steps of 2.5*eps/3 (paper: 10 steps of 2/255); evaluation uses the paper's PGD-10",
            "ADV+C is logit pairing with CE on clean and adversarial halves, as in Kannan et al. 2018",
        ],
    },
    "paper-cifar100": {
        "common": {
            "dataset": "cifar100",
            "network": "resnet18-cifar",
            "width": 64,
            "batch_size": 128,
            "val_size": 5000,
            "seed": 0,
            "pgd_eps": EPS,
            "pgd_step": 2 / 255,
            "pgd_steps": 10,
        },
        "standard": {"preset": "scratch", "epochs": 60},
        "C": {"preset": "paper", "epochs": 10, "alpha": 1.0, "init": "standard"},
        "ADV": {"preset": "paper", "epochs": 10, "init": "standard"},
        "ADV+C": {"preset": "paper", "epochs": 10, "alpha": 1.0, "init": "standard"},
        "differences_from_paper": [
            "standard's from-scratch schedule and the fine-tuning length are not stated "
            "in the paper and are this project's choice"
        ],
    },
    "paper-imagenet": {
        "common": {
            "dataset": "imagefolder",
            "stream": True,  # read from disk batch by batch: an ImageNet-sized split does not fit in memory
            "network": "resnet50",
            "width": None,
            "image_size": 224,
            "batch_size": 256,
            "val_size": 10000,
            "seed": 0,
            "pgd_eps": 16 / 255,
            "pgd_step": 2 / 255,
            "pgd_steps": 10,
            "augment": True,
        },
        "standard": {"preset": "scratch", "epochs": 90, "lr": 0.1},
        "C": {"preset": "paper", "epochs": 5, "alpha": 1.0, "init": "standard"},
        "ADV": {"preset": "paper", "epochs": 5, "init": "standard"},
        "ADV+C": {"preset": "paper", "epochs": 5, "alpha": 1.0, "init": "standard"},
        "differences_from_paper": [
            "standard's from-scratch schedule and the fine-tuning length are not stated "
            "in the paper and are this project's choice"
        ],
    },
}


def matched_control(c_entry: dict[str, Any]) -> dict[str, Any]:
    """The recipe entry of ``C-control`` from C's: the same preset, epochs, init and every other setting, alpha 0
    (its loss has no DS term; 0 says so in the run's config)."""
    return {**{k: v for k, v in c_entry.items() if k != "alpha"}, "alpha": 0.0}


for _spec in RECIPES.values():
    if "C" in _spec:
        _spec["C-control"] = matched_control(_spec["C"])


def build_configs(
    recipe: str, work_dir: str | Path, epochs_scale: float | None = None, **overrides: Any
) -> dict[str, TrainConfig]:
    """The TrainConfig of each variant under ``recipe``; ``overrides`` (TrainConfig fields, e.g. data_root,
    train_limit) apply to all where not None; ``epochs_scale`` multiplies every variant's epochs."""
    if recipe not in RECIPES:
        raise SettingsError(f"--recipe: unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    if epochs_scale is not None and not epochs_scale > 0:
        raise SettingsError(f"--epochs-scale {epochs_scale!r}: must be > 0")
    spec, work_dir = RECIPES[recipe], Path(work_dir)
    configs = {}
    for variant in recipe_variants(recipe):
        fields = {**spec["common"], **spec[variant], **{k: v for k, v in overrides.items() if v is not None}}
        fields["epochs"] = fields["epochs"] * (epochs_scale or 1.0)
        init = fields.pop("init", None)
        fields["init"] = str(work_dir / init / FINAL_FILE) if init in VARIANTS else init
        configs[variant] = TrainConfig(variant=variant, out=str(work_dir / variant), **fields)
    return configs


def recipe_variants(recipe: str) -> list[str]:
    """The variants a recipe trains, in registry order."""
    return [v for v in VARIANTS if v in RECIPES[recipe]]
