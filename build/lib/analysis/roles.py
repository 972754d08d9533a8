"""What each variant of a zoo is for in the paper's claims, and which pairs the claims compare.

The role of a variant comes from ``models.objectives.VARIANT_REGISTRY`` (``other`` for a name it does not know),
through ``zoo_roles``: the one place to switch to the zoo's own record (``Zoo.roles``) when a zoo carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from models.objectives import VARIANT_REGISTRY

BASELINE, CONSTRAINED = "baseline", "constrained"
ADVERSARIAL, ADVERSARIAL_CONSTRAINED = "adversarial", "adversarial+constrained"
JITTER_CONTROL, MIXED_CONTROL = "baseline+jitter", "adversarial-mixed"
OTHER = "other"

#: The paper's pairs (constrained, its unconstrained counterpart) and the controls that isolate the constraint.
PAPER_PAIRS: tuple[tuple[str, str], ...] = ((CONSTRAINED, BASELINE), (ADVERSARIAL_CONSTRAINED, ADVERSARIAL))
CONTROL_PAIRS: tuple[tuple[str, str], ...] = ((CONSTRAINED, JITTER_CONTROL), (ADVERSARIAL_CONSTRAINED, MIXED_CONTROL))


@dataclass(frozen=True)
class Comparison:
    """Variant ``a`` against variant ``b``; ``kind`` is "paper" (the paper's pair) or "control"."""

    a: str
    b: str
    kind: str = "paper"

    @property
    def label(self) -> str:
        return f"{self.a} vs {self.b}"


def variant_role(name: str) -> str:
    """The registered role of variant ``name``, ``other`` when the registry does not know it."""
    known = VARIANT_REGISTRY.get(name)
    return known.role if known is not None else OTHER


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
