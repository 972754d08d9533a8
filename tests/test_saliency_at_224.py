"""The saliency page on a 224-px zoo (an ImageNet-style folder of the scikit-image photographs, untrained width-4
networks): the per-image sample counts it offers are the defaults fitted to the zoo's input size, so a default
request costs what the size allows and is the one ``scl-precompute`` stores."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_tiny_zoo
from tests.test_app import AppTest, assert_clean, open_app  # noqa: F401

PHOTOS = ("astronaut", "chelsea", "coffee")


def write_photo_folder(root) -> None:
    """``root/{train,val}/<photo>/*.jpg``: four 256-px crops of each of three scikit-image photographs."""
    from skimage import data

    for name in PHOTOS:
        photo = getattr(data, name)()[..., :3]
        side = min(photo.shape[:2])
        for i in range(4):
            crop = photo[i * 8 : i * 8 + side - 32, i * 8 : i * 8 + side - 32]
            folder = root / ("train" if i < 2 else "val") / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(crop)).resize((256, 256)).save(folder / f"{name}_{i}.jpg")


@pytest.fixture
def zoo_224(tmp_path, monkeypatch, cache_dir):
    root = tmp_path / "photos"
    write_photo_folder(root)
    dataset = {"name": "imagefolder", "split": "train", "size": 6, "num_classes": len(PHOTOS),
               "data_root": str(root), "image_shape": [3, 224, 224], "classes": list(PHOTOS)}  # fmt: skip
    zoo = make_tiny_zoo(tmp_path / "zoo224", len(PHOTOS), dataset, config={"data_root": str(root), "image_size": 224})
    monkeypatch.setenv("SCL_ZOO", str(zoo))
    monkeypatch.setenv("SCL_SALIENCY_WAIT_S", "0")  # the widgets are what is checked, not the maps
    from app import jobs

    jobs.reset_runner()
    yield zoo
    jobs.reset_runner()


def test_the_lime_samples_default_is_fitted_to_224_px(zoo_224):
    from analysis.attributions import get_method
    from app.zoo_cache import open_zoo

    assert open_zoo(zoo_224).image_size == 224
    at = open_app("saliency")
    assert not at.error, [e.value for e in at.error]
    fitted = get_method("lime").options(input_size=224)["num_samples"]
    assert fitted < get_method("lime").defaults["num_samples"]  # the size matters here
    assert at.select_slider(key="sal_lime_samples").value == fitted
