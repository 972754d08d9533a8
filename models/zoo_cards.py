"""A zoo variant's model card: its test-split metrics, the card itself and its Markdown, and the zoo's summary.

``evaluate_variant`` measures clean accuracy, PGD-10 accuracy and level-1 DS per perturbation kind on the
full test split; ``build_card`` records what actually ran; ``card_markdown`` renders it; ``summary_table`` and
``quality_bars`` read a zoo manifest's cards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.checkpoints import load_checkpoint
from models.data import load_dataset
from models.evaluation import accuracy, mean_distance_score, pgd_accuracy
from models.objectives import get_variant
from models.perturbations import KINDS, perturb
from models.recipes import RECIPES
from models.roles import ADVERSARIAL_CONSTRAINED, CONSTRAINED, default_role
from models.runs import FINAL_FILE
from models.train_config import TrainConfig

__all__ = [
    "evaluate_variant",
    "build_card",
    "card_markdown",
    "cards_on_disk",
    "summary_table",
    "quality_bars",
    "has_quality_bars",
]


def evaluate_variant(model: torch.nn.Module, cfg: TrainConfig, pgd_size: int | None = None) -> dict[str, Any]:
    """Card metrics on the test split: clean and PGD-10 accuracy, DS at level 1 per kind and summed."""
    test = load_dataset(cfg.dataset, "test", cfg.data_root, cache_dir=cfg.cache_dir, image_size=cfg.image_size)
    n_pgd = min(pgd_size or len(test), len(test))  # pgd_size None or 0: the whole split
    pgd_set = test.subset(torch.arange(n_pgd))
    ds = {kind: mean_distance_score(model, test.images, lambda x, k=kind: perturb(x, k, 1)) for kind in KINDS}
    return {
        "test_size": len(test),
        "test_clean_acc": accuracy(model, test.images, test.labels),
        "test_pgd10_acc": pgd_accuracy(
            model, pgd_set.images, pgd_set.labels, eps=cfg.pgd_eps, step_size=2 / 255, steps=10, seed=0
        ),
        "pgd_eval": {"eps": cfg.pgd_eps, "step_size": 2 / 255, "steps": 10, "images": n_pgd, "random_start": True},
        "ds_level1": ds,
        "ds_level1_sum": sum(ds.values()),
    }


def card_markdown(variant: str, card: dict[str, Any]) -> str:
    """A human-readable model card."""
    m = card["metrics"]
    lines = [
        f"# Model card: {variant}",
        "",
        f"- network: `{card['network']}`; data set: `{card['dataset']['name']}` "
        f"({card['dataset'].get('size', '?')} training images before the validation split)",
        f"- objective: {card['objective']}",
        f"- recipe `{card['recipe']}`: "
        + ", ".join(
            f"{k}={v}"
            for k, v in card["config"].items()
            if k
            in (
                "dataset",
                "preset",
                "epochs",
                "lr",
                "optimizer",
                "alpha",
                "pgd_steps",
                "pgd_step",
                "batch_size",
                "train_limit",
                "warmup_steps",
                "init",
            )
        )
        + (f"; epochs run: {card['epochs_run']:g}" if card.get("epochs_run") is not None else ""),
        f"- training time: {_training_time(card)}; code {card['git_commit']}",
        "",
        "| metric (test split) | value |",
        "|---|---|",
        f"| clean accuracy | {100 * m['test_clean_acc']:.2f}% |",
        f"| PGD-10 accuracy (eps {m['pgd_eval']['eps'] * 255:.0f}/255, {m['pgd_eval']['images']} images) "
        f"| {100 * m['test_pgd10_acc']:.2f}% |",
        *[f"| DS level 1, {k} | {v:.4f} |" for k, v in m["ds_level1"].items()],
        f"| DS level 1, sum of four kinds | {m['ds_level1_sum']:.4f} |",
        "",
        "Differences from the paper:",
        *[f"- {d}" for d in card["differences_from_paper"]],
        "",
    ]
    return "\n".join(lines)


def _training_time(card: dict[str, Any]) -> str:
    seconds = card.get("train_seconds")
    if seconds is None:
        return "not recorded (the run was trained before the zoo command that evaluated it)"
    return f"{seconds:.0f} s on {card['device']} (wall time)"


def build_card(
    variant: str,
    recipe: str,
    run_dir: Path,
    metrics: dict[str, Any],
    seconds: float | None,
    differences: list[str] | None = None,
) -> dict[str, Any]:
    """A variant's card: what actually ran (config, data set and epochs from the finished checkpoint).
    ``differences`` from the paper: the recipe's in ``RECIPES`` unless given (a recipe made elsewhere)."""
    ckpt = load_checkpoint(run_dir / FINAL_FILE)
    cfg, history = ckpt["config"], ckpt["metrics"].get("history", [])
    width = cfg.get("width")
    return {
        "variant": variant,
        "objective": getattr(get_variant(variant), "objective", variant),  # the registry's one statement of it
        "recipe": recipe,
        "network": f"{cfg['network']} (width {width})" if width else cfg["network"],
        "dataset": ckpt["dataset"],
        "config": cfg,
        "epochs_run": history[-1]["epoch"] if history else None,
        "metrics": metrics,
        "validation_history": history,
        "train_seconds": seconds,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "git_commit": ckpt["git_commit"],
        "differences_from_paper": RECIPES[recipe]["differences_from_paper"] if differences is None else differences,
    }


