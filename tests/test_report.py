"""analysis.claims rules on synthetic tables (holds / does not hold), and analysis.report end to end on the tiny zoo
(a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from analysis import claims as C
from analysis.report import EXPERIMENTS, FULL, QUICK, clear_previous, main, parse_overrides

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("standard", "C", "ADV", "ADV+C")


# ----------------------------------------------------------------------------- claim rules


def _ds(values: dict[str, float]) -> pd.DataFrame:
    rows = [{"variant": v, "kind": k, "level": lvl, "ds_mean": x * lvl, "ds_std": 0.0, "ds_median": x, "n": 10}
            for v, x in values.items() for k in ("brightness", "hue") for lvl in (1, 2)]  # fmt: skip
    return pd.DataFrame(rows)


def test_continuity_rule_holds_partly_and_fails():
    assert C.claim_continuity(_ds({"standard": 2.0, "C": 1.0, "ADV": 1.0, "ADV+C": 0.5})).verdict == C.HOLDS
    assert C.claim_continuity(_ds({"standard": 2.0, "C": 1.0, "ADV": 0.5, "ADV+C": 1.0})).verdict == C.PARTLY
    failed = C.claim_continuity(_ds({"standard": 1.0, "C": 2.0, "ADV": 0.5, "ADV+C": 1.0}))
    assert failed.verdict == C.FAILS and "C 4 vs standard 2" in failed.ours  # level-1 sum over the two kinds
    assert C.claim_continuity(None).verdict == C.NOT_MEASURED


def test_robustness_rules():
    rob = pd.DataFrame({"variant": VARIANTS, "clean_acc": [0.9, 0.9, 0.8, 0.8], "pgd_acc": [0.0, 0.05, 0.4, 0.3]})
    assert C.claim_robustness(rob, ("C", "standard")).verdict == C.HOLDS
    assert C.claim_robustness(rob, ("ADV+C", "ADV"), n_images=100).verdict == C.FAILS
    audit = pd.DataFrame({"variant": ["ADV", "ADV", "ADV+C", "ADV+C"], "attack": ["PGD-10", "PGD-50"] * 2,
                          "accuracy": [0.4, 0.35, 0.5, 0.1]})  # fmt: skip
    strongest = C.claim_robustness_strongest(audit)
    assert strongest.verdict == C.FAILS and "ADV+C PGD-50" in strongest.ours


def test_seeded_rules_report_mean_sd_and_noise():
    fair = pd.DataFrame({"variant": ["standard"] * 3 + ["C"] * 3, "seed": [0, 1, 2] * 2,
                         "test_acc": [0.80, 0.82, 0.84, 0.90, 0.91, 0.92]})  # fmt: skip
    claim = C.claim_fairness(fair)
    assert claim.verdict == C.HOLDS and "C 91.0 ± 1.0% vs standard 82.0 ± 2.0%" in claim.ours
    assert "3 seeds" in claim.ours and "noise" not in claim.ours
    close = fair.assign(test_acc=[0.80, 0.85, 0.90, 0.84, 0.86, 0.88])
    claim = C.claim_fairness(close)
    assert claim.verdict == C.INCONCLUSIVE and "within seed noise" in claim.ours  # noise decides nothing
    assert C.claim_fairness(fair.assign(test_acc=fair["test_acc"][::-1].to_numpy())).verdict == C.FAILS

    transfer = pd.concat([fair.assign(target="digits"),
                          fair.assign(target="digits", variant=fair["variant"].map({"standard": "ADV", "C": "ADV+C"}),
                                      test_acc=fair["test_acc"][::-1].to_numpy())])  # fmt: skip
    assert C.claim_transfer(transfer, "digits").verdict == C.PARTLY
    assert C.claim_transfer(transfer, "cifar10").verdict == C.NOT_MEASURED


def test_alpha_rules():
    df = pd.DataFrame({"alpha": [0.0, 0.0, 1.0, 1.0, 3.0, 3.0], "seed": [0, 1] * 3,
                       "test_acc": [0.90, 0.90, 0.89, 0.88, 0.87, 0.87],
                       "ds_level1_sum": [1.0, 1.2, 0.5, 0.4, 0.2, 0.1]})  # fmt: skip
    assert C.claim_alpha_continuity(df).verdict == C.HOLDS
    assert C.claim_alpha_accuracy(df).verdict == C.HOLDS
    worse = df.assign(ds_level1_sum=df["ds_level1_sum"][::-1].to_numpy(), test_acc=[0.9, 0.9, 0.8, 0.8, 0.7, 0.7])
    assert C.claim_alpha_continuity(worse).verdict == C.FAILS
    assert C.claim_alpha_accuracy(worse).verdict == C.FAILS
    assert C.claim_alpha_continuity(df[df["alpha"] == 0.0]).verdict == C.NOT_MEASURED


def test_probe_mask_share_and_discontinuity_rules():
    rows = []
    for v, acc in zip(VARIANTS, (0.5, 0.3, 0.4, 0.2), strict=True):
        rows += [
            {"variant": v, "probe": "sliding_puzzle", "level": 0, "level_label": "clean", "accuracy": 0.9},
            {"variant": v, "probe": "sliding_puzzle", "level": 2, "level_label": "2x2", "accuracy": acc},
        ]
    probes = pd.DataFrame(rows)
    assert C.claim_probe(probes, "sliding_puzzle").verdict == C.HOLDS
    assert C.claim_probe(probes, "channel_translation").verdict == C.NOT_MEASURED

    attr = pd.DataFrame({"variant": VARIANTS, "method": "gradcam", "mask_share": [0.5, 0.4, 0.5, 0.6],
                         "deletion_auc": 0.1, "insertion_auc": 0.2, "n_images": 8})  # fmt: skip
    assert C.claim_mask_share(attr, "gradcam").verdict == C.PARTLY
    assert C.claim_mask_share(attr.assign(mask_share=float("nan")), "gradcam").verdict == C.NOT_MEASURED

    ranks = pd.DataFrame({"variant": ["standard"] * 4 + ["C"] * 4, "rank": [1, 3, 5, 2, 1, 1, 1, 2]})
    assert C.claim_discontinuity(ranks).verdict == C.HOLDS
    assert C.claim_discontinuity(ranks.assign(rank=1)).verdict == C.FAILS


def test_evaluate_claims_covers_every_claim_and_frames():
    claims = C.evaluate_claims({})
    assert all(c.verdict == C.NOT_MEASURED for c in claims)
    frame = C.claims_frame(claims)
    assert list(frame.columns) == ["key", "claim", "paper", "paper_figure", "ours", "verdict", "rule"]
    assert frame["key"].is_unique and len(frame) >= 15
    assert C.PAPER["table2"]["ResNet18 / CIFAR-100"]["ADV+C"] == {"clean": 59.62, "adv": 54.04}


def test_settings_overrides():
    s = parse_overrides(QUICK, ["n_images=10", "alphas=0,2.5", "transfer_targets=digits", "fairness_test_limit=none"])
    assert (s.n_images, s.alphas, s.transfer_targets, s.fairness_test_limit) == (10, (0.0, 2.5), ("digits",), None)
    with pytest.raises(ValueError, match="expected key=value"):
        parse_overrides(FULL, ["no_such_setting=1"])
    assert len(FULL.seeds) >= 3 and QUICK.mode == "quick"


def test_clear_previous_only_touches_a_report_folder(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.csv").write_text("a\n1\n")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "summary.json").write_text(json.dumps({"something": "else"}))
    clear_previous(tmp_path, print)
    assert (tmp_path / "results" / "old.csv").is_file()  # not a report's summary: nothing removed
    (tmp_path / "summary.json").write_text(json.dumps({"format": "scl-report/1"}))
    clear_previous(tmp_path, print)
    assert not (tmp_path / "results").exists() and not (tmp_path / "summary.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- end to end

TINY = [
    "n_images=48", "rank_anchors=8", "pgd_images=16", "eps_images=8", "eps_values_255=0,8", "audit_images=8",
    "audit_steps=5,10", "attr_images=4", "ig_steps=8", "lime_samples=40", "deletion_steps=4", "stability_images=2",
    "embed_same_class=20", "alpha_train_limit=128", "alpha_val_size=32", "alpha_eval_images=48",
    "transfer_targets=digits", "transfer_train_limit=128", "transfer_test_limit=48", "transfer_min_steps=2",
    "fairness_train_limit=128", "fairness_test_limit=100", "fairness_width=4", "train_batch_size=64",
]  # fmt: skip


def _run(args: list[str], timeout: int = 1500) -> subprocess.CompletedProcess:
    """``python -m analysis.report ARGS``. It needs ~25 s of CPU; the generous timeout is for a machine shared with a
    training job, where the wall time can be ten times that."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "analysis.report", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.mark.timeout(1800)
