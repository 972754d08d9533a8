"""Attribution methods and their quality metrics, on tiny models and 32x32 images."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from analysis.attribution_quality import deletion_insertion, mask_share, stability
from analysis.attributions import METHOD_REGISTRY, METHODS, SEGMENTATIONS, Explanation, explain, model_lock
from models.networks import Classifier


class QuadrantNet(Classifier):
    """A hand-made network with a known GradCAM answer.

    The "conv block" copies channel 0 (1x1 conv, weight [1, 0, 0]), ReLUs it and
    average-pools it to a 4x4 map (like a CIFAR ResNet18's last block); the head
    reads its global mean with weight +1 for class 0 and -1 for class 1. Only
    bright red pixels raise logit 0, so for an input bright only in the top-left
    quadrant GradCAM of class 0 must light up exactly there, and GradCAM of class
    1 (whose evidence is all negative) must be zero everywhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self.normalize = nn.Identity()
        conv = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        self.block = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(8))
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.block(self.normalize(x)), 1), 1)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.block


def _astronaut(n: int = 1) -> torch.Tensor:
    """n 32x32 crops of scikit-image's astronaut photograph, (n, 3, 32, 32) in [0, 1]."""
    from skimage import data, transform

    photo = data.astronaut()[:, :, :3] / 255.0
    crops = []
    for i in range(n):
        top = 40 + 60 * i
        crop = photo[top : top + 256, 120 : 120 + 256]
        crops.append(transform.resize(crop, (32, 32), anti_aliasing=True))
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2)).float()


def test_registry_and_explanation(tiny_model, batch):
    images, _ = batch
    assert {m for m in METHODS if METHOD_REGISTRY[m].in_report} == {"integrated_gradients", "gradcam", "lime"}
    for method, options in [("integrated_gradients", {"n_steps": 8}), ("gradcam", {}), ("lime", {"num_samples": 50})]:
        ex = explain(method, tiny_model, images[:2], **options)
        assert isinstance(ex, Explanation) and ex.method == method
        assert ex.maps.shape == (2, 32, 32) and ex.maps.dtype == np.float32 and np.isfinite(ex.maps).all()
        with torch.no_grad():
            np.testing.assert_array_equal(ex.targets, tiny_model(images[:2]).argmax(1).numpy())
    ex = explain("gradcam", tiny_model, images[:3], targets=[1, 2, 3])
    np.testing.assert_array_equal(ex.targets, [1, 2, 3])
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain("no-such-method", tiny_model, images)
    with pytest.raises(TypeError):
        explain("gradcam", tiny_model, images, n_steps=3)


def test_explain_keeps_training_mode(tiny_model, batch):
    tiny_model.train()
    explain("gradcam", tiny_model, batch[0][:2])
    assert tiny_model.training
    tiny_model.eval()


def test_integrated_gradients_completeness(tiny_model, batch):
    images = batch[0][:2]
    ex = explain("integrated_gradients", tiny_model, images, internal_batch_size=64)
    t = torch.as_tensor(ex.targets)
    with torch.no_grad():
        diff = (tiny_model(images) - tiny_model(torch.zeros_like(images))).gather(1, t[:, None])[:, 0].numpy()
    total = ex.maps.reshape(2, -1).sum(1)
    delta = ex.extras["delta"]
    assert delta.shape == (2,)
    assert np.all(np.abs(total - diff) <= np.abs(delta) + 1e-5)
    assert (ex.maps < 0).any() and (ex.maps > 0).any()  # signed
    # more steps: the completeness error shrinks to a small share of the output difference
    coarse = explain("integrated_gradients", tiny_model, images, ex.targets, n_steps=4).extras["delta"]
    fine = explain("integrated_gradients", tiny_model, images, ex.targets, n_steps=128).extras["delta"]
    assert np.abs(fine).mean() < np.abs(coarse).mean()
    assert np.all(np.abs(fine) <= 0.05 * np.abs(diff) + 1e-6)


def test_gradcam_known_answer():
    model = QuadrantNet().eval()
    image = torch.zeros(1, 3, 32, 32)
    image[:, 0, :16, :16] = 1.0  # bright red, top-left quadrant only
    ex = explain("gradcam", model, image, targets=[0])
    cam = ex.maps[0]
    assert ex.extras["raw"].shape == (1, 4, 4)
    assert np.unravel_index(cam.argmax(), cam.shape)[0] < 16 and np.unravel_index(cam.argmax(), cam.shape)[1] < 16
    top_left = cam[:16, :16].mean()
    others = [cam[:16, 16:].mean(), cam[16:, :16].mean(), cam[16:, 16:].mean()]
    assert top_left > 0 and max(others) < 0.25 * top_left
    # bilinear upsampling blurs by at most half a cell (4 px) across the quadrant border
    far = np.ones_like(cam, dtype=bool)
    far[:20, :20] = False
    assert np.all(cam[far] == 0)
    assert np.allclose(cam[:12, :12], cam[:12, :12].max())
    # the other class has only negative evidence here: ReLU leaves nothing
    assert np.all(explain("gradcam", model, image, targets=[1]).maps == 0)


