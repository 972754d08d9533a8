"""Live read-only views of a registry, so module constants follow later registrations.

``KINDS``, ``TABLE1``, ``VARIANTS`` and ``METHODS`` were plain tuples and dicts; they are now views of
the descriptor registries (``KIND_REGISTRY``, ``VARIANT_REGISTRY``, ``METHOD_REGISTRY``), so a kind,
variant or method registered later (by a plug-in or a test) shows up everywhere that iterates them,
including default arguments evaluated at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from typing import Any, Generic, TypeVar

D = TypeVar("D")
V = TypeVar("V")


class NameView(Sequence[str]):
    """The names of a registry (a dict), in registration order; equal to the tuple of names."""

    def __init__(self, registry: dict[str, Any]) -> None:
        self._registry = registry

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(self._registry)[index]

    def __len__(self) -> int:
        return len(self._registry)

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


class FieldView(Mapping[str, V], Generic[D, V]):
    """name -> ``get(descriptor)`` for the descriptors of a registry that ``keep`` accepts."""

    def __init__(
        self, registry: dict[str, D], get: Callable[[D], V], keep: Callable[[D], bool] = lambda d: True
    ) -> None:
        self._registry, self._get, self._keep = registry, get, keep

    def __getitem__(self, name: str) -> V:
        d = self._registry[name]
        if not self._keep(d):
            raise KeyError(name)
        return self._get(d)

    def __iter__(self) -> Iterator[str]:
        return (n for n, d in self._registry.items() if self._keep(d))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


class NameSet(Set[str]):
    """The names of the descriptors of a registry that ``keep`` accepts, as a live set."""

    def __init__(self, registry: dict[str, D], keep: Callable[[D], bool]) -> None:
        self._registry, self._keep = registry, keep

    def __contains__(self, name: object) -> bool:
        return name in self._registry and self._keep(self._registry[name])

    def __iter__(self) -> Iterator[str]:
        return (n for n, d in self._registry.items() if self._keep(d))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(set(self))


def register(registry: dict[str, D], name: str, descriptor: D, replace: bool = False) -> D:
    """Add ``descriptor`` under ``name``; a second registration of a name is an error unless ``replace``."""
    if name in registry and not replace:
        raise ValueError(f"{name!r} is already registered")
    registry[name] = descriptor
    return descriptor
