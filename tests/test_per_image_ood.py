"""analysis.per_image (all levels in one batched pass) and analysis.ood (calibrated out-of-distribution notice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_level_maps_batched_equal_one_level_at_a_time(tiny_model, batch, one_thread):
    from analysis.attributions import explain
    from analysis.per_image import ALL_LEVELS, level_batch, level_maps, level_predictions
    from models.perturbations import perturb

    image = batch[0][0].numpy()
    preds = level_predictions(tiny_model, image, "contrast")
    assert preds["levels"] == list(ALL_LEVELS) and preds["ds"][0] == 0 and (preds["ds"][1:] > 0).all()
    assert preds["top"].shape == (len(ALL_LEVELS), 3) and (preds["top"][:, 0] == preds["pred"]).all()
    target = int(preds["pred"][0])
    for method in ("integrated_gradients", "gradcam"):
        res = level_maps(tiny_model, image, "contrast", method, target)
        assert res["maps"].shape == (len(ALL_LEVELS), 32, 32)
        for i, level in enumerate(ALL_LEVELS):
            x = batch[0][:1] if level == 0 else perturb(batch[0][:1], "contrast", level)
            single = explain(method, tiny_model, x, [target], **({"n_steps": 50} if method != "gradcam" else {}))
            np.testing.assert_allclose(res["maps"][i], single.maps[0], rtol=1e-4, atol=1e-6)
    assert torch.equal(level_batch(image, "contrast", [0])[0], batch[0][0])
    assert "delta" in level_maps(tiny_model, image, "hue", "integrated_gradients", target, [0, 2])["extras"][1]


def test_map_similarity_is_the_analysis_spearman():
    from analysis.attribution_quality import _spearman
    from analysis.per_image import map_similarity

    assert map_similarity is _spearman


def test_ood_calibration_thresholds_flags_and_disk_cache(tiny_model, tmp_path, monkeypatch):
    from analysis import ood
    from models.data import load_dataset

    images = load_dataset("digits", "test").images[:200]
    models = {"a": tiny_model}
    cal = ood.load_or_calibrate(models, {"a": "hash-a"}, images, dataset="digits", folder=tmp_path)
    logits = tiny_model(images).detach().double().numpy()
    scores = ood.scores(logits)
    assert cal.thresholds["a"] == pytest.approx(np.quantile(scores, 0.05))
    assert cal.test_flagged == pytest.approx((scores < cal.thresholds["a"]).mean())
    assert 0.03 <= cal.test_flagged <= 0.07
    assert list(tmp_path.glob("*.json")) == [tmp_path / f"{cal.key}.json"]
    monkeypatch.setattr(ood, "calibrate", lambda *a, **k: pytest.fail("recomputed instead of read from disk"))
    again = ood.load_or_calibrate(models, {"a": "hash-a"}, images, dataset="digits", folder=tmp_path)
    assert again == cal
    lowest, highest = images[int(scores.argmin())], images[int(scores.argmax())]
    assert ood.assess(models, lowest, cal)["flagged"] and not ood.assess(models, highest, cal)["flagged"]
    assert ood.calibration_key({"a": "other"}, "digits", "energy", 0.05, 200) != cal.key  # new weights: new file
    assert ood.scores(np.array([[0.0, 10.0]]), "msp")[0] == pytest.approx(1 / (1 + np.exp(-10)))