def test_report_cli_end_to_end(tiny_zoo, tmp_path):
    out = tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    proc = _run(["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--threads", "1", *sets])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done in" in proc.stderr  # elapsed time per experiment

    report = (out / "REPORT.md").read_text()
    assert "## Claims" in report and "| claim | paper | paper's figure | ours | holds? |" in report
    for number in ("66.99%", "9.34%", "54.04%", "44.30%", "73.42%", "32.55%"):  # Table 2, both of the paper's rows
        assert number in report, number
    for heading in ("Table 1", "Figure 3", "Figure 4", "Figure 6", "Figure 8", "Figure 10", "Table 2", "Table 3",
                    "Table 4", "Settings and elapsed time"):  # fmt: skip
        assert f"## {heading}" in report or f"### {heading}" in report, heading

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["experiments"]) == set(EXPERIMENTS)
    assert all(e["status"] == "ok" for e in summary["experiments"].values()), summary["experiments"]
    csvs = sorted((out / "results").glob("*.csv"))
    jsons = sorted((out / "results").glob("*.json"))
    assert {p.stem for p in jsons} == set(EXPERIMENTS)
    for path in csvs:
        assert len(pd.read_csv(path)) > 0, path
    for path in jsons:
        doc = json.loads(path.read_text())
        assert doc["tables"] and all(len(rows) > 0 for rows in doc["tables"].values()), path
        assert doc["settings"] and doc["elapsed_s"] >= 0
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) >= 15 and claims["verdict"].isin(C.VERDICTS).all()

    listed = [f for e in summary["experiments"].values() for f in [*e["files"]["csv"], e["files"]["json"],
                                                                    *e["files"]["figures"]]]  # fmt: skip
    assert all((out / f).is_file() for f in listed)
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem.split("_")[0] for p in pngs} >= {"fig3", "fig4", "fig6", "fig8", "fig10"}
    for path in pngs:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.size[0] > 100 and im.size[1] > 100
        assert f"]({path.relative_to(out)})" in report  # embedded in the report


