"""Out-of-distribution scores for single images, calibrated on a zoo's test split.

An image is scored by each model of a zoo; a higher score means more like the data the model was trained on.

* ``energy`` (default): the negative free energy ``logsumexp(logits)`` (Liu et al., 2020);
* ``msp``: the maximum softmax probability (Hendrycks & Gimpel, 2017).

:func:`calibrate` scores the first ``n_images`` images of the test split and keeps, per model, the
``quantile`` (default 5th percentile) of the in-distribution scores as the threshold: about 5% of test
images fall below it. :func:`assess` flags an image as unlike the data when at least half of the
models put it below their thresholds. Calibrations are stored as small JSON files in
``$SCL_CACHE_DIR/ood/`` (or ``~/.cache/semantic-continuity-lab/ood/``), keyed by the sha256s of the
zoo's checkpoints, the data set and the settings, so each zoo is calibrated once per machine.

Honest limits: confidence scores miss inputs a model is confidently wrong about. On the shipped
fashion-mnist-m zoo, scikit-image's astronaut (whose pixels are part of that data set's backgrounds)
scores as in-distribution; the rocket photograph is flagged by all four models.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.evaluation import predict_logits

__all__ = ["SCORES", "Calibration", "assess", "calibrate", "calibration_key", "load_or_calibrate", "scores"]

SCORES = ("energy", "msp")
DEFAULT_SCORE = "energy"
DEFAULT_QUANTILE = 0.05
DEFAULT_IMAGES = 2000
FORMAT = "scl-ood/1"


def scores(logits: np.ndarray | torch.Tensor, score: str = DEFAULT_SCORE) -> np.ndarray:
    """Per-image in-distribution scores (N,) of logits (N, C): higher = more familiar."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if score == "energy":
        return torch.logsumexp(z, dim=1).numpy()
    if score == "msp":
        return torch.softmax(z, dim=1).max(1).values.numpy()
    raise ValueError(f"unknown OOD score {score!r}; known: {', '.join(SCORES)}")


@dataclass
class Calibration:
    """Per-model thresholds of one score on ``n_images`` test images (a JSON document)."""

    score: str
    quantile: float
    n_images: int
    dataset: str
    thresholds: dict[str, float]
    test_flagged: float  # share of the calibration images that :func:`assess` flags (its false-positive rate)
    key: str = ""
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ValueError(f"not an OOD calibration ({doc.get('format')!r})")
        return cls(**doc)


def _logits(models: Mapping[str, nn.Module], images: torch.Tensor) -> dict[str, np.ndarray]:
    from analysis.attributions import model_lock  # the dashboard's models may be explained concurrently

    out = {}
    for name, model in models.items():
        with model_lock(model):
            out[name] = predict_logits(model, images).double().numpy()
    return out


def _flags(model_scores: Mapping[str, np.ndarray], thresholds: Mapping[str, float]) -> np.ndarray:
    """True where at least half of the models score below their threshold."""
    below = np.stack([np.asarray(model_scores[n]) < thresholds[n] for n in thresholds])
    return below.sum(0) * 2 >= len(thresholds)


def calibrate(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    *,
    score: str = DEFAULT_SCORE,
    quantile: float = DEFAULT_QUANTILE,
    dataset: str = "",
) -> Calibration:
    """Thresholds at the ``quantile`` of each model's scores on in-distribution ``images`` (N,3,H,W)."""
    per_model = {n: scores(lg, score) for n, lg in _logits(models, images).items()}
    thresholds = {n: float(np.quantile(s, quantile)) for n, s in per_model.items()}
    flagged = float(_flags(per_model, thresholds).mean()) if len(images) else 0.0
    return Calibration(score, float(quantile), int(len(images)), dataset, thresholds, flagged)


def assess(models: Mapping[str, nn.Module], image: np.ndarray | torch.Tensor, calibration: Calibration) -> dict:
    """Score one (3,H,W) image: ``flagged`` (unlike the data), per-model ``scores``, ``below`` (names under
    their threshold) and the calibration's ``thresholds``."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    x = x.unsqueeze(0) if x.ndim == 3 else x
    names = [n for n in calibration.thresholds if n in models]
    logits = _logits({n: models[n] for n in names}, x)
    per_model = {n: float(scores(lg, calibration.score)[0]) for n, lg in logits.items()}
    thresholds = {n: calibration.thresholds[n] for n in names}
    return {
        "flagged": bool(_flags({n: np.array([s]) for n, s in per_model.items()}, thresholds)[0]) if names else False,
        "scores": per_model,
        "thresholds": thresholds,
        "below": [n for n in names if per_model[n] < thresholds[n]],
    }


def calibration_key(model_hashes: Mapping[str, str], dataset: str, score: str, quantile: float, n_images: int) -> str:
    """A stable key from the zoo's checkpoint sha256s, the data set and the settings."""
    text = json.dumps([sorted(model_hashes.items()), dataset, score, quantile, n_images])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_folder() -> Path:
    env = os.environ.get("SCL_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "semantic-continuity-lab") / "ood"


def load_or_calibrate(
    models: Mapping[str, nn.Module],
    model_hashes: Mapping[str, str],
    images: torch.Tensor,
    *,
    dataset: str,
    score: str = DEFAULT_SCORE,
    quantile: float = DEFAULT_QUANTILE,
    folder: str | os.PathLike | None = None,
) -> Calibration:
    """The stored calibration for these checkpoints and settings, else compute it on ``images`` and store it
    (an unwritable cache is not an error: the calibration is returned anyway)."""
    key = calibration_key(model_hashes, dataset, score, quantile, len(images))
    path = Path(folder) if folder is not None else cache_folder()
    path = path / f"{key}.json"
    try:
        cal = Calibration.from_json(path.read_text())
        if set(cal.thresholds) >= set(models):
            return cal
    except (OSError, ValueError, TypeError):
        pass
    cal = calibrate(models, images, score=score, quantile=quantile, dataset=dataset)
    cal.key = key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(cal.to_json())
        tmp.replace(path)
    except OSError:
        pass
    return cal


def describe(calibration: Calibration, names: Sequence[str] | None = None) -> str:
    """One line: the score, quantile, sample and thresholds (for the page)."""
    shown = {n: t for n, t in calibration.thresholds.items() if names is None or n in names}
    text = ", ".join(f"{n} {t:.3g}" for n, t in shown.items())
    return (
        f"{calibration.score} score, threshold at the {100 * calibration.quantile:g}th percentile of "
        f"{calibration.n_images} {calibration.dataset} test images ({text}); flags "
        f"{100 * calibration.test_flagged:.1f}% of those test images"
    )
