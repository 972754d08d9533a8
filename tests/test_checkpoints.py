"""Checkpoints describe themselves, load safely, and zoos verify their files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from models.checkpoints import (
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    load_model,
    load_zoo,
    make_checkpoint,
    network_spec,
    write_zoo_manifest,
)

DATASET = {"name": "digits", "split": "train", "size": 8}


def _save(model, path, variant="standard", metrics=None):
    ckpt = make_checkpoint(
        model,
        variant=variant,
        network=network_spec("resnet18-cifar", 10, 4),
        config={"variant": variant, "seed": 0},
        dataset=DATASET,
        metrics=metrics or {"acc": 0.5},
    )
    atomic_torch_save(ckpt, path)
    return path


def test_round_trip_keeps_weights_and_description(tiny_model, tmp_path, batch):
    path = _save(tiny_model, tmp_path / "m.pt", metrics={"val_clean_acc": 0.91})
    model, meta = load_model(path)
    assert meta["variant"] == "standard" and meta["dataset"] == DATASET
    assert meta["metrics"]["val_clean_acc"] == 0.91 and meta["git_commit"]
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(batch[0]), tiny_model(batch[0]))
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp file


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "scl-checkpoint/1", "model": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_wrong_or_broken_files_are_clear_errors(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Semantic Continuity Lab checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    good = _save(tiny_model, tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")


def test_zoo_manifest_is_verified(tmp_path, tiny_model):
    for variant in ("standard", "C"):
        _save(tiny_model, tmp_path / f"{variant}.pt", variant=variant)
    write_zoo_manifest(tmp_path, {"standard": "standard.pt", "C": "C.pt"}, {"C": {"test_clean_acc": 0.5}})
    zoo = load_zoo(tmp_path)
    assert zoo.variants == ["standard", "C"]
    assert zoo["C"].card == {"test_clean_acc": 0.5}
    assert zoo.dataset == DATASET
    manifest = json.loads((tmp_path / "zoo.json").read_text())
    assert len(manifest["variants"]["C"]["sha256"]) == 64
    # Tamper with a file: the hash check must catch it.
    other = tiny_model.__class__(10, width=4)
    _save(other, tmp_path / "C.pt", variant="C")
    with pytest.raises(CheckpointError, match="sha256"):
        load_zoo(tmp_path)
    with pytest.raises(CheckpointError, match="no zoo.json"):
        load_zoo(tmp_path / "nowhere")


def test_refusals_are_worded_by_the_lab_and_point_at_the_importer(tmp_path, tiny_model):
    """A plain state_dict is not a checkpoint: the refusal names models.import_model. An unsafe pickle is refused in
    the lab's words, which never suggest turning weights_only off."""
    torch.save(tiny_model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"not a Semantic Continuity Lab checkpoint.*models\.import_model"):
        load_checkpoint(tmp_path / "weights.pt")
    torch.save(tiny_model, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "whole.pt")
    message = str(info.value)
    assert "refused" in message and "CifarResNet18" in message and "model.state_dict()" in message
    assert "weights_only" not in message
    (tmp_path / "w.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match="models.import_model"):
        load_checkpoint(tmp_path / "w.safetensors")


def test_zoo_roles_from_the_manifest_or_the_name(tmp_path, tiny_model):
    names = ["standard", "C", "ADV", "ADV+C", "standard+jitter", "ADV-mixed", "mine"]
    for variant in names:
        _save(tiny_model, tmp_path / f"{variant}.pt", variant=variant)
    write_zoo_manifest(tmp_path, {v: f"{v}.pt" for v in names}, {}, roles={"mine": "adversarial"})
    zoo = load_zoo(tmp_path)
    assert zoo.roles == {
        "standard": "baseline", "C": "constrained", "ADV": "adversarial", "ADV+C": "adversarial+constrained",
        "standard+jitter": "baseline+jitter", "ADV-mixed": "adversarial-mixed", "mine": "adversarial",
    }  # fmt: skip
    # A manifest written before roles existed: roles default from the names, unknown names are "other".
    manifest = json.loads((tmp_path / "zoo.json").read_text())
    for item in manifest["variants"].values():
        del item["role"]
    (tmp_path / "zoo.json").write_text(json.dumps(manifest))
    assert load_zoo(tmp_path).roles["mine"] == "other" and load_zoo(tmp_path).roles["C"] == "constrained"


def test_a_zoo_whose_manifest_and_checkpoints_disagree_is_refused(tmp_path):
    """The mixed-zoo bug: a manifest saying digits over checkpoints trained on fashion-mnist-m must not load."""
    from models.errors import ZooError
    from tests.conftest import make_tiny_zoo

    make_tiny_zoo(tmp_path, dataset={"name": "fashion-mnist-m", "split": "train", "size": 60000, "num_classes": 10})
    load_zoo(tmp_path)  # consistent: loads
    manifest = json.loads((tmp_path / "zoo.json").read_text())
    manifest["dataset"]["name"] = "digits"
    (tmp_path / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match="dataset differ.*digits.*fashion-mnist-m"):
        load_zoo(tmp_path)
    with pytest.raises(CheckpointError):  # also a CheckpointError, which the dashboard and report catch
        load_zoo(tmp_path)
