"""A page's view as URL query parameters and back, and the provenance an exported file carries.

Pure functions (no Streamlit): a page builds a :class:`ViewState` from its widgets, writes
:func:`to_query_params` into ``st.query_params`` (so a copied link names the view), and on opening reads
:func:`from_query_params` against what it can show (:class:`Choices`), which keeps every valid field and says in
one line per field what it dropped. :func:`provenance` is the same state as ``key: value`` text for the PNG's tEXt
chunks and the CSV's header comment; :func:`manifest_hash` names the exact zoo a view was made on.

Parameters: ``zoo`` (name), ``manifest`` (12 hex digits of the manifest's sha256), ``image`` (test-set index) or
``upload`` (the upload's content hash), ``kind``, ``level``, ``variants`` and ``methods`` (comma-separated),
``target`` (``predicted``, ``true`` or ``class:<index>``), ``baseline`` (IG's), ``shap_baseline``, ``layer``
(GradCAM's; ``auto`` = the default layer) and ``diff`` (the difference view's reference variant).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = [
    "Choices",
    "ViewState",
    "from_query_params",
    "manifest_hash",
    "parse_target",
    "provenance",
    "provenance_text",
    "to_query_params",
]

_LISTS = ("variants", "methods")


@dataclass(frozen=True)
class ViewState:
    """What a view shows; None (or empty) = not said, the page's default."""

    zoo: str | None = None
    manifest: str | None = None
    image: int | None = None
    upload: str | None = None
    kind: str | None = None
    level: int | None = None
    variants: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    target: str | None = None
    baseline: str | None = None
    shap_baseline: str | None = None
    layer: str | None = None
    diff: str | None = None


@dataclass(frozen=True)
class Choices:
    """What the page can show, to check a link against (empty: anything goes for that field)."""

    kinds: Sequence[str] = ()
    max_level: int = 4
    variants: Sequence[str] = ()
    methods: Sequence[str] = ()
    baselines: Sequence[str] = ()
    shap_baselines: Sequence[str] = ()
    layers: Sequence[str] = ()
    n_images: int | None = None
    n_classes: int | None = None


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """The first 12 hex digits of the sha256 of the manifest as canonical JSON (sorted keys): changes when any
    checkpoint, card or name in it changes."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def to_query_params(view: ViewState) -> dict[str, str]:
    """The query parameters of ``view``: every field that is set, lists comma-joined, in field order."""
    out: dict[str, str] = {}
    for f in fields(view):
        value = getattr(view, f.name)
        if value is None or (f.name in _LISTS and not value):
            continue
        out[f.name] = ",".join(value) if f.name in _LISTS else str(value)
    return out


def parse_target(text: str, n_classes: int | None = None) -> str:
    """``predicted``, ``true`` or ``class:<index>`` (index within ``n_classes`` when known); ValueError otherwise."""
    if text in ("predicted", "true"):
        return text
    if text.startswith("class:") and text[6:].isdigit():
        index = int(text[6:])
        if n_classes is None or index < n_classes:
            return f"class:{index}"
        raise ValueError(f"class {index} is not one of the {n_classes} classes")
    raise ValueError("expected predicted, true or class:<index>")


def _one(value: str | Sequence[str]) -> str:
    """A parameter's value: the last one when repeated (as Streamlit's ``query_params`` reads them)."""
    return value if isinstance(value, str) else (list(value)[-1] if len(value) else "")


def _check(name: str, text: str, choices: Choices) -> Any:
    """One parameter's value, checked against ``choices``; ValueError with the reason."""
    allowed = {"kind": choices.kinds, "baseline": choices.baselines, "shap_baseline": choices.shap_baselines,
               "layer": choices.layers, "diff": choices.variants}.get(name)  # fmt: skip
    if name in ("image", "level"):
        if not text.isdigit():
            raise ValueError("expected a whole number")
        value, top = int(text), (choices.max_level if name == "level" else choices.n_images)
        if top is not None and value > (top if name == "level" else top - 1):
            raise ValueError(f"out of range (0 to {top if name == 'level' else top - 1})")
        return value
    if name in _LISTS:
        items = tuple(s for s in text.split(",") if s)
        known = choices.variants if name == "variants" else choices.methods
        unknown = [s for s in items if known and s not in known]
        if unknown:
            raise ValueError(f"unknown: {', '.join(unknown)}")
        return items
    if name == "target":
        return parse_target(text, choices.n_classes)
    if allowed and text not in allowed:
        raise ValueError(f"not one of {', '.join(map(str, allowed))}")
    return text


def from_query_params(params: Mapping[str, str | Sequence[str]], choices: Choices) -> tuple[ViewState, list[str]]:
    """The view a link asks for, and one line per parameter that could not be used (unknown names are ignored:
    other pages and tools may add their own). A bad value drops only its own field."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    names = {f.name for f in fields(ViewState)}
    for name, raw in params.items():
        if name not in names:
            continue
        text = _one(raw).strip()
        if not text:
            continue
        try:
            values[name] = _check(name, text, choices)
        except ValueError as exc:
            problems.append(f"the link's {name}={text!r} was ignored: {exc}")
    view = replace(ViewState(), **values)
    if view.image is not None and view.upload is not None:
        problems.append("the link names both a test image and an upload: the test image is shown")
        view = replace(view, upload=None)
    return view, problems


def provenance(view: ViewState, **more: Any) -> dict[str, str]:
    """``view`` as flat text fields (what a PNG's tEXt chunks and a CSV's header carry), then ``more`` (the row's
    variant, the software version, the link): ``{"scl.kind": "hue", ...}``."""
    out = {f"scl.{k}": v for k, v in to_query_params(view).items()}
    out.update({f"scl.{k}": str(v) for k, v in more.items() if v is not None})
    return out


def provenance_text(fields_: Mapping[str, str]) -> str:
    """Provenance fields as comment lines (``# scl.kind: hue``), one per field, newlines flattened."""
    return "".join(f"# {k}: {' '.join(str(v).split())}\n" for k, v in fields_.items())
