"""Which pairs of roles the paper's claims compare, and the roles of a zoo's variants.

The role vocabulary is ``models.roles`` (derived from ``models.objectives.VARIANT_REGISTRY``; ``other`` for a name
it does not know); ``zoo_roles`` is the one place that switches to the zoo's own record (``Zoo.roles``) when a zoo
carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from models.objectives import VARIANT_REGISTRY
from models.roles import (  # noqa: F401  (the vocabulary the claims name)
    ADVERSARIAL,
    ADVERSARIAL_CONSTRAINED,
    BASELINE,
    CONSTRAINED,
    JITTER_CONTROL,
    MIXED_CONTROL,
    OTHER,
)
from models.roles import default_role as variant_role

#: The paper's pairs (constrained, its unconstrained counterpart) and the controls that isolate the constraint.
PAPER_PAIRS: tuple[tuple[str, str], ...] = ((CONSTRAINED, BASELINE), (ADVERSARIAL_CONSTRAINED, ADVERSARIAL))
#: (the role a control isolates a term of, the control's role), from the registry's ``control_of``.
CONTROL_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (VARIANT_REGISTRY[v.control_of].role, v.role) for v in VARIANT_REGISTRY.values() if v.control_of
)


@dataclass(frozen=True)
class Comparison:
    """Variant ``a`` against variant ``b``; ``kind`` is "paper" (the paper's pair) or "control"."""

    a: str
    b: str
    kind: str = "paper"

    @property
    def label(self) -> str:
        return f"{self.a} vs {self.b}"


def zoo_roles(zoo_or_names: object) -> dict[str, str]:
    """name -> role for a zoo (its ``roles`` when it has them) or for an iterable of variant names."""
    roles = getattr(zoo_or_names, "roles", None)
    if isinstance(roles, Mapping):
        return {str(k): str(v) for k, v in roles.items()}
    names = getattr(zoo_or_names, "variants", zoo_or_names)
    return {str(n): variant_role(str(n)) for n in names}  # type: ignore[union-attr]


def with_role(roles: Mapping[str, str], role: str) -> str | None:
    """The first variant with ``role``, or None."""
    return next((n for n, r in roles.items() if r == role), None)


def comparisons(
    roles: Mapping[str, str],
    pairs: Iterable[tuple[str, str]] = PAPER_PAIRS,
    controls: bool = True,
) -> list[Comparison]:
    """The comparisons a claim makes among the variants present: each of ``pairs`` (roles) whose two roles are in
    the zoo, then (with ``controls``) each control pair whose constrained role is among ``pairs``."""
    pairs = list(pairs)
    out = []
    for role_a, role_b in pairs:
        a, b = with_role(roles, role_a), with_role(roles, role_b)
        if a and b:
            out.append(Comparison(a, b, "paper"))
    if controls:
        wanted = {a for a, _ in pairs}
        for role_a, role_b in CONTROL_PAIRS:
            a, b = with_role(roles, role_a), with_role(roles, role_b)
            if role_a in wanted and a and b:
                out.append(Comparison(a, b, "control"))
    return out
