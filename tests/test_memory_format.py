"""The training memory format: the AVX2 channels_last fault kept as a minimal case, and a default that avoids it.

oneDNN's AVX2 kernels (an AMD Zen 3's; forced on any x86-64 CPU with ``ONEDNN_MAX_CPU_ISA=AVX2``) corrupt memory in
the channels_last weight gradient of a strided 1x1 convolution with 2-7 input channels. Each case that could crash
runs in a subprocess, so a native fault fails its test with the signal's name instead of ending the test run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from models.memory_format import default_channels_last, has_faulting_conv
from models.networks import create_network

ROOT = Path(__file__).resolve().parent.parent
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}

#: The minimal reproduction: one 1x1 stride-2 convolution 4 -> 8 channels (the width-4 network's first downsampling
#: shortcut), two 32x32 images, one thread, backward. In channels_last it segfaults or aborts under AVX2 kernels.
MINIMAL_CASE = """
import sys, torch
from torch import nn
torch.set_num_threads(1)
fmt = torch.channels_last if sys.argv[1] == "channels_last" else torch.contiguous_format
conv = nn.Conv2d(4, 8, kernel_size=1, stride=2, bias=False).to(memory_format=fmt)
x = torch.rand(2, 4, 32, 32).contiguous(memory_format=fmt)
conv(x).sum().backward()
print("finished", torch.isfinite(conv.weight.grad).all().item())
"""


def run_isolated(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``code`` in a fresh Python; return its stdout, or fail naming the signal or exit code and its stderr."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        how = f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else f"exit {proc.returncode}"
        pytest.fail(f"the subprocess died ({how}); stderr tail:\n{proc.stderr[-2000:]}")
    return proc.stdout


def test_minimal_case_shape_is_recognised():
    """The faulting shape is flagged; its neighbours that ran fine under AVX2 are not."""
    assert has_faulting_conv(nn.Conv2d(4, 8, kernel_size=1, stride=2))
    assert has_faulting_conv(nn.Conv2d(2, 2, kernel_size=1, stride=2))
    for safe in (nn.Conv2d(1, 8, 1, 2), nn.Conv2d(8, 16, 1, 2), nn.Conv2d(4, 8, 3, 2, 1), nn.Conv2d(4, 8, 1, 1)):
        assert not has_faulting_conv(safe), safe
    assert has_faulting_conv(create_network("resnet18-cifar", 10, width=4))
    assert not has_faulting_conv(create_network("resnet18-cifar", 10, width=16))


def test_default_avoids_the_fault_and_keeps_channels_last_where_measured_faster():
    """CPU: channels_last for the lab's network without the faulting shape only; CUDA: always; imported: contiguous."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not default_channels_last(create_network("resnet18-cifar", 10, width=4), cpu)
    assert default_channels_last(create_network("resnet18-cifar", 10, width=8), cpu)
    assert default_channels_last(create_network("resnet18-cifar", 10, width=16), cpu)  # the shipped zoo's layout
    assert not default_channels_last(create_network("torchvision:resnet18", 10), cpu)
    assert default_channels_last(create_network("resnet18-cifar", 10, width=4), cuda)


def test_minimal_case_runs_in_the_default_layout_under_avx2_kernels():
    """The minimal case in the layout the default picks for it (contiguous) finishes under AVX2 kernels."""
    assert "finished True" in run_isolated(MINIMAL_CASE, "contiguous", env=AVX2_ENV)


TRAIN_SMALL = """
import json, sys
from models.checkpoints import load_checkpoint
from models.train import train
from models.train_config import TrainConfig
out = sys.argv[1]
overrides = json.loads(sys.argv[2])
train(TrainConfig(dataset="digits", width=int(sys.argv[3]), epochs=0.2, batch_size=32, train_limit=128, val_size=25,
                  checkpoint_every=1000, num_threads=1, device="cpu", augment=False, variant="standard",
                  out=out, **overrides))
print(json.dumps({"channels_last": load_checkpoint(out + "/model.pt")["config"]["channels_last"]}))
"""


def test_width_4_training_with_the_default_survives_avx2_kernels(tmp_path, cache_dir):
    """The issue's reproduction: width-4 training under AVX2 kernels; the default records the layout it chose."""
    env = {**AVX2_ENV, "SCL_CACHE_DIR": str(cache_dir)}
    out = run_isolated(TRAIN_SMALL, str(tmp_path / "run"), "{}", "4", env=env)
    assert json.loads(out.strip().splitlines()[-1]) == {"channels_last": False}


def test_channels_last_override_is_recorded(tmp_path, cache_dir):
    """``channels_last=False`` overrides width 16's default (channels_last) and is saved in the run's config."""
    env = {"SCL_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1"}
    out = run_isolated(TRAIN_SMALL, str(tmp_path / "run"), '{"channels_last": false}', "16", env=env)
    assert json.loads(out.strip().splitlines()[-1]) == {"channels_last": False}
