"""What the dashboard asks ``analysis/`` to compute: one typed request and response per call, behind a Protocol.

The dashboard (``app/``) only caches, locks and draws; every computation it needs is one method of
:class:`ComputeService`, taking a frozen request dataclass and returning a response dataclass of arrays and
tables. :class:`LocalComputeService` serves them in this process from a loaded zoo; a remote backend (a GPU
server) can implement the same Protocol later and the pages would not change.

Variants are named, images are float32 (3, H, W) arrays in [0, 1], data sets are :data:`DatasetSpec` tuples
(name, split, root, image_size: what ``models.data.load_dataset`` takes), so every request is plain data.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from torch import nn

from analysis import precomputed_store
from models.checkpoints import Zoo
from models.data import ImageDataset
from models.perturbations import KINDS, MAX_LEVEL

DatasetSpec = tuple  # (name, split, root, image_size)
ALL_LEVELS: tuple[int, ...] = tuple(range(MAX_LEVEL + 1))

# ----------------------------------------------------------------------------- requests and responses


@dataclass(frozen=True)
class PredictionsRequest:
    """One variant's predictions on one image at ``levels`` of perturbation ``kind`` (level 0 is the image itself,
    so ``kind`` may be "" when ``levels`` is ``(0,)``)."""

    variant: str
    image: np.ndarray
    kind: str
    levels: tuple[int, ...] = ALL_LEVELS


@dataclass
class LevelPredictions:
    """Per level: logits (L,C), probs (L,C), pred (L,), conf (L,), top (L,k) and DS against the original (L,)."""

    levels: list[int]
    logits: np.ndarray
    probs: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    top: np.ndarray
    ds: np.ndarray


@dataclass(frozen=True)
class MapsRequest:
    """One attribution method's maps of one image at ``levels`` of ``kind``, all explaining class ``target``."""

    variant: str
    image: np.ndarray
    kind: str
    method: str
    target: int
    levels: tuple[int, ...] = ALL_LEVELS
    options: tuple[tuple[str, Any], ...] = ()  # (option, value) pairs overriding the method's defaults


@dataclass
class LevelMaps:
    """maps (L,H,W) float32 and per-level scalar extras (IG's delta, LIME's segment count...)."""

    levels: list[int]
    maps: np.ndarray
    extras: list[dict[str, float]]


@dataclass(frozen=True)
class AdversarialRequest:
    """A white-box PGD example of one image against one variant (``label`` None: its clean prediction)."""

    variant: str
    image: np.ndarray
    label: int | None
    eps_255: float = 8.0
    steps: int = 10
    seed: int = 0


@dataclass
class AdversarialResult:
    adversarial: np.ndarray
    label: int
    clean_pred: int
    clean_conf: float
    adv_pred: int
    adv_conf: float
    linf_255: float
    ds: float


@dataclass(frozen=True)
class ProbesRequest:
    """Every probe level of one image, and each of ``variants``' predictions on them."""

    image: np.ndarray
    variants: tuple[str, ...]
    seed: int = 0


@dataclass
class ProbesResult:
    examples: dict[str, list[tuple[str, np.ndarray]]]  # probe -> [(level label, image)]
    predictions: pd.DataFrame  # variant, probe, level_label, pred, class, conf


@dataclass(frozen=True)
class AnchorViewRequest:
    """Anchors, their perturbations and same-class test images in one 2-D map shared by ``variants``."""

    dataset: DatasetSpec
    anchors: tuple[Any, ...]  # analysis.embeddings.Anchor
    variants: tuple[str, ...]
    representation: str = "logits"
    method: str = "pca"
    n_same_class: int = 200
    kinds: tuple[str, ...] = field(default_factory=lambda: tuple(KINDS))
    seed: int = 0


@dataclass
class AnchorView:
    """See ``analysis.embeddings.anchor_views``: points, ranks, reps (variant -> (N, D)), thumbs, align."""

    points: pd.DataFrame
    ranks: pd.DataFrame
    reps: dict[str, np.ndarray]
    thumbs: np.ndarray
    align: str

    def as_dict(self) -> dict[str, Any]:
        return {"points": self.points, "ranks": self.ranks, "reps": self.reps, "thumbs": self.thumbs,
                "align": self.align}  # fmt: skip


