"""Training from the command line: progress, checkpoints, interruption, resume, init, DDP."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from models.checkpoints import load_checkpoint, load_model
from models.errors import SettingsError
from models.networks import create_network
from models.train import FINAL_FILE, PRESETS, RESUME_FILE, TrainConfig, load_init_weights, pick_device, train

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(
    dataset="digits",
    width=4,
    batch_size=32,
    train_limit=200,
    val_size=40,
    eval_pgd_subset=16,
    checkpoint_every=2,
    pgd_steps=2,
    pgd_step=4 / 255,
    num_threads=1,
)


def _run_cli(*args: str, timeout: int = 240, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **popen
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_cli_trains_a_variant_and_writes_a_self_describing_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _run_cli(
        "models.train",
        "--variant",
        "C",
        "--dataset",
        "digits",
        "--width",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--val-size",
        "100",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "img_s=" in proc.stderr and "acc=" in proc.stderr  # the progress bar shows throughput and accuracy
    model, meta = load_model(out / FINAL_FILE)
    assert meta["variant"] == "C" and meta["config"]["alpha"] == 1.0
    assert meta["dataset"]["name"] == "digits" and meta["network"]["width"] == 4
    assert 0.0 <= meta["metrics"]["test_clean_acc"] <= 1.0 and meta["metrics"]["history"]
    assert meta["git_commit"]
    assert "training_state" in load_checkpoint(out / RESUME_FILE)


@pytest.mark.parametrize("variant", ["C", "ADV+C"])
def test_resume_after_interruption_is_bit_identical(tmp_path, variant):
    base = TrainConfig(variant=variant, epochs=2, **TINY)  # 5 steps per epoch: the stop falls mid-epoch 2
    straight = train(dataclasses.replace(base, out=str(tmp_path / "straight")), progress=False)
    stopped = train(dataclasses.replace(base, out=str(tmp_path / "resumed"), stop_after_steps=7), progress=False)
    assert stopped["interrupted"] and stopped["step"] == 7
    resumed = train(dataclasses.replace(base, out=str(tmp_path / "resumed"), resume=True), progress=False)
    a, b = _weights(tmp_path / "straight" / FINAL_FILE), _weights(tmp_path / "resumed" / FINAL_FILE)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert resumed["val_clean_acc"] == straight["val_clean_acc"]


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    args = [
        "models.train",
        "--variant",
        "standard",
        "--dataset",
        "digits",
        "--width",
        "4",
        "--epochs",
        "40",
        "--batch-size",
        "32",
        "--val-size",
        "100",
        "--checkpoint-every",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / RESUME_FILE).exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    step = load_checkpoint(out / RESUME_FILE)["training_state"]["step"]
    assert step > 0
    finish = _run_cli(*args[: args.index("--epochs") + 1], "1", *args[args.index("--epochs") + 2 :], "--resume")
    # epochs changed to 1 (allowed): resume continues from the saved step or ends at once if past it
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert (out / FINAL_FILE).exists()


def test_resume_refuses_a_different_configuration(tmp_path):
    cfg = TrainConfig(variant="standard", epochs=0.4, out=str(tmp_path), stop_after_steps=1, **TINY)
    train(cfg, progress=False)
    with pytest.raises(ValueError, match="alpha"):
        train(dataclasses.replace(cfg, alpha=2.0, resume=True), progress=False)
    with pytest.raises(SettingsError, match="--resume"):
        train(dataclasses.replace(cfg, out=str(tmp_path / "empty"), resume=True), progress=False)


def test_init_fine_tunes_from_a_checkpoint_and_renews_a_mismatched_head(tmp_path):
    cfg = TrainConfig(variant="standard", epochs=0.4, out=str(tmp_path / "base"), **TINY)
    train(cfg, progress=False)
    src = _weights(tmp_path / "base" / FINAL_FILE)
    five = create_network("resnet18-cifar", 5, width=4)
    skipped = load_init_weights(five, str(tmp_path / "base" / FINAL_FILE))
    assert skipped == ["head.bias", "head.weight"]
    assert torch.equal(five.state_dict()["stem.0.weight"], src["stem.0.weight"])
    tuned = TrainConfig(
        variant="ADV",
        epochs=0.2,
        preset="paper",
        init=str(tmp_path / "base" / FINAL_FILE),
        out=str(tmp_path / "tuned"),
        **TINY,
    )
    metrics = train(tuned, progress=False)
    assert "val_pgd_acc" in metrics  # adversarial variants are evaluated under PGD each epoch
    meta = load_checkpoint(tmp_path / "tuned" / FINAL_FILE)
    assert meta["config"]["optimizer"] == "adam" and meta["config"]["lr"] == 1e-5


def test_presets_and_device_choice():
    assert PRESETS["paper"]["optimizer"] == "adam" and PRESETS["paper"]["lr"] == 1e-5
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(preset="fast").resolved()


@pytest.mark.slow
def test_distributed_data_parallel_with_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    proc = _run_cli(
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "models.train",
        "--variant",
        "ADV+C",
        "--dataset",
        "digits",
        "--width",
        "4",
        "--epochs",
        "0.5",
        "--batch-size",
        "32",
        "--train-limit",
        "256",
        "--val-size",
        "50",
        "--pgd-steps",
        "2",
        "--eval-pgd-subset",
        "16",
        "--num-threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(out / FINAL_FILE)
    assert ckpt["variant"] == "ADV+C"
    # 206 training images, 2 processes x 32 per step -> 4 steps per epoch -> 2 steps for half an epoch
    assert ckpt["metrics"]["step"] == 2


def test_a_signal_during_a_save_waits_for_the_write():
    """Ctrl-C while a checkpoint is written must not tear the file: it is raised once the write is done."""
    from models.train import _signals_deferred, _Stop

    written = []
    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler, or SIG_IGN in a background job
    with pytest.raises(_Stop, match="SIGINT"):
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            written.append(True)  # still running: the signal was held
    assert written == [True]
    assert signal.getsignal(signal.SIGINT) == before  # restored
    with _signals_deferred(reraise=False):  # when already stopping the extra signal is dropped
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)


def test_a_signal_during_a_save_is_named_like_one_between_steps(monkeypatch):
    """A Ctrl-C that lands while the checkpoint is written is reported as SIGINT, as one that lands between steps."""
    from models import train as train_module
    from models.runs import StopRequest

    def save_then_get_signalled(obj, path):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)

    monkeypatch.setattr(train_module, "atomic_torch_save", save_then_get_signalled)
    monkeypatch.setattr(train_module, "make_checkpoint", lambda *a, **k: {})
    stop = StopRequest()
    run = types.SimpleNamespace(
        dist=types.SimpleNamespace(is_main=True),
        optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
        gen=torch.Generator(),
        step=3,
        perm=None,
        history=[],
        model=None,
        cfg=TrainConfig(),
        num_classes=10,
        data_info={},
        out=Path("."),
        stop=stop,
        network_options={},  # an imported network's mean/std, GradCAM layer...: none here
    )
    monkeypatch.setattr(train_module, "network_spec", lambda *a, **k: {})
    train_module.save(run)
    assert stop.reason == "SIGINT"
