"""The dashboard's one door to computation: :func:`service` is the zoo's ``analysis.service_api.ComputeService``
(in this process: ``LocalComputeService``), and the wrappers below cache its answers with ``st.cache_data``.

Pages call these (or the saliency and embeddings caches, which call ``analysis/`` the same way); nothing in
``app/`` computes attributions, perturbations, attacks or distance scores itself.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analysis.service_api import AdversarialRequest, ComputeService, LocalComputeService, ProbesRequest, ProbesResult
from analysis.service_client import ENV_BACKEND
from app.zoo_cache import ZooHandle, _cached_zoo, get_dataset

__all__ = ["cached_adversarial", "heavy_service", "masking_warnings", "probes", "service"]


def _service(zoo_key: tuple) -> ComputeService:
    return _service_for(zoo_key, os.environ.get(ENV_BACKEND) or "")


@st.cache_resource(max_entries=4, show_spinner=False)
def _service_for(zoo_key: tuple, backend: str) -> ComputeService:
    handle = _cached_zoo(*zoo_key)
    if backend:  # SCL_BACKEND=http://host:port: the backend's copy of this zoo, over HTTP
        from analysis.service_client import RemoteComputeService

        return RemoteComputeService.for_hashes(backend, handle.hashes)
    return LocalComputeService(handle.zoo, get_dataset, handle.class_name, handle.data_root)


def service(handle: ZooHandle) -> ComputeService:
    """The compute service of ``handle``'s zoo (one per loaded zoo and server process)."""
    return _service(handle.key)


class PrivateCopies(Mapping):
    """variant -> a private copy of the zoo's model, made on first use (under the shared model's lock), so a long
    IG or LIME never holds the lock a light request waits for; the shared model where it cannot be copied."""

    def __init__(self, handle: ZooHandle) -> None:
        self.handle, self._copies, self._guard = handle, {}, threading.Lock()

    def __getitem__(self, variant: str) -> Any:
        with self._guard:
            model = self._copies.get(variant)
            if model is None:
                shared = self.handle.model(variant)
                try:
                    with self.handle.lock(variant):
                        model = copy.deepcopy(shared)
                except Exception:  # noqa: BLE001 - a wrapper that cannot be copied: share it (light waits on its lock)
                    model = shared
                self._copies[variant] = model
            return model

    def peek(self, variant: str) -> Any | None:
        """The copy of ``variant`` if it is made already (None otherwise): looking never copies a model."""
        with self._guard:
            return self._copies.get(variant)

    def __iter__(self) -> Iterator[str]:
        return iter(self.handle.variants)

    def __len__(self) -> int:
        return len(self.handle.variants)


@st.cache_resource(max_entries=2, show_spinner=False)
def _heavy_service_for(zoo_key: tuple, backend: str) -> ComputeService:
    if backend:  # the backend runs heavy maps as its own jobs (progress and Cancel over the wire)
        return _service_for(zoo_key, backend)
    handle = _cached_zoo(*zoo_key)
    return LocalComputeService(handle.zoo, get_dataset, handle.class_name, handle.data_root,
                               models=PrivateCopies(handle))  # fmt: skip


def heavy_service(handle: ZooHandle) -> ComputeService:
    """The compute service the heavy jobs (IG, LIME) call: in this process, one on private copies of the models;
    with ``SCL_BACKEND``, the backend's (the same as :func:`service`)."""
    return _heavy_service_for(handle.key, os.environ.get(ENV_BACKEND) or "")


@st.cache_data(max_entries=512, show_spinner=False)
def cached_adversarial(zoo_key: tuple, variant: str, img_key: str, _image: np.ndarray, label: int | None,
                       eps_255: float, steps: int, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """A PGD example of one image (``analysis.per_image.adversarial_example``) as a dict, cached by the image's
    content hash ``img_key``."""
    request = AdversarialRequest(variant, _image, label, float(eps_255), int(steps), int(seed))
    return vars(_service(zoo_key).adversarial(request))


def probes(handle: ZooHandle, image: np.ndarray, seed: int = 0) -> ProbesResult:
    """Every probe level of one image (``examples``: probe -> [(label, image)]) and each variant's prediction on
    them (``predictions``: variant, probe, level_label, pred, class, conf)."""
    return service(handle).probes(ProbesRequest(image, tuple(handle.variants), seed))


def masking_warnings(audit: pd.DataFrame) -> list[str]:
    """Signs of gradient masking in an attack-audit table (``analysis.robustness.masking_warnings``)."""
    from analysis.robustness import masking_warnings as _warnings

    try:
        return _warnings(audit)
    except (KeyError, ValueError) as exc:  # a table from an older report: say so instead of failing
        return [f"could not check the audit table for gradient masking ({type(exc).__name__}: {exc})"]
