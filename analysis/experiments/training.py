"""Experiments that train networks (alpha sweep, transfer, colour bias), in memory through
``models.train.train(cfg, data=...)`` and with a fixed torch thread count (``Settings.train_threads``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis import roles as R
from analysis.experiments.drawing import draw_alpha_sweep, draw_fairness, draw_transfer
from analysis.experiments.registry import Context, ExperimentSkipped, Output, experiment, figure_dir, quiet
from analysis.transfer import DOMAIN_SHIFT, keep_threads, summarise, target_kind
from models.data import load_dataset
from models.networks import NETWORKS
from models.objectives import VARIANT_REGISTRY
from models.train import TrainConfig

NATIVE_SIZE = 32  # px: the side of the built-in training sets (colour-bias, digits, fashion-mnist)


def zoo_network(ctx: Any) -> dict[str, Any] | None:
    """The network spec of the zoo's architecture: its baseline's, else its first variant's (None without a zoo)."""
    zoo = getattr(ctx, "zoo", None)
    if zoo is None or not zoo.entries:
        return None
    name = R.with_role(ctx.roles, R.BASELINE) or next(iter(zoo.entries))
    return dict(zoo.entries[name].meta["network"])


def _input_size(ctx: Context, spec: dict[str, Any]) -> int:
    return int(spec.get("input_size") or ctx.test.images.shape[-1])


def _baseline(ctx: Context) -> tuple[dict[str, Any], Path]:
    """The zoo's baseline variant's network spec and checkpoint path."""
    name = R.with_role(ctx.roles, R.BASELINE)
    if name is None:
        raise ValueError("the zoo has no baseline variant (role 'baseline') to fine-tune from")
    entry = ctx.zoo.entries[name]
    return entry.meta["network"], Path(entry.path)


@experiment(
    "alpha_sweep", "Accuracy and continuity against alpha", "4.2, Fig. 4",
    ("alphas", "seeds", "alpha_epochs", "alpha_preset", "alpha_lr", "alpha_batch_size", "alpha_train_limit",
     "alpha_val_size", "alpha_eval_images", "train_threads"),
    uses=(R.BASELINE,), draw=draw_alpha_sweep,
)  # fmt: skip
def run_alpha_sweep(ctx: Context) -> Output:
    from analysis.continuity import alpha_sweep

    s = ctx.settings
    spec, init = _baseline(ctx)
    out_dir = ctx.work_dir / "alpha_sweep"
    size = {"image_size": spec["input_size"]} if spec.get("input_size") else {}  # an imported network's own size
    train_set = load_dataset(ctx.dataset, "train", ctx.data_root, **size)
    base = TrainConfig(
        variant="C", dataset=ctx.dataset, network=spec["name"], width=spec.get("width"), epochs=s.alpha_epochs,
        batch_size=s.alpha_batch_size, preset=s.alpha_preset, lr=s.alpha_lr, train_limit=s.alpha_train_limit,
        val_size=s.alpha_val_size, eval_test=False, eval_pgd_subset=0, device=str(ctx.device), out=str(out_dir),
        num_threads=s.train_threads,
    )  # fmt: skip
    eval_images = ctx.first(s.alpha_eval_images).images
    with keep_threads(), quiet(not ctx.progress):
        df = alpha_sweep(s.alphas, base, out_dir, init=str(init), progress=ctx.progress, seeds=s.seeds,
                         eval_images=eval_images, data=train_set, test_set=ctx.eval,
                         batch_size=s.batch_size)  # fmt: skip
    n_train = min(s.alpha_train_limit, len(train_set)) - s.alpha_val_size
    notes = [f"C fine-tuned from the zoo's baseline checkpoint for {s.alpha_epochs:g} epoch(s) on {n_train} training "
             f"images ({s.alpha_val_size} held out), batch {s.alpha_batch_size}, preset {s.alpha_preset} at lr "
             f"{s.alpha_lr:g} (the paper fine-tunes with Adam at 1e-5; a short run needs a larger step); test_acc on "
             f"the {len(ctx.eval)}-image evaluation subset, DS on its first {len(eval_images)} images."]  # fmt: skip
    ran = {"n_train": n_train, "epochs": s.alpha_epochs, "seeds": list(s.seeds), "alphas": list(s.alphas),
           "n_test": len(ctx.eval), "n_ds_images": len(eval_images), "threads": s.train_threads}  # fmt: skip
    return Output({"alpha_sweep": df}, notes, draw_alpha_sweep({"alpha_sweep": df}, figure_dir(ctx)), ran)


