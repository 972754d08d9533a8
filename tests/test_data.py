"""Tests for models.datasets (and its models.data shim): every loader on tiny fixtures in the real on-disk formats,
the fashion-mnist-m generator and its cache, and the built-in data sets."""

from __future__ import annotations

import gzip
import json
import pickle
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from models import data as data_shim
from models import datasets
from models.datasets import (
    DATASETS,
    DEFAULT_DATASET,
    FASHION_MNIST_DIR,
    DatasetError,
    ImageDataset,
    dataset_names,
    load_dataset,
)
from models.datasets import fashion_mnist_m as D

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip

#: data set name -> tests that load it; filled by @covers, checked by test_every_dataset_has_a_loading_test
COVERED: dict[str, list[str]] = {}


def covers(*names: str) -> Callable:
    def mark(test: Callable) -> Callable:
        for name in names:
            COVERED.setdefault(name, []).append(test.__name__)
        return test

    return mark


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may touch the network or the user's cache (local Unix sockets, which DataLoader workers use to
    hand tensors over, are allowed)."""
    connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise RuntimeError("tests must not use the network")

    def connect_locally(sock: socket.socket, address, *args, **kwargs):
        if sock.family != socket.AF_UNIX:
            refuse()
        return connect(sock, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect_locally)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCL_FASHION_MNIST_DIR", raising=False)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return D._load_photos()


def require_fashion_mnist() -> None:
    files = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    missing = [f for f in files if not (FASHION_MNIST_DIR / f).is_file()]
    assert not missing, (
        f"Fashion-MNIST files {missing} not found in {FASHION_MNIST_DIR}; "
        "install them with `apt-get install dataset-fashion-mnist`"
    )


def check_common(ds: ImageDataset, n: int, size: int = 32) -> None:
    assert len(ds) == n
    assert ds.images.shape == (n, 3, size, size) and ds.images.dtype == torch.float32
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert 0 <= ds.labels.min() and ds.labels.max() < ds.num_classes
    if ds.masks is not None:
        assert ds.masks.shape == (n, 1, size, size) and ds.masks.dtype == torch.bool
    json.dumps(ds.describe())


# --------------------------------------------------------------------------- fixture writers


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file (uint8), gzipped if the name ends in .gz."""
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_mnist(directory: Path, prefix: str, n: int, gz: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def key(name: str, as_bytes: bool) -> str | bytes:
    return name.encode() if as_bytes else name


def make_cifar10(root: Path, as_bytes: bool = True) -> dict[str, np.ndarray]:
    """root/cifar-10-batches-py with 5 train batches of 2 images and a test batch of 3."""
    rng = np.random.default_rng(1)
    d = root / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(d / "batches.meta", {key("label_names", as_bytes): [key(n, as_bytes) for n in names]})
    out = {}
    for split, files, n in (("train", [f"data_batch_{i}" for i in range(1, 6)], 2), ("test", ["test_batch"], 3)):
        datas, labels = [], []
        for f in files:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            lab = rng.integers(0, 10, n).tolist()
            write_pickle(d / f, {key("data", as_bytes): data, key("labels", as_bytes): lab})
            datas.append(data)
            labels += lab
        out[split], out[split + "_labels"] = np.concatenate(datas), np.array(labels)
    return out


def make_cifar100(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    d = root / "cifar-100-python"
    fine = [f"class{i:02d}" for i in range(100)]
    write_pickle(d / "meta", {b"fine_label_names": [n.encode() for n in fine], b"coarse_label_names": [b"x"] * 20})
    out = {}
    for split, n in (("train", 4), ("test", 2)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [99, 0, 42, 7][:n]
        write_pickle(d / split, {b"data": data, b"fine_labels": labels, b"coarse_labels": [0] * n}, protocol=5)
        out[split], out[split + "_labels"] = data, np.array(labels)
    return out


def make_svhn(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    out = {}
    for split, y in (("train", [10, 1, 5, 9]), ("test", [3, 10])):
        x = rng.integers(0, 256, (32, 32, 3, len(y)), dtype=np.uint8)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": np.array(y, dtype=np.uint8)[:, None]})
        out[split], out[split + "_y"] = x, np.array(y)
    return out


def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def make_imagefolder(root: Path, eval_dir: str = "val") -> None:
    """Two classes; 'cat' PNGs are 64x32 with red | green | green | blue quarters, 'dog' JPEGs solid."""
    stripes = np.zeros((32, 64, 3), dtype=np.uint8)
    stripes[:, :16, 0] = 255
    stripes[:, 16:48, 1] = 255
    stripes[:, 48:, 2] = 255
    solid = np.full((50, 50, 3), (10, 200, 30), dtype=np.uint8)
    for split, n in (("train", 2), (eval_dir, 1)):
        for i in range(n):
            save_image(root / split / "cat" / f"cat{i}.png", stripes)
            save_image(root / split / "dog" / f"dog{i}.JPG", solid)


# --------------------------------------------------------------------------- on-disk formats


@covers("cifar10")
@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_reads_python_pickles(tmp_path: Path, as_bytes: bool) -> None:
    raw = make_cifar10(tmp_path, as_bytes)
    for split, n in (("train", 10), ("test", 3)):
        ds = load_dataset("cifar10", split, tmp_path)
        check_common(ds, n)
        assert ds.masks is None and ds.classes[0] == "airplane" and ds.num_classes == 10
        assert ds.labels.tolist() == raw[split + "_labels"].tolist()
        # pixel (c=1, h=5, w=7) of image 0 sits at 1*1024 + 5*32 + 7 of its row
        assert ds.images[0, 1, 5, 7] == pytest.approx(raw[split][0, 1 * 1024 + 5 * 32 + 7] / 255)
        assert torch.equal((ds.images * 255).round().to(torch.uint8).reshape(n, -1), torch.from_numpy(raw[split]))
        assert ds.source["root"] == str(tmp_path)


@covers("cifar10")
def test_cifar10_accepts_root_pointing_at_the_batches_dir(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    assert len(load_dataset("cifar10", "test", tmp_path / "cifar-10-batches-py")) == 3


@covers("cifar100")
def test_cifar100_fine_labels(tmp_path: Path) -> None:
    raw = make_cifar100(tmp_path)
    ds = load_dataset("cifar100", "train", str(tmp_path))
    check_common(ds, 4)
    assert ds.num_classes == 100 and ds.classes[99] == "class99"
    assert ds.labels.tolist() == [99, 0, 42, 7]
    assert ds.images[3, 2, 31, 0] == pytest.approx(raw["train"][3, 2 * 1024 + 31 * 32] / 255)
    assert len(load_dataset("cifar100", "test", tmp_path)) == 2


@covers("svhn")
def test_svhn_mat_files(tmp_path: Path) -> None:
    raw = make_svhn(tmp_path)
    ds = load_dataset("svhn", "train", tmp_path)
    check_common(ds, 4)
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.labels.tolist() == [0, 1, 5, 9]  # label 10 means digit 0
    x = raw["train"]  # (H, W, C, N)
    assert ds.images[2, 1, 4, 9] == pytest.approx(x[4, 9, 1, 2] / 255)
    assert torch.equal((ds.images * 255).round().to(torch.uint8), torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert load_dataset("svhn", "test", tmp_path).labels.tolist() == [3, 0]


@covers("mnist")
@pytest.mark.parametrize("layout", ["MNIST/raw", "MNIST/raw+gz", "flat"])
def test_mnist_idx_layouts(tmp_path: Path, layout: str) -> None:
    directory = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    images, labels = write_mnist(directory, "t10k", 5, gz=layout.endswith("gz"))
    ds = load_dataset("mnist", "test", tmp_path)
    check_common(ds, 5)
    assert ds.labels.tolist() == labels.tolist()
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(images).float() / 255)  # centred padding
    assert ds.images[:, :, :2].abs().sum() == 0 and ds.images[:, :, :, 30:].abs().sum() == 0
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])
    assert torch.equal(ds.masks, ds.images[:, :1] > 0.1)


@covers("imagefolder")
@pytest.mark.parametrize("eval_dir", ["val", "test"])
def test_imagefolder_png_and_jpeg(tmp_path: Path, eval_dir: str) -> None:
    make_imagefolder(tmp_path, eval_dir)
    ds = load_dataset("imagefolder", "train", tmp_path, image_size=16)
    check_common(ds, 4, size=16)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    # cat: shorter side 32 -> 16 makes it 32 wide; the centre crop keeps the green middle half
    centre = ds.images[0, :, :, 2:14]
    assert centre[1].min() > 0.95 and centre[0].max() < 0.05 and centre[2].max() < 0.05
    dog = ds.images[2].mean(dim=(1, 2)) * 255
    assert dog.tolist() == pytest.approx([10, 200, 30], abs=6)  # JPEG is lossy
    test = load_dataset("imagefolder", "test", tmp_path)  # default size 224
    check_common(test, 2, size=224)
    assert test.labels.tolist() == [0, 1] and test.source["split_dir"].endswith(eval_dir)


def test_imagefolder_bad_image_and_empty_class(tmp_path: Path) -> None:
    make_imagefolder(tmp_path)
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg") as err:
        load_dataset("imagefolder", "train", tmp_path, image_size=8)
    assert str(bad) in str(err.value)
    bad.unlink()
    (tmp_path / "val" / "bird").mkdir()
    (tmp_path / "train" / "bird").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("imagefolder", "test", tmp_path, image_size=8)
    assert str(tmp_path / "val" / "bird") in str(err.value)


ON_DISK = {  # name -> (file the loader needs for split "test", writer of a valid tree)
    "cifar10": ("cifar-10-batches-py/test_batch", make_cifar10),
    "cifar100": ("cifar-100-python/test", make_cifar100),
    "svhn": ("test_32x32.mat", make_svhn),
    "mnist": ("MNIST/raw/t10k-images-idx3-ubyte", lambda root: write_mnist(root / "MNIST" / "raw", "t10k", 3, False)),
    "imagefolder": ("val/cat/cat0.png", make_imagefolder),
}


@pytest.mark.parametrize("name", sorted(ON_DISK))
def test_missing_root_and_files_name_the_expected_path(tmp_path: Path, name: str) -> None:
    needed, _ = ON_DISK[name]
    with pytest.raises(DatasetError, match="root"):
        load_dataset(name, "test")
    missing_root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "test", missing_root)
    assert str(missing_root) in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "test", empty)
    expected = needed.split("/")[0] if name == "imagefolder" else needed  # imagefolder: names val/ (or test/)
    assert str(empty / expected) in str(err.value)


@pytest.mark.parametrize("name", sorted(set(ON_DISK) - {"imagefolder"}))
def test_malformed_files_name_the_file(tmp_path: Path, name: str) -> None:
    needed, make = ON_DISK[name]
    make(tmp_path)
    path = tmp_path / needed
    path.write_bytes(b"\x00\x00\x08\x03garbage" if name == "mnist" else b"garbage, not the expected format")
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "test", tmp_path)
    assert str(path) in str(err.value)