def test_lime_seeded_segments_and_map(tiny_model):
    images = _astronaut(2)
    a = explain("lime", tiny_model, images, num_samples=150, seed=3)
    b = explain("lime", tiny_model, images, num_samples=150, seed=3)
    assert a.maps.shape == (2, 32, 32)
    np.testing.assert_array_equal(a.maps, b.maps)
    segments = a.extras["segments"]
    assert segments.shape == (2, 32, 32)
    assert np.all(a.extras["n_segments"] > 10)
    for i in range(2):
        assert np.array_equal(np.unique(segments[i]), np.arange(a.extras["n_segments"][i]))
        np.testing.assert_allclose(a.maps[i], a.extras["weights"][i][segments[i]].astype(np.float32))
    assert np.abs(a.maps).max() > 0
    c = explain("lime", tiny_model, images, num_samples=150, seed=4)
    assert not np.array_equal(a.maps, c.maps)


def test_segmentations_on_32px_photo():
    image = _astronaut(1)[0].permute(1, 2, 0).double().numpy()
    for name, fn in SEGMENTATIONS.items():
        if fn is not None:
            assert len(np.unique(fn(image))) > 10, name


def test_mask_share_hand_checked():
    maps = np.zeros((3, 4, 4))
    masks = np.zeros((3, 1, 4, 4), dtype=bool)
    masks[:, :, :2, :2] = True
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 3, 3], maps[0, 0, 1] = 2.0, 1.0, 1.0, -5.0  # 3 of 4 positive inside
    maps[1, :2, :2] = 1.0  # all inside
    # image 2: no positive attribution -> undefined
    share = mask_share(maps, masks)
    np.testing.assert_allclose(share[:2], [0.75, 1.0])
    assert np.isnan(share[2])
    rng = np.random.default_rng(0)
    share = mask_share(rng.normal(size=(5, 8, 8)), torch.from_numpy(rng.random((5, 8, 8)) > 0.5))
    assert np.all((share >= 0) & (share <= 1))


def test_deletion_insertion_curves(tiny_model, batch):
    images = batch[0][:3]
    ex = explain("gradcam", tiny_model, images)
    steps = 8
    out = deletion_insertion(tiny_model, images, ex.maps, ex.targets, steps=steps)
    assert out["fractions"].shape == (steps + 1,)
    assert out["deletion"].shape == out["insertion"].shape == (3, steps + 1)
    for key in ("deletion_auc", "insertion_auc"):
        assert out[key].shape == (3,) and np.all((out[key] >= 0) & (out[key] <= 1))
    t = torch.as_tensor(ex.targets)
    with torch.no_grad():
        clean = torch.softmax(tiny_model(images), 1).gather(1, t[:, None])[:, 0].numpy()
        black = torch.softmax(tiny_model(torch.zeros_like(images)), 1).gather(1, t[:, None])[:, 0].numpy()
    np.testing.assert_allclose(out["deletion"][:, 0], clean, rtol=1e-5)
    np.testing.assert_allclose(out["insertion"][:, -1], clean, rtol=1e-5)
    np.testing.assert_allclose(out["deletion"][:, -1], black, rtol=1e-5)
    np.testing.assert_allclose(out["insertion"][:, 0], black, rtol=1e-5)


def test_stability_table(tiny_model, batch):
    images = batch[0][:3]
    df = stability("gradcam", tiny_model, images, kinds=("brightness", "hue"), levels=(0, 1, 4))
    assert list(df.columns[:4]) == ["kind", "level", "spearman_mean", "spearman_std"]
    assert len(df) == 6 and set(df["kind"]) == {"brightness", "hue"} and set(df["level"]) == {0, 1, 4}
    assert np.all(df.loc[df.level == 0, "spearman_mean"] == 1.0)
    assert df["spearman_mean"].between(-1, 1).all()


def test_shared_model_thread_safety(tiny_model):
    """Eight threads on one shared model give exactly the serial results (hooks and modes do not cross)."""
    images = torch.rand(8, 2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    jobs = [("gradcam" if i % 2 else "integrated_gradients", images[i]) for i in range(8)]
    options = {"integrated_gradients": {"n_steps": 8}, "gradcam": {}}
    serial = [explain(m, tiny_model, x, **options[m]) for m, x in jobs]
    results: list[Explanation | BaseException | None] = [None] * 8
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        method, x = jobs[i]
        try:
            barrier.wait()
            for _ in range(3):  # without the lock, some of these fail or differ (checked by hand)
                results[i] = explain(method, tiny_model, x, **options[method])
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for ser, res in zip(serial, results, strict=True):
        assert isinstance(res, Explanation), res
        np.testing.assert_array_equal(res.maps, ser.maps)
        np.testing.assert_array_equal(res.targets, ser.targets)
    assert model_lock(tiny_model) is model_lock(tiny_model)
    assert not tiny_model.training


def test_attribution_quality_table(tiny_zoo, batch):
    from analysis.attribution_quality import attribution_quality
    from models.checkpoints import load_zoo

    models = load_zoo(tiny_zoo).models
    images, labels = batch[0][:2], batch[1][:2]
    masks = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    masks[:, :, 8:24, 8:24] = True
    df = attribution_quality(
        models,
        images,
        labels,
        masks,
        methods=("integrated_gradients", "lime"),
        method_options={"integrated_gradients": {"n_steps": 4}, "lime": {"num_samples": 30}},
        steps=4,
    )
    assert list(df.columns[:5]) == ["variant", "method", "mask_share", "deletion_auc", "insertion_auc"]
    assert len(df) == 2 * len(models) and set(df["variant"]) == set(models)
    assert df["mask_share"].between(0, 1).all()
    assert df[["deletion_auc", "insertion_auc"]].stack().between(0, 1).all()
