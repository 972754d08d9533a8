"""Check an imported model against data: its accuracy on a seeded sample of the data set's test split.

The logit check of ``models.import_model`` proves the weights were copied faithfully, but not that the
normalisation is the one the network was trained with: the source model is fed the same (possibly wrong)
``mean``/``std``. A wrong normalisation shows in the accuracy. So :func:`check_accuracy` measures the
imported model on ``images`` test images drawn with a fixed seed and, when the normalisation was a default
(``--mean``/``--std`` not given), measures it again with the data's own channel statistics (computed on the
whole test split) and warns when the two differ by more than :data:`WARN_POINTS` percentage points.
``expect`` (``--expect-accuracy``) turns an accuracy below it into an error, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.errors import LabError

DEFAULT_IMAGES = 500  # test images evaluated (a few hundred: seconds on a CPU for a small network)
SAMPLE_SEED = 0
WARN_POINTS = 3.0  # percentage points between the two normalisations that earn a warning


class ImportCheckError(LabError):
    """The imported model cannot be checked against its data, or falls below ``--expect-accuracy``."""


@dataclass
class AccuracyCheck:
    """What :func:`check_accuracy` measured (accuracies are fractions in [0, 1])."""

    dataset: str
    images: int
    seed: int
    accuracy: float  # with the normalisation stored in the checkpoint
    mean: list[float]
    std: list[float]
    normalisation_given: bool
    data_mean: list[float] | None = None  # the data's own channel statistics (only when not given)
    data_std: list[float] | None = None
    data_accuracy: float | None = None  # the accuracy with them

    @property
    def warning(self) -> str | None:
        """The wrong-normalisation warning, or None when the two accuracies agree (or only one was measured)."""
        if self.data_accuracy is None or abs(self.data_accuracy - self.accuracy) * 100 <= WARN_POINTS:
            return None
        mean, std = _fmt(self.data_mean), _fmt(self.data_std)
        return (
            f"the normalisation was not given (--mean/--std) and the default one gives {100 * self.accuracy:.1f}% "
            f"accuracy, while the data's own channel statistics (mean {mean} std {std}) give "
            f"{100 * self.data_accuracy:.1f}% on the same {self.images} test images: pass the --mean/--std the "
            "network was trained with"
        )

    def record(self) -> dict[str, Any]:
        """The checkpoint's (and so the zoo card's) record of the check."""
        rec: dict[str, Any] = {
            "split": "test",
            "images": self.images,
            "seed": self.seed,
            "accuracy": self.accuracy,
            "mean": self.mean,
            "std": self.std,
            "normalisation_given": self.normalisation_given,
        }
        if self.data_accuracy is not None:
            rec.update(data_mean=self.data_mean, data_std=self.data_std, data_accuracy=self.data_accuracy)
        return rec

    def summary(self) -> str:
        """One line for the command's output."""
        line = f"accuracy {100 * self.accuracy:.1f}% on {self.images} test images of {self.dataset} (seed {self.seed})"
        if self.data_accuracy is not None:
            line += f"; {100 * self.data_accuracy:.1f}% with the data's own channel statistics"
        return line


def _fmt(values: Sequence[float] | None) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values or []) + "]"


def channel_statistics(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of ``images`` (N, 3, H, W) in [0, 1]."""
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-6).tolist()


def _accuracy_with(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean=None, std=None) -> float:
    """Accuracy of ``model``, with its ``normalize`` buffers swapped for ``mean``/``std`` when given (restored)."""
    from models.evaluation import accuracy

    norm = model.normalize
    saved = norm.mean.clone(), norm.std.clone()
    try:
        if mean is not None:
            norm.mean.copy_(torch.tensor(mean).view_as(norm.mean))
            norm.std.copy_(torch.tensor(std).view_as(norm.std))
        return accuracy(model.eval(), images, labels, batch_size=128)
    finally:
        norm.mean.copy_(saved[0])
        norm.std.copy_(saved[1])


def check_accuracy(
    model: torch.nn.Module,
    dataset: str,
    data_root: str | None = None,
    *,
    image_size: int,
    normalisation_given: bool,
    images: int = DEFAULT_IMAGES,
    expect: float | None = None,
    seed: int = SAMPLE_SEED,
) -> AccuracyCheck:
    """Evaluate ``model`` (a lab network, pixels in [0, 1]) on ``images`` seeded test images of ``dataset``.

    Raises ImportCheckError when the test split cannot be loaded or the accuracy is below ``expect``.
    """
    from models.datasets import load_dataset

    if images <= 0:
        raise ImportCheckError(f"--check-images {images}: must be a positive number (0 skips the check)")
    if expect is not None and not 0.0 <= expect <= 1.0:
        raise ImportCheckError(f"--expect-accuracy is a fraction in [0, 1] (0.5 for 50%); got {expect}")
    try:
        test = load_dataset(dataset, "test", data_root, image_size=image_size)
    except (LabError, ValueError, OSError) as exc:
        raise ImportCheckError(
            f"cannot load the test split of {dataset!r} to check the imported model's accuracy ({exc}); "
            "pass --data-root, or --check-images 0 to skip the check"
        ) from exc
    n = min(images, len(test))
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    x, y = test.images[pick], test.labels[pick]
    norm = model.normalize
    with torch.no_grad():
        result = AccuracyCheck(
            dataset, n, seed, _accuracy_with(model, x, y), norm.mean.flatten().tolist(), norm.std.flatten().tolist(),
            normalisation_given,
        )  # fmt: skip
        if not normalisation_given:
            result.data_mean, result.data_std = channel_statistics(test.images)
            result.data_accuracy = _accuracy_with(model, x, y, result.data_mean, result.data_std)
    if expect is not None and result.accuracy < expect:
        hint = f" ({result.warning})" if result.warning else ""
        raise ImportCheckError(
            f"the imported model's accuracy is {100 * result.accuracy:.1f}% on {n} test images of {dataset}, below "
            f"--expect-accuracy {100 * expect:.1f}%{hint}; nothing written"
        )
    return result
