"""The paper's variants of your own network: fine-tuned from an imported (or any lab) checkpoint, assembled as a zoo.

    python -m models.train_zoo --from imported/resnet18.pt --variants C ADV ADV+C --out zoos/mine

The checkpoint given with ``--from`` is the zoo's ``standard`` (role baseline), copied unchanged; every other
variant is fine-tuned from it (``init``), so each shares its architecture, normalisation, data set and input size
(all read from the checkpoint: its network spec, ``config`` and ``dataset``). ``standard+jitter`` is fine-tuned too
(C's path without the DS term, as ``C-control`` is), not retrained from scratch: the user's network is the point.
The recipe is the shipped CPU recipe's fine-tuning (``models.recipes``: preset ``finetune``, SGD lr 0.01 cosine; C
and its controls 2 epochs, ADV, ADV+C and ADV-mixed 3; training PGD 3 steps of 2.5*eps/3) fitted to the network and
data:

* eps 8/255 up to 64 px (the paper's CIFAR setting), 16/255 above (its 224-px ImageNet setting);
* batch 128 up to 64 px, 64 above (a 224-px activation is 49 times larger);
* epochs raised on a small training split so that each fine-tune takes at least :data:`MIN_STEPS` optimiser steps
  (at most :data:`MAX_EPOCHS` epochs); ``--epochs-scale`` multiplies the result;
* alpha: by default the values the shipped recipe chose on its validation split (C 0.1, ADV+C 0.03; DS is summed
  over classes, so alpha 1 weighs a 10-class network's logits as the paper's did, but cost the shipped networks 5 and
  26 points of validation accuracy). ``--choose-alpha`` chooses them on *this* network's validation split instead,
  with one-recipe-epoch fine-tunes over :data:`ALPHA_GRID` and the shipped rules stated relative to the baseline
  (:func:`pick_c_alpha`, :func:`pick_adv_c_alpha`); the sweep is recorded in ``<work-dir>/alpha_choice.json``.

Resumable as ``models.train_zoo`` is: finished runs are kept in ``<work-dir>/<variant>``, an interrupted one resumes
from its checkpoint, each evaluation is cached beside its run, and the zoo folder is written once, complete, in a
temporary sibling swapped in (an earlier zoo kept as ``<out>.old-<timestamp>``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoints import ZOO_MANIFEST, load_checkpoint, load_model, sha256_file, write_zoo_manifest
from models.errors import SettingsError
from models.objectives import VARIANTS
from models.runs import FINAL_FILE, RESUME_FILE
from models.safe_output import folder_lock, move_aside, replacing, temp_sibling
from models.train_config import TrainConfig

__all__ = ["RECIPE", "ALPHA_GRID", "Baseline", "read_baseline", "build_imported_configs", "pick_c_alpha",
           "pick_adv_c_alpha", "train_from_baseline", "zoo_trainer"]  # fmt: skip

RECIPE = "from-baseline"  # the cards' and manifest's recipe name
BASELINE = "standard"  # the variant the --from checkpoint becomes (role baseline)
FINETUNED = ("C", "ADV", "ADV+C", "standard+jitter", "C-control", "ADV-mixed")
BASE_EPOCHS = {"C": 2.0, "ADV": 3.0, "ADV+C": 3.0, "standard+jitter": 2.0, "C-control": 2.0, "ADV-mixed": 3.0}
DEFAULT_ALPHA = {"C": 0.1, "ADV+C": 0.03, "C-control": 0.0, "ADV-mixed": 0.0}  # the shipped zoo's, chosen on val.
ALPHA_GRID = (1.0, 0.1, 0.03, 0.01)  # the shipped ADV+C sweep's grid
MIN_STEPS = 300
MAX_EPOCHS = 30.0
SMALL_INPUT = 64  # px: up to here the paper's CIFAR eps (8/255), above it its ImageNet one (16/255)
C_TOLERANCE = 0.02  # the shipped bar: C within 2 points of standard's clean accuracy
ADV_CLEAN_BELOW, ADV_PGD_ABOVE = 0.13, 0.40  # the shipped bars (75% clean against standard's 88%; PGD +40 points)
CARD_CACHE = "zoo_card.json"  # as models.train_zoo: a run's evaluated card, reused while its model.pt is unchanged
CHOICE_FILE = "alpha_choice.json"


@dataclass(frozen=True)
class Baseline:
    """What the ``--from`` checkpoint says about itself: network, data set, input size and classes."""

    path: Path
    sha256: str
    network: dict[str, Any]
    dataset: str
    data_root: str | None
    input_size: int
    classes: list[str]
    imported: dict[str, Any] | None  # the checkpoint config's ``import`` record (None for a lab-trained one)


def read_baseline(path: str | Path) -> Baseline:
    """Read the checkpoint to fine-tune from; SettingsError when it does not say its data set or input size."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SettingsError(f"--from {path}: no such checkpoint (import one with python -m models.import_model)")
    ckpt = load_checkpoint(path)
    spec, config, dataset = ckpt["network"], ckpt.get("config") or {}, ckpt.get("dataset") or {}
    shape = dataset.get("image_shape") or []
    size = spec.get("input_size") or config.get("image_size") or (shape[-1] if shape else None)
    name = dataset.get("name") or config.get("dataset")
    if not name or not size:
        raise SettingsError(f"--from {path}: the checkpoint records no data set or input size to fine-tune on")
    classes = [str(c) for c in dataset.get("classes") or range(int(spec["num_classes"]))]
    return Baseline(path, sha256_file(path), dict(spec), str(name), config.get("data_root"), int(size), classes,
                    config.get("import"))  # fmt: skip