@experiment("transfer", "Fine-tuning each variant on other data sets", "4.6, Table 3",
            ("transfer_targets", "transfer_seeds", "transfer_epochs", "transfer_min_steps", "transfer_train_limit",
             "domain_shift_train_limit", "transfer_test_limit", "warmup_steps", "train_batch_size",
             "train_threads"), draw=draw_transfer)  # fmt: skip
def run_transfer(ctx: Context) -> Output:
    from analysis.transfer import transfer_table

    s = ctx.settings
    spec = zoo_network(ctx)
    if spec is not None and _input_size(ctx, spec) != NATIVE_SIZE:
        raise ExperimentSkipped(
            f"the zoo's {spec['name']} takes {_input_size(ctx, spec)}-px inputs and the transfer targets are "
            f"{NATIVE_SIZE}-px images: fine-tuning it at another size would not test the network as the zoo uses it"
        )
    frames = []
    for target in [*s.transfer_targets, *[r for r in ctx.roots if r not in s.transfer_targets]]:
        root = ctx.roots.get(target)
        classes = load_dataset(target, "test", root).classes
        limit = s.domain_shift_train_limit if target_kind(classes, ctx.test.classes) == DOMAIN_SHIFT \
            else s.transfer_train_limit  # fmt: skip
        frames.append(transfer_table(
            ctx.zoo, targets=(target,), roots={target: root} if root else None, epochs=s.transfer_epochs,
            train_limit=limit, seeds=s.transfer_seeds, out_dir=ctx.work_dir / "transfer", progress=ctx.progress,
            test_limit=s.transfer_test_limit, warmup_steps=s.warmup_steps, min_steps=s.transfer_min_steps,
            batch_size=s.train_batch_size, device=str(ctx.device), source_classes=ctx.test.classes,
            threads=s.train_threads))  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    summary = summarise(df)
    ran = {t: {"kind": g["kind"].iloc[0], "n_train": int(g["n_train"].iloc[0]), "n_test": int(g["n_test"].iloc[0]),
               "epochs": float(g["epochs"].iloc[0]), "seeds": sorted(g["seed"].unique().tolist())}
           for t, g in df.groupby("target", sort=False)}  # fmt: skip
    notes = ["each variant's checkpoint, head re-initialised (seeded), fine-tuned with cross-entropy (all layers, "
             "preset finetune); " + "; ".join(f"{t}: {r['kind']}, {r['n_train']} training / {r['n_test']} test "
                                             f"images, {r['epochs']:g} epochs" for t, r in ran.items())]  # fmt: skip
    parts = {"transfer": df, "summary": summary}
    return Output(parts, notes, draw_transfer(parts, figure_dir(ctx)), {**ran, "threads": s.train_threads})


def fairness_variants(ctx: Context) -> tuple[list[str], dict[str, str]]:
    """The variants the colour-bias experiment trains from scratch, and those it skips (name -> why).

    It trains the zoo's baseline, constrained and jitter-control variants (their roles), by their training-variant
    name, so only names registered in ``models.objectives.VARIANT_REGISTRY`` can be retrained; an imported model
    (or any other name) in one of those roles is skipped. Without any trainable one: the paper's pair.
    """
    wanted = (R.BASELINE, R.CONSTRAINED, R.JITTER_CONTROL)
    names = [n for role in wanted if (n := R.with_role(ctx.roles, role)) is not None]
    skipped = {n: f"role {ctx.roles[n]}: not a registered training variant, so it cannot be retrained"
               for n in names if n not in VARIANT_REGISTRY}  # fmt: skip
    trainable = [n for n in names if n not in skipped]
    return trainable or ["standard", "C"], skipped


def fairness_network(ctx: Any) -> tuple[str, int | None]:
    """The architecture the colour-bias experiment trains from scratch: the zoo's (``zoo_network``), at the
    ``fairness_width`` setting for the lab's width-scalable resnet18-cifar. ExperimentSkipped when the zoo's network
    takes inputs of another size than the colour-bias set's 32 px (it would not be the network the zoo uses)."""
    spec = zoo_network(ctx)
    if spec is None or spec["name"] == "resnet18-cifar":
        return "resnet18-cifar", ctx.settings.fairness_width
    size = _input_size(ctx, spec)
    if size != NATIVE_SIZE:
        raise ExperimentSkipped(
            f"the zoo's {spec['name']} takes {size}-px inputs and the colour-bias set is {NATIVE_SIZE} px: trained "
            "there it would not be the network the zoo uses, and the lab's own networks would say nothing about it"
        )
    return spec["name"], spec.get("width") if spec["name"] in NETWORKS else None


