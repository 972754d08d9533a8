"""The compute service's requests and responses as plain JSON, for the HTTP backend and its client.

Arrays travel as ``{"__nd__": base64 of the raw bytes, "dtype", "shape"}`` (exact: float32 stays float32, bit for
bit), DataFrames column by column, tuples and the request/response dataclasses of ``analysis.service_api`` by
name. Nothing is pickled: a peer can only make the listed dataclasses, never run code.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd

from analysis import service_api as api

# Every type that may cross the wire, by name: requests, responses and the anchors inside a request.
WIRE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        api.PredictionsRequest, api.LevelPredictions, api.MapsRequest, api.LevelMaps, api.AdversarialRequest,
        api.AdversarialResult, api.ProbesRequest, api.ProbesResult, api.AnchorViewRequest, api.AnchorView,
        api.QuickRequest, api.QuickResult,
    )
}  # fmt: skip

# The service's methods and their request type (the URL path names the method).
METHODS: dict[str, type] = {
    "predictions": api.PredictionsRequest,
    "maps": api.MapsRequest,
    "adversarial": api.AdversarialRequest,
    "probes": api.ProbesRequest,
    "anchor_view": api.AnchorViewRequest,
    "quick": api.QuickRequest,
}


class WireError(ValueError):
    """A payload that is not one of the service's plain-data forms."""


def _anchor_type() -> type:
    from analysis.embeddings import Anchor

    return Anchor


def _array(a: np.ndarray) -> dict[str, Any] | list:
    if a.dtype == object:
        return {"__list__": [encode(v) for v in a.tolist()]}
    a = np.ascontiguousarray(a)
    return {"__nd__": base64.b64encode(a.tobytes()).decode("ascii"), "dtype": a.dtype.str, "shape": list(a.shape)}


def encode(obj: Any) -> Any:
    """``obj`` (arrays, frames, tuples, dicts, the service's dataclasses, scalars) as JSON-ready data."""
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pd.DataFrame):
        return {"__df__": [[str(c), _array(obj[c].to_numpy())] for c in obj.columns]}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if name not in WIRE_TYPES and type(obj) is not _anchor_type():
            raise WireError(f"{name} cannot cross the wire")
        return {"__type__": name, "fields": {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            return {"__items__": [[encode(k), encode(v)] for k, v in obj.items()]}
        return {k: encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise WireError(f"{type(obj).__name__} cannot cross the wire")


def _column(data: Any) -> Any:
    value = decode(data)
    return value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`; :class:`WireError` for anything else."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__nd__" in data:
        try:
            raw = base64.b64decode(data["__nd__"], validate=True)
            dtype = np.dtype(data["dtype"])
            if dtype.hasobject:
                raise WireError("object arrays cannot cross the wire")
            return np.frombuffer(raw, dtype=dtype).reshape(data["shape"]).copy()
        except (TypeError, ValueError, KeyError) as exc:
            raise WireError(f"a malformed array ({exc})") from None
    if "__list__" in data:
        return np.asarray([decode(v) for v in data["__list__"]] + [None], dtype=object)[:-1]
    if "__df__" in data:
        return pd.DataFrame({str(name): _column(col) for name, col in data["__df__"]})
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__items__" in data:
        return {decode(k): decode(v) for k, v in data["__items__"]}
    if "__type__" in data:
        name = data["__type__"]
        cls = _anchor_type() if name == "Anchor" else WIRE_TYPES.get(name)
        if cls is None:
            raise WireError(f"unknown type {name!r}")
        fields = {k: decode(v) for k, v in dict(data.get("fields") or {}).items()}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise WireError(f"a malformed {name} ({exc})") from None
    return {k: decode(v) for k, v in data.items()}


def dumps(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON bytes (NaN and infinities allowed: scores may be NaN)."""
    return json.dumps(encode(obj), separators=(",", ":")).encode("utf-8")


def loads(raw: bytes | str) -> Any:
    """The object :func:`dumps` wrote; :class:`WireError` on invalid JSON."""
    try:
        return decode(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise WireError(f"not JSON ({exc.msg})") from None


def request_of(method: str, raw: bytes | str) -> Any:
    """The request dataclass of ``method`` in ``raw``; WireError for an unknown method or a different type."""
    if method not in METHODS:
        raise WireError(f"unknown method {method!r}; the service has {', '.join(METHODS)}")
    request = loads(raw)
    if not isinstance(request, METHODS[method]):
        raise WireError(f"{method} takes a {METHODS[method].__name__}, not {type(request).__name__}")
    return request