@dataclass(frozen=True)
class RepresentationsRequest:
    """One variant's representation (logits or penultimate features) and predictions of a whole data set split."""

    dataset: DatasetSpec
    variant: str
    representation: str = "logits"


@dataclass
class Representations:
    rep: np.ndarray  # (N, D) float32
    pred: np.ndarray  # (N,) int64


@dataclass(frozen=True)
class ProjectionRequest:
    """One 2-D map shared by the variants of ``reps`` (variant -> (N, D)): fitted on their union or aligned."""

    reps: Mapping[str, np.ndarray]
    method: str = "pca"
    seed: int = 0
    align: str = "procrustes"


@dataclass
class Projection:
    xy: dict[str, np.ndarray]  # variant -> (N, 2)


@dataclass(frozen=True)
class QuickRequest:
    """A quick group of the report's experiments (``analysis.results_store.QUICK_GROUPS``) with QUICK settings."""

    dataset: DatasetSpec
    group: str


@dataclass
class QuickResult:
    tables: dict[str, pd.DataFrame]  # the report's part names: <experiment> and <experiment>_<part>


Progress = Callable[[float, str], None]


@runtime_checkable
class ComputeService(Protocol):
    """Everything the dashboard computes, one method per request."""

    def predictions(self, request: PredictionsRequest) -> LevelPredictions: ...

    def maps(self, request: MapsRequest, progress: Callable[[float], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> LevelMaps:  # fmt: skip
        """With ``progress``/``should_stop`` (``analysis.jobs_protocol``) the maps are a job: its fraction done is
        reported and it stops with ``Cancelled`` when asked to (remotely: the backend's job endpoints)."""
        ...

    def adversarial(self, request: AdversarialRequest) -> AdversarialResult: ...

    def probes(self, request: ProbesRequest) -> ProbesResult: ...

    def anchor_view(self, request: AnchorViewRequest) -> AnchorView: ...

    def representations(self, request: RepresentationsRequest, progress: Progress | None = None) -> Representations: ...

    def projection(self, request: ProjectionRequest) -> Projection: ...

    def quick(self, request: QuickRequest, progress: Progress | None = None) -> QuickResult: ...


# ----------------------------------------------------------------------------- in this process


@functools.cache
def _accepts(method: str) -> frozenset[str]:
    from analysis.attributions import get_method

    params = inspect.signature(get_method(method).function).parameters
    return frozenset(p for p in ("progress", "should_stop") if p in params)


def job_arguments(method: str, progress: Callable[[float], None] | None,
                  should_stop: Callable[[], bool] | None) -> dict[str, Any]:  # fmt: skip
    """The job-protocol arguments (``analysis.jobs_protocol``) that ``method``'s function accepts, of those given."""
    given = {"progress": progress, "should_stop": should_stop}
    return {k: v for k, v in given.items() if v is not None and k in _accepts(method)}


def _load_dataset(name: str, split: str = "test", root: str | None = None, image_size: int | None = None):
    from models.data import load_dataset

    return load_dataset(name, split, root, image_size=image_size)


class LocalComputeService:
    """:class:`ComputeService` on a loaded zoo in this process. ``load_dataset(name, split, root, image_size)`` turns
    a :data:`DatasetSpec` into the data set (default ``models.data.load_dataset``; the dashboard passes its cached
    loader); ``class_name`` names class indices in tables; ``models`` (variant -> module, default the zoo's) are the
    modules it computes with: the dashboard gives its heavy jobs private copies, so they never hold the lock of the
    model a light request waits for."""

    def __init__(
        self,
        zoo: Zoo,
        load_dataset: Callable[..., ImageDataset] | None = None,
        class_name: Callable[[int], str] = str,
        data_root: str | None = None,
        models: Mapping[str, nn.Module] | None = None,
    ) -> None:
        self.zoo, self.class_name, self.data_root = zoo, class_name, data_root
        self.load_dataset = load_dataset or _load_dataset
        precomputed_store.attach(zoo, models)  # maps and embeddings of scl-precompute are read, not computed
        self.models = models

    def _model(self, variant: str) -> nn.Module:
        if variant not in self.zoo.entries:
            raise KeyError(f"unknown variant {variant!r}; the zoo has {', '.join(self.zoo.variants)}")
        if self.models is not None:
            return self.models[variant]
        return self.zoo.entries[variant].model

    def _models(self, variants: Sequence[str]) -> dict[str, nn.Module]:
        return {v: self._model(v) for v in variants}

    @contextlib.contextmanager
    def _all_locks(self, models: Mapping[str, nn.Module]) -> Iterator[None]:
        """Every model's lock, always in the same (name) order, so two holders cannot deadlock."""
        from analysis.attributions import model_lock

        with contextlib.ExitStack() as stack:
            for name in sorted(models):
                stack.enter_context(model_lock(models[name]))
            yield

    def predictions(self, request: PredictionsRequest) -> LevelPredictions:
        from analysis.per_image import level_predictions

        out = level_predictions(self._model(request.variant), request.image, request.kind, request.levels)
        return LevelPredictions(**out)

    def maps(self, request: MapsRequest, progress: Callable[[float], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> LevelMaps:  # fmt: skip
        from analysis.jobs_protocol import check_stop
        from analysis.precomputed_store import level_maps  # the stored levels read, the others computed

        check_stop(should_stop, f"{request.method} maps")
        opts = dict(request.options)
        if any(isinstance(opts.get(k), str) for k in ("baseline", "baselines")):  # a baseline by name: its image
            from analysis.attribution_baselines import named_baselines
            from analysis.attributions import get_method
            from analysis.per_image import level_batch

            batch = level_batch(request.image, request.kind, request.levels)
            opts = named_baselines(get_method(request.method).function, opts, batch)
        out = level_maps(self._model(request.variant), request.image, request.kind, request.method, request.target,
                         request.levels, **opts, **job_arguments(request.method, progress, should_stop))  # fmt: skip
        return LevelMaps(**out)

    def adversarial(self, request: AdversarialRequest) -> AdversarialResult:
        from analysis.per_image import adversarial_example

        out = adversarial_example(self._model(request.variant), request.image, request.label, request.eps_255,
                                  request.steps, request.seed)  # fmt: skip
        return AdversarialResult(**out)

    def probes(self, request: ProbesRequest) -> ProbesResult:
        from analysis.per_image import probe_examples, probe_predictions

        models = self._models(request.variants)
        return ProbesResult(probe_examples(request.image, request.seed),
                            probe_predictions(models, request.image, request.seed, self.class_name))  # fmt: skip

    def anchor_view(self, request: AnchorViewRequest) -> AnchorView:
        from analysis.embeddings import anchor_views

        ds = self.load_dataset(*request.dataset)
        models = self._models(request.variants)
        out = anchor_views(models, ds.images, ds.labels, list(request.anchors), request.representation,
                           request.method, request.n_same_class, request.kinds, request.seed,
                           class_name=self.class_name, locked=lambda: self._all_locks(models))  # fmt: skip
        return AnchorView(**out)

    def representations(self, request: RepresentationsRequest, progress: Progress | None = None) -> Representations:
        from analysis.attributions import model_lock
        from analysis.embeddings_whole_set import whole_set_representations

        model = self._model(request.variant)
        ds = self.load_dataset(*request.dataset)
        stored = precomputed_store.stored_representations(model, request.dataset, ds.images, request.representation)
        if stored is not None:  # scl-precompute's
            return Representations(**stored)
        with model_lock(model):
            out = whole_set_representations({request.variant: model}, ds.images, request.representation,
                                            progress=progress)  # fmt: skip
        return Representations(**out[request.variant])

    def projection(self, request: ProjectionRequest) -> Projection:
        from analysis.embeddings import shared_projection

        return Projection(shared_projection(dict(request.reps), request.method, request.seed, request.align))

    def quick(self, request: QuickRequest, progress: Progress | None = None) -> QuickResult:
        from analysis.results_store import run_quick

        with self._all_locks(self.zoo.models):
            tables = run_quick(self.zoo, self.load_dataset(*request.dataset), str(request.dataset[0]), request.group,
                               data_root=self.data_root, progress=progress)  # fmt: skip
        return QuickResult(tables)
