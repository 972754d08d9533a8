"""The training commands never lose work, check their flags, explain errors in one line, and learn on short runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from models import train_cli, train_zoo
from models.checkpoints import load_checkpoint
from models.data import load_dataset
from models.errors import SettingsError
from models.networks import create_network
from models.runs import FINAL_FILE, RESUME_FILE
from models.train import TrainConfig, load_init_weights, lr_at, train
from models.train_cli import config_from_args
from models.train_config import small_set_batch_size
from models.train_zoo import build_configs, has_quality_bars, quality_bars

TINY = dict(dataset="digits", width=4, batch_size=32, train_limit=120, val_size=20, eval_pgd_subset=8, num_threads=1)
TINY_FLAGS = ["--dataset", "digits", "--width", "4", "--batch-size", "32", "--train-limit", "120", "--val-size", "20",
              "--epochs", "0.5", "--num-threads", "1", "--no-progress"]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny standard run (read-only by convention)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    torch_threads = torch.get_num_threads()
    assert train_cli.main([*TINY_FLAGS, "--out", str(out)]) == 0
    torch.set_num_threads(torch_threads)
    return out


def test_a_second_run_into_the_same_out_is_refused_and_force_moves_the_first_aside(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name, data in _files(tiny_run).items():
        (out / name).write_bytes(data)
    before = _files(out)
    assert train_cli.main([*TINY_FLAGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "--resume" in err and "--force" in err
    assert _files(out) == before, "a refused run changed the first run's files"
    assert train_cli.main([*TINY_FLAGS, "--out", str(out), "--force"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and _files(aside[0]) == before, "--force must move the old run aside intact"
    assert (out / FINAL_FILE).is_file()


def _truncated(tiny_run: Path, tmp_path: Path) -> Path:
    data = (tiny_run / FINAL_FILE).read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _pickled(tiny_run: Path, tmp_path: Path) -> Path:
    path = tmp_path / "pickled.pt"
    torch.save({"format": "scl-checkpoint/1", "model": create_network("resnet18-cifar", 10, width=4)}, path)
    return path


def _resume_truncated(tiny_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "broken"
    out.mkdir()
    (out / RESUME_FILE).write_bytes((tiny_run / RESUME_FILE).read_bytes()[:1000])
    return out


ERRORS = {
    "missing CIFAR root": (lambda r, t: ["--dataset", "cifar10", "--data-root", str(t / "nowhere")], "cifar10"),
    "truncated --init": (lambda r, t: [*TINY_FLAGS, "--init", str(_truncated(r, t))], "truncated"),
    "pickle payload --init": (lambda r, t: [*TINY_FLAGS, "--init", str(_pickled(r, t))], "pickled Python objects"),
    "truncated --resume": (lambda r, t: [*TINY_FLAGS, "--resume", "--out", str(_resume_truncated(r, t))], "refused"),
    "--batch-size 0": (lambda r, t: [*TINY_FLAGS, "--batch-size", "0"], "--batch-size 0: must be >= 1"),
    "--epochs 0": (lambda r, t: [*TINY_FLAGS, "--epochs", "0"], "--epochs 0.0: must be > 0"),
    "--lr -1": (lambda r, t: [*TINY_FLAGS, "--lr", "-1"], "--lr -1.0: must be > 0"),
    "--alpha -1": (lambda r, t: [*TINY_FLAGS, "--alpha", "-1"], "--alpha -1.0: must be >= 0"),
    # cuda:99 is unavailable everywhere: no GPU here, and no machine has 100 (so the case never needs skipping)
    "--device unavailable": (lambda r, t: [*TINY_FLAGS, "--device", "cuda:99"], "--device cuda:99: "),
    "init network mismatch": (lambda r, t: [*TINY_FLAGS, "--init", str(r / FINAL_FILE), "--width", "8"], "--init"),
    "zoo --summary on a missing folder": (lambda r, t: ["zoo", "--out", str(t / "nozoo"), "--summary"], "no zoo"),
    "zoo --batch-size 0": (lambda r, t: ["zoo", "--out", str(t / "z"), "--batch-size", "0"], "--batch-size 0"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_clear_line_and_exit_2(case, tiny_run, tmp_path, capsys):
    make_argv, expected = ERRORS[case]
    argv = make_argv(tiny_run, tmp_path)
    if argv[0] == "zoo":
        code = train_zoo.main(argv[1:])
    else:
        code = train_cli.main([*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert expected in err, err
    assert "Traceback" not in err and "weights_only" not in err, err


def test_train_zoo_requires_out(capsys):
    with pytest.raises(SystemExit) as exc:
        train_zoo.main(["--recipe", "cpu-default"])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err


@pytest.mark.parametrize("parser", [train_cli.build_parser, train_zoo.build_parser])
def test_help_shows_help_default_and_choices_for_every_flag(parser, capsys):
    p = parser()
    with pytest.raises(SystemExit):
        p.parse_args(["--help"])
    text = "".join(capsys.readouterr().out.split())  # without white space: argparse wraps lines at hyphens
    for action in p._actions:
        if action.option_strings[0] in ("-h", "--version"):
            continue
        assert action.help, f"{action.option_strings[0]} has no help text"
        shown = "".join(p._get_formatter()._expand_help(action).split())
        said = "(default" in shown or "default:" in shown  # once: appended, or in the help's own words
        assert shown in text and (said or action.required or action.default in (None, False)), action.option_strings
        if action.choices:
            assert "{" + ",".join(map(str, action.choices)) + "}" in text
    assert "--num-threads" in text and "--version" in text


def test_init_takes_the_network_from_the_checkpoint_and_refuses_one_that_does_not_fit(tiny_run, tmp_path):
    cfg, _ = train_cli.config_from_args(["--init", str(tiny_run / FINAL_FILE), "--out", str(tmp_path)])
    assert (cfg.network, cfg.width) == ("resnet18-cifar", 4)  # the default would be width 16
    with pytest.raises(SettingsError, match="does not fit"):
        load_init_weights(create_network("resnet18-cifar", 10, width=8), tiny_run / FINAL_FILE)
    five = create_network("resnet18-cifar", 5, width=4)  # another class count: only the head is renewed
    assert load_init_weights(five, tiny_run / FINAL_FILE) == ["head.bias", "head.weight"]


def test_warm_up_is_capped_at_a_tenth_of_a_short_run():
    cfg = TrainConfig(preset="scratch").resolved()  # warm-up 100 steps
    assert lr_at(0, 20, cfg) == pytest.approx(cfg.lr / 2)  # 2 warm-up steps of 20, not 100
    assert lr_at(2, 20, cfg) == pytest.approx(cfg.lr)
    assert lr_at(0, 5000, cfg) == pytest.approx(cfg.lr / 100)  # a long run keeps its full warm-up


def test_in_memory_data_trains_exactly_like_the_named_data_set(tmp_path, one_thread):
    cfg = TrainConfig(variant="C", epochs=0.5, eval_test=False, **TINY)
    named = train(dataclasses.replace(cfg, out=str(tmp_path / "named")), progress=False)
    data = load_dataset("digits", "train")
    given = train(dataclasses.replace(cfg, out=str(tmp_path / "given"), dataset="mine"), progress=False, data=data)
    a, b = (load_checkpoint(tmp_path / d / FINAL_FILE)["model"] for d in ("named", "given"))
    assert all(torch.equal(a[k], b[k]) for k in a) and named["val_clean_acc"] == given["val_clean_acc"]
    pair = (data.subset(torch.arange(64)), data.subset(torch.arange(64, 96)))
    metrics = train(dataclasses.replace(cfg, out=str(tmp_path / "pair"), train_limit=None), progress=False, data=pair)
    assert metrics["step"] == 1 and "test_clean_acc" not in metrics  # 64 images, batch 32, half an epoch
    assert load_checkpoint(tmp_path / "pair" / FINAL_FILE)["dataset"]["size"] == 64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_one_epoch_digits_run_with_default_flags_learns(tmp_path, capsys, seed):
    """1,150 digits at the default batch 128 are 9 steps: too few to learn (47-53% test accuracy). The command's
    default batch shrinks to 16 (72 steps), says so, and every seed learns."""
    args = ["--dataset", "digits", "--out", str(tmp_path), "--no-progress", "--strict", "--seed", str(seed)]
    assert train_cli.main([*args, "--num-threads", "1"]) == 0
    ckpt = load_checkpoint(tmp_path / FINAL_FILE)
    assert ckpt["metrics"]["test_clean_acc"] >= 0.70, ckpt["metrics"]
    assert ckpt["config"]["batch_size"] == 16 and ckpt["metrics"]["step"] == 72
    err = capsys.readouterr().err
    assert "warning" not in err and "using batch 16 instead (pass --batch-size to keep yours)" in err


def test_only_a_default_batch_size_shrinks_and_only_for_a_small_set():
    assert small_set_batch_size(1150, 128, 40) == 16  # 9 steps -> 72
    assert small_set_batch_size(1150, 128, 0) == 128  # the library's and the recipes' default: never
    assert small_set_batch_size(55_000, 128, 40) == 128  # 430 steps: enough
    assert small_set_batch_size(2560, 128, 40) == 128  # 20 steps: half of 40, kept
    assert small_set_batch_size(2000, 128, 40) == 32  # 16 steps -> 63
    assert small_set_batch_size(1150, 128, 40, world_size=2) == 16  # never below 16
    assert small_set_batch_size(1150, 8, 40) == 8  # never larger than asked
    cfg, _ = config_from_args(["--dataset", "digits"])
    assert (cfg.batch_size, cfg.min_epoch_steps) == (128, 40)
    cfg, _ = config_from_args(["--dataset", "digits", "--batch-size", "128"])
    assert cfg.min_epoch_steps == 0  # an explicit --batch-size is kept
    assert TrainConfig().min_epoch_steps == 0


def test_zoo_passes_flags_through_and_bars_belong_to_their_recipe(tmp_path):
    configs = build_configs("cpu-default", tmp_path, epochs_scale=0.5, train_limit=64, batch_size=8, warmup_steps=3)
    assert {(c.train_limit, c.batch_size, c.warmup_steps) for c in configs.values()} == {(64, 8, 3)}
    assert configs["standard"].epochs == 3  # 6 epochs, halved
    shipped = json.loads((Path(__file__).resolve().parent.parent / "assets/zoo/default/zoo.json").read_text())
    assert has_quality_bars(shipped) and quality_bars(shipped)
    assert not has_quality_bars({**shipped, "overrides": {"train_limit": 64}})
    assert not has_quality_bars({**shipped, "recipe": "paper-cifar100"})


def test_resume_keeps_the_batch_size_it_started_with(tmp_path, one_thread):
    from models.checkpoints import atomic_torch_save

    cfg = TrainConfig(epochs=1, eval_test=False, min_epoch_steps=40, out=str(tmp_path), **TINY)
    assert train(dataclasses.replace(cfg, stop_after_steps=1), progress=False)["interrupted"]
    assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 16  # 100 images: 4 steps at 32
    assert train(dataclasses.replace(cfg, resume=True), progress=False)["step"] == 7
    # a run saved before --min-epoch-steps existed resumes at its own batch size, not a shrunk one
    old = TrainConfig(epochs=1, eval_test=False, out=str(tmp_path / "old"), **TINY)
    assert train(dataclasses.replace(old, stop_after_steps=1), progress=False)["interrupted"]
    ckpt = load_checkpoint(tmp_path / "old" / RESUME_FILE)
    del ckpt["config"]["min_epoch_steps"]
    atomic_torch_save(ckpt, tmp_path / "old" / RESUME_FILE)
    resumed = train(dataclasses.replace(old, min_epoch_steps=40, resume=True), progress=False)
    assert resumed["step"] == 4 and load_checkpoint(tmp_path / "old" / FINAL_FILE)["config"]["batch_size"] == 32


def test_zoo_manifest_records_only_the_flags_that_change_what_is_trained():
    """--num-threads, --device and --data-root say where and how fast a zoo trains: a zoo trained with them is
    still the recipe's zoo (its quality bars apply); --train-limit and the like make it another."""
    from models.train_zoo import recipe_overrides

    assert recipe_overrides({"num_threads": 2, "device": "cpu", "data_root": "/data", "batch_size": None}) == {}
    assert recipe_overrides({"num_threads": 2, "train_limit": 64, "epochs_scale": None}) == {"train_limit": 64}
