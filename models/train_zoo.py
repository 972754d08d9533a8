"""Train the four variants into a zoo: ``python -m models.train_zoo --out assets/zoo/default``.

A *recipe* (``models.recipes``) says how each variant is trained. ``cpu-default`` (the shipped zoo)
trains ``standard`` from scratch and fine-tunes C, ADV and ADV+C from it; the
``paper-*`` recipes use the paper's networks and hyper-parameters for a GPU.
Each finished variant is evaluated on the full test split (clean accuracy,
PGD-10 accuracy, level-1 DS per perturbation kind), copied into the zoo folder
with its model card (``models.zoo_cards``). The zoo folder changes once, when every variant is done: it is
built in a temporary sibling and swapped in, and an earlier zoo there is kept as ``<out>.old-<timestamp>``
(``models.safe_output``). Rerunning the same command after an interruption resumes where it stopped;
on a new machine (the work dir gone, the zoo kept) the zoo's checkpoints of the same recipe are restored into it
rather than trained again, so a later session adds seeds or fine-tunes to a committed zoo.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from models.checkpoints import ZOO_MANIFEST, load_model, read_zoo_manifest, sha256_file, write_zoo_manifest
from models.cli import EXIT_INTERRUPTED, add_threads_argument, make_parser, run_cli
from models.devices import pick_device
from models.errors import SettingsError, ZooError
from models.objectives import PAPER_VARIANTS, VARIANTS
from models.recipes import RECIPES, build_configs
from models.replicas import replica_file, variant_replicas
from models.runs import FINAL_FILE, RESUME_FILE
from models.safe_output import OutputInUse, folder_lock, move_aside, replacing, temp_sibling
from models.train import CHANCE_MARGIN, TrainConfig, train
from models.zoo_cards import (
    build_card,
    card_markdown,
    cards_on_disk,
    evaluate_variant,
    has_quality_bars,
    quality_bars,
    summary_table,
)

CARD_CACHE = "zoo_card.json"  # in a run folder: the card evaluated for its model.pt (reused while it is unchanged)


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` through a temporary sibling, so an interruption never leaves half a file."""
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _zoo_file(variant: str, seed: int, primary: int) -> str:
    """The file of ``variant``'s checkpoint of ``seed`` inside the zoo: ``<variant>.pt`` for the recipe's seed."""
    return f"{variant}.pt" if seed == primary else replica_file(variant, seed)


def card_pgd_request(card: dict[str, Any]) -> int | None:
    """The ``--pgd-eval-size`` a zoo card was evaluated under. Cards written before the request was recorded are
    read from their PGD evaluation: the whole test split is request 0, a first-N subset is N, none is None; so a
    zoo trained by an earlier version is restored and reused, not trained again."""
    if "pgd_eval_request" in card:
        return card["pgd_eval_request"]
    metrics = card.get("metrics") or {}
    images = (metrics.get("pgd_eval") or {}).get("images")
    if images is None:
        return None
    return 0 if images == metrics.get("test_size") else int(images)


def _same_evaluation(card: dict[str, Any] | None, recipe: str, pgd: int) -> bool:
    """True when ``card`` was trained by ``recipe`` and evaluated under the PGD request ``pgd``."""
    return card is not None and (card.get("recipe"), card_pgd_request(card)) == (recipe, pgd)


def _up_to_date(out: Path, dest: str, run_dir: Path, card: dict[str, Any] | None, recipe: str, pgd: int) -> bool:
    """True when the zoo already holds this run's finished model with a card of the same recipe and evaluation."""
    path = out / dest
    return (
        _same_evaluation(card, recipe, pgd)
        and path.is_file()
        and sha256_file(path) == sha256_file(run_dir / FINAL_FILE)
    )


def replicas_on_disk(manifest_path: Path) -> dict[str, dict[int, tuple[str, dict[str, Any]]]]:
    """Variant -> {seed: (file, card)} of an existing zoo's replica checkpoints (the primary ones left out)."""
    if not manifest_path.is_file():
        return {}
    manifest = json.loads(manifest_path.read_text())
    found: dict[str, dict[int, tuple[str, dict[str, Any]]]] = {}
    for variant in manifest.get("variants", {}):
        for rep in variant_replicas(manifest, variant):
            if not rep.primary:
                found.setdefault(variant, {})[rep.seed] = (rep.file, rep.card)
    return found


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _checked_configs(
    recipe: str, work_dir: Path, variants: list[str] | None, overrides: dict[str, Any], seed: int | None = None
) -> tuple[dict[str, TrainConfig], list[str]]:
    """Every variant's config under ``recipe`` and the variants to train, all flags checked before any training."""
    configs = build_configs(recipe, work_dir, **overrides, **({} if seed is None else {"seed": seed}))
    wanted = variants or [v for v in configs if v in PAPER_VARIANTS]  # controls only when asked for
    wanted = [v for v in configs if v in wanted] + [v for v in wanted if v not in configs]  # bases before fine-tunes
    unknown = [v for v in wanted if v not in configs]
    if unknown:
        raise SettingsError(f"--variants: recipe {recipe} does not train {', '.join(unknown)}")
    for cfg in configs.values():
        cfg.resolved().validate()  # every flag checked before hours of training
    if overrides.get("device"):
        pick_device(overrides["device"])
    return configs, wanted