def cards_on_disk(manifest_path: Path) -> dict[str, dict[str, Any]]:
    """The cards of an existing zoo manifest, or {}."""
    if not manifest_path.is_file():
        return {}
    return {v: item["card"] for v, item in json.loads(manifest_path.read_text()).get("variants", {}).items()}


def summary_table(manifest: dict[str, Any]) -> str:
    """The zoo's cards as a Markdown table (test split: clean, PGD-10, level-1 DS summed)."""
    rows = [
        "| variant | clean accuracy | PGD-10 accuracy | DS level 1 (sum of 4 kinds) | training |",
        "|---|---|---|---|---|",
    ]
    for variant, item in manifest["variants"].items():
        m, cfg = item["card"]["metrics"], item["card"]["config"]
        epochs = item["card"].get("epochs_run") or cfg.get("epochs", 0)
        continuity = item.get("role", default_role(variant)) in (CONSTRAINED, ADVERSARIAL_CONSTRAINED)
        if "preset" not in cfg:  # an imported checkpoint (models.import_model): trained elsewhere
            how = f"imported ({cfg.get('network', '?')})"
        else:
            how = f"{cfg['preset']}, {epochs:g} epochs" + (f", alpha {cfg['alpha']:g}" if continuity else "")
        n_pgd = m["pgd_eval"]["images"]
        pgd_on = "" if n_pgd == m.get("test_size") else f" (first {n_pgd})"
        rows.append(
            f"| {variant} | {100 * m['test_clean_acc']:.2f}% | {100 * m['test_pgd10_acc']:.2f}%{pgd_on} "
            f"| {m['ds_level1_sum']:.3f} | {how} |"
        )
    return "\n".join(rows)


def quality_bars(manifest: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The default zoo's quality bars (issue "The default zoo"): (bar, measured, met) for each."""
    m = {v: item["card"]["metrics"] for v, item in manifest["variants"].items()}
    std, c = m["standard"], m["C"]
    bars = [
        ("standard clean accuracy >= 88%", f"{100 * std['test_clean_acc']:.2f}%", std["test_clean_acc"] >= 0.88),
        (
            "C clean accuracy within 2 points of standard",
            f"{100 * (c['test_clean_acc'] - std['test_clean_acc']):+.2f} points",
            abs(c["test_clean_acc"] - std["test_clean_acc"]) <= 0.02,
        ),
        (
            "C level-1 DS sum <= half of standard's",
            f"{c['ds_level1_sum'] / std['ds_level1_sum']:.3f} x standard",
            c["ds_level1_sum"] <= 0.5 * std["ds_level1_sum"],
        ),
    ]
    for adv in ("ADV", "ADV+C"):
        if adv in m:
            gain = m[adv]["test_pgd10_acc"] - std["test_pgd10_acc"]
            bars.append((f"{adv} PGD-10 accuracy >= standard's + 40 points", f"{100 * gain:+.2f} points", gain >= 0.40))
            bars.append(
                (
                    f"{adv} clean accuracy >= 75%",
                    f"{100 * m[adv]['test_clean_acc']:.2f}%",
                    m[adv]["test_clean_acc"] >= 0.75,
                )
            )
    return bars


def has_quality_bars(manifest: dict[str, Any]) -> bool:
    """The shipped bars apply only to a zoo made by the recipe that defines them, without overrides."""
    recipe = RECIPES.get(manifest.get("recipe", ""), {})
    return bool(recipe.get("quality_bars")) and not manifest.get("overrides") and "standard" in manifest["variants"]
