"""Setting up one training run: settings checked, --init / --resume checkpoints read, data loaded, model and
optimiser built (:func:`setup_run`), and a resume checkpoint put back (:func:`restore`).

:class:`Run` holds the state of a run that ``models.train``'s loop reads and changes.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.batches import Data, split_train_val
from models.checkpoints import load_checkpoint
from models.data import load_dataset
from models.devices import DistInfo, init_distributed, pick_device
from models.errors import SettingsError
from models.memory_format import default_channels_last, memory_format
from models.networks import NETWORK_OPTIONS, create_network, unwrap_model
from models.runs import RESUME_FILE, StopRequest
from models.train_config import TrainConfig, check_resume_compatible, make_optimizer, small_set_batch_size

__all__ = ["Run", "TrainData", "load_init_weights", "load_split", "restore", "setup_run"]

TrainData = Data | tuple[Data, Data | None]


def load_init_weights(model: nn.Module, source: str | Path | dict[str, Any]) -> list[str]:
    """Copy every weight of a checkpoint (path or loaded dict) into ``model``; returns the names not copied.

    Only a classification head for another class count may differ (it keeps its fresh initialisation); any
    other missing, extra or differently shaped tensor is a SettingsError, never a silent re-initialisation.
    """
    ckpt = load_checkpoint(source) if isinstance(source, str | Path) else source
    src, own = ckpt["model"], model.state_dict()
    n_src, n_own = int(ckpt["network"]["num_classes"]), unwrap_model(model).head.out_features
    head = {k for k, v in own.items() if n_src != n_own and k in src and v.shape[:1] == (n_own,)}
    head &= {k for k in own if src[k].shape[:1] == (n_src,) and src[k].shape[1:] == own[k].shape[1:]}
    bad = sorted((set(own) ^ set(src)) | {k for k in set(own) & set(src) if own[k].shape != src[k].shape} - head)
    if bad:
        raise SettingsError(
            f"--init: the checkpoint's network ({ckpt['network']}) does not fit the one being trained: "
            f"{len(bad)} tensor(s) differ, e.g. {', '.join(bad[:3])}"
        )
    own.update({k: v for k, v in src.items() if k not in head})
    model.load_state_dict(own)
    return sorted(head)


def network_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The options of a checkpoint's network spec that rebuild it as it was (an imported network's normalisation,
    GradCAM layer, classifier and input size), so a fine-tune from it, and its checkpoints, keep them."""
    return {k: spec[k] for k in NETWORK_OPTIONS if spec.get(k) is not None}


def changed_classes_note(cfg: TrainConfig, init_ckpt: dict[str, Any], classes: list[str]) -> str | None:
    """A note when ``--init`` keeps a head whose outputs meant other classes: the class names differ, or the data set
    differs and the checkpoint's classes are only numbered (an import without --classes); None otherwise."""
    before = init_ckpt.get("dataset") or {}
    old = [str(c) for c in before.get("classes") or []]
    numbered = old == [str(i) for i in range(len(old))]
    if not old or (old == [str(c) for c in classes] and (before.get("name") == cfg.dataset or not numbered)):
        return None
    return (
        f"note: --init {cfg.init} was trained on {before.get('name')} (classes {', '.join(old[:4])}...); its "
        f"head is kept, so output i now stands for {cfg.dataset}'s class i ({', '.join(map(str, classes[:4]))}...)"
    )


@dataclass
class Run:
    """The state of one training run: what a step reads and changes, and what a checkpoint holds."""

    cfg: TrainConfig
    device: torch.device
    dist: DistInfo
    train_set: Data
    val_set: Data | None
    data_info: dict[str, Any]
    num_classes: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    perm: torch.Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: StopRequest = field(default_factory=StopRequest)
    in_memory: bool = False
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None  # the streamed epoch's remaining batches
    seen: int = 0
    t0: float = field(default_factory=time.perf_counter)
    network_options: dict[str, Any] = field(default_factory=dict)  # mean, std, GradCAM layer... kept in checkpoints

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def load_split(cfg: TrainConfig, split: str) -> Data:
    """The ``split`` of ``cfg.dataset`` by name: in memory, or with ``cfg.stream`` a StreamingImageFolder."""
    return load_dataset(cfg.dataset, split, cfg.data_root, cache_dir=cfg.cache_dir, seed=0,
                        image_size=cfg.image_size, **({"stream": True} if cfg.stream else {}))  # fmt: skip


