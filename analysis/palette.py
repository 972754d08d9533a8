"""The one colour scheme of the lab: variants, perturbation kinds and classes, in the report's figures and the
dashboard's charts alike (pure data; no plotting library here).

The three sets never collide: every colour of one set is at least ``MIN_DELTA_E`` (CIE76 ΔE in CIELAB) from
every colour of the others, and the colours within a set are as far apart (``tests/test_dashboard_pages.py``
checks both). A registered variant keeps the colour of its registry entry (``models.objectives``); the kind
and class colours were chosen against those. Unregistered names (an imported model, a new kind, an 11th class)
get a fallback by position or name, from lists that keep the same distance.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.objectives import VARIANT_REGISTRY

MIN_DELTA_E = 20.0  # CIE76: about 2.3 is a just-noticeable difference; 20 is clearly another colour

VARIANT_FALLBACK: tuple[str, ...] = ("#0000FF", "#FF00FF", "#00CC00", "#005500")  # unregistered variants, in order

KIND_COLOURS: dict[str, str] = {
    "none": "#9AA0A6",  # the unperturbed original: grey
    "brightness": "#E6AB02",
    "contrast": "#262626",
    "saturation": "#CF1C90",
    "hue": "#66A61E",
}
KIND_FALLBACK: tuple[str, ...] = ("#A65628", "#7570B3", "#98DF8A", "#1D6996")  # kinds registered later, by name

CLASS_COLOURS: tuple[str, ...] = (  # class i gets CLASS_COLOURS[i % 10]
    "#FB9A99", "#D9AF6B", "#68855C", "#E78AC3", "#E73F74", "#94346E", "#BCBD22", "#6A3D9A", "#855C75", "#66C2A5",
)  # fmt: skip


def variant_colour(name: str, order: Sequence[str] = ()) -> str:
    """The one colour of variant ``name``: its registry colour, else a fallback by its place among the
    unregistered names of ``order``."""
    known = VARIANT_REGISTRY.get(str(name))
    if known is not None:
        return known.colour
    others = [str(n) for n in dict.fromkeys(order) if str(n) not in VARIANT_REGISTRY]
    index = others.index(str(name)) if str(name) in others else len(others)
    return VARIANT_FALLBACK[index % len(VARIANT_FALLBACK)]


def variant_colours() -> dict[str, str]:
    """Every registered variant's colour."""
    return {name: v.colour for name, v in VARIANT_REGISTRY.items()}


def kind_colour(kind: str) -> str:
    """A stable colour per perturbation kind (kinds beyond Table 1 get a fallback by name)."""
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    return KIND_FALLBACK[sum(map(ord, str(kind))) % len(KIND_FALLBACK)]


def class_colour(index: int) -> str:
    """The colour of class ``index`` (0-based; cycles after 10 classes)."""
    return CLASS_COLOURS[int(index) % len(CLASS_COLOURS)]
