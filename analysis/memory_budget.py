"""How many bytes an attribution may use, and how many samples fit in them.

The budget (:func:`memory_budget`), first match wins:

1. the ``memory_budget`` option passed to the method (bytes, or a size such as ``"2GB"``);
2. the process-wide setting, :func:`set_memory_budget` (the dashboard or a job runner sets it once);
3. the environment variable ``SCL_MEMORY_BUDGET`` (e.g. ``2GB``, ``512MiB``, ``25%``);
4. ``DEFAULT_SHARE`` (25%) of the device's free memory now: ``torch.cuda.mem_get_info`` plus what PyTorch's
   caching allocator holds unused on CUDA; on the CPU (and MPS) ``MemAvailable`` from ``/proc/meminfo``, lowered
   to what a cgroup memory limit (a container's) still allows.

A size is ``<number>[unit]``: ``B``, ``KB``/``MB``/``GB``/``TB`` (powers of 1000), ``KiB``/``MiB``/``GiB``/``TiB`` and
the bare ``K``/``M``/``G``/``T`` (powers of 1024), or ``<number>%`` of the free memory. The per-sample cost is
measured by :mod:`analysis.network_cost`; :func:`samples_that_fit` divides and raises :class:`MemoryBudgetError`
(a ``LabError``: one clear line, never an out-of-memory kill) when not even one sample fits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from models.errors import LabError, SettingsError

__all__ = [
    "DEFAULT_SHARE",
    "ENV_VAR",
    "MemoryBudgetError",
    "available_bytes",
    "format_bytes",
    "memory_budget",
    "parse_size",
    "samples_that_fit",
    "set_memory_budget",
]

DEFAULT_SHARE = 0.25
ENV_VAR = "SCL_MEMORY_BUDGET"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "k": 2**10, "m": 2**20, "g": 2**30,
          "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z%]*)\s*$", re.IGNORECASE)

_setting: str | int | None = None


class MemoryBudgetError(LabError):
    """Not even one sample of a computation fits in the memory budget; ``needed`` and ``budget`` are bytes."""

    def __init__(self, what: str, needed: int, budget: int) -> None:
        self.what, self.needed, self.budget = what, int(needed), int(budget)
        super().__init__(
            f"{what} needs {format_bytes(needed)} per sample but the memory budget is {format_bytes(budget)}: "
            f"raise it ({ENV_VAR}, e.g. {ENV_VAR}={format_bytes(2 * needed).replace(' ', '')}), free memory, "
            "or use smaller inputs"
        )


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``: binary units, three significant figures."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover - the loop returns


def parse_size(text: str | int | float, free: int | None = None) -> int:
    """Bytes of a size such as ``"2GB"``, ``"512MiB"``, ``1_000_000`` or ``"25%"`` (of ``free``, the free bytes).

    Raises SettingsError naming the value when it is not a positive size.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text <= 0:
            raise SettingsError(f"memory budget must be positive, got {text!r}")
        return int(text)
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or (unit not in _UNITS and unit != "%"):
        raise SettingsError(f"memory budget {text!r}: expected a size such as 2GB, 512MiB, 1000000 or 25%")
    value = float(match.group(1))
    if unit == "%":
        if not 0 < value <= 100:
            raise SettingsError(f"memory budget {text!r}: a share must be in (0, 100]%")
        return int(value / 100 * (available_bytes() if free is None else free))
    if value <= 0:
        raise SettingsError(f"memory budget must be positive, got {text!r}")
    return int(value * _UNITS[unit])


def set_memory_budget(value: str | int | None) -> None:
    """Set (or with None clear) the process-wide budget; checked now, so a bad value fails where it is set."""
    global _setting
    if value is not None:
        parse_size(value, free=1)
    _setting = value


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes a cgroup memory limit still allows this process's group (v2, else v1); None without a limit."""
    v2 = Path("/sys/fs/cgroup")
    limit, used = _read_int(v2 / "memory.max"), _read_int(v2 / "memory.current")
    if limit is None:
        v1 = v2 / "memory"
        limit, used = _read_int(v1 / "memory.limit_in_bytes"), _read_int(v1 / "memory.usage_in_bytes")
    if limit is None or used is None or limit >= 2**60:  # "max", or v1's "no limit" (a huge number)
        return None
    return max(0, limit - used)


def _ram_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30  # nothing to read: assume a small machine


def available_bytes(device: torch.device | str | None = None) -> int:
    """Free memory of ``device`` now (None or "cpu": RAM, within a cgroup limit; CUDA: the card's)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, cached))
    ram = _ram_available()
    room = _cgroup_room()
    return ram if room is None else min(ram, room)


def memory_budget(device: torch.device | str | None = None, budget: str | int | None = None) -> int:
    """The budget in bytes for one computation on ``device``: ``budget``, else the setting, else ``$SCL_MEMORY_BUDGET``,
    else ``DEFAULT_SHARE`` of the free memory (see the module docstring)."""
    for value in (budget, _setting, os.environ.get(ENV_VAR) or None):
        if value is not None:
            free = available_bytes(device) if isinstance(value, str) and value.strip().endswith("%") else 1
            return parse_size(value, free=free)
    return int(DEFAULT_SHARE * available_bytes(device))


def samples_that_fit(per_sample: int, budget: int, what: str, fixed: int = 0) -> int:
    """How many samples of ``per_sample`` bytes fit in ``budget`` beside ``fixed`` bytes; >= 1, else
    :class:`MemoryBudgetError` with the numbers."""
    n = (int(budget) - int(fixed)) // max(1, int(per_sample))
    if n < 1:
        raise MemoryBudgetError(what, int(per_sample) + int(fixed), int(budget))
    return int(n)
