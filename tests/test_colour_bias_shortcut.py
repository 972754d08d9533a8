"""models.datasets ``colour-bias-shortcut``: the background colour predicts the class in training, not in test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from models.datasets import DATASETS, dataset_names
from models.datasets.colour_bias import SHORTCUT_COLOURS, SHORTCUT_FRACTION


def _colour_index(images: torch.Tensor) -> np.ndarray:
    """Each image's background colour (its corner pixel, where the digit leaves g = 0) as an index into the
    palette; every corner must be one of the palette's colours exactly."""
    corner = images[:, :, 0, 0].double().numpy()
    dist = ((corner[:, None, :] - np.asarray(SHORTCUT_COLOURS)[None]) ** 2).sum(-1)
    assert np.all(dist.min(axis=1) < 1e-6), "a background that is not one of the palette's colours"
    return dist.argmin(axis=1)


def _load(split: str, seed: int = 0):
    return DATASETS["colour-bias-shortcut"](split, None, source="digits", seed=seed)


def test_registered_beside_the_papers_design():
    assert {"colour-bias", "colour-bias-shortcut"} <= set(dataset_names())


def test_training_colour_predicts_the_label_at_95_percent():
    train = _load("train")
    labels = train.labels.numpy()
    colour = _colour_index(train.images)
    hits = colour == labels  # the rule "colour c -> class c"
    assert hits.mean() == pytest.approx(SHORTCUT_FRACTION, abs=0.005)  # exact per class up to rounding
    assert train.source["on_class_colour"] == pytest.approx(hits.mean())
    for c in np.unique(labels):
        n_c = int((labels == c).sum())
        assert int((~hits[labels == c]).sum()) == round((1 - SHORTCUT_FRACTION) * n_c)
    # no better rule exists: the majority class of each colour is the class of that colour
    for k in range(len(train.classes)):
        assert np.bincount(labels[colour == k], minlength=10).argmax() == k
    assert train.source["design"] == "shortcut" and train.masks is not None


def test_test_colour_is_at_chance():
    test = _load("test")
    labels = test.labels.numpy()
    colour = _colour_index(test.images)
    k, n = int((colour == labels).sum()), len(labels)
    ci = stats.binomtest(k, n, 0.1).proportion_ci(0.99)
    assert ci.low <= 0.1 <= ci.high  # the training rule is at chance (1 in 10) on test
    table = np.array([[np.sum((labels == c) & (colour == j)) for j in range(10)] for c in range(10)])
    assert stats.chi2_contingency(table).pvalue > 0.001  # colour and label independent
    assert len(np.unique(colour)) == 10


def test_seeded_like_the_papers_set():
    a, b, other = _load("train", 4), _load("train", 4), _load("train", 5)
    assert torch.equal(a.images, b.images)
    assert not np.array_equal(_colour_index(a.images), _colour_index(other.images))  # the seed picks colours
    paper = DATASETS["colour-bias"]("train", None, source="digits", seed=4)
    assert torch.equal(a.labels, paper.labels)  # the same grayscale images under both designs
    # out = g + (1 - g) * bg on the same g: where the background is red, the images are the paper's red ones
    red = (_colour_index(a.images) == 0) & (paper.images[:, 0, 0, 0] > 0.99).numpy()
    assert red.any() and torch.equal(a.images[red], paper.images[red])
    with pytest.raises(ValueError, match="source must be"):
        DATASETS["colour-bias-shortcut"]("train", None, source="cifar10")