@experiment("fairness", "Colour-bias experiment", "4.7, Table 4",
            ("fairness_source", "fairness_shortcut", "fairness_seeds", "fairness_epochs", "fairness_train_limit",
             "fairness_test_limit",
             "fairness_width", "fairness_pgd_steps", "fairness_preset", "fairness_lr", "fairness_schedule",
             "fairness_val_size", "fairness_alpha", "train_batch_size", "train_threads"), uses=(),
            draw=draw_fairness)  # fmt: skip
def run_fairness(ctx: Context) -> Output:
    from analysis.fairness import fairness_table

    s = ctx.settings
    network, width = fairness_network(ctx)
    variants, skipped = fairness_variants(ctx)
    kwargs = dict(variants=variants, source=s.fairness_source, epochs=s.fairness_epochs, network=network,
                        train_limit=s.fairness_train_limit, width=width, seeds=s.fairness_seeds,
                        out_dir=ctx.work_dir / "fairness", progress=ctx.progress, test_limit=s.fairness_test_limit,
                        preset=s.fairness_preset, lr=s.fairness_lr, schedule=s.fairness_schedule,
                        val_size=s.fairness_val_size, batch_size=s.train_batch_size,
                        pgd_steps=s.fairness_pgd_steps, alpha=s.fairness_alpha, device=str(ctx.device),
                        threads=s.train_threads)  # fmt: skip
    df = fairness_table(**kwargs)  # Table 4: the paper's design
    # the shortcut design with the same variants, seeds and settings (its own part; claim fairness_shortcut)
    shortcut = fairness_table(**kwargs, design="shortcut") if s.fairness_shortcut else None
    summary = pd.concat([summarise(df, col, by=("variant",)).rename(columns={"n_seeds": f"n_seeds_{col}"})
                         .set_index("variant") for col in ("test_acc", "test_acc_red", "test_acc_blue")],
                        axis=1).reset_index()  # fmt: skip
    low = df[df["val_acc"] < s.fairness_min_val_acc]
    n_test = int(df["n_red"].iloc[0] + df["n_blue"].iloc[0])
    n_train, n_val = int(df["n_train"].iloc[0]), int(df["n_val"].iloc[0])
    arch = f"width-{width} {network}" if width else f"{network} (the zoo's architecture)"
    notes = [f"{arch} trained from scratch (preset {s.fairness_preset}, lr "
             f"{s.fairness_lr:g} {s.fairness_schedule}, C's alpha {s.fairness_alpha:g}) for {s.fairness_epochs:g} "
             f"epochs on {n_train} colour-bias {s.fairness_source} training images (95% red backgrounds; {n_val} "
             f"more held out for validation), {len(s.fairness_seeds)} seeds; tested on {n_test} test images (95% "
             "blue)"]  # fmt: skip
    if skipped:
        notes.append("not retrained: " + "; ".join(f"{n} ({why})" for n, why in skipped.items())
                     + f"; trained: {', '.join(variants)}")  # fmt: skip
    if len(low):
        which = ", ".join(f"{r.variant} seed {r.seed} ({100 * r.val_acc:.1f}%)" for r in low.itertuples())
        notes.append(f"{len(low)} of {len(df)} runs stayed below {100 * s.fairness_min_val_acc:.0f}% in-distribution "
                     f"validation accuracy: {which}; undertrained, their numbers are weak evidence")  # fmt: skip
    else:
        notes.append(f"every run reached {100 * s.fairness_min_val_acc:.0f}% in-distribution validation accuracy "
                     f"(lowest {100 * df['val_acc'].min():.1f}%, on {n_val} held-out training images)")  # fmt: skip
    ran = {"network": network, "width": width, "variants": variants, "skipped_variants": skipped, "n_train": n_train,
           "n_val": n_val,
           "epochs": s.fairness_epochs, "seeds": list(s.fairness_seeds), "alpha": s.fairness_alpha,
           "threads": s.train_threads, "min_val_acc": float(df["val_acc"].min())}  # fmt: skip
    parts = {"fairness": df, "summary": summary}
    ran["shortcut_design"] = shortcut is not None
    if shortcut is not None:
        parts["shortcut"] = shortcut
        means = shortcut.groupby("variant", sort=False)["test_acc"].mean()
        accs = ", ".join(f"{v} {100 * a:.1f}%" for v, a in means.items())
        notes.insert(1, "shortcut design (colour-bias-shortcut, the same variants, seeds and settings): 95% of each "
                     "class's training images on the class's own background colour, test colours independent of "
                     f"the label; mean test accuracy {accs}")  # fmt: skip
    return Output(parts, notes, draw_fairness(parts, figure_dir(ctx)), ran)
