"""analysis.transfer and analysis.fairness on digits with tiny settings (width 4, ~128 images, a fraction of an
epoch, one seed): the tables' shape and ranges, the colours of the colour-bias set, and the registry left clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.fairness import FAIRNESS_COLUMNS, background_colours, colour_bias_loader, fairness_table
from analysis.transfer import (
    DOMAIN_SHIFT,
    TRANSFER,
    TRANSFER_COLUMNS,
    summarise,
    target_kind,
    transfer_table,
    variant_paths,
)
from models.checkpoints import load_checkpoint, load_zoo
from models.data import COLOUR_BIAS_COLOURS, DATASETS
from tests.conftest import make_tiny_zoo

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")


def test_transfer_table_on_digits(tiny_zoo, tmp_path):
    registry_before = set(DATASETS)
    zoo = load_zoo(tiny_zoo)
    df = transfer_table(
        zoo, targets=("digits",), epochs=0.2, train_limit=128, seeds=(0,), out_dir=tmp_path, test_limit=64,
        variants=("standard", "C"), batch_size=32, val_size=0, source_classes=[str(i) for i in range(10)],
    )  # fmt: skip
    assert list(df.columns) == TRANSFER_COLUMNS
    assert len(df) == 2 and set(df["variant"]) == {"standard", "C"} and set(df["target"]) == {"digits"}
    assert df["test_acc"].between(0, 1).all() and (df["n_test"] == 64).all() and (df["n_train"] == 128).all()
    assert (df["kind"] == DOMAIN_SHIFT).all()  # digits again: the zoo's own classes
    assert (tmp_path / "digits" / "C" / "seed-0" / "model.pt").is_file()
    assert set(DATASETS) == registry_before  # nothing registered: the data go to train() in memory
    summary = summarise(df)
    assert list(summary.columns) == ["variant", "target", "test_acc_mean", "test_acc_sd", "n_seeds"]


def test_transfer_new_head_for_another_class_count(tmp_path):
    zoo_dir = tmp_path / "zoo5"
    zoo_dir.mkdir()
    make_tiny_zoo(zoo_dir, num_classes=5)
    paths = variant_paths(zoo_dir)  # a folder works as well as a Zoo
    df = transfer_table(
        {"ADV": paths["ADV"]}, targets=("digits",), epochs=0.1, train_limit=64, seeds=(1,), out_dir=tmp_path / "r",
        test_limit=32, batch_size=32, val_size=0, fresh_head=False,
    )  # fmt: skip
    assert df.loc[0, "seed"] == 1 and 0 <= df.loc[0, "test_acc"] <= 1


def test_background_colours_and_split_fractions():
    load = colour_bias_loader("digits")
    train, test = load("train"), load("test")
    for data, major in ((train, "red"), (test, "blue")):
        colours = background_colours(data.images)
        minor = "blue" if major == "red" else "red"
        assert (colours == major).sum() == data.source["counts"][major]
        assert (colours == minor).sum() == data.source["counts"][minor] == round(0.05 * len(data))
    # the reading agrees with the colour definitions, whatever the shape drawn on top
    pure = torch.stack([torch.tensor(c).view(3, 1, 1).expand(3, 8, 8) for c in COLOUR_BIAS_COLOURS.values()])
    assert list(background_colours(pure)) == list(COLOUR_BIAS_COLOURS)
    assert list(background_colours(0.5 + 0.5 * pure)) == list(COLOUR_BIAS_COLOURS)


def test_fairness_table_on_digits(tmp_path):
    registry_before = set(DATASETS)
    df = fairness_table(
        variants=("standard", "C"), source="digits", epochs=0.2, train_limit=128, width=4, seeds=(0,),
        out_dir=tmp_path, batch_size=32, test_limit=100,
    )  # fmt: skip
    assert list(df.columns) == FAIRNESS_COLUMNS
    assert list(df["variant"]) == ["standard", "C"]
    for col in ("test_acc", "test_acc_red", "test_acc_blue", "val_acc"):
        assert df[col].between(0, 1).all(), col
    assert (df["n_blue"] == 95).all() and (df["n_red"] == 5).all()  # test: 5% red, 95% blue
    assert (df["n_val"] == 25).all() and (df["n_train"] == 103).all()  # val_size 200, capped at a fifth of 128
    overall = (df["test_acc_red"] * df["n_red"] + df["test_acc_blue"] * df["n_blue"]) / 100
    np.testing.assert_allclose(overall, df["test_acc"])
    assert set(DATASETS) == registry_before


def test_a_scored_run_is_taken_from_its_row_file_even_without_its_checkpoints(tmp_path, monkeypatch):
    """The colour bias split over sessions that keep only the small row files: the same settings give the same
    table without training or scoring; other settings (more epochs) are not answered from the stored rows."""
    import analysis.fairness

    kwargs = dict(variants=("standard",), source="digits", epochs=0.2, train_limit=96, width=4, seeds=(0, 1),
                  out_dir=tmp_path, batch_size=32, test_limit=60)  # fmt: skip
    first = fairness_table(**kwargs)
    rows = sorted(tmp_path.rglob(analysis.fairness.ROW_FILE))
    assert len(rows) == 2
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != analysis.fairness.ROW_FILE:
            path.unlink()  # a new machine: the training folders are gone, the row files kept

    def no_training(*args, **kw):
        raise AssertionError("a run with a stored row was trained again")

    monkeypatch.setattr(analysis.fairness, "run_training", no_training)
    pd.testing.assert_frame_equal(fairness_table(**kwargs), first)
    with pytest.raises(AssertionError, match="trained again"):
        fairness_table(**{**kwargs, "epochs": 0.3})
    (rows[0]).write_text("{not json")  # a damaged row file is not trusted: the run is trained again
    with pytest.raises(AssertionError, match="trained again"):
        fairness_table(**kwargs)


def test_a_scored_fine_tune_is_taken_from_its_row_file_until_its_source_checkpoint_changes(
    tiny_zoo, tmp_path, monkeypatch
):
    """Transfer split over sessions: with only the row files kept, the same runs give the same table without
    training; a retrained source checkpoint (other bytes) or a moved work folder are told apart correctly."""
    import shutil

    import analysis.transfer

    zoo = load_zoo(tiny_zoo)
    kwargs = dict(targets=("digits",), epochs=0.1, train_limit=64, seeds=(0, 1), test_limit=32,
                  variants=("standard",), batch_size=32, val_size=0)  # fmt: skip
    first = transfer_table(zoo, out_dir=tmp_path / "w", **kwargs)
    rows = sorted((tmp_path / "w").rglob(analysis.transfer.ROW_FILE))
    assert [p.parent.name for p in rows] == ["seed-0", "seed-1"]
    for path in (tmp_path / "w").rglob("*"):
        if path.is_file() and path.name != analysis.transfer.ROW_FILE:
            path.unlink()  # a new machine: the training folders are gone, the row files kept
    shutil.move(tmp_path / "w", tmp_path / "moved")  # the rows do not depend on where the work folder was

    def no_training(*args, **kw):
        raise AssertionError("a run with a stored row was trained again")

    monkeypatch.setattr(analysis.transfer, "run_training", no_training)
    pd.testing.assert_frame_equal(transfer_table(zoo, out_dir=tmp_path / "moved", **kwargs), first)
    with pytest.raises(AssertionError, match="trained again"):  # another number of epochs: another run
        transfer_table(zoo, out_dir=tmp_path / "moved", **{**kwargs, "epochs": 0.2})
    retrained = tmp_path / "retrained.pt"
    ckpt = load_checkpoint(variant_paths(zoo)["standard"])
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, retrained)
    with pytest.raises(AssertionError, match="trained again"):  # the same run from other source weights
        transfer_table({"standard": retrained}, out_dir=tmp_path / "moved", **kwargs)


def test_processes_sharing_the_work_folder_take_each_others_runs_instead_of_failing(tmp_path, monkeypatch, capsys):
    """A run another process is training (its folder locked) is left for last, waited for, and its row taken: the
    run is never trained twice and the table keeps its order."""
    import shutil
    import subprocess
    import sys

    import analysis.fairness

    kwargs = dict(variants=("standard",), source="digits", epochs=0.1, train_limit=96, width=4, batch_size=32,
                  test_limit=60)  # fmt: skip
    alone = fairness_table(seeds=(0,), out_dir=tmp_path / "alone", **kwargs)
    shared = tmp_path / "shared" / "standard" / "seed-0"
    holder = ("import shutil, sys, time\nfrom models.safe_output import folder_lock\n"
              "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(3)\n"
              "    shutil.copytree(sys.argv[2], sys.argv[1], dirs_exist_ok=True)\n")  # "trains" it  # fmt: skip
    other = subprocess.Popen([sys.executable, "-c", holder, str(shared), str(tmp_path / "alone" / "standard" /
                              "seed-0")], stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "held"
        trained = []
        real = analysis.fairness.run_training

        def counted(cfg, **kw):
            done = real(cfg, **kw)  # OutputInUse while the other process holds the run
            trained.append(cfg.seed)
            return done

        monkeypatch.setattr(analysis.fairness, "run_training", counted)
        monkeypatch.setattr(analysis.fairness, "WAIT_POLL_S", 0.2)
        df = fairness_table(seeds=(0, 1), out_dir=tmp_path / "shared", progress=True, **kwargs)
    finally:
        other.wait(timeout=60)
    assert "seed 0: another process is training it" in capsys.readouterr().out
    assert trained == [1]  # seed 0 was the other process's: taken from its row, not trained again
    assert df["seed"].tolist() == [0, 1]
    pd.testing.assert_series_equal(df.iloc[0][["test_acc", "val_acc"]], alone.iloc[0][["test_acc", "val_acc"]],
                                   check_names=False)  # fmt: skip
    shutil.rmtree(tmp_path / "alone")


def shortcut_colour_read(images: torch.Tensor) -> np.ndarray:
    """Each image's background, read from its pixels: ``g + (1 - g) * c`` grows with g in every channel, so the
    pixel with the smallest channel sum is the least covered one (exactly c where g = 0); the nearest colour of
    ``SHORTCUT_COLOURS`` (its index) wins."""
    from models.datasets.colour_bias import SHORTCUT_COLOURS

    flat = images.double().flatten(2)  # (N, 3, pixels)
    darkest = flat[torch.arange(len(flat)), :, flat.sum(1).argmin(1)]
    return torch.cdist(darkest, torch.tensor(SHORTCUT_COLOURS, dtype=torch.float64)).argmin(1).numpy()


def test_fairness_table_shortcut_design_on_digits(tmp_path):
    """The shortcut design (issue 23) through ``fairness_table``: in its training split the background colour
    gives the class for 95% of each class's images (read from the pixels: a colour-only rule scores ~95%), in its
    test split the colour is drawn independently of the label (that rule scores ~chance); the table has one row
    per variant, design "shortcut", the on/off-colour columns filled and the red/blue ones empty."""
    from models.datasets.colour_bias import SHORTCUT_FRACTION

    registry_before = set(DATASETS)
    load = colour_bias_loader("digits", 400, None, design="shortcut")
    train, test = load("train"), load("test")
    y_train, y_test = train.labels.numpy(), test.labels.numpy()
    n_classes = len(train.classes)
    on_train = shortcut_colour_read(train.images) == y_train  # the colour-only rule: colour i -> class i
    for c in range(n_classes):  # exactly round((1 - 0.95) n_c) of each class off its colour (within rounding)
        n_c = int((y_train == c).sum())
        assert abs(int((~on_train[y_train == c]).sum()) - (1 - SHORTCUT_FRACTION) * n_c) <= 0.5 + 1e-9, c
    assert on_train.mean() == pytest.approx(SHORTCUT_FRACTION, abs=n_classes * 0.5 / len(y_train))
    on_test = shortcut_colour_read(test.images) == y_test
    chance, sd = 1 / n_classes, np.sqrt((1 / n_classes) * (1 - 1 / n_classes) / len(y_test))
    assert abs(on_test.mean() - chance) < 4 * sd, on_test.mean()  # the colour says nothing about the class
    assert len(set(shortcut_colour_read(test.images))) == n_classes  # every colour occurs in test

    df = fairness_table(
        variants=("standard", "C"), source="digits", epochs=0.2, train_limit=400, width=4, seeds=(0,),
        out_dir=tmp_path, batch_size=32, design="shortcut",
    )  # fmt: skip
    assert list(df.columns) == FAIRNESS_COLUMNS
    assert list(df["variant"]) == ["standard", "C"] and (df["design"] == "shortcut").all()
    assert (df["n_on_colour"] == int(on_test.sum())).all()  # the table's on-colour split is the pixels' one
    for col in ("test_acc", "test_acc_on_colour", "test_acc_off_colour", "val_acc"):
        assert df[col].between(0, 1).all(), col
    n_on = df["n_on_colour"]
    overall = (df["test_acc_on_colour"] * n_on + df["test_acc_off_colour"] * (len(y_test) - n_on)) / len(y_test)
    np.testing.assert_allclose(overall, df["test_acc"])
    assert df[["test_acc_red", "test_acc_blue"]].isna().all().all() and (df[["n_red", "n_blue"]] == 0).all().all()
    assert (df["n_train"] + df["n_val"] == 400).all()
    for variant in ("standard", "C"):  # the shortcut's runs beside, not over, the paper design's
        assert (tmp_path / "shortcut" / variant / "seed-0" / "model.pt").is_file()
    assert not (tmp_path / "standard").exists()
    assert set(DATASETS) == registry_before


def test_fairness_rejects_unknown_inputs(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        fairness_table(variants=("nope",), out_dir=tmp_path)
    with pytest.raises(ValueError, match="source"):
        fairness_table(variants=("C",), source="cifar", out_dir=tmp_path)


def test_target_kind_names_a_same_class_target_a_domain_shift():
    assert target_kind(["a", "b"], ["a", "b"]) == DOMAIN_SHIFT
    assert target_kind(["0", "1"], ["a", "b"]) == TRANSFER and target_kind(["a"], None) == TRANSFER


def test_a_stopped_training_run_raises_training_interrupted_not_an_ordinary_error(tmp_path):
    """The report's experiments catch Exception: a stop inside their training must not look like a failure."""
    from analysis.transfer import run_training
    from models.data import load_dataset
    from models.runs import TrainingInterrupted
    from models.train import TrainConfig

    data = load_dataset("digits", "train").subset(torch.arange(64))
    cfg = TrainConfig(dataset="digits", width=4, batch_size=16, val_size=0, eval_test=False, eval_pgd_subset=0,
                      stop_after_steps=1, device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(TrainingInterrupted) as caught:
        run_training(cfg, data=data)
    assert not isinstance(caught.value, Exception) and caught.value.step == 1


def test_run_training_with_reuse_resumes_a_stopped_run_and_loads_a_finished_one(tmp_path, monkeypatch):
    """An experiment stopped half-way (or split over processes sharing a folder) ends with the uninterrupted run's
    numbers: reuse resumes the stopped run, loads the finished one without training, and retrains over a run made
    under other settings or on other images."""
    import dataclasses

    import analysis.transfer
    from analysis.transfer import run_training
    from models.data import load_dataset
    from models.runs import TrainingInterrupted
    from models.train import FINAL_FILE, TrainConfig

    data = load_dataset("digits", "train").subset(torch.arange(96))
    cfg = TrainConfig(dataset="digits", width=4, epochs=2, batch_size=16, val_size=16, eval_test=False,
                      eval_pgd_subset=0, device="cpu", num_threads=1, out=str(tmp_path / "whole"))  # fmt: skip
    _, whole, _ = run_training(cfg, data=data)
    calls = []
    real_train = analysis.transfer.train
    monkeypatch.setattr(analysis.transfer, "train", lambda c, **kw: calls.append(c.resume) or real_train(c, **kw))

    split = dataclasses.replace(cfg, out=str(tmp_path / "split"))
    with pytest.raises(TrainingInterrupted):
        run_training(dataclasses.replace(split, stop_after_steps=3), data=data, reuse=True)
    metrics, resumed, seconds = run_training(split, data=data, reuse=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert metrics["step"] == 10 and seconds > 0 and calls == [False, True]  # the second call resumed

    final = tmp_path / "split" / FINAL_FILE
    stamp = final.stat().st_mtime_ns
    again, loaded, same_seconds = run_training(split, data=data, reuse=True)
    assert final.stat().st_mtime_ns == stamp and same_seconds == seconds and len(calls) == 2  # loaded, not trained
    assert again["val_clean_acc"] == metrics["val_clean_acc"]
    pairs = zip(resumed.state_dict().values(), loaded.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)

    run_training(dataclasses.replace(split, seed=1), data=data, reuse=True)  # other settings: trained over
    assert final.stat().st_mtime_ns != stamp and calls[2:] == [False]
    stamp = final.stat().st_mtime_ns
    run_training(dataclasses.replace(split, seed=1), data=data.subset(torch.arange(80)), reuse=True)  # other images
    assert final.stat().st_mtime_ns != stamp and calls[3:] == [False]
    stamp = final.stat().st_mtime_ns
    init = dataclasses.replace(split, seed=1, init=str(tmp_path / "whole" / FINAL_FILE))
    run_training(init, data=data.subset(torch.arange(80)), reuse=True)
    run_training(init, data=data.subset(torch.arange(80)), reuse=True)  # an --init run is never reused
    assert calls[4:] == [False, False]


def test_fairness_retrains_only_registered_variants_and_names_the_skipped():
    from types import SimpleNamespace

    from analysis.experiments.training import fairness_variants

    ctx = SimpleNamespace(roles={"standard": "baseline", "mine": "constrained", "tv": "other"})
    variants, skipped = fairness_variants(ctx)
    assert variants == ["standard"] and list(skipped) == ["mine"] and "not a registered" in skipped["mine"]
    ctx = SimpleNamespace(roles={"standard": "baseline", "C": "constrained", "standard+jitter": "baseline+jitter"})
    assert fairness_variants(ctx) == (["standard", "C", "standard+jitter"], {})
    ctx = SimpleNamespace(roles={"theirs": "baseline", "mine": "constrained"})
    variants, skipped = fairness_variants(ctx)
    assert variants == ["standard", "C"] and set(skipped) == {"theirs", "mine"}  # nothing trainable: the paper's pair


def test_the_colour_bias_experiment_trains_c_with_its_alpha_setting(monkeypatch, tmp_path):
    """``--set fairness_alpha=A`` (and the lr schedule and validation size) reach C's training, and the report's notes
    and "ran" record it with the images actually trained on."""
    import dataclasses
    from types import SimpleNamespace

    import pandas as pd

    import analysis.fairness
    from analysis.experiments.settings import QUICK
    from analysis.experiments.training import run_fairness

    seen = {}

    def fake_table(**kwargs):
        seen.update(kwargs)
        rows = [[v, 0, 0.8, 0.9, 0.79, 5, 95, 0.91, 300, 60, 1.0, kwargs.get("design", "paper"), None, None, 0]
                for v in kwargs["variants"]]  # fmt: skip
        return pd.DataFrame(rows, columns=FAIRNESS_COLUMNS)

    monkeypatch.setattr(analysis.fairness, "fairness_table", fake_table)
    roles = {"standard": "baseline", "C": "constrained", "standard+jitter": "baseline+jitter"}
    ctx = SimpleNamespace(settings=dataclasses.replace(QUICK, fairness_alpha=0.25), roles=roles, out=tmp_path,
                          work_dir=tmp_path / "work", progress=False, device="cpu")  # fmt: skip
    (tmp_path / "figures").mkdir()
    output = run_fairness(ctx)
    assert seen["alpha"] == 0.25 and list(seen["variants"]) == ["standard", "C", "standard+jitter"]
    assert output.ran["alpha"] == 0.25 and "C's alpha 0.25" in output.notes[0]
    assert (seen["schedule"], seen["val_size"]) == (QUICK.fairness_schedule, QUICK.fairness_val_size)
    # what ran, as the table says it (not the requested limit): images trained on and held out
    assert (output.ran["n_train"], output.ran["n_val"]) == (300, 60) and "on 300 colour-bias" in output.notes[0]
    assert "every run reached 90% in-distribution validation accuracy (lowest 91.0%" in output.notes[-1]
    monkeypatch.setattr(analysis.fairness, "fairness_table", lambda **kw: fake_table(**kw).assign(
        val_acc=[0.95, 0.875, 0.91]))  # fmt: skip
    assert (
        "1 of 3 runs stayed below 90% in-distribution validation accuracy: C seed 0 (87.5%)"
        in (run_fairness(ctx).notes[-1])
    )
