"""Shared fixtures: tiny seeded models on 32x32 inputs, CPU only, nothing downloaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
