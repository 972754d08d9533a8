"""analysis.claims rules on synthetic tables (holds / does not hold), and analysis.report end to end on the tiny zoo
(a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import claims as C
from analysis import roles as R
from analysis.report import EXPERIMENTS, FULL, QUICK, clear_previous, main, parse_overrides
from models.errors import SettingsError

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("standard", "C", "ADV", "ADV+C")


# ----------------------------------------------------------------------------- claim rules on constructed tables

ROLES = {v: R.variant_role(v) for v in VARIANTS}


def _ds_per_image(shift: dict[str, float], n: int = 60) -> dict[str, dict[str, pd.DataFrame]]:
    rng = np.random.default_rng(0)
    base = rng.random(n)
    rows = [
        pd.DataFrame({"variant": v, "kind": k, "level": 1, "image": range(n), "ds": base + x + 0.01 * rng.random(n)})
        for v, x in shift.items()
        for k in ("brightness", "hue")
    ]
    return {"continuity": {"per_image": pd.concat(rows, ignore_index=True)}}


def test_continuity_claim_holds_partly_and_fails_by_the_interval():
    holds = C.claim_continuity(_ds_per_image({"standard": 2.0, "C": 1.0, "ADV": 1.0, "ADV+C": 0.5}), ROLES)
    assert holds.verdict == C.HOLDS and [t["verdict"] for t in holds.tests] == [C.HOLDS, C.HOLDS]
    partly = C.claim_continuity(_ds_per_image({"standard": 2.0, "C": 1.0, "ADV": 0.5, "ADV+C": 1.0}), ROLES)
    assert partly.verdict == C.PARTLY  # the pairs disagree significantly
    tie = C.claim_continuity(_ds_per_image({"standard": 1.0, "C": 1.0, "ADV": 1.0, "ADV+C": 1.0}), ROLES)
    assert tie.verdict == C.INCONCLUSIVE
    assert C.claim_continuity({}, ROLES).verdict == C.NOT_MEASURED
    row = holds.row()
    assert row["effect_ci"].startswith("C vs standard: -2") and "60 images" in row["n"] and "Holm" in row["p"]


def test_robustness_claim_uses_mcnemar_on_per_image_results():
    n = 200
    per = pd.concat([pd.DataFrame({"variant": v, "image": range(n), "clean": True, "pgd10": np.arange(n) < k})
                     for v, k in (("standard", 0), ("C", 40), ("ADV", 90), ("ADV+C", 60))])  # fmt: skip
    res = {"robustness": {"per_image": per}}
    better = C.claim_robustness(res, ROLES, (R.CONSTRAINED, R.BASELINE))
    assert better.verdict == C.HOLDS and "McNemar" in better.tests[0]["test"]
    assert better.tests[0]["p"] == pytest.approx(2 * 0.5**40)  # 40 vs 0 discordant images
    worse = C.claim_robustness(res, ROLES, (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL))
    assert worse.verdict == C.FAILS  # a significant reversal does not hold
    assert C.claim_robustness(res, ROLES, (R.ADVERSARIAL_CONSTRAINED, R.ADVERSARIAL), strongest=True).verdict == \
        C.NOT_MEASURED  # fmt: skip


def test_seeded_claims_use_welch_and_a_tie_is_inconclusive():
    fair = pd.DataFrame({"variant": ["standard"] * 5 + ["C"] * 5, "seed": list(range(5)) * 2,
                         "test_acc": [0.80, 0.81, 0.82, 0.83, 0.84, 0.90, 0.91, 0.92, 0.93, 0.94]})  # fmt: skip
    claim = C.claim_fairness({"fairness": {"fairness": fair}}, ROLES)
    assert claim.verdict == C.HOLDS and claim.tests[0]["test"] == "Welch t-test" and claim.tests[0]["n_seeds"] == 5
    close = fair.assign(test_acc=[0.80, 0.85, 0.90, 0.82, 0.88] * 2)
    assert C.claim_fairness({"fairness": {"fairness": close}}, ROLES).verdict == C.INCONCLUSIVE
    flipped = fair.assign(test_acc=fair["test_acc"][::-1].to_numpy())
    assert C.claim_fairness({"fairness": {"fairness": flipped}}, ROLES).verdict == C.FAILS
    transfer = fair.assign(target="digits", kind="transfer (new classes)")
    assert C.claim_transfer({"transfer": {"transfer": transfer}}, ROLES, "digits").verdict == C.HOLDS
    assert C.claim_transfer({"transfer": {"transfer": transfer}}, ROLES, "cifar10").verdict == C.NOT_MEASURED


def test_controls_are_compared_when_the_zoo_has_them():
    roles = {**ROLES, "standard+jitter": R.JITTER_CONTROL}
    claim = C.claim_continuity(_ds_per_image({"standard": 2.0, "C": 1.0, "standard+jitter": 1.5}), roles)
    assert [(t["comparison"], t["kind"]) for t in claim.tests] == [("C vs standard", "paper"),
                                                                   ("C vs standard+jitter", "control")]  # fmt: skip


def test_discontinuity_existence_with_clopper_pearson():
    exist = pd.DataFrame({"variant": ["standard"], "n_anchors": [200], "outranked_anchors": [150], "share": [0.75],
                          "ci_low": [0.0], "ci_high": [1.0], "median_candidates": [999]})  # fmt: skip
    claim = C.claim_discontinuity({"neighbourhood_rank": {"existence": exist}}, ROLES)
    assert claim.verdict == C.HOLDS and claim.tests[0]["ci_low"] > 0.5
    few = exist.assign(n_anchors=10, outranked_anchors=6)
    assert C.claim_discontinuity({"neighbourhood_rank": {"existence": few}}, ROLES).verdict == C.INCONCLUSIVE


def test_evaluate_claims_covers_every_claim_quick_mode_decides_nothing():
    claims = C.evaluate_claims({}, ROLES)
    assert all(c.verdict == C.NOT_MEASURED for c in claims)
    frame = C.claims_frame(claims)
    assert list(frame.columns) == C.CLAIM_COLUMNS and frame["key"].is_unique and len(frame) >= 15
    quick = C.evaluate_claims(_ds_per_image({"standard": 2.0, "C": 1.0}), ROLES, decided=False)
    assert {c.verdict for c in quick} == {C.NOT_MEASURED, C.QUICK_VERDICT}
    assert list(C.tests_frame(quick).columns) == C.TEST_COLUMNS
    assert C.PAPER["table2"]["ResNet18 / CIFAR-100"]["ADV+C"] == {"clean": 59.62, "adv": 54.04}


def test_settings_overrides():
    s = parse_overrides(QUICK, ["n_images=10", "alphas=0,2.5", "transfer_targets=digits", "fairness_test_limit=none",
                                "transfer_train_limit=100"])  # fmt: skip
    assert (s.n_images, s.alphas, s.transfer_targets, s.fairness_test_limit) == (10, (0.0, 2.5), ("digits",), None)
    assert s.transfer_train_limit == 100
    with pytest.raises(SettingsError, match="expected key=value"):
        parse_overrides(FULL, ["no_such_setting=1"])
    with pytest.raises(SettingsError, match="n_images"):
        parse_overrides(FULL, ["n_images=abc"])
    assert len(FULL.seeds) >= 3 and len(FULL.transfer_seeds) >= 5 and len(FULL.fairness_seeds) >= 5
    assert FULL.pgd_images >= 1000 and FULL.audit_images == FULL.pgd_images and FULL.rank_anchors >= 200
    assert FULL.fairness_train_limit >= 12000 and QUICK.mode == "quick"


def test_cli_names_a_bad_setting(tiny_zoo, tmp_path, capsys):
    assert main(["--zoo", str(tiny_zoo), "--out", str(tmp_path / "x"), "--set", "n_images=abc", "--no-progress"]) == 2
    assert "n_images" in capsys.readouterr().err


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
    "n_images=48", "rank_anchors=8", "pgd_images=16", "eps_images=8", "eps_values_255=0,8", "audit_images=16",
    "audit_steps=3", "attr_images=4", "ig_steps=8", "lime_samples=40", "deletion_steps=4", "stability_images=2",
    "embed_same_class=20", "alpha_train_limit=128", "alpha_val_size=32", "alpha_eval_images=48",
    "transfer_targets=digits", "transfer_train_limit=128", "domain_shift_train_limit=128", "transfer_test_limit=48",
    "transfer_min_steps=2",
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
    proc = _run(["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1", *sets])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done in" in proc.stderr  # elapsed time per experiment

    report = (out / "REPORT.md").read_text()
    assert (
        "## Claims" in report and "| claim | paper | paper's figure | ours | effect [95% CI] | test | p | n |" in report
    )
    assert "Quick mode: not deciding claims" in report and "about these checkpoints" in report
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
    assert list(claims.columns) == C.CLAIM_COLUMNS
    assert set(claims["verdict"]) <= {C.QUICK_VERDICT, C.NOT_MEASURED}  # quick mode decides no claim
    tests = pd.read_csv(out / "claim_tests.csv")
    assert list(tests.columns) == C.TEST_COLUMNS and len(tests) >= 20
    assert set(tests["kind"]) == {"paper", "control"}  # the tiny zoo has the controls
    robust = pd.read_csv(out / "results" / "attack_audit_summary.csv")
    assert (robust["worst_acc"] <= robust[["pgd_acc", "apgd_ce_acc", "apgd_t_acc"]].min(axis=1)).all()
    ran = json.loads((out / "results" / "probes.json").read_text())["ran"]
    assert ran == {"n_images": 48}  # what ran, not what was asked

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
    _assert_figures_redraw_the_same(out, summary)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def _assert_figures_redraw_the_same(out: Path, summary: dict) -> None:
    """Every experiment's figures drawn again from its tables as read back from disk (``--redraw``) are the ones
    the run drew: the same files, pixel for pixel."""
    from analysis.results_store import read_results

    _, results = read_results(out)
    for name, entry in summary["experiments"].items():
        if not entry["files"]["figures"]:
            continue
        assert EXPERIMENTS[name].draw is not None, f"{name} draws figures but cannot draw them again"
        again = out / "redrawn" / name
        again.mkdir(parents=True)
        drawn = EXPERIMENTS[name].draw(results[name], again)
        assert sorted(Path(p).name for p in drawn) == sorted(Path(f).name for f in entry["files"]["figures"]), name
        for f in entry["files"]["figures"]:
            assert np.array_equal(_pixels(out / f), _pixels(again / Path(f).name)), f"{name}: {f} differs"


def test_a_reused_results_figures_are_drawn_again_from_its_tables(tiny_zoo, tmp_path):
    """A missing figure of a reused result is drawn again (not recomputed); ``--redraw`` draws all of them again
    and records the commit that drew them."""
    out = tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1", *sets]
    assert main([*base, "--only", "continuity,eps_sweep"]) == 0
    fig = out / "figures" / "fig3_continuity.png"
    before, tables = _pixels(fig), (out / "results" / "continuity.csv").read_bytes()
    fig.unlink()
    assert main([*base, "--only", "continuity,eps_sweep", "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())["experiments"]
    assert summary["continuity"]["reused"] and summary["eps_sweep"]["reused"]  # nothing recomputed
    assert summary["probes"] == {"status": "skipped", "left_out": "--only"}  # why it is missing
    assert "experiment `probes` skipped (left out: --only)" in (out / "REPORT.md").read_text()
    assert np.array_equal(_pixels(fig), before) and (out / "results" / "continuity.csv").read_bytes() == tables
    assert "figures_drawn" in json.loads((out / "results" / "continuity.json").read_text())
    assert "figures_drawn" not in json.loads((out / "results" / "eps_sweep.json").read_text())  # had its figure

    record = out / "results" / "eps_sweep.json"  # as if an earlier commit had named its figure otherwise
    doc = json.loads(record.read_text())
    renamed = out / "figures" / "eps_sweep_old_name.png"
    shutil.copy(out / doc["files"]["figures"][0], renamed)
    doc["files"]["figures"] = ["figures/eps_sweep_old_name.png"]
    record.write_text(json.dumps(doc))
    assert main([*base, "--only", "continuity,eps_sweep", "--resume", "--redraw"]) == 0
    assert "figures_drawn" in json.loads(record.read_text())
    assert not renamed.exists()  # the redraw leaves no figure of an older name behind
    assert all((out / f).is_file() for f in json.loads(record.read_text())["files"]["figures"])
    assert json.loads((out / "summary.json").read_text())["experiments"]["eps_sweep"]["reused"]


def test_redraw_needs_resume(tiny_zoo, tmp_path, capsys):
    assert main(["--zoo", str(tiny_zoo), "--out", str(tmp_path / "r"), "--redraw", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


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
    from models.version import git_commit
    from tests.conftest import make_tiny_zoo

    zoo, out = make_tiny_zoo(tmp_path / "zoo"), tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1", *sets]
    assert main([*base, "--only", "continuity,fairness"]) == 0
    first = json.loads((out / "results" / "continuity.json").read_text())
    assert first["git_commit"] == git_commit()  # the code each result was computed on
    first["git_commit"] = "0123456789abcdef0123"  # as if computed by an earlier session's code
    (out / "results" / "continuity.json").write_text(json.dumps(first))
    stamp = {n: (out / "results" / f"{n}.json").stat().st_mtime_ns for n in ("continuity", "fairness")}

    assert main([*base, "--only", "probes", "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())["experiments"]
    assert summary["continuity"]["reused"] and summary["fairness"]["reused"] and summary["probes"]["status"] == "ok"
    assert summary["continuity"]["git_commit"] == "0123456789abcdef0123"  # a reused result keeps its own commit
    assert summary["probes"]["git_commit"] == git_commit()
    settings_rows = [line for line in (out / "REPORT.md").read_text().splitlines() if line.startswith("| continuity")]
    assert any("| 0123456789 |" in line for line in settings_rows), settings_rows
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


@pytest.mark.timeout(1800)
def test_a_kept_work_dir_lets_the_colour_bias_experiment_reuse_its_finished_runs(tiny_zoo, tmp_path):
    """A second report sharing --work-dir trains only the runs it lacks: seed 0 is loaded, not retrained, and gives
    the same row; so a stopped experiment (or one split by seeds over processes) ends with the same numbers."""
    import pandas as pd

    work, out = tmp_path / "work", tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1",
            "--work-dir", str(work), "--only", "fairness", *sets]  # fmt: skip
    assert main([*base, "--set", "fairness_seeds=0"]) == 0
    first = pd.read_csv(out / "results" / "fairness.csv")
    finished = sorted(work.glob("fairness/*/seed-0/model.pt"))
    stamps = [p.stat().st_mtime_ns for p in finished]
    assert len(finished) == len(first) >= 2

    assert main([*base, "--set", "fairness_seeds=0,1", "--resume"]) == 0
    both = pd.read_csv(out / "results" / "fairness.csv")
    assert [p.stat().st_mtime_ns for p in finished] == stamps  # seed 0 loaded, not retrained
    assert sorted(both["seed"].unique()) == [0, 1] and len(list(work.glob("fairness/*/seed-1/model.pt"))) == len(first)
    again = both[both["seed"] == 0].drop(columns="train_seconds").reset_index(drop=True)
    pd.testing.assert_frame_equal(again, first.drop(columns="train_seconds"))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("variants", [{"standard": "standard.pt", "C": "C.pt"},
                                      {"standard": "standard.pt", "mine": "C.pt", "ADV": "ADV.pt"}])  # fmt: skip
def test_report_runs_what_applies_to_the_variants_present(tmp_path, variants):
    from models.checkpoints import write_zoo_manifest
    from tests.conftest import make_tiny_zoo

    zoo = make_tiny_zoo(tmp_path / "zoo")
    write_zoo_manifest(zoo, variants, {v: {"variant": v} for v in variants}, name="small")
    out = tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    only = "continuity,robustness,attack_audit,probes,neighbourhood_rank,eps_sweep"
    args = ["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1", "--only", only]
    assert main([*args, *sets]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert all(summary["experiments"][n]["status"] == "ok" for n in only.split(","))
    assert summary["roles"] == {v: R.variant_role(v) if v != "mine" else "other" for v in variants}
    tests = pd.read_csv(out / "claim_tests.csv")
    assert set(tests["comparison"]) <= {"C vs standard", "standard"}  # only the pair that is there; `mine` has none
    report = (out / "REPORT.md").read_text()
    assert all(f"| {v} |" in report for v in variants)


@pytest.mark.timeout(1800)
def test_an_interrupted_report_keeps_finished_experiments_exits_130_and_resumes_the_rest(tmp_path, monkeypatch,
                                                                                         capsys):  # fmt: skip
    """Ctrl-C inside an experiment (a training step's TrainingInterrupted) is not an experiment failure: the report
    stops with exit 130, what finished before is on disk, and --resume runs only what is missing."""
    import dataclasses

    from models.runs import TrainingInterrupted
    from tests.conftest import make_tiny_zoo

    zoo, out = make_tiny_zoo(tmp_path / "zoo"), tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    args = ["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1",
            "--only", "continuity,neighbourhood_rank,probes", *sets]  # fmt: skip
    calls: list[str] = []
    originals = {n: EXPERIMENTS[n] for n in ("continuity", "neighbourhood_rank", "probes")}

    def counted(name: str, interrupt: bool = False):
        def run(ctx):
            calls.append(name)
            if interrupt:
                raise TrainingInterrupted(tmp_path / "run", 3)
            return originals[name].run(ctx)

        return dataclasses.replace(originals[name], run=run)

    for name in originals:
        monkeypatch.setitem(EXPERIMENTS, name, counted(name, interrupt=name == "neighbourhood_rank"))
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun with --resume" in err and "FAILED" not in err, err[-2000:]
    assert calls == ["continuity", "neighbourhood_rank"]
    assert (out / "results" / "continuity.json").is_file() and (out / "results" / "continuity.csv").is_file()
    assert not (out / "results" / "neighbourhood_rank.json").exists() and not (out / "results" / "probes.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert {n: summary["experiments"][n]["status"] for n in originals} == {
        "continuity": "ok", "neighbourhood_rank": "interrupted", "probes": "not run"}  # fmt: skip
    stamp = (out / "results" / "continuity.json").stat().st_mtime_ns

    calls.clear()
    for name in originals:
        monkeypatch.setitem(EXPERIMENTS, name, counted(name))
    assert main([*args, "--resume"]) == 0
    assert calls == ["neighbourhood_rank", "probes"]  # continuity is not run again
    summary = json.loads((out / "summary.json").read_text())
    assert "interrupted" not in summary and summary["experiments"]["continuity"]["reused"]
    assert all(summary["experiments"][n]["status"] == "ok" for n in originals)
    assert (out / "results" / "continuity.json").stat().st_mtime_ns == stamp
