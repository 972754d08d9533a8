"""The project's own exceptions. Every command turns a :class:`LabError` into one clear line and exit 2."""

from __future__ import annotations


class LabError(Exception):
    """Bad input the user can fix: a missing data set, an unsafe or wrong checkpoint, a bad setting."""


class SettingsError(LabError, ValueError):
    """A command-line flag or ``--set key=value`` with an invalid value; the message names the key."""


class ZooError(LabError):
    """A zoo folder that is missing, inconsistent (mixed data sets or classes) or unreadable."""
