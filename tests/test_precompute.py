"""scl-precompute: the gallery's maps and whole-set embeddings stored ahead, resumed after a stop, keyed by checkpoint
sha256, and read by the compute service instead of computing (uploads and unreadable files are computed)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import precompute as pc
from analysis import precomputed_store as store

QUICK = ["--variants", "standard,C", "--kinds", "brightness", "--limit", "2", "--chunk-size", "1",
         "--representations", "logits", "--no-progress"]  # fmt: skip


@pytest.fixture
def zoo(tiny_zoo, tmp_path, cache_dir, one_thread) -> Path:
    """A private copy of the tiny zoo (its store is written inside it)."""
    return Path(shutil.copytree(tiny_zoo, tmp_path / "zoo"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _test_split(zoo_path: Path):
    from models.checkpoints import load_zoo
    from models.data import load_dataset

    zoo = load_zoo(zoo_path)
    spec = pc.dataset_spec(zoo)
    return zoo, spec, load_dataset(spec[0], spec[1], spec[2], image_size=spec[3])


def test_shard_is_a_partition():
    items = list(range(11))
    parts = [pc.shard(items, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == items
    assert [len(p) for p in parts] == [4, 4, 3]
    assert pc.shard(items, 0, 1) == items
    with pytest.raises(ValueError):
        pc.shard(items, 3, 3)


def test_image_digest_is_the_dashboards_image_key():
    from app.images import image_key

    image = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    assert store.image_digest(image) == image_key(image)


def test_precompute_writes_readable_maps_and_embeddings(zoo, capsys):
    from analysis.per_image import level_maps

    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0
    root = zoo / "precomputed"
    index = json.loads((root / "index.json").read_text())
    entries = index["entries"].values()
    maps = [e for e in entries if e["what"] == "maps"]
    assert {(e["variant"], e["kind"], e["method"]) for e in maps} == {
        (v, "brightness", m) for v in ("standard", "C") for m in ("integrated_gradients", "gradcam")
    }
    assert all(e["images"] == 2 and e["chunks"] == 2 for e in maps)
    embeddings = [e for e in entries if e["what"] == "embeddings"]
    zoo_obj, spec, ds = _test_split(zoo)
    assert {e["variant"] for e in embeddings} == {"standard", "C"}
    assert all(e["images"] == len(ds) for e in embeddings)

    # a chunk is a plain npz; its maps are level_maps' for the class predicted on the original image
    entry = next(e for e in maps if e["variant"] == "C" and e["method"] == "integrated_gradients")
    assert entry["sha256"] == zoo_obj.manifest["variants"]["C"]["sha256"]
    folder = store.entry_dir(root, {k: v for k, v in entry.items() if k not in ("images", "chunks")})
    with np.load(folder / "chunk-000001.npz", allow_pickle=False) as z:
        assert z["maps"].shape == (1, 5, 32, 32) and list(z["levels"]) == [0, 1, 2, 3, 4]
        assert list(z["index"]) == [1]
        model = zoo_obj.entries["C"].model
        image = ds.images[1].numpy()
        target = int(model(ds.images[1:2]).argmax(1)[0])
        assert int(z["target"][0]) == target
        live = level_maps(model, image, "brightness", "integrated_gradients", target)
        np.testing.assert_allclose(z["maps"][0], live["maps"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(z["extra_delta"][0], [e["delta"] for e in live["extras"]], rtol=1e-3, atol=1e-5)
    assert "2 already stored" not in capsys.readouterr().err

    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0  # everything stored: nothing computed again
    assert "0 chunks computed" in capsys.readouterr().err


def test_stopped_and_resumed_gives_the_same_files(zoo, tmp_path, monkeypatch, capsys):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert pc.main(["--zoo", str(zoo), "--out", str(whole), *QUICK]) == 0

    real, written = store.write_chunk, []

    def stop_after_three(path, arrays):
        if len(written) == 3:
            raise KeyboardInterrupt  # Ctrl-C between two chunks
        real(path, arrays)
        written.append(path)

    monkeypatch.setattr(store, "write_chunk", stop_after_three)
    assert pc.main(["--zoo", str(zoo), "--out", str(parts), *QUICK]) == 130
    assert "rerun the same command" in capsys.readouterr().err
    assert len(list(parts.rglob("chunk-*.npz"))) == 3
    monkeypatch.setattr(store, "write_chunk", real)
    assert pc.main(["--zoo", str(zoo), "--out", str(parts), *QUICK]) == 0
    assert "7 chunks computed, 3 already stored" in capsys.readouterr().err
    assert _files(parts) == _files(whole)  # byte for byte, index included; no temporary file left
    assert not list(tmp_path.glob(".*lock"))


def test_a_changed_checkpoint_reuses_nothing(zoo, capsys):
    from models.checkpoints import atomic_torch_save, safe_torch_load, sha256_file

    args = ["--zoo", str(zoo), *QUICK]
    assert pc.main(args) == 0
    old_sha = json.loads((zoo / "zoo.json").read_text())["variants"]["standard"]["sha256"]
    ckpt = safe_torch_load(zoo / "standard.pt")
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim == 4)
    ckpt["model"][key] = ckpt["model"][key] * 1.5
    atomic_torch_save(ckpt, zoo / "standard.pt")
    manifest = json.loads((zoo / "zoo.json").read_text())
    manifest["variants"]["standard"]["sha256"] = sha256_file(zoo / "standard.pt")
    (zoo / "zoo.json").write_text(json.dumps(manifest))
    capsys.readouterr()

    zoo_obj, spec, ds = _test_split(zoo)
    store.attach(zoo_obj)
    model, image = zoo_obj.entries["standard"].model, ds.images[0].numpy()
    target = int(model(ds.images[:1]).argmax(1)[0])
    assert not store.has_maps(model, image, "brightness", "gradcam", target, (0, 1))  # the old sha's maps: not used
    assert store.stored_representations(model, spec, ds.images, "logits") is None

    assert pc.main(args) == 0  # standard's 4 map chunks and its embeddings again; C's all reused
    assert "5 chunks computed, 5 already stored" in capsys.readouterr().err
    assert (zoo / "precomputed" / "maps" / old_sha[:16]).is_dir()  # the old entries are kept, never read
    assert store.has_maps(model, image, "brightness", "gradcam", target, (0, 1))


def test_the_service_reads_stored_maps_and_computes_uploads(zoo, monkeypatch):
    import analysis.embeddings_whole_set as whole_set
    import analysis.per_image as per_image
    from analysis.service_api import LocalComputeService, MapsRequest, RepresentationsRequest

    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0
    zoo_obj, spec, ds = _test_split(zoo)
    service = LocalComputeService(zoo_obj)
    model, image = zoo_obj.entries["C"].model, ds.images[1].numpy()
    target = int(model(ds.images[1:2]).argmax(1)[0])
    expected = per_image.level_maps(model, image, "brightness", "integrated_gradients", target, (2,))

    real, calls = per_image.explain, []

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(per_image, "explain", counted)
    cam = service.maps(MapsRequest("C", image, "brightness", "gradcam", target, (2,)))  # one level, as the page
    assert cam.levels == [2] and cam.maps.shape == (1, 32, 32)
    ig = service.maps(MapsRequest("C", image, "brightness", "integrated_gradients", target, (2,)))
    np.testing.assert_allclose(ig.maps, expected["maps"], rtol=1e-4, atol=1e-5)
    assert "delta" in ig.extras[0]
    assert calls == []  # nothing computed for a gallery image

    upload = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    assert not store.has_maps(model, upload, "brightness", "integrated_gradients", target, (2,))
    out = service.maps(MapsRequest("C", upload, "brightness", "integrated_gradients", target, (2,)))
    assert calls == ["integrated_gradients"] and out.maps.shape == (1, 32, 32)
    calls.clear()
    service.maps(MapsRequest("C", image, "hue", "gradcam", target, (2,)))  # a kind not precomputed: computed
    assert calls == ["gradcam"]
    calls.clear()
    service.maps(MapsRequest("C", image, "brightness", "integrated_gradients", target, (2,), (("n_steps", 8),)))
    assert calls == ["integrated_gradients"]  # other settings: computed

    live = whole_set.whole_set_representations({"C": model}, ds.images, "logits")["C"]

    def refuse(*args, **kwargs):
        raise AssertionError("the whole set was computed although it is stored")

    monkeypatch.setattr(whole_set, "whole_set_representations", refuse)
    rep = service.representations(RepresentationsRequest(spec, "C", "logits"))
    np.testing.assert_allclose(rep.rep, live["rep"], rtol=1e-5, atol=1e-5)
    assert np.array_equal(rep.pred, live["pred"])


def test_the_dashboards_zoo_finds_the_store(zoo):
    from app.zoo_cache import open_zoo

    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0
    handle = open_zoo(zoo, "cpu")
    assert pc.dataset_spec(handle.zoo) == (handle.dataset_name, "test", handle.data_root, handle.image_size)
    _, spec, ds = _test_split(zoo)
    model = handle.model("standard")
    target = int(model(ds.images[:1]).argmax(1)[0])
    assert store.has_maps(model, ds.images[0].numpy(), "brightness", "gradcam", target, (0, 3))
    import copy

    assert store.has_maps(copy.deepcopy(model), ds.images[0].numpy(), "brightness", "gradcam", target, (3,))
    assert store.has_representations(model, spec, len(ds), "logits")
    assert not store.has_representations(model, spec, len(ds), "features")  # not asked for


def test_a_corrupt_file_is_reported_and_recomputed(zoo, caplog, capsys, monkeypatch):
    import analysis.per_image as per_image
    from analysis.service_api import LocalComputeService, MapsRequest

    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0
    zoo_obj, spec, ds = _test_split(zoo)
    settings = store.map_settings("standard", zoo_obj.manifest["variants"]["standard"]["sha256"], "brightness",
                                  "gradcam", tuple(ds.images.shape[1:]))  # fmt: skip
    chunk = store.entry_dir(zoo / "precomputed", settings) / store.chunk_name(0)
    chunk.write_bytes(chunk.read_bytes()[:100])  # truncated

    model, image = zoo_obj.entries["standard"].model, ds.images[0].numpy()
    target = int(model(ds.images[:1]).argmax(1)[0])
    real, calls = per_image.explain, []
    monkeypatch.setattr(per_image, "explain", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    with caplog.at_level(logging.WARNING, logger="analysis.precomputed_store"):
        out = LocalComputeService(zoo_obj).maps(MapsRequest("standard", image, "brightness", "gradcam", target, (1,)))
    assert out.maps.shape == (1, 32, 32) and calls == ["gradcam"]
    assert str(chunk) in caplog.text and "unreadable" in caplog.text

    capsys.readouterr()
    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0
    err = capsys.readouterr().err
    assert f"note: {chunk} is unreadable" in err and "1 chunks computed" in err
    with np.load(chunk, allow_pickle=False) as z:
        assert z["maps"].shape == (1, 5, 32, 32)
    assert list(chunk.parent.glob("chunk-000000.npz.old-*"))  # the unreadable file is kept aside, not deleted
    calls.clear()
    LocalComputeService(zoo_obj).maps(MapsRequest("standard", image, "brightness", "gradcam", target, (1,)))
    assert calls == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--methods", "nope"], "unknown nope"), (["--images", "5000"], "--images"), (["--kinds", "blur"], "--kinds"),
     (["--variants", "X"], "--variants"), (["--memory-budget", "lots"], "memory budget")],
)  # fmt: skip
def test_bad_input_is_one_error_line(zoo, capsys, extra, message):
    assert pc.main(["--zoo", str(zoo), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (zoo / "precomputed").exists()


def test_only_an_attached_model_with_the_same_target_is_looked_up(zoo):
    """Maps explain the class predicted on the original image: another target is not the stored map."""
    assert pc.main(["--zoo", str(zoo), *QUICK, "--no-embeddings"]) == 0
    zoo_obj, _, ds = _test_split(zoo)
    model = zoo_obj.entries["standard"].model.eval()
    with torch.no_grad():
        target = int(model(ds.images[1:2]).argmax(1)[0])
    assert store.stored_maps(model, ds.images[1].numpy(), "brightness", "gradcam", target, (4, 0)) is None
    store.attach(zoo_obj)
    found = store.stored_maps(model, ds.images[1].numpy(), "brightness", "gradcam", target, (4, 0))
    assert found is not None and found["levels"] == [4, 0]
    assert store.stored_maps(model, ds.images[1].numpy(), "brightness", "gradcam", (target + 1) % 10, (4,)) is None


def test_a_row_is_read_alone_and_equals_the_whole_array(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"index": np.arange(3), "maps": rng.random((3, 5, 7, 9), dtype=np.float32)}
    path = tmp_path / store.chunk_name(0)
    store.write_chunk(path, arrays)
    first = path.read_bytes()
    for row in range(3):
        assert np.array_equal(store.read_row(path, "maps", row), arrays["maps"][row])
    store.write_chunk(path, arrays)  # the same arrays give the same bytes; the earlier file is kept aside
    assert path.read_bytes() == first and len(list(tmp_path.glob("chunk-000000.npz.old-*"))) == 1
    with pytest.raises(store.CorruptChunk, match="unreadable"):
        store.read_row(path, "maps", 3)
    path.write_bytes(first[: len(first) // 2])
    with pytest.raises(store.CorruptChunk, match=str(path)):
        store.read_row(path, "maps", 0)


def test_the_heavy_service_copies_a_model_only_when_it_needs_it_and_the_copy_reads_the_store(zoo):
    from analysis.service_api import LocalComputeService
    from app.compute import PrivateCopies
    from app.zoo_cache import open_zoo

    assert pc.main(["--zoo", str(zoo), *QUICK]) == 0
    handle = open_zoo(zoo, "cpu")
    copies = PrivateCopies(handle)
    LocalComputeService(handle.zoo, models=copies)  # as the dashboard's heavy service: nothing copied at start
    assert [copies.peek(v) for v in handle.variants] == [None] * len(handle.variants)
    _, _, ds = _test_split(zoo)
    private = copies["standard"]
    assert private is not handle.model("standard") and copies.peek("C") is None
    target = int(private(ds.images[:1]).argmax(1)[0])
    assert store.has_maps(private, ds.images[0].numpy(), "brightness", "gradcam", target, (0, 3))
