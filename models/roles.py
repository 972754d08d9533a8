"""The role vocabulary: what a zoo's variant stands for in the paper's comparisons, derived from the variant registry.

Every registered training variant (``models.objectives.VARIANT_REGISTRY``) names its role; the roles are those
roles plus :data:`OTHER` (an imported model, a fine-tune, an experiment). The zoo manifest, the zoo assembler, the
report and the dashboard all read roles from here, so a variant registered later brings its role everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from models.errors import ZooError
from models.objectives import VARIANT_REGISTRY

OTHER = "other"
OTHER_HELP = "anything else: an imported model, a fine-tune, an experiment"


def _role_of(variant: str) -> str:
    return VARIANT_REGISTRY[variant].role


#: The roles the paper's claims name, read from the registered variants that play them.
BASELINE = _role_of("standard")
CONSTRAINED = _role_of("C")
ADVERSARIAL = _role_of("ADV")
ADVERSARIAL_CONSTRAINED = _role_of("ADV+C")
JITTER_CONTROL = _role_of("standard+jitter")
MATCHED_JITTER_CONTROL = _role_of("C-control")
MIXED_CONTROL = _role_of("ADV-mixed")


class _RoleDescriptions(Mapping[str, str]):
    """role -> what a variant in that role stands for (its variant's help and name), live over the registry."""

    def _items(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for variant in VARIANT_REGISTRY.values():
            out.setdefault(variant.role, f"{variant.help} (`{variant.name}`)")
        out.setdefault(OTHER, OTHER_HELP)
        return out

    def __getitem__(self, role: str) -> str:
        return self._items()[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


#: role -> description; the one list of roles.
ROLES: Mapping[str, str] = _RoleDescriptions()


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else ZooError listing them."""
    if role not in ROLES:
        raise ZooError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def default_role(variant: str) -> str:
    """The role of a variant called ``variant``: the registered training variant's, else :data:`OTHER`."""
    known = VARIANT_REGISTRY.get(variant)
    return known.role if known is not None else OTHER


def paper_names() -> dict[str, str]:
    """role -> the paper's name for the variant playing it (the registry's ``paper`` variants)."""
    return {v.role: v.name for v in VARIANT_REGISTRY.values() if v.paper}


def paper_name(role: str) -> str | None:
    """The paper's name of the variant playing ``role`` (None for a control or another model)."""
    return paper_names().get(role)
