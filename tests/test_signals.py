"""Ctrl-C (SIGINT) or SIGTERM at any moment, then ``--resume``, gives exactly the model of an uninterrupted run.

Real ``python -m models.train`` processes are signalled at several moments (right after the first step, mid-epoch,
just before an epoch ends), resumed each time, and the final weights are compared tensor by tensor with a run
that was never interrupted. Tiny: digits, width 4, one thread, 30 steps per run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from models.checkpoints import load_checkpoint
from models.runs import FINAL_FILE, RESUME_FILE
from models.train import train
from models.train_cli import config_from_args

ROOT = Path(__file__).resolve().parent.parent
# 200 digits, 40 held out -> 160 training images, batch 16 -> 10 steps per epoch, 3 epochs = 30 steps.
FLAGS = [
    "--dataset",
    "digits",
    "--width",
    "4",
    "--batch-size",
    "16",
    "--train-limit",
    "200",
    "--val-size",
    "40",
    "--epochs",
    "3",
    "--eval-pgd-subset",
    "8",
    "--pgd-steps",
    "2",
    "--pgd-step",
    "0.0157",
    "--checkpoint-every",
    "7",
    "--eval-test",
    "false",
    "--num-threads",
    "1",
]
TOTAL_STEPS = 30
# (moment, wait until the progress bar shows this step, then sleep this long): after the first step, mid-epoch 2,
# and in the last step of epoch 2 or its validation (the epoch ends at step 20).
EARLY, MID, NEAR_END = ("early", 1, 0.0), ("mid-epoch", 13, 0.02), ("near epoch end", 19, 0.04)
# Each variant gets both signals; together they cover every moment with each signal.
PLANS = {
    "standard": [(EARLY, signal.SIGINT), (MID, signal.SIGTERM), (NEAR_END, signal.SIGINT)],
    "C": [(MID, signal.SIGINT), (NEAR_END, signal.SIGTERM)],
    "ADV": [(EARLY, signal.SIGTERM), (NEAR_END, signal.SIGINT)],
}
STEP_SHOWN = re.compile(r"(\d+)/" + str(TOTAL_STEPS) + r" \[")


class _Process:
    """A training subprocess whose stderr (the progress bar) is read as it arrives."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "models.train", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.err = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stderr.fileno(), 4096):
            self.err += chunk

    def step_shown(self) -> int:
        steps = STEP_SHOWN.findall(self.err.decode(errors="replace"))
        return int(steps[-1]) if steps else -1

    def wait_for_step(self, step: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.step_shown() < step and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, self.err.decode(errors="replace")


def _train(out: Path, variant: str, resume: bool = False) -> _Process:
    return _Process(["--variant", variant, *FLAGS, "--out", str(out), *(["--resume"] if resume else [])])


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(PLANS))
def test_a_signal_at_any_moment_then_resume_gives_the_uninterrupted_model(tmp_path, variant, one_thread):
    # The uninterrupted run in this process (one process start less), with the very same settings.
    cfg, _ = config_from_args(["--variant", variant, *FLAGS, "--out", str(tmp_path / "straight")])
    assert train(cfg, progress=False)["step"] == TOTAL_STEPS
    out, saved_steps = tmp_path / "interrupted", []
    for (moment, step, delay), sig in PLANS[variant]:
        proc = _train(out, variant, resume=bool(saved_steps))
        proc.wait_for_step(step)
        time.sleep(delay)
        proc.proc.send_signal(sig)
        code, err = proc.finish()
        assert code == 130, f"{moment} {sig.name}: exit {code}, expected 130 (stopped)\n{err[-2000:]}"
        assert f"stopped ({sig.name}) at step" in err and "--resume" in err, err[-2000:]
        assert not (out / FINAL_FILE).exists()
        saved_steps.append(load_checkpoint(out / RESUME_FILE)["training_state"]["step"])
        assert saved_steps[-1] < TOTAL_STEPS
    assert saved_steps == sorted(saved_steps) and saved_steps[-1] > saved_steps[0], saved_steps
    assert saved_steps[-1] >= 19 and saved_steps[0] <= 14, saved_steps  # the moments were where they were meant
    code, err = _train(out, variant, resume=True).finish()
    assert code == 0, err[-2000:]
    a = load_checkpoint(tmp_path / "straight" / FINAL_FILE)
    b = load_checkpoint(out / FINAL_FILE)
    assert a["model"].keys() == b["model"].keys()
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, (
        f"stopped at steps {saved_steps}; resumed weights differ from the uninterrupted run: {differ[:5]}"
    )
    assert [r["val_clean_acc"] for r in a["metrics"]["history"]] == [
        r["val_clean_acc"] for r in b["metrics"]["history"]
    ]