def fitted_eps(input_size: int) -> float:
    """The paper's L-inf radius for this input size: 8/255 on CIFAR-sized inputs, 16/255 on ImageNet-sized ones."""
    return 8 / 255 if input_size <= SMALL_INPUT else 16 / 255


def fitted_epochs(variant: str, n_train: int, batch_size: int) -> float:
    """The recipe's epochs for ``variant``, raised so the fine-tune takes at least MIN_STEPS steps (<= MAX_EPOCHS)."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return min(MAX_EPOCHS, max(BASE_EPOCHS[variant], MIN_STEPS / steps_per_epoch))


def _training_images(base: Baseline, data_root: str | None, train_limit: int | None) -> int:
    """Images a fine-tune trains on: the training split (or its first ``train_limit``) less the validation split."""
    from models.data import load_dataset
    from models.train_setup import validation_count

    n = len(load_dataset(base.dataset, "train", data_root, image_size=base.input_size))
    n = min(n, train_limit) if train_limit else n
    return n - validation_count(n, 5000)


def build_imported_configs(
    base: Baseline, work_dir: str | Path, variants: list[str], *, alphas: dict[str, float] | None = None,
    epochs_scale: float | None = None, train_limit: int | None = None, batch_size: int | None = None,
    warmup_steps: int | None = None, data_root: str | None = None, device: str | None = None,
    num_threads: int | None = None, n_train: int | None = None,
) -> dict[str, TrainConfig]:  # fmt: skip
    """The TrainConfig of ``standard`` (evaluation only: it is the baseline) and of each fine-tuned variant."""
    unknown = [v for v in variants if v != BASELINE and v not in FINETUNED]
    if unknown:
        raise SettingsError(f"--variants with --from: {', '.join(unknown)} cannot be fine-tuned "
                            f"(known: {', '.join(FINETUNED)}; {BASELINE} is the --from checkpoint itself)")  # fmt: skip
    if epochs_scale is not None and not epochs_scale > 0:
        raise SettingsError(f"--epochs-scale {epochs_scale!r}: must be > 0")
    work_dir, root = Path(work_dir), data_root or base.data_root
    eps = fitted_eps(base.input_size)
    batch = batch_size or (128 if base.input_size <= SMALL_INPUT else 64)
    if n_train is None and any(v in FINETUNED for v in variants):
        n_train = _training_images(base, root, train_limit)
    common = dict(dataset=base.dataset, data_root=root, image_size=base.input_size, network=base.network["name"],
                  width=base.network.get("width"), batch_size=batch, preset="finetune", warmup_steps=warmup_steps,
                  val_size=5000, train_limit=train_limit, seed=0, pgd_eps=eps, pgd_steps=3, pgd_step=2.5 * eps / 3,
                  device=device or "auto", num_threads=num_threads)  # fmt: skip
    configs = {BASELINE: TrainConfig(variant=BASELINE, out=str(work_dir / BASELINE), epochs=1.0, **common)}
    chosen = {**DEFAULT_ALPHA, **(alphas or {})}
    for variant in [v for v in FINETUNED if v in variants]:
        epochs = fitted_epochs(variant, n_train or 1, batch) * (epochs_scale or 1.0)
        configs[variant] = TrainConfig(variant=variant, out=str(work_dir / variant), epochs=epochs,
                                       alpha=chosen.get(variant, 1.0), init=str(work_dir / BASELINE / FINAL_FILE),
                                       **common)  # fmt: skip
    for cfg in configs.values():
        cfg.resolved().validate()
    return configs


def differences_from_paper(base: Baseline, alpha_note: str) -> list[str]:
    """The recipe's differences from the paper, for every card of the zoo."""
    return [
        f"every variant fine-tuned from the --from checkpoint ({base.network['name']}, {base.input_size} px, data set "
        f"{base.dataset}) with SGD lr 0.01 cosine (paper: Adam lr 1e-5); standard+jitter fine-tuned too (C without "
        "its DS term), not trained from scratch",
        "training PGD uses 3 steps of 2.5*eps/3 (paper: 10 steps of 2/255); evaluation uses the paper's PGD-10",
        alpha_note,
        "ADV+C is logit pairing with CE on clean and adversarial halves, as in Kannan et al. 2018",
    ]


