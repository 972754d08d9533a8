"""Compatibility shim: the data layer now lives in the package :mod:`models.datasets`.

``from models.data import load_dataset, ImageDataset, DatasetError, DATASETS, COLOUR_BIAS_COLOURS, ...``
keeps working; new code should import from ``models.datasets``.
"""

from __future__ import annotations

from models.datasets import *  # noqa: F403
from models.datasets import __all__  # noqa: F401
