"""Sizes in a report's ``Settings`` that must be positive (``--set n_images=-5`` is refused, not run as 995).

A count, size, length or learning rate below 1 (or 0) means nothing an experiment can run; seeds, levels and
strengths may be 0 but never negative. Checked once, before the zoo is loaded.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from analysis.experiments import Settings
from models.errors import SettingsError

# fields whose every value must be > 0 (a None limit still means "all of them")
POSITIVE = re.compile(
    r"^(n_images|.*_images|.*batch_size|.*_epochs|.*_samples|.*_anchors|.*_lr|.*_width|.*_train_limit|"
    r".*_test_limit|ig_steps|deletion_steps|fairness_pgd_steps|audit_steps|audit_restarts|apgd_targets|"
    r"stability_levels|embed_same_class|train_threads)$"
)


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, tuple) else (value,)
    return [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]


def check_settings(settings: Settings) -> Settings:
    """``settings`` unchanged, or SettingsError naming the first field with a negative value, or a value below 1
    where a positive count or size is needed."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        numbers = _numbers(value)
        if POSITIVE.match(field.name) and any(v <= 0 for v in numbers):
            raise SettingsError(f"--set {field.name}={value!r}: {field.name} must be positive")
        if any(v < 0 for v in numbers):
            raise SettingsError(f"--set {field.name}={value!r}: {field.name} must not be negative")
    return settings