# ----------------------------------------------------------------------------- choosing alpha on validation


def pick_c_alpha(val_acc: dict[float, float], baseline_acc: float) -> float:
    """The shipped rule for C: the largest alpha whose validation accuracy is within C_TOLERANCE of the baseline's
    (the bar "C within 2 points of standard"); if none is, the most accurate one."""
    ok = [a for a, acc in val_acc.items() if acc >= baseline_acc - C_TOLERANCE]
    return max(ok) if ok else max(val_acc, key=lambda a: (val_acc[a], a))


def pick_adv_c_alpha(val: dict[float, tuple[float, float]], baseline_clean: float, baseline_pgd: float) -> float:
    """The shipped rule for ADV+C: the largest ``min(clean - clean bar, PGD - PGD bar)``, the bars stated relative to
    the baseline as the shipped ones were (clean 13 points below its accuracy, PGD 40 points above its PGD)."""

    def score(alpha: float) -> tuple[float, float]:
        clean, pgd = val[alpha]
        return min(clean - (baseline_clean - ADV_CLEAN_BELOW), pgd - (baseline_pgd + ADV_PGD_ABOVE)), alpha

    return max(val, key=score)


def _finished_metrics(cfg: TrainConfig, progress: bool) -> dict[str, Any]:
    """Train ``cfg`` (resuming an interrupted run) unless finished; the finished model's metrics."""
    from models.train import train

    run_dir = Path(cfg.out)
    if not (run_dir / FINAL_FILE).is_file():
        train(dataclasses.replace(cfg, resume=(run_dir / RESUME_FILE).is_file()), progress=progress,
              raise_on_interrupt=True)  # fmt: skip
    return dict(load_checkpoint(run_dir / FINAL_FILE)["metrics"])


