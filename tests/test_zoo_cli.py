"""``python -m models.train_zoo`` end to end on a tiny run: cards record what ran, reruns skip finished work."""

from __future__ import annotations

import json

import pytest

from models import train_zoo


@pytest.mark.slow
def test_a_tiny_zoo_records_what_ran_and_a_rerun_keeps_it(tmp_path, capsys, one_thread):
    out, work = tmp_path / "zoo", tmp_path / "runs"
    argv = ["--out", str(out), "--work-dir", str(work), "--variants", "standard", "--dataset", "digits",
            "--train-limit", "100", "--batch-size", "40", "--warmup-steps", "1", "--epochs-scale", str(1 / 6),
            "--pgd-eval-size", "4", "--num-threads", "1", "--no-progress"]  # fmt: skip
    assert train_zoo.main(argv) == 0
    manifest = json.loads((out / "zoo.json").read_text())
    card = manifest["variants"]["standard"]["card"]
    assert card["dataset"]["name"] == "digits" and card["recipe"] == "cpu-default"
    assert (card["config"]["train_limit"], card["config"]["batch_size"], card["config"]["warmup_steps"]) == (100, 40, 1)
    assert card["epochs_run"] == 1.0 and card["config"]["epochs"] == pytest.approx(1.0)  # 6 epochs x 1/6
    assert manifest["overrides"]["train_limit"] == 100 and not train_zoo.has_quality_bars(manifest)
    assert "epochs run: 1" in (out / "cards" / "standard.md").read_text()
    capsys.readouterr()
    before = (out / "zoo.json").read_bytes()
    assert train_zoo.main(argv) == 0  # nothing left to do: neither retrained nor evaluated again
    assert "already in" in capsys.readouterr().err and (out / "zoo.json").read_bytes() == before
    assert train_zoo.main([*argv[:2], "--summary"]) == 0
    assert "quality bar" not in capsys.readouterr().out  # the shipped bars belong to the unmodified recipe only
    assert not any(p.name == "assets" for p in tmp_path.rglob("*"))
