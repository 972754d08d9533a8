"""``--stream``: an image folder trained and evaluated batch by batch from disk, never held as one tensor, and a stopped
streamed run resumed to exactly the weights of an uninterrupted one. A small ImageFolder of JPEGs written here
(48 training images in 3 classes, 32 px), width-4 networks, one thread, no worker processes (num_workers=0)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoints import load_checkpoint
from models.data import DATASETS
from models.datasets import folders
from models.datasets.registry import STREAMERS
from models.runs import FINAL_FILE, RESUME_FILE
from models.train import TrainConfig, train
from models.train_cli import config_from_args
from models.train_zoo import build_configs

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE, CLASSES, PER_CLASS, VAL_PER_CLASS = 32, ("blue", "green", "red"), 16, 4
N_TRAIN, N_VAL = len(CLASSES) * PER_CLASS, 8  # 48 images, 8 held out for validation: 40 trained on
BATCH = 8  # 5 steps per epoch


def make_folder(root: Path) -> Path:
    """root/{train,val}/<colour>/*.jpg: noisy 40x36 photos tinted by their class (so a tiny network can learn)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", PER_CLASS), ("val", VAL_PER_CLASS)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 120, (36, 40, 3))
                pixels[..., 2 - c] += 120
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("imagefolder"))


def _config(folder: Path, out: Path, **changes) -> TrainConfig:
    cfg = TrainConfig(variant="C", dataset="imagefolder", data_root=str(folder), image_size=SIZE, stream=True,
                      num_workers=0, width=4, batch_size=BATCH, val_size=N_VAL, epochs=2, eval_pgd_subset=0,
                      num_threads=1, device="cpu", out=str(out))  # fmt: skip
    return dataclasses.replace(cfg, **changes)


def test_streamed_training_reads_images_from_disk_and_never_holds_the_split(folder, tmp_path, monkeypatch):
    def in_memory_loader(*args, **kwargs):
        raise AssertionError("the in-memory imagefolder loader was used")

    monkeypatch.setitem(DATASETS, "imagefolder", in_memory_loader)
    made, decoded = [], []
    stream = STREAMERS["imagefolder"]  # the registry's entry is what training calls
    monkeypatch.setitem(STREAMERS, "imagefolder", lambda *a, **k: made.append(stream(*a, **k)) or made[-1])
    pixel_loader = folders._PixelLoader.__call__
    monkeypatch.setattr(folders._PixelLoader, "__call__", lambda self, path: decoded.append(path) or
                        pixel_loader(self, path))  # fmt: skip

    metrics = train(_config(folder, tmp_path / "run"), progress=False)
    assert metrics["step"] == 10  # 2 epochs of 5 steps
    assert 0 <= metrics["test_clean_acc"] <= 1 and 0 <= metrics["val_clean_acc"] <= 1
    assert [(d.split, len(d)) for d in made] == [("train", N_TRAIN), ("test", len(CLASSES) * VAL_PER_CLASS)]
    # every use of an image decodes its file again: 2 epochs of 40, 2 validations of 8, BatchNorm recalibration on
    # the 40 training images, the final validation, and the 12 test images
    n_fit = N_TRAIN - N_VAL
    assert len(decoded) == 2 * n_fit + 2 * N_VAL + n_fit + N_VAL + len(CLASSES) * VAL_PER_CLASS
    one_image = 3 * SIZE * SIZE
    for ds in made:  # what the data set objects hold: file names and labels, not one image's worth of pixels
        for holder in (ds, ds.folder):
            for name, value in vars(holder).items():
                if isinstance(value, torch.Tensor | np.ndarray):
                    numel = value.numel() if isinstance(value, torch.Tensor) else value.size
                    assert numel < one_image, (name, numel)
    ckpt = load_checkpoint(tmp_path / "run" / FINAL_FILE)
    assert ckpt["config"]["stream"] is True and ckpt["dataset"]["source"]["streamed"] is True


def test_a_stopped_streamed_run_resumes_to_the_uninterrupted_weights(folder, tmp_path):
    straight = train(_config(folder, tmp_path / "straight"), progress=False)
    out = tmp_path / "stopped"
    for stop in (3, 7):  # mid-epoch 1 and mid-epoch 2 (5 steps per epoch)
        stopped = train(_config(folder, out, stop_after_steps=stop, resume=stop != 3), progress=False)
        assert stopped == {"interrupted": True, "step": stop}
        assert load_checkpoint(out / RESUME_FILE)["training_state"]["step"] == stop
    resumed = train(_config(folder, out, resume=True), progress=False)
    a, b = (load_checkpoint(d / FINAL_FILE) for d in (tmp_path / "straight", out))
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"resumed streamed run differs from the uninterrupted one: {differ[:5]}"
    assert [r["val_clean_acc"] for r in a["metrics"]["history"]] == [
        r["val_clean_acc"] for r in b["metrics"]["history"]
    ]
    assert resumed["test_clean_acc"] == straight["test_clean_acc"]


def test_stream_is_a_flag_off_by_default_and_on_in_the_imagenet_recipe(tmp_path):
    assert not config_from_args(["--dataset", "imagefolder"])[0].stream
    assert config_from_args(["--dataset", "imagefolder", "--stream"])[0].stream
    assert all(c.stream for c in build_configs("paper-imagenet", tmp_path).values())
    assert not any(c.stream for c in build_configs("cpu-default", tmp_path).values())
