"""How a long computation talks to whoever runs it: progress fractions out, a stop request in.

Heavy methods (``analysis.attribution_methods.integrated_gradients``, ``lime``, ``gradcam``) take two optional
keyword arguments and honour them between chunks of work:

* ``progress(fraction)``: called with the fraction done, in [0, 1], after each chunk (and with 1.0 at the end);
* ``should_stop()``: asked before each chunk; when it returns True the method raises :class:`Cancelled` and
  keeps nothing of the partial result (the chunk's tensors go out of scope with the exception).

A job runner passes its own callables; plain callers pass neither and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Cancelled", "Progress", "ShouldStop", "check_stop", "report"]

Progress = Callable[[float], None]
ShouldStop = Callable[[], bool]


class Cancelled(Exception):  # noqa: N818 - the name says what happened, as concurrent.futures' CancelledError does
    """A computation stopped between chunks because its ``should_stop`` said so (not an error of the input)."""


def check_stop(should_stop: ShouldStop | None, what: str = "computation") -> None:
    """Raise :class:`Cancelled` when ``should_stop`` is given and returns True."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"{what} cancelled")


def report(progress: Progress | None, fraction: float) -> None:
    """Call ``progress`` (if given) with ``fraction`` clipped to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))))