def _baseline_validation(cfg: TrainConfig, baseline_file: Path) -> dict[str, float]:
    """The baseline's clean and PGD accuracy on the validation split the fine-tunes are scored on."""
    from models.batches import clean_accuracy, robust_accuracy
    from models.devices import pick_device
    from models.train_setup import training_data

    resolved = cfg.resolved()
    _, val = training_data(resolved, None)
    if val is None:
        raise SettingsError("--choose-alpha needs a validation split: the training split is too small")
    model, _ = load_model(baseline_file, pick_device(resolved.device))
    sub = val.subset(torch.arange(min(resolved.eval_pgd_subset or len(val), len(val))))
    pgd = robust_accuracy(model, sub, eps=resolved.pgd_eps, step_size=resolved.eval_pgd_step,
                          steps=resolved.eval_pgd_steps, seed=resolved.seed)  # fmt: skip
    return {"val_clean_acc": clean_accuracy(model, val), "val_pgd_acc": pgd}


def choose_alphas(
    configs: dict[str, TrainConfig], work_dir: Path, base: Baseline, progress: bool = True
) -> dict[str, Any]:
    """Choose C's and ADV+C's alpha (those of them in ``configs``) by one-recipe-epoch fine-tunes over ALPHA_GRID on
    the validation split; returns (and keeps in ``work_dir/alpha_choice.json``) the runs, the baseline and the
    choice. A record for the same baseline, grid and settings is reused; each run resumes where it stopped."""
    wanted = [v for v in ("C", "ADV+C") if v in configs]
    path = work_dir / CHOICE_FILE
    key = {"baseline_sha256": base.sha256, "grid": list(ALPHA_GRID), "variants": wanted,
           "configs": {v: {k: val for k, val in dataclasses.asdict(configs[v]).items()
                           if k not in ("out", "device", "num_threads", "alpha")} for v in wanted}}  # fmt: skip
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc.get("key") == key:
            return doc
    baseline = _baseline_validation(configs[wanted[0]], work_dir / BASELINE / FINAL_FILE)
    runs, chosen = [], {}
    for variant in wanted:
        cfg = configs[variant]
        metrics = {}
        for alpha in ALPHA_GRID:
            out = work_dir / "alpha-choice" / variant / f"alpha-{alpha:g}"
            print(f"[zoo] {variant}: choosing alpha, {alpha:g} ({out})", file=sys.stderr)
            one = dataclasses.replace(cfg, alpha=alpha, epochs=cfg.epochs / BASE_EPOCHS[variant], out=str(out),
                                      eval_test=False)  # fmt: skip
            m = _finished_metrics(one, progress)
            metrics[alpha] = (float(m["val_clean_acc"]), float(m.get("val_pgd_acc", math.nan)))
            runs.append({"variant": variant, "alpha": alpha, "val_clean_acc": metrics[alpha][0],
                         "val_pgd_acc": None if math.isnan(metrics[alpha][1]) else metrics[alpha][1]})  # fmt: skip
        if variant == "C":
            chosen[variant] = pick_c_alpha({a: c for a, (c, _) in metrics.items()}, baseline["val_clean_acc"])
        else:
            chosen[variant] = pick_adv_c_alpha(metrics, baseline["val_clean_acc"], baseline["val_pgd_acc"])
        print(f"[zoo] {variant}: alpha {chosen[variant]:g} chosen on the validation split", file=sys.stderr)
    doc = {"key": key, "baseline": baseline, "runs": runs, "chosen": chosen,
           "rule": {"C": pick_c_alpha.__doc__, "ADV+C": pick_adv_c_alpha.__doc__}}  # fmt: skip
    _atomic_write(path, json.dumps(doc, indent=2) + "\n")
    return doc


