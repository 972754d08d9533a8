"""Seeds as a dimension of a zoo: several checkpoints per variant, read from and written to its manifest.

A verdict about a training method needs more than one training run per variant: seed-to-seed shifts are of the
size of the effects measured. A zoo therefore holds *replicas*: each variant's entry in ``zoo.json`` keeps its
primary checkpoint (``file``, ``sha256``, ``card``: the recipe's seed, 0 for the shipped zoo) and may list more,
one per seed::

    "C": {"file": "C.pt", "sha256": "...", "role": "constrained", "card": {...},
          "replicas": [{"seed": 1, "file": "seeds/1/C.pt", "sha256": "...", "card": {...}}, ...]}

Older manifests (no ``replicas``) read as one seed per variant. These functions only read manifest dictionaries;
``models.checkpoints`` checks and loads the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["REPLICA_DIR", "Replica", "common_seeds", "entry_for_seed", "primary_seed", "replica_file",
           "variant_replicas", "zoo_seeds"]  # fmt: skip

REPLICA_DIR = "seeds"  # a zoo's replica checkpoints lie in seeds/<seed>/<variant>.pt


@dataclass(frozen=True)
class Replica:
    """One checkpoint of a variant: its seed, file inside the zoo folder, sha256 and card."""

    variant: str
    seed: int
    file: str
    sha256: str | None
    card: dict[str, Any] = field(default_factory=dict, compare=False)
    primary: bool = False


def primary_seed(item: dict[str, Any]) -> int:
    """The seed of a variant entry's primary checkpoint: its card's training seed (0 when not recorded)."""
    seed = ((item.get("card") or {}).get("config") or {}).get("seed")
    return int(seed) if isinstance(seed, int) else 0


def replica_file(variant: str, seed: int) -> str:
    """Where a replica's checkpoint lies inside the zoo folder."""
    return f"{REPLICA_DIR}/{seed}/{variant}.pt"


def variant_replicas(manifest: dict[str, Any], variant: str) -> list[Replica]:
    """Every checkpoint of ``variant``: the primary first, then the replicas by seed."""
    item = manifest.get("variants", {}).get(variant)
    if not isinstance(item, dict):
        return []
    found = [Replica(variant, primary_seed(item), item.get("file", ""), item.get("sha256"), item.get("card") or {},
                     primary=True)]  # fmt: skip
    for rep in sorted(item.get("replicas") or [], key=lambda r: r.get("seed", 0)):
        if isinstance(rep, dict) and isinstance(rep.get("seed"), int):
            found.append(Replica(variant, rep["seed"], rep.get("file", ""), rep.get("sha256"), rep.get("card") or {}))
    return found


def zoo_seeds(manifest: dict[str, Any]) -> dict[str, list[int]]:
    """Variant -> the seeds of its checkpoints (primary first)."""
    return {v: [r.seed for r in variant_replicas(manifest, v)] for v in manifest.get("variants", {})}


def common_seeds(manifest: dict[str, Any], variants: list[str] | None = None) -> list[int]:
    """The seeds every one of ``variants`` (default: all) has a checkpoint for, ascending."""
    seeds = zoo_seeds(manifest)
    names = variants if variants is not None else list(seeds)
    if not names:
        return []
    shared = set(seeds.get(names[0], []))
    for name in names[1:]:
        shared &= set(seeds.get(name, []))
    return sorted(shared)


def entry_for_seed(manifest: dict[str, Any], variant: str, seed: int) -> Replica | None:
    """The checkpoint of ``variant`` trained with ``seed``, or None when the zoo has none."""
    return next((r for r in variant_replicas(manifest, variant) if r.seed == seed), None)
