"""analysis.service_api: each request of the dashboard's one compute interface, answered in process, agrees with the
pure functions it stands for; quick results are the experiment registry's; the whole-set tables of the page."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import per_image
from analysis import results_store as stored
from analysis.embeddings import Anchor
from analysis.embeddings_whole_set import whole_set_tables
from analysis.service_api import (
    AdversarialRequest,
    AnchorViewRequest,
    ComputeService,
    LocalComputeService,
    MapsRequest,
    PredictionsRequest,
    ProbesRequest,
    QuickRequest,
)
from models.checkpoints import load_zoo
from models.data import load_dataset
from models.objectives import distance_score

SPEC = ("digits", "test", None, None)


@pytest.fixture(scope="module")
def service(tiny_zoo) -> LocalComputeService:
    return LocalComputeService(load_zoo(tiny_zoo, "cpu"))


@pytest.fixture(scope="module")
def test_split():
    return load_dataset("digits", "test")


def test_the_local_service_implements_every_request_of_the_protocol(service):
    import inspect

    assert isinstance(service, ComputeService)
    requests = [n for n, f in vars(ComputeService).items() if inspect.isfunction(f) and not n.startswith("_")]
    assert set(requests) == {
        "predictions",
        "maps",
        "adversarial",
        "probes",
        "anchor_view",
        "representations",
        "projection",
        "quick",
    }
    for name in requests:
        want = inspect.signature(getattr(ComputeService, name))
        got = inspect.signature(getattr(LocalComputeService, name))
        assert list(got.parameters) == list(want.parameters), name


def test_predictions_and_maps_are_the_per_image_functions(service, test_split, one_thread):
    image = test_split.images[3].numpy()
    model = service.zoo.entries["C"].model
    got = service.predictions(PredictionsRequest("C", image, "hue", (0, 2)))
    want = per_image.level_predictions(model, image, "hue", (0, 2))
    assert got.levels == [0, 2] and np.allclose(got.logits, want["logits"]) and np.allclose(got.ds, want["ds"])
    assert got.ds[0] == pytest.approx(0.0, abs=1e-9)
    maps = service.maps(MapsRequest("C", image, "hue", "gradcam", int(got.pred[0]), (0, 2)))
    assert maps.maps.shape == (2, *image.shape[-2:])
    assert np.allclose(
        maps.maps, per_image.level_maps(model, image, "hue", "gradcam", int(got.pred[0]), (0, 2))["maps"]
    )
    clean = service.predictions(PredictionsRequest("C", image, "", (0,)))  # level 0 needs no kind
    assert clean.levels == [0] and np.allclose(clean.logits[0], want["logits"][0])
    with pytest.raises(KeyError, match="unknown variant 'nope'"):
        service.predictions(PredictionsRequest("nope", image, "hue"))


def test_an_adversarial_example_stays_within_eps_and_reports_its_ds(service, test_split, one_thread):
    image = test_split.images[5].numpy()
    res = service.adversarial(AdversarialRequest("ADV", image, None, eps_255=8.0, steps=3))
    model = service.zoo.entries["ADV"].model
    clean = torch.from_numpy(image)[None]
    assert res.label == int(model(clean).argmax(1)[0])  # label None: the clean prediction is attacked
    assert np.abs(res.adversarial - image).max() * 255 <= 8.0 + 1e-3 and res.linf_255 <= 8.0 + 1e-3
    with torch.no_grad():
        ds = float(distance_score(model(clean), model(torch.from_numpy(res.adversarial)[None]))[0])
    assert res.ds == pytest.approx(ds, rel=1e-4, abs=1e-6)


def test_probes_cover_every_level_and_variant(service, test_split):
    from analysis.probes import PROBES

    res = service.probes(ProbesRequest(test_split.images[0].numpy(), ("standard", "C")))
    assert list(res.examples) == list(PROBES)
    per_variant = sum(len(items) for items in res.examples.values())
    assert len(res.predictions) == 2 * per_variant and set(res.predictions["variant"]) == {"standard", "C"}
    assert res.predictions["conf"].between(0, 1).all()


def test_an_anchor_view_measures_ds_to_each_points_anchor(service, test_split, cache_dir):
    anchor = Anchor("#0", test_split.images[0].numpy(), int(test_split.labels[0]), 0, int(test_split.labels[0]))
    view = service.anchor_view(AnchorViewRequest(SPEC, (anchor,), ("standard", "C"), n_same_class=10,
                                                 kinds=("hue",)))  # fmt: skip
    pts = view.points[view.points["variant"] == "C"].reset_index(drop=True)
    z = view.reps["C"].astype(np.float64)
    original = int(pts.index[pts["role"] == "original"][0])
    assert np.allclose(pts["ds"], ((z - z[original]) ** 2).sum(1), rtol=1e-4, atol=1e-6)
    assert (pts["role"] == "same_class").sum() == 10 and set(view.ranks["kind"]) == {"hue"}
    assert view.thumbs.shape[0] == len(pts) and view.align == "union"


def test_quick_results_are_the_registry_experiments_with_quick_settings(service, test_split, monkeypatch, one_thread):
    from analysis.probes import probe_tables

    small = dataclasses.replace(stored.QUICK, n_images=16)
    monkeypatch.setattr(stored, "QUICK", small)
    seen = []
    res = service.quick(QuickRequest(SPEC, "probes"), progress=lambda f, text: seen.append(f))
    assert set(res.tables) == {"probes", "probes_per_image"} and seen[-1] == 1.0
    n = stored.quick_size("probes", small)
    want, _ = probe_tables(service.zoo.models, test_split.images[:n], test_split.labels[:n], seed=small.probe_seed,
                           batch_size=small.batch_size)  # fmt: skip
    pd.testing.assert_frame_equal(res.tables["probes"].reset_index(drop=True), want.reset_index(drop=True))
    with pytest.raises(ValueError, match="no quick version of 'transfer'"):
        service.quick(QuickRequest(SPEC, "transfer"))


def test_whole_set_tables_place_the_anchors_after_the_test_set():
    rng = np.random.default_rng(0)
    reps = {v: rng.normal(size=(30, 4)).astype(np.float32) for v in ("a", "b")}
    data = {v: {"rep": r, "pred": r.argmax(1) % 3} for v, r in reps.items()}
    labels = np.arange(30) % 3
    points = pd.DataFrame([{"variant": v, "x": 0.0, "y": 0.0, "row": i, "role": role, "kind": "hue", "level": 1,
                            "dataset_index": 0, "anchor": "#0", "label": 0, "pred_name": f"p{i}", "ds": float(i)}
                           for v in ("a", "b")
                           for i, role in enumerate(("original", "perturbed", "same_class"))])  # fmt: skip
    overlay_reps = {v: rng.normal(size=(3, 4)).astype(np.float32) for v in ("a", "b")}
    frames, overlays = whole_set_tables(data, labels, "pca", "logits", None, points, overlay_reps, lambda c: f"c{c}")
    assert len(frames["a"]) == 30 and set(frames["a"]["correct"]) <= {"correct", "wrong"}
    assert (frames["b"]["correct"] == np.where(data["b"]["pred"] == labels, "correct", "wrong")).all()
    assert list(overlays["a"]["row"]) == [30, 31]  # the same-class point is left out; rows after the test set
    assert list(overlays["b"]["ds"]) == [0.0, 1.0]
    frames, overlays = whole_set_tables(data, labels)
    assert overlays == {} and len(frames) == 2


def test_whole_set_representations_and_their_shared_map(service, test_split):
    from analysis.embeddings import shared_projection
    from analysis.service_api import ProjectionRequest, RepresentationsRequest

    seen = []
    one = service.representations(RepresentationsRequest(SPEC, "C"), progress=lambda f, text: seen.append(f))
    model = service.zoo.entries["C"].model
    with torch.no_grad():
        logits = model(test_split.images[:50]).numpy()
    assert one.rep.shape == (len(test_split), logits.shape[1]) and np.allclose(one.rep[:50], logits, atol=1e-4)
    assert (one.pred[:50] == logits.argmax(1)).all() and seen[-1] == 1.0
    reps = {"C": one.rep[:60], "standard": one.rep[:60] * 2}
    xy = service.projection(ProjectionRequest(reps, "pca", 0, "union")).xy
    want = shared_projection(reps, "pca", 0, "union")
    assert set(xy) == {"C", "standard"} and all(np.allclose(xy[v], want[v]) for v in xy)
