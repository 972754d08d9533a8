"""Device choice and the torchrun process group, shared by every command that trains or evaluates."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from models.errors import SettingsError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` when present.

    Raises SettingsError (naming ``--device``) for an unknown name or a device this machine lacks.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise SettingsError(f"--device {name!r} is not a device name; use one of {', '.join(DEVICE_CHOICES)}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(
                f"--device {name}: no CUDA GPU is available on this machine (torch.cuda.is_available() is False); "
                "use --device cpu or --device auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise SettingsError(f"--device {name}: Apple MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise SettingsError(f"--device {name!r} is not supported; use one of {', '.join(DEVICE_CHOICES)}")
    return device


@dataclass
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join a torchrun process group if WORLD_SIZE > 1 (NCCL on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