def test_report_cli_rejects_bad_arguments(tiny_zoo, tmp_path, capsys):
    assert main(["--zoo", str(tiny_zoo), "--out", str(tmp_path / "x"), "--skip", "nonsense", "--no-progress"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["--zoo", str(tmp_path / "no-zoo"), "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "zoo.json" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.timeout(1800)
def test_resume_reuses_valid_results_and_reruns_what_a_new_checkpoint_invalidates(tmp_path):
    import torch

    from models.checkpoints import atomic_torch_save, sha256_file
    from tests.conftest import make_tiny_zoo

    zoo, out = make_tiny_zoo(tmp_path / "zoo"), tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--threads", "1", *sets]
    assert main([*base, "--only", "continuity,fairness"]) == 0
    stamp = {n: (out / "results" / f"{n}.json").stat().st_mtime_ns for n in ("continuity", "fairness")}

    assert main([*base, "--only", "probes", "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())["experiments"]
    assert summary["continuity"]["reused"] and summary["fairness"]["reused"] and summary["probes"]["status"] == "ok"
    assert not summary["probes"].get("reused")
    assert {n: (out / "results" / f"{n}.json").stat().st_mtime_ns for n in stamp} == stamp  # not recomputed
    assert "## Figure 3" in (out / "REPORT.md").read_text()

    # a retrained ADV: what reads every variant is stale, fairness (trained from scratch) stays valid
    ckpt = torch.load(zoo / "ADV.pt", weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = ckpt["model"][key] + 0.01
    atomic_torch_save(ckpt, zoo / "ADV.pt")
    manifest = json.loads((zoo / "zoo.json").read_text())
    manifest["variants"]["ADV"]["sha256"] = sha256_file(zoo / "ADV.pt")
    (zoo / "zoo.json").write_text(json.dumps(manifest))

    assert main([*base, "--only", "continuity", "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())["experiments"]
    assert summary["fairness"]["reused"] and not summary["continuity"].get("reused")
    assert summary["continuity"]["status"] == "ok"
    assert summary["probes"]["status"] == "skipped" and not (out / "results" / "probes.json").exists()
    assert (out / "results" / "fairness.json").stat().st_mtime_ns == stamp["fairness"]
