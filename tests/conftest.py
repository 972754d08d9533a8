"""Shared fixtures: tiny seeded models on 32x32 inputs, CPU only, nothing downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# Honour OMP_NUM_THREADS (1 when sharing the machine with a training job), else at most 2 threads.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """One torch thread for the test (the session default is two, which crawls when the CPUs are busy); restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_model():
    """A seeded width-4 CIFAR ResNet18 with 10 classes, in eval mode."""
    from models.networks import create_network

    torch.manual_seed(0)
    return create_network("resnet18-cifar", 10, width=4).eval()


@pytest.fixture
def batch():
    """Eight seeded random 32x32 RGB images and labels."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)


@pytest.fixture
def cache_dir(tmp_path_factory, monkeypatch):
    """Keep built data sets out of the user's cache, shared within the session."""
    path = tmp_path_factory.getbasetemp() / "scl-cache"
    monkeypatch.setenv("SCL_CACHE_DIR", str(path))
    return path


def make_tiny_zoo(folder: Path, num_classes: int = 10, dataset: dict | None = None, config: dict | None = None) -> Path:
    """Write a zoo of four seeded, untrained width-4 networks (one per variant) with a manifest (``config``: more
    training-config keys, e.g. ``data_root``)."""
    from models.checkpoints import atomic_torch_save, make_checkpoint, network_spec, write_zoo_manifest
    from models.networks import create_network
    from models.objectives import VARIANTS

    dataset = dataset or {"name": "digits", "split": "train", "size": 1437, "num_classes": num_classes}
    files, cards = {}, {}
    for i, variant in enumerate(VARIANTS):
        torch.manual_seed(100 + i)
        model = create_network("resnet18-cifar", num_classes, width=4)
        ckpt = make_checkpoint(
            model,
            variant=variant,
            network=network_spec("resnet18-cifar", num_classes, 4),
            config={"variant": variant, "dataset": dataset["name"], **(config or {})},
            dataset=dataset,
            metrics={"val_clean_acc": 0.1},
        )
        files[variant] = f"{variant}.pt"
        atomic_torch_save(ckpt, folder / files[variant])
        cards[variant] = {
            "variant": variant,
            "metrics": {"test_clean_acc": 0.1, "test_pgd10_acc": 0.0, "ds_level1_sum": 1.0},
        }
    write_zoo_manifest(folder, files, cards, name="tiny")
    return folder


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """Path of a tiny four-variant zoo on the digits data set (session-wide, read-only by convention)."""
    return make_tiny_zoo(tmp_path_factory.mktemp("tiny-zoo"))
