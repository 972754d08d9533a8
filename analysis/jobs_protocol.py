"""How a long computation talks to whoever runs it: progress fractions out, a stop request in.

Heavy methods (``analysis.attribution_methods.integrated_gradients``, ``lime``, ``gradcam``) take two optional
keyword arguments and honour them between chunks of work:

* ``progress(fraction)``: called with the fraction done, in [0, 1], after each chunk (and with 1.0 at the end);
* ``should_stop()``: asked before each chunk; when it returns True the method raises :class:`Cancelled` and
  keeps nothing of the partial result (the chunk's tensors go out of scope with the exception).

A job runner passes its own callables; plain callers pass neither and nothing changes.

Runners also share the per-session limits on heavy jobs (:class:`HeavyQuota`: how many run at once, how many new
ones a session may ask for per minute), from settings with defaults, ``SCL_HEAVY_RUNNING`` /
``SCL_HEAVY_PER_MINUTE`` overrides and stricter defaults in public mode; a refused submission raises
:class:`QuotaExceeded`, whose message is meant for the user as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Cancelled", "HeavyQuota", "Progress", "QuotaExceeded", "ShouldStop", "check_stop", "report"]

ENV_HEAVY_RUNNING, ENV_HEAVY_PER_MINUTE = "SCL_HEAVY_RUNNING", "SCL_HEAVY_PER_MINUTE"

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


class QuotaExceeded(Exception):  # noqa: N818 - the name says what happened
    """A session asked for more heavy jobs than its quota allows; the message says so and when to try again."""

    def __init__(self, message: str, retry_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_s = float(retry_s)


@dataclass(frozen=True)
class HeavyQuota:
    """Per-session limits on heavy jobs: ``running`` at once (more wait their turn) and ``per_minute`` new ones
    asked for in any 60 s (more are refused with :class:`QuotaExceeded`); 0 means no limit."""

    running: int = 2
    per_minute: int = 600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HeavyQuota:
        """The defaults (stricter with ``SCL_PUBLIC=1``: one at a time, 120 a minute), then ``SCL_HEAVY_RUNNING``
        and ``SCL_HEAVY_PER_MINUTE``; ValueError naming the variable for a value that is not a whole number >= 0."""
        from analysis.public_mode import is_public

        environ = os.environ if environ is None else environ
        base = PUBLIC_QUOTA if is_public(environ) else DEFAULT_QUOTA
        values = {"running": base.running, "per_minute": base.per_minute}
        for field_name, var in (("running", ENV_HEAVY_RUNNING), ("per_minute", ENV_HEAVY_PER_MINUTE)):
            text = environ.get(var, "").strip()
            if text:
                if not text.isdigit():
                    raise ValueError(f"{var} must be a whole number >= 0 (0: no limit), got {text!r}")
                values[field_name] = int(text)
        return cls(**values)


DEFAULT_QUOTA = HeavyQuota()
PUBLIC_QUOTA = HeavyQuota(running=1, per_minute=120)