def _alpha_note(choice: dict[str, Any] | None) -> str:
    if choice is None:
        return ("alpha: C 0.1 and ADV+C 0.03 (paper: 1.0), the values chosen on validation for the shipped zoo "
                "(not for this network: --choose-alpha chooses on its validation split)")  # fmt: skip
    picked = ", ".join(f"{v} {a:g}" for v, a in choice["chosen"].items())
    return (
        f"alpha chosen on this network's validation split from {', '.join(f'{a:g}' for a in ALPHA_GRID)} by "
        f"one-recipe-epoch fine-tunes, with the shipped zoo's rules: {picked} (paper: 1.0)"
    )


# ----------------------------------------------------------------------------- the zoo


def _atomic_write(path: Path, text: str) -> None:
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _place_baseline(base: Baseline, run_dir: Path) -> None:
    """Copy the --from checkpoint into ``run_dir/model.pt`` (what every fine-tune starts from); a different one
    already there is refused rather than mixed with runs fine-tuned from it."""
    final = run_dir / FINAL_FILE
    if final.is_file():
        if sha256_file(final) != base.sha256:
            raise SettingsError(f"{run_dir.parent} holds runs fine-tuned from another baseline than {base.path}: "
                                "pass --fresh (moves them aside) or another --work-dir")  # fmt: skip
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        shutil.copyfile(base.path, tmp)
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)


# what may differ between a run on disk and the one asked for without making it another run
_SAME_RUN_MAY_DIFFER = {"out", "resume", "device", "num_threads", "num_workers", "checkpoint_every",
                        "stop_after_steps", "channels_last"}  # fmt: skip


def _move_stale_run(variant: str, cfg: TrainConfig) -> None:
    """Move aside (never delete) a run in ``cfg.out`` trained under other settings (e.g. another chosen alpha), so
    it is fine-tuned again rather than reused."""
    run_dir = Path(cfg.out)
    found = next((run_dir / f for f in (FINAL_FILE, RESUME_FILE) if (run_dir / f).is_file()), None)
    if found is None:
        return
    saved, wanted = load_checkpoint(found).get("config") or {}, dataclasses.asdict(cfg.resolved())
    diffs = [f"{k} {saved.get(k)!r} (now {v!r})" for k, v in wanted.items()
             if k not in _SAME_RUN_MAY_DIFFER and saved.get(k) != v]  # fmt: skip
    if diffs:
        with folder_lock(run_dir, "training run"):
            moved = move_aside(run_dir)
        print(f"[zoo] {variant}: the run in {run_dir} was trained with {', '.join(diffs[:3])}: moved aside to "
              f"{moved}, fine-tuning again", file=sys.stderr)  # fmt: skip


def _card(variant: str, cfg: TrainConfig, run_dir: Path, pgd: int, seconds: float | None, base: Baseline,
          differences: list[str]) -> dict[str, Any]:  # fmt: skip
    """The variant's card, evaluated on the test split (or the one cached for this model.pt, recipe and PGD)."""
    from models.zoo_cards import build_card, evaluate_variant

    digest = sha256_file(run_dir / FINAL_FILE)
    try:
        cached = json.loads((run_dir / CARD_CACHE).read_text())
        if (cached["model_sha256"], cached["recipe"], cached["pgd_eval_request"]) == (digest, RECIPE, pgd):
            cached["card"]["differences_from_paper"] = differences
            return cached["card"]
    except (OSError, ValueError, KeyError):
        pass
    model, _ = load_model(run_dir / FINAL_FILE)
    print(f"[zoo] {variant}: evaluating on the test split", file=sys.stderr)
    metrics = evaluate_variant(model, cfg, pgd)
    card = {**build_card(variant, RECIPE, run_dir, metrics, seconds, differences), "pgd_eval_request": pgd}
    if variant == BASELINE:
        card["objective"] = f"the --from checkpoint ({base.path.name}), trained outside this zoo's recipe"
        card["train_seconds"] = None
        if base.imported is not None:
            card["imported_from"] = base.imported
    chance = 1 / max(2, len(base.classes))
    if metrics["test_clean_acc"] < chance + 0.05:
        card["near_chance"] = True
        print(f"warning: {variant} test accuracy {100 * metrics['test_clean_acc']:.1f}% is within 5 points of "
              f"chance ({100 * chance:.1f}%)", file=sys.stderr)  # fmt: skip
    doc = {"model_sha256": digest, "recipe": RECIPE, "pgd_eval_request": pgd, "card": card}
    _atomic_write(run_dir / CARD_CACHE, json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"variant": variant, **{k: v for k, v in metrics.items() if k != "pgd_eval"}}))
    return card