def test_idx_bad_magic_and_truncation(tmp_path: Path) -> None:
    images, _ = write_mnist(tmp_path, "t10k", 3, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x03" + bytes(100)))
    with pytest.raises(DatasetError, match="magic"):
        load_dataset("mnist", "test", tmp_path)
    write_idx(path, images)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(DatasetError, match="truncated") as err:
        load_dataset("mnist", "test", tmp_path)
    assert str(path) in str(err.value)


def test_cifar_missing_key_and_foreign_pickle(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(batch, {b"labels": [1, 2]})
    with pytest.raises(DatasetError, match="'data'"):
        load_dataset("cifar10", "test", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("should never run",))

    write_pickle(batch, {b"data": Evil()})
    with pytest.raises(DatasetError, match="refusing") as err:
        load_dataset("cifar10", "test", tmp_path)
    assert str(batch) in str(err.value)


# --------------------------------------------------------------------------- fashion-mnist-m


def garment_squares(n: int) -> np.ndarray:
    """Synthetic 28x28 'garments': a full-intensity square and a mid-gray ring."""
    g = np.zeros((n, 28, 28), dtype=np.uint8)
    g[:, 8:20, 8:20] = 255
    g[:, 4:8, 4:24] = 128
    return g


def test_composite_is_deterministic_and_prefix_stable(photos: list[np.ndarray]) -> None:
    garments = garment_squares(40)
    images, masks = D._composite(garments, seed=[0, 0], photos=photos)
    assert images.shape == (40, 3, 32, 32) and images.dtype == np.uint8
    assert masks.shape == (40, 1, 32, 32) and masks.dtype == bool
    again, _ = D._composite(garments, seed=[0, 0], photos=photos)
    other, _ = D._composite(garments, seed=[1, 0], photos=photos)
    prefix, _ = D._composite(garments[:7], seed=[0, 0], photos=photos)
    assert np.array_equal(images, again)
    assert not np.array_equal(images, other)
    assert np.array_equal(images[:7], prefix)  # a limit=n build is the first n of the full build
    assert len({im.tobytes() for im in images}) == 40  # every background is different


def test_composite_formula_mask_and_tint(photos: list[np.ndarray]) -> None:
    garments = garment_squares(30)
    images, masks = D._composite(garments, seed=5, photos=photos)
    background, _ = D._composite(np.zeros_like(garments), seed=5, photos=photos)
    padded = np.pad(garments, ((0, 0), (2, 2), (2, 2)))
    assert np.array_equal(masks[:, 0], padded / 255 > 0.1)
    outside = padded == 0
    assert np.array_equal(images.transpose(1, 0, 2, 3)[:, outside], background.transpose(1, 0, 2, 3)[:, outside])
    # where g = 1 the pixel is exactly the tint: bright and saturated (HSV v >= 0.6, s >= 0.5)
    tint = images[:, :, 16, 16].astype(float) / 255
    assert (tint.max(axis=1) >= 0.6 - 1e-2).all()
    assert ((tint.max(axis=1) - tint.min(axis=1)) / tint.max(axis=1) >= 0.5 - 2e-2).all()
    # the garment stands out from the background under it
    diff = np.abs(images.astype(int) - background.astype(int)).sum(axis=1)
    assert diff[:, 10:22, 10:22].mean() > 3 * diff[:, outside[0]].mean() + 20


@covers("fashion-mnist-m")
def test_fashion_mnist_m_cache_written_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_fashion_mnist()
    monkeypatch.setenv("SCL_CACHE_DIR", str(tmp_path))
    first = DATASETS["fashion-mnist-m"]("test", None, limit=24)
    check_common(first, 24)
    cache = tmp_path / f"fashion-mnist-m_test_seed0_v{D.GENERATOR_VERSION}_n24.npz"
    assert cache.is_file() and not list(tmp_path.glob("*.tmp"))
    assert first.source["cache"] == str(cache) and first.source["seed"] == 0

    def no_rebuild(*args, **kwargs):
        raise AssertionError("cache was not reused")

    composite = D._composite
    monkeypatch.setattr(D, "_composite", no_rebuild)
    second = DATASETS["fashion-mnist-m"]("test", None, limit=24)
    assert torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    assert torch.equal(first.labels, second.labels) and second.source == first.source
    monkeypatch.setattr(D, "_composite", composite)
    cache.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="unreadable cache"):
        rebuilt = DATASETS["fashion-mnist-m"]("test", None, limit=24)
    assert torch.equal(rebuilt.images, first.images)
    train = DATASETS["fashion-mnist-m"]("train", None, limit=24, seed=3)
    assert not torch.equal(train.images, first.images)
    assert (tmp_path / f"fashion-mnist-m_train_seed3_v{D.GENERATOR_VERSION}_n24.npz").is_file()


@covers("fashion-mnist-m")
def test_fashion_mnist_m_full_test_split(tmp_path: Path) -> None:
    require_fashion_mnist()
    ds = load_dataset("fashion-mnist-m", "test", cache_dir=tmp_path)
    check_common(ds, 10000)
    assert ds.classes == FASHION_CLASSES and ds.name == DEFAULT_DATASET
    assert ds.masks is not None and 0.2 < ds.masks.float().mean() < 0.8
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert len(ds.source["photos"]) == 10 and ds.source["generator_version"] == D.GENERATOR_VERSION
    assert ds.images.std(dim=(0, 2, 3)).min() > 0.15  # colourful, not gray
    small = DATASETS["fashion-mnist-m"]("test", None, cache_dir=tmp_path, limit=50)
    assert torch.equal(small.images, ds.images[:50])


# --------------------------------------------------------------------------- built-in data sets


@covers("fashion-mnist")
def test_fashion_mnist_test_split() -> None:
    require_fashion_mnist()
    ds = load_dataset("fashion-mnist", "test")
    check_common(ds, 10000)
    assert ds.classes == FASHION_CLASSES
    assert torch.equal(ds.images[:, 0], ds.images[:, 1]) and torch.equal(ds.images[:, 0], ds.images[:, 2])
    assert ds.images[:, :, :2].sum() == 0 and ds.images[:, :, :, 30:].sum() == 0
    assert torch.equal(ds.masks, ds.images[:, :1] > 0.1)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


@covers("fashion-mnist")
def test_fashion_mnist_dir_override_and_missing_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, labels = write_mnist(tmp_path / "fake", "train", 4, gz=True)
    monkeypatch.setenv("SCL_FASHION_MNIST_DIR", str(tmp_path / "fake"))
    assert load_dataset("fashion-mnist", "train").labels.tolist() == labels.tolist()
    assert load_dataset("fashion-mnist", "train", tmp_path / "fake").source["root"] == str(tmp_path / "fake")
    monkeypatch.setenv("SCL_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    for name in ("fashion-mnist", "fashion-mnist-m", "colour-bias"):
        with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as err:
            load_dataset(name, "test", cache_dir=tmp_path)
        assert str(tmp_path / "absent" / "t10k-images-idx3-ubyte") in str(err.value)


@covers("digits")
def test_digits_stratified_split() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    check_common(train, 1437)
    check_common(test, 360)
    assert test.classes == [str(i) for i in range(10)]
    assert all(35 <= c <= 37 for c in torch.bincount(test.labels).tolist())  # 20% of each class
    assert torch.equal(test.images, load_dataset("digits", "test").images)
    assert not torch.equal(test.images, load_dataset("digits", "test", seed=1).images)
    assert torch.equal(train.masks, train.images[:, :1] > 0.1) and torch.equal(train.images[:, 0], train.images[:, 2])


def background_colours(ds: ImageDataset) -> tuple[int, int]:
    """Counts of red and blue backgrounds, read from the corner pixel."""
    corner = ds.images[:, :, 0, 0]
    red = (corner[:, 0] > 0.99) & (corner[:, 1:].max(dim=1).values < 0.01)
    blue = (corner[:, 2] > 0.99) & (corner[:, :2].max(dim=1).values < 0.01)
    assert int(red.sum() + blue.sum()) == len(ds)
    return int(red.sum()), int(blue.sum())


@covers("colour-bias")
def test_colour_bias_fractions_flip_between_splits() -> None:
    require_fashion_mnist()
    test = load_dataset("colour-bias", "test")
    check_common(test, 10000)
    assert background_colours(test) == (500, 9500)
    assert test.source["fractions"] == {"blue": 0.95, "red": 0.05}
    train = DATASETS["colour-bias"]("train", None, limit=4000)
    assert background_colours(train) == (3800, 200)
    assert train.classes == FASHION_CLASSES and train.masks is not None
    # out = g + (1 - g) * bg: on red the red channel is 1 and green = blue = g (so masks = green > 0.1)
    red = train.images[train.images[:, 0, 0, 0] > 0.99]
    assert torch.all(red[:, 0] == 1) and torch.equal(red[:, 1], red[:, 2])
    assert torch.equal(red[:, 1:2] > 0.1, train.masks[train.images[:, 0, 0, 0] > 0.99])
    digits = DATASETS["colour-bias"]("train", None, source="digits", seed=4)
    assert background_colours(digits) == (1365, 72) and digits.source["grayscale_source"] == "digits"
    again = DATASETS["colour-bias"]("train", None, source="digits", seed=4)
    assert torch.equal(digits.images, again.images)


@covers("colour-bias-shortcut")
def test_colour_bias_shortcut_loads_like_colour_bias() -> None:
    ds = DATASETS["colour-bias-shortcut"]("test", None, source="digits")
    check_common(ds, 360)
    assert ds.source["design"] == "shortcut"  # its colours: tests/test_colour_bias_shortcut.py


@covers("cifar10", "digits")
def test_image_size_resizes_images_and_masks(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    big = load_dataset("cifar10", "test", tmp_path, image_size=64)
    check_common(big, 3, size=64)
    small = load_dataset("digits", "test", image_size=16)
    check_common(small, 360, size=16)


# --------------------------------------------------------------------------- API


def test_registry_and_argument_errors() -> None:
    assert DEFAULT_DATASET in dataset_names() and dataset_names() == sorted(DATASETS)
    with pytest.raises(ValueError, match="cifar10.*fashion-mnist-m"):
        load_dataset("imagenet-42")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(ValueError, match="split"):
        DATASETS["digits"]("val", None)


def test_subset_and_describe() -> None:
    ds = load_dataset("digits", "test")
    for indices in ([5, 1, 2], torch.tensor([5, 1, 2]), np.array([5, 1, 2]), range(5, 0, -2)):
        sub = ds.subset(indices)
        picked = torch.tensor([int(i) for i in indices])
        assert torch.equal(sub.images, ds.images[picked]) and torch.equal(sub.masks, ds.masks[picked])
        assert sub.labels.tolist() == ds.labels[picked].tolist() and sub.classes == ds.classes
    chosen = ds.subset(ds.labels == 3)
    assert len(chosen) == int((ds.labels == 3).sum()) and set(chosen.labels.tolist()) == {3}
    info = json.loads(json.dumps(ds.describe()))
    assert info["name"] == "digits" and info["split"] == "test" and info["size"] == 360
    assert info["image_shape"] == [3, 32, 32] and info["num_classes"] == 10 and info["has_masks"] is True
    assert info["source"]["seed"] == 0
    assert "digits" in repr(ds) and len(repr(ds)) < 300


@pytest.mark.parametrize("name", dataset_names())
def test_every_dataset_has_a_loading_test(name: str) -> None:
    assert name in COVERED, f"data set {name!r} is registered but no test loads it; add one marked @covers({name!r})"


# --------------------------------------------------------------------------- package layout and shared helpers


def test_the_models_data_shim_re_exports_the_package() -> None:
    for name in datasets.__all__:
        assert getattr(data_shim, name) is getattr(datasets, name), name


def test_package_modules_and_functions_stay_small() -> None:
    import ast

    for path in sorted(Path(datasets.__file__).parent.glob("*.py")):
        text = path.read_text()
        assert text.count("\n") <= 400, f"{path.name} has {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno - node.lineno < 60, f"{path.name}:{node.name} is too long"


def test_tints_come_from_perturbations_hsv_to_rgb_bit_for_bit() -> None:
    """The generator's tint now uses models.perturbations.hsv_to_rgb (float64); its output must be the original
    numpy formula's bit for bit, or every cached fashion-mnist-m (versioned by GENERATOR_VERSION) would be stale."""
    from models.perturbations import hsv_to_rgb

    def reference(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
        k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
        return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)

    u = np.random.default_rng(0).random((200_000, 3))
    hsv = (u[:, 0], D.TINT_SATURATION[0] + 0.5 * u[:, 1], D.TINT_VALUE[0] + 0.4 * u[:, 2])
    ours = hsv_to_rgb(*(torch.from_numpy(np.ascontiguousarray(c)) for c in hsv))
    assert ours.dtype == torch.float64 and np.array_equal(ours.numpy(), reference(*hsv))
    assert not hasattr(D, "_hsv_to_rgb")


def test_a_photo_gives_the_same_pixels_uploaded_and_read_from_a_folder(tmp_path: Path) -> None:
    from app.uploads import validate_image_bytes

    y, x = np.mgrid[0:300, 0:400]
    photo = np.stack([x / 400, y / 300, 0.5 + 0.5 * np.sin(x / 13)], -1) * 255
    files = [tmp_path / "train" / "a" / "photo.jpg", tmp_path / "train" / "b" / "photo.png"]
    for path in files:
        save_image(path, photo)
    ds = load_dataset("imagefolder", "train", tmp_path, image_size=48)
    for i, path in enumerate(files):
        uploaded = validate_image_bytes(path.read_bytes(), 48)
        assert np.array_equal(uploaded.pixels, ds.images[i].numpy()), path.name


# --------------------------------------------------------------------------- streamed image folders


def make_jpeg_split(root: Path, per_class: int = 8, side: int = 40) -> list[str]:
    """Three classes of small JPEGs (noisy red, green, blue) in train/ and val/."""
    rng = np.random.default_rng(0)
    classes = ["blue", "green", "red"]
    for split, n in (("train", per_class), ("val", per_class // 2)):
        for c, name in enumerate(classes):
            for i in range(n):
                image = rng.integers(0, 90, (side, side + 8 * (i % 3), 3))
                image[..., 2 - c] += 160  # blue -> channel 2, green -> 1, red -> 0
                save_image(root / split / name / f"{i:03d}.jpg", image)
    return classes


def _array_bytes(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of every tensor and array reachable from ``obj``'s attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_array_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple | set):
        return sum(_array_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith(("models", "torchvision")):
        return _array_bytes(vars(obj), seen)
    return 0


@covers("imagefolder")
def test_streamed_imagefolder_equals_in_memory_and_holds_no_pixels(tmp_path: Path, monkeypatch) -> None:
    from models.datasets import folders

    classes = make_jpeg_split(tmp_path)
    memory = load_dataset("imagefolder", "train", tmp_path, image_size=24)
    decoded = []
    read = folders.read_image
    monkeypatch.setattr(folders, "read_image", lambda path, size: decoded.append(path) or read(path, size))
    streamed = load_dataset("imagefolder", "train", tmp_path, image_size=24, stream=True)
    assert isinstance(streamed, datasets.StreamingImageFolder) and not decoded  # nothing read up front
    assert len(streamed) == len(memory) == 24 and streamed.classes == memory.classes == classes
    assert torch.equal(streamed.labels, memory.labels)
    assert _array_bytes(streamed) < 16 * len(streamed)  # file names and labels only: no (N,3,S,S) anywhere
    for i in (0, 9, 23):
        image, label = streamed[i]
        assert image.dtype == torch.float32 and torch.equal(image, memory.images[i]) and label == memory.labels[i]
    sub = streamed.subset([5, 2]).subset([1])
    assert len(sub) == 1 and torch.equal(sub[0][0], memory.images[2]) and len(streamed) == 24
    assert streamed.subset(streamed.labels == 1).labels.tolist() == [1] * 8
    info = streamed.describe()
    assert info["image_shape"] == [3, 24, 24] and info["classes"] == classes and info["source"]["streamed"]
    assert len(load_dataset("imagefolder", "test", tmp_path, image_size=24, stream=True)) == 12  # val/
    with pytest.raises(DatasetError, match="root"):
        load_dataset("imagefolder", "train", None, stream=True)
    with pytest.raises(ValueError, match="only imagefolder can be streamed"):
        load_dataset("digits", "train", stream=True)


def test_training_streams_an_imagefolder_split_through_worker_processes(tmp_path: Path, one_thread) -> None:
    """A tiny network learns the three colours from a streamed split: batches come from two DataLoader workers,
    one decoded image at a time; neither the data set nor the loader ever holds the split."""
    from models.networks import create_network

    make_jpeg_split(tmp_path)
    train = datasets.load_dataset("imagefolder", "train", tmp_path, image_size=16, stream=True)
    loader = datasets.make_loader(train, 8, shuffle=True, num_workers=2, seed=0)
    assert loader.num_workers == 2 and not loader.pin_memory  # pinned memory only for CUDA
    torch.manual_seed(0)
    model = create_network("resnet18-cifar", 3, width=4)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    largest_batch = 0
    for _epoch in range(6):
        for images, labels in loader:
            largest_batch = max(largest_batch, images.shape[0])
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    assert largest_batch == 8 and _array_bytes(train) < 16 * len(train)
    model.eval()
    val = datasets.load_dataset("imagefolder", "test", tmp_path, image_size=16, stream=True)
    with torch.no_grad():
        right = sum(int((model(x).argmax(1) == y).sum()) for x, y in datasets.make_loader(val, 6, num_workers=0))
    assert right / len(val) >= 0.75, f"{right}/{len(val)}"
    memory_loader = datasets.make_loader(load_dataset("digits", "test"), 100)
    assert memory_loader.num_workers == 0 and next(iter(memory_loader))[0].shape == (100, 3, 32, 32)
