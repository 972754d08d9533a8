"""Keep the garbage collector's full scans off the server's long-lived objects.

A dashboard process holds millions of Python objects that live as long as it does (torch, plotly, pandas,
scikit-learn and numba modules, the loaded zoo, data set and caches). CPython's full (generation-2) collection
walks all of them: measured at 0.40-0.46 s per collection on the 2-core CPU, and it lands in the middle of slider
moves. :func:`freeze` moves every object tracked now into the permanent generation that collections skip
(``gc.freeze``); it is called once the imports are done and after each long-lived thing is loaded. Objects made
by a page run are still collected as usual.
"""

from __future__ import annotations

import gc
from typing import TypeVar

T = TypeVar("T")


def freeze(obj: T = None) -> T:
    """Collect what is garbage now, then exempt every remaining object from later collections; returns ``obj``
    (so a cached loader can end with ``return freeze(loaded)``)."""
    gc.collect()
    gc.freeze()
    return obj


def trim() -> None:
    """Give freed memory back to the operating system: collect garbage, then ``malloc_trim`` (glibc keeps freed
    arenas otherwise, so the server's RSS would stay at its peak after sessions close). No-op where unavailable."""
    import ctypes
    import ctypes.util

    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