def _up_to_date(out: Path, runs: dict[str, Path], pgd: int, base: Baseline) -> bool:
    """True when ``out`` already holds exactly these runs' models, from this baseline, with cards of this recipe."""
    try:
        manifest = json.loads((out / ZOO_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    items = manifest.get("variants", {})
    if set(items) != set(runs) or manifest.get("baseline_sha256") != base.sha256:
        return False
    return all((out / f"{v}.pt").is_file() and sha256_file(out / f"{v}.pt") == sha256_file(d / FINAL_FILE)
               and (items[v]["card"].get("recipe"), items[v]["card"].get("pgd_eval_request")) == (RECIPE, pgd)
               for v, d in runs.items())  # fmt: skip


def _publish(out: Path, runs: dict[str, Path], cards: dict[str, dict[str, Any]], extra: dict[str, Any]) -> None:
    """Write the zoo into a temporary sibling of ``out`` and swap it in (an earlier zoo kept aside)."""
    from models.zoo_cards import card_markdown

    with replacing(out, folder=True) as staged:
        (staged.path / "cards").mkdir()
        for variant, run_dir in runs.items():
            shutil.copyfile(run_dir / FINAL_FILE, staged.path / f"{variant}.pt")
            (staged.path / "cards" / f"{variant}.md").write_text(card_markdown(variant, cards[variant]))
        write_zoo_manifest(staged.path, {v: f"{v}.pt" for v in runs}, cards, name=out.name, extra=extra)
    if staged.kept is not None:
        print(f"[zoo] the earlier zoo in {out} is kept as {staged.kept} (nothing is deleted)", file=sys.stderr)


def train_from_baseline(
    baseline: str | Path, out: str | Path, work_dir: str | Path, variants: list[str] | None = None, *,
    choose_alpha: bool = False, fresh: bool = False, pgd_size: int | None = None, progress: bool = True,
    **overrides: Any,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Fine-tune ``variants`` (default C, ADV, ADV+C) from ``baseline`` and write the zoo ``out``; returns the cards.

    ``overrides``: epochs_scale, train_limit, batch_size, warmup_steps, data_root, device, num_threads (None: the
    fitted recipe's). ``fresh`` moves the earlier runs in ``work_dir`` aside (never deleted) and starts again.
    """
    if overrides.pop("dataset", None):
        raise SettingsError("--dataset: with --from the data set is the one the checkpoint was trained on")
    unknown = sorted(set(overrides) - {"epochs_scale", "train_limit", "batch_size", "warmup_steps", "data_root",
                                       "device", "num_threads"})  # fmt: skip
    if unknown:
        raise SettingsError(f"--from does not take {', '.join(unknown)}")
    base, out, work_dir = read_baseline(baseline), Path(out), Path(work_dir)
    wanted = [v for v in (variants or ["C", "ADV", "ADV+C"]) if v != BASELINE]
    wanted += [
        v
        for v in _earlier_variants(out)
        if v in FINETUNED and v not in wanted and (work_dir / v / FINAL_FILE).is_file()
    ]  # a rerun for one more variant keeps the others
    configs = build_imported_configs(base, work_dir, wanted, **overrides)
    _check_classes(base, configs[BASELINE])
    pgd = pgd_size or 0
    with folder_lock(out, "zoo build"):
        if fresh and work_dir.exists():
            with folder_lock(work_dir, "training runs"):
                print(f"[zoo] --fresh: earlier runs moved aside to {move_aside(work_dir)}", file=sys.stderr)
        _place_baseline(base, work_dir / BASELINE)
        choice = choose_alphas(configs, work_dir, base, progress) if choose_alpha and {"C", "ADV+C"} & set(wanted) \
            else None  # fmt: skip
        if choice is not None:
            configs = {v: dataclasses.replace(c, alpha=choice["chosen"].get(v, c.alpha)) for v, c in configs.items()}
        differences = differences_from_paper(base, _alpha_note(choice))
        runs, cards = {BASELINE: work_dir / BASELINE}, {}
        for variant in [v for v in VARIANTS if v in configs]:
            cfg, run_dir = configs[variant], Path(configs[variant].out)
            t0, seconds = time.perf_counter(), None
            if variant != BASELINE:
                _move_stale_run(variant, cfg)
            if not (run_dir / FINAL_FILE).is_file():
                resume = (run_dir / RESUME_FILE).is_file()
                print(f"[zoo] {variant}: {'resuming' if resume else 'fine-tuning'} from {base.path} in {run_dir}",
                      file=sys.stderr)  # fmt: skip
                _finished_metrics(cfg, progress)
                seconds = time.perf_counter() - t0
            runs[variant] = run_dir
            cards[variant] = _card(variant, cfg, run_dir, pgd, seconds, base, differences)
        if _up_to_date(out, runs, pgd, base):
            print(f"[zoo] {out} already holds these variants", file=sys.stderr)
            return cards
        extra = {"recipe": RECIPE, "from": str(base.path.resolve()), "baseline_sha256": base.sha256,
                 "overrides": {k: v for k, v in overrides.items() if v is not None and k not in
                               ("device", "num_threads", "data_root")},
                 "alpha_choice": None if choice is None else {"chosen": choice["chosen"], "runs": choice["runs"],
                                                              "baseline": choice["baseline"]}}  # fmt: skip
        _publish(out, runs, cards, extra)
    return cards


def zoo_trainer(checkpoint: str | Path, choose_alpha: bool = False) -> Callable[..., dict[str, dict[str, Any]]]:
    """``models.train_zoo.train_zoo``'s signature (recipe, out, work_dir, variants, fresh, pgd_size, ...) running
    :func:`train_from_baseline` from ``checkpoint``: what ``python -m models.train_zoo --from`` calls."""

    def trainer(recipe: str, out: str | Path, work_dir: str | Path, variants: list[str] | None = None,
                fresh: bool = False, pgd_size: int | None = None, progress: bool = True,
                seeds: list[int] | None = None, **overrides: Any) -> dict[str, dict[str, Any]]:  # fmt: skip
        del recipe  # the recipe is fitted to the checkpoint
        if seeds:
            raise SettingsError("--seeds: not available with --from yet (one fine-tune per variant)")
        return train_from_baseline(checkpoint, out, work_dir, variants, choose_alpha=choose_alpha, fresh=fresh,
                                   pgd_size=pgd_size, progress=progress, **overrides)  # fmt: skip

    return trainer


def _earlier_variants(out: Path) -> list[str]:
    """The variants of the zoo already in ``out`` (none when there is none)."""
    try:
        return list(json.loads((out / ZOO_MANIFEST).read_text()).get("variants", {}))
    except (OSError, ValueError):
        return []


def _check_classes(base: Baseline, cfg: TrainConfig) -> None:
    """Refuse a baseline whose class names are not the data set's (a zoo of both would be refused at the end)."""
    from models.data import load_dataset

    classes = [str(c) for c in load_dataset(base.dataset, "test", cfg.data_root, image_size=cfg.image_size).classes]
    if classes != base.classes:
        raise SettingsError(
            f"--from {base.path}: its classes ({', '.join(base.classes[:4])}...) are not {base.dataset}'s "
            f"({', '.join(classes[:4])}...); import it again with --classes-file listing the data set's classes"
        )