def _flag_near_chance(variant: str, card: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Mark ``card`` ``near_chance`` (and warn) when the test accuracy is within ``CHANCE_MARGIN`` of chance."""
    chance = 1 / card["dataset"].get("num_classes", 10)
    if metrics["test_clean_acc"] < chance + CHANCE_MARGIN:
        card["near_chance"] = True
        print(
            f"warning: {variant} test accuracy {100 * metrics['test_clean_acc']:.1f}% is within "
            f"{100 * CHANCE_MARGIN:.0f} points of chance ({100 * chance:.1f}%)",
            file=sys.stderr,
        )


# where and how fast a zoo trains, not what it trains: they do not make it another recipe's zoo
EXECUTION_SETTINGS = ("device", "num_threads", "data_root")


def recipe_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The flags that change what the recipe trains (data set, limits, batch, warm-up, epochs), as recorded in
    the manifest; the device, thread count and data location are left out."""
    return {k: v for k, v in overrides.items() if v is not None and k not in EXECUTION_SETTINGS}


def _cached_card(run_dir: Path, recipe: str, pgd: int) -> dict[str, Any] | None:
    """The card evaluated earlier for this run's ``model.pt`` under the same recipe and PGD request, or None."""
    try:
        doc = json.loads((run_dir / CARD_CACHE).read_text())
    except (OSError, ValueError):
        return None
    same = (doc.get("model_sha256"), doc.get("recipe"), doc.get("pgd_eval_request"))
    return doc.get("card") if same == (sha256_file(run_dir / FINAL_FILE), recipe, pgd) else None


def _publish(
    out: Path, updates: dict[tuple[str, int], tuple[Path, dict[str, Any]]], extra: dict[str, Any], primary: int
) -> Path | None:
    """Write the zoo ``out`` anew (its earlier checkpoints plus ``updates``: (variant, seed) -> (run folder, card))
    into a temporary sibling and swap it in once its manifest is written; returns where the earlier zoo was kept.
    The recipe's seed (``primary``) gives ``<variant>.pt``, other seeds ``seeds/<seed>/<variant>.pt``."""
    with replacing(out, folder=True) as staged:
        if out.is_dir():
            shutil.copytree(out, staged.path, symlinks=True, dirs_exist_ok=True)
        (staged.path / "cards").mkdir(exist_ok=True)
        cards = cards_on_disk(staged.path / ZOO_MANIFEST)
        replicas = replicas_on_disk(staged.path / ZOO_MANIFEST)
        for (variant, seed), (run_dir, card) in updates.items():
            dest = _zoo_file(variant, seed, primary)
            (staged.path / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / FINAL_FILE, staged.path / dest)
            card_name = f"{variant}.md" if seed == primary else f"{variant}-seed{seed}.md"
            (staged.path / "cards" / card_name).write_text(card_markdown(variant, card))
            if seed == primary:
                cards[variant] = card
            else:
                replicas.setdefault(variant, {})[seed] = (dest, card)
        files = {v: f"{v}.pt" for v in VARIANTS if (staged.path / f"{v}.pt").is_file()}
        replicas = {v: reps for v, reps in replicas.items() if v in files}
        write_zoo_manifest(staged.path, files, cards, name=out.name, extra=extra, replicas=replicas)
    return staged.kept


def _check_seeds(out: Path, recipe: str, seeds: list[int], wanted: list[str]) -> int:
    """The recipe's (primary) seed, after checking that ``seeds`` can be trained into ``out``: without the
    primary seed among them, every wanted variant must already have its primary checkpoint in the zoo."""
    primary = int(RECIPES[recipe]["common"].get("seed", 0))
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise SettingsError(f"--seeds {' '.join(map(str, seeds))}: give distinct seeds >= 0")
    if primary not in seeds:
        have = cards_on_disk(out / ZOO_MANIFEST)
        lacking = [v for v in wanted if v not in have]
        if lacking:
            raise SettingsError(
                f"--seeds: {out} has no seed-{primary} checkpoint of {', '.join(lacking)}; "
                f"add {primary} to --seeds (the recipe's seed gives each variant's primary checkpoint)"
            )
    return primary


def _seed_work_dir(work_dir: Path, seed: int, primary: int) -> Path:
    """Where a seed's training runs go: ``work_dir`` for the recipe's seed, ``work_dir/seed<N>`` for others."""
    return work_dir if seed == primary else work_dir / f"seed{seed}"


def train_zoo(
    recipe: str,
    out: str | Path,
    work_dir: str | Path,
    variants: list[str] | None = None,
    fresh: bool = False,
    pgd_size: int | None = None,
    progress: bool = True,
    seeds: list[int] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train (or resume) each variant, evaluate it, and write the zoo folder. Returns the primary cards.

    ``seeds`` trains every variant once per seed (standard from scratch, each fine-tune from the same seed's
    standard); the recipe's seed gives each variant's primary checkpoint, the others its replicas
    (``models.replicas``). Default: the recipe's seed only.

    Nothing is lost: training stops at a step boundary (see models.train) and each evaluation is kept in its run
    folder (``zoo_card.json``), so rerunning the same command continues. The zoo folder is never written in place:
    once every variant of a seed is done, the new zoo (the earlier one's other checkpoints included) is built in a
    temporary sibling and swapped in, the earlier zoo kept as ``<out>.old-<timestamp>``; a failure leaves ``out``
    as it was. One process at a time publishes into ``out`` (the others wait); several may train into it at once.
    ``fresh`` moves earlier runs aside.
    """
    out, work_dir = Path(out), Path(work_dir)
    _, wanted = _checked_configs(recipe, work_dir, variants, overrides)
    primary = _check_seeds(out, recipe, seeds, wanted) if seeds else int(RECIPES[recipe]["common"].get("seed", 0))
    for seed in seeds or [primary]:
        configs, _ = _checked_configs(
            recipe, _seed_work_dir(work_dir, seed, primary), variants, overrides, None if seeds is None else seed
        )
        updates = _train_seed(out, recipe, configs, wanted, seed, primary, fresh, pgd_size or 0, progress, overrides)
        if updates:
            extra = {"recipe": recipe, "overrides": recipe_overrides(overrides)}
            kept = _publish_when_free(out, updates, extra, primary)
            if kept is not None:
                print(f"[zoo] the earlier zoo in {out} is kept as {kept} (nothing is deleted)", file=sys.stderr)
    return cards_on_disk(out / ZOO_MANIFEST)


PUBLISH_WAIT_S = 900.0  # how long a finished seed waits for another process's publishing before giving up


def _publish_when_free(
    out: Path, updates: dict[tuple[str, int], tuple[Path, dict[str, Any]]], extra: dict[str, Any], primary: int
) -> Path | None:
    """:func:`_publish` under the zoo's lock, waiting while another process holds it. The lock is held only for
    the seconds a swap takes, not through training, so several processes can train different variants or seeds
    into one zoo (each run folder has its own lock) and each adds its checkpoints to what the others published."""
    deadline = time.monotonic() + PUBLISH_WAIT_S
    while True:
        try:
            with folder_lock(out, "zoo build"):
                return _publish(out, updates, extra, primary)
        except OutputInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _restore_from_zoo(
    out: Path,
    dest: str,
    run_dir: Path,
    card: dict[str, Any] | None,
    recipe: str,
    pgd: int,
    overrides: dict[str, Any],
) -> bool:
    """Put the zoo's checkpoint ``dest`` back as ``run_dir``'s finished model when the run folder holds nothing
    (a new machine, a cleaned work dir) and the zoo's card says it was trained and evaluated the same way (recipe,
    PGD request, recipe flags). Returns True when restored, so that the variant is neither trained again nor
    evaluated again, and fine-tunes of the same seed start from it."""
    if (run_dir / FINAL_FILE).is_file() or (run_dir / RESUME_FILE).is_file() or not (out / dest).is_file():
        return False
    same_card = _same_evaluation(card, recipe, pgd)
    try:
        same_flags = read_zoo_manifest(out).get("overrides", {}) == recipe_overrides(overrides)
    except (OSError, ValueError, ZooError):
        return False
    if not (same_card and same_flags):
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(run_dir / FINAL_FILE)
    try:
        shutil.copyfile(out / dest, tmp)
        os.replace(tmp, run_dir / FINAL_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    cached = {"model_sha256": sha256_file(run_dir / FINAL_FILE), "recipe": recipe, "pgd_eval_request": pgd,
              "card": card, "restored_from": str(out / dest)}  # fmt: skip
    _atomic_write(run_dir / CARD_CACHE, json.dumps(cached, indent=2) + "\n")
    return True


def _ensure_init(
    out: Path,
    configs: dict[str, TrainConfig],
    variant: str,
    seed: int,
    primary: int,
    recipe: str,
    pgd: int,
    overrides: dict[str, Any],
) -> None:
    """Before ``variant`` fine-tunes from another variant of the same seed (its ``init``, e.g. standard), make sure
    that checkpoint is in the work dir: restored from the zoo when only the zoo holds it (``--variants ADV`` on a
    new machine), else a SettingsError that says what to add, rather than a bare "checkpoint not found"."""
    init = configs[variant].init
    base = next((v for v, c in configs.items() if init and Path(c.out) / FINAL_FILE == Path(init)), None)
    if base is None or Path(init).is_file():
        return
    earlier = (
        cards_on_disk(out / ZOO_MANIFEST).get(base)
        if seed == primary
        else replicas_on_disk(out / ZOO_MANIFEST).get(base, {}).get(seed, ("", None))[1]
    )
    label = "" if seed == primary else f" (seed {seed})"
    if _restore_from_zoo(out, _zoo_file(base, seed, primary), Path(configs[base].out), earlier, recipe, pgd, overrides):
        print(f"[zoo] {base}{label}: restored from {out}, for {variant} to fine-tune from", file=sys.stderr)
        return
    raise SettingsError(
        f"{variant}{label} fine-tunes from {base} of the same seed, which neither the work dir nor the zoo {out} "
        f"holds (trained the same way): add {base} to --variants"
    )


def _train_seed(
    out: Path,
    recipe: str,
    configs: dict[str, TrainConfig],
    wanted: list[str],
    seed: int,
    primary: int,
    fresh: bool,
    pgd: int,
    progress: bool,
    overrides: dict[str, Any] | None = None,
) -> dict[tuple[str, int], tuple[Path, dict[str, Any]]]:
    """Train, resume or reuse each wanted variant of one seed; (variant, seed) -> (run folder, card) of those the
    zoo ``out`` does not hold yet."""
    cards = cards_on_disk(out / ZOO_MANIFEST)
    replicas = replicas_on_disk(out / ZOO_MANIFEST)
    label = "" if seed == primary else f" (seed {seed})"
    updates: dict[tuple[str, int], tuple[Path, dict[str, Any]]] = {}
    for variant in wanted:
        cfg, run_dir = configs[variant], Path(configs[variant].out)
        earlier = cards.get(variant) if seed == primary else replicas.get(variant, {}).get(seed, ("", None))[1]
        if fresh and run_dir.exists():
            with folder_lock(run_dir, "training run"):  # never from under a live run
                moved = move_aside(run_dir)
            print(f"[zoo] {variant}{label}: --fresh: earlier run moved aside to {moved}", file=sys.stderr)
        t0, trained_here = time.perf_counter(), False
        if not fresh and _restore_from_zoo(
            out, _zoo_file(variant, seed, primary), run_dir, earlier, recipe, pgd, overrides or {}
        ):
            print(f"[zoo] {variant}{label}: already in {out} (its run folder was gone: restored from the zoo)",
                  file=sys.stderr)  # fmt: skip
            continue
        if not (run_dir / FINAL_FILE).is_file():
            _ensure_init(out, configs, variant, seed, primary, recipe, pgd, overrides or {})
            resume = (run_dir / RESUME_FILE).is_file()
            print(f"[zoo] {variant}{label}: {'resuming' if resume else 'training'} in {run_dir}", file=sys.stderr)
            train(dataclasses.replace(cfg, resume=resume), progress=progress, raise_on_interrupt=True)
            trained_here = True
        elif _up_to_date(out, _zoo_file(variant, seed, primary), run_dir, earlier, recipe, pgd):
            print(f"[zoo] {variant}{label}: already in {out}", file=sys.stderr)
            continue
        card = None if trained_here else _cached_card(run_dir, recipe, pgd)
        if card is None:
            train_seconds = time.perf_counter() - t0
            model, _ = load_model(run_dir / FINAL_FILE)
            print(f"[zoo] {variant}{label}: evaluating on the test split", file=sys.stderr)
            metrics = evaluate_variant(model, cfg, pgd)
            # a run finished before this command (only evaluated here) has no training time of its own
            seconds = train_seconds if trained_here else (earlier or {}).get("train_seconds")
            card = {**build_card(variant, recipe, run_dir, metrics, seconds), "pgd_eval_request": pgd}
            _flag_near_chance(variant, card, metrics)
            cached = {"model_sha256": sha256_file(run_dir / FINAL_FILE), "recipe": recipe,
                      "pgd_eval_request": pgd, "card": card}  # fmt: skip
            _atomic_write(run_dir / CARD_CACHE, json.dumps(cached, indent=2) + "\n")
            shown = {k: v for k, v in metrics.items() if k != "pgd_eval"}
            print(json.dumps({"variant": variant, "seed": seed, **shown}))
        else:
            print(f"[zoo] {variant}{label}: evaluated earlier ({run_dir / CARD_CACHE})", file=sys.stderr)
        updates[(variant, seed)] = (run_dir, card)
    return updates


def print_summary(folder: str | Path) -> None:
    """The zoo's cards as a table, and the quality bars where its recipe defines them."""
    if not Path(folder).is_dir():
        raise ZooError(f"--summary: no zoo folder {folder}")
    manifest = read_zoo_manifest(folder)
    print(summary_table(manifest))
    if has_quality_bars(manifest) and "C" in manifest["variants"]:
        print("\n| quality bar | measured | met |\n|---|---|---|")
        for bar, value, met in quality_bars(manifest):
            print(f"| {bar} | {value} | {'yes' if met else '**no**'} |")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m models.train_zoo`` flags, each with help, default and choices."""
    parser = make_parser("python -m models.train_zoo", (__doc__ or "").split("\n")[0], allow_abbrev=False)
    parser.add_argument("--out", required=True, help="zoo folder to write (required: nothing is written by default)")
    parser.add_argument("--recipe", default="cpu-default", choices=sorted(RECIPES), help="how each variant is trained")
    parser.add_argument("--work-dir", default=None, help="training runs (default: runs/zoo-<out name>)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        help="train only these (default: the paper's four; controls only when named)",
    )
    parser.add_argument("--data-root", default=None, help="for on-disk data sets (cifar100, imagefolder)")
    parser.add_argument("--dataset", default=None, help="override the recipe's data set")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every variant's epochs (> 0)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images (quick runs)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    parser.add_argument("--warmup-steps", type=int, default=None, help="override the presets' warm-up steps")
    parser.add_argument(
        "--pgd-eval-size",
        type=int,
        default=0,
        help="first N test images attacked with PGD-10 for the cards (0: the whole test split)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="train every variant once per seed (replicas; default: the recipe's seed only)",
    )
    parser.add_argument("--from", dest="from_checkpoint", metavar="CHECKPOINT", default=None,
                        help="fine-tune the variants from this checkpoint (e.g. an imported network), which becomes "
                        "standard: models.imported_recipe")  # fmt: skip
    parser.add_argument("--choose-alpha", action="store_true", help="with --from: choose C's and ADV+C's alpha on "
                        "the validation split (default: the shipped recipe's)")  # fmt: skip
    parser.add_argument("--fresh", action="store_true", help="move earlier runs aside (never deleted) and retrain")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a variant ends within 5 points of chance")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--summary", action="store_true", help="print the zoo's cards as a Markdown table; no training")
    add_threads_argument(parser)
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.summary:
        print_summary(args.out)
        return 0
    if args.pgd_eval_size < 0:
        raise SettingsError(f"--pgd-eval-size {args.pgd_eval_size}: must be >= 0")
    work_dir = args.work_dir or f"runs/zoo-{Path(args.out).name}"
    overrides = {
        "data_root": args.data_root,
        "dataset": args.dataset,
        "device": args.device,
        "train_limit": args.train_limit,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup_steps,
        "num_threads": args.num_threads or None,
        "epochs_scale": args.epochs_scale if args.epochs_scale != 1.0 else None,
    }
    trainer = train_zoo
    if args.from_checkpoint:  # the paper's variants of the user's own network
        from models.imported_recipe import zoo_trainer

        trainer = zoo_trainer(args.from_checkpoint, args.choose_alpha)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM stops like Ctrl-C
    try:
        cards = trainer(
            args.recipe,
            args.out,
            work_dir,
            args.variants,
            args.fresh,
            args.pgd_eval_size,
            progress=not args.no_progress,
            seeds=args.seeds,
            **overrides,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError) as exc:  # e.g. an unknown data set or network name
        raise SettingsError(str(exc)) from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 1 if args.strict and any(card.get("near_chance") for card in cards.values()) else 0


def main(argv: list[str] | None = None) -> int:
    """The ``python -m models.train_zoo`` / ``scl-zoo`` command; errors are one line and exit 2."""
    return run_cli(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