def validation_count(n: int, val_size: int) -> int:
    """Images held out for validation from ``n`` training images: ``val_size``, at most a fifth (0: none)."""
    return min(val_size, n // 5) if val_size > 0 else 0


def training_data(cfg: TrainConfig, data: TrainData | None) -> tuple[Data, Data | None]:
    """(train, val): loaded by name, or given (one set to split, or a ready pair; in memory or streamed)."""
    if data is None or not isinstance(data, tuple):
        full = data if data is not None else load_split(cfg, "train")
        if cfg.train_limit:
            full = full.subset(torch.arange(min(cfg.train_limit, len(full))))
        return split_train_val(full, validation_count(len(full), cfg.val_size), cfg.seed)
    train_set, val_set = data
    if val_set is not None and val_set.classes != train_set.classes:
        raise SettingsError("data: the training and validation sets have different classes")
    if cfg.train_limit:
        train_set = train_set.subset(torch.arange(min(cfg.train_limit, len(train_set))))
    return train_set, val_set


def _read_checkpoints(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None, dict[str, Any] | None]:
    """(cfg, resume checkpoint, --init checkpoint), each checked against ``cfg``; None where not asked for."""
    resume_ckpt = init_ckpt = None
    if cfg.resume:
        if not (Path(cfg.out) / RESUME_FILE).is_file():
            raise SettingsError(f"--resume: no {RESUME_FILE} in {cfg.out}; start without --resume")
        resume_ckpt = load_checkpoint(Path(cfg.out) / RESUME_FILE)
        saved = resume_ckpt["config"]  # the batch size is checked once the data set's size is known
        if "min_epoch_steps" not in saved:  # a run from before --min-epoch-steps: its batch size never shrank
            cfg = dataclasses.replace(cfg, min_epoch_steps=0)
        check_resume_compatible(saved, dataclasses.replace(cfg, batch_size=saved.get("batch_size", cfg.batch_size)))
        if cfg.channels_last is None and saved.get("channels_last") is not None:  # resume in the layout it ran in
            cfg = dataclasses.replace(cfg, channels_last=saved["channels_last"])
    elif cfg.init:
        init_ckpt = load_checkpoint(cfg.init)
        spec = init_ckpt["network"]
        if (spec["name"], spec.get("width")) != (cfg.network, cfg.width):
            raise SettingsError(
                f"--init {cfg.init} holds a {spec['name']} of width {spec.get('width')}, not --network "
                f"{cfg.network} --width {cfg.width} (omit both on the command line to take them from the checkpoint)"
            )
    return cfg, resume_ckpt, init_ckpt


def setup_run(cfg: TrainConfig, data: TrainData | None = None) -> tuple[Run, dict[str, Any] | None]:
    """Check the settings, read --init / --resume checkpoints, load the data, build model and optimiser.

    Returns the run at step 0 and the resume checkpoint (None for a fresh run), which :func:`restore` applies.
    """
    cfg = cfg.resolved()
    cfg.validate()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    cfg, resume_ckpt, init_ckpt = _read_checkpoints(cfg)
    train_set, val_set = training_data(cfg, data)
    dist_info = init_distributed(device)
    if device.type == "cuda" and dist_info.world_size > 1:
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    batch_size = small_set_batch_size(len(train_set), cfg.batch_size, cfg.min_epoch_steps, dist_info.world_size)
    if batch_size != cfg.batch_size:
        if dist_info.is_main and not cfg.resume:
            print(f"note: {len(train_set)} training images make only "
                  f"{math.ceil(len(train_set) / (cfg.batch_size * dist_info.world_size))} steps per epoch at batch "
                  f"{cfg.batch_size}; using batch {batch_size} instead (pass --batch-size to keep yours)",
                  file=sys.stderr)  # fmt: skip
        cfg = dataclasses.replace(cfg, batch_size=batch_size)
    if resume_ckpt is not None:
        check_resume_compatible(resume_ckpt["config"], cfg)
    torch.manual_seed(cfg.seed)
    options = network_options((resume_ckpt or init_ckpt or {}).get("network") or {})  # an imported network's
    model = create_network(cfg.network, train_set.num_classes, width=cfg.width, **options)
    if init_ckpt is not None:
        renewed = load_init_weights(model, init_ckpt)
        if renewed and dist_info.is_main:
            print(f"note: --init {cfg.init} has another class count; new head: {', '.join(renewed)}", file=sys.stderr)
        elif dist_info.is_main and (note := changed_classes_note(cfg, init_ckpt, list(train_set.classes))):
            print(note, file=sys.stderr)
    if cfg.channels_last is None:  # recorded in the run's config, so a resume and the checkpoints say what ran
        cfg = dataclasses.replace(cfg, channels_last=default_channels_last(model, device))
    model = model.to(device, memory_format=memory_format(cfg.channels_last))
    steps_per_epoch = math.ceil(len(train_set) / (cfg.batch_size * dist_info.world_size))
    run = Run(
        cfg=cfg,
        device=device,
        dist=dist_info,
        train_set=train_set,
        val_set=val_set,
        data_info=train_set.describe(),
        num_classes=train_set.num_classes,
        model=model,
        optimizer=make_optimizer(model, cfg),
        gen=torch.Generator().manual_seed(cfg.seed),
        steps_per_epoch=steps_per_epoch,
        total_steps=max(1, round(cfg.epochs * steps_per_epoch)),
        in_memory=data is not None,
        network_options=options,
    )
    return run, resume_ckpt


def restore(run: Run, ckpt: dict[str, Any]) -> None:
    """Put a run back at the step boundary a resume checkpoint recorded (weights, optimiser, RNGs, data order)."""
    unwrap_model(run.model).load_state_dict(ckpt["model"])
    ts = ckpt["training_state"]
    run.optimizer.load_state_dict(ts["optimizer"])
    run.gen.set_state(ts["generator"])
    torch.set_rng_state(ts["torch_rng"])
    run.step, run.history, run.perm = ts["step"], list(ts["history"]), ts["perm"]
