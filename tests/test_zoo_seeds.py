"""Seeds as a dimension of a zoo: ``train_zoo --seeds`` trains replicas, the manifest lists them, load_zoo picks one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from models import train_zoo
from models.checkpoints import CheckpointError, load_zoo, sha256_file
from models.replicas import common_seeds, entry_for_seed, variant_replicas, zoo_seeds


def seeds_argv(out: Path, work: Path, *seeds: int) -> list[str]:
    return ["--out", str(out), "--work-dir", str(work), "--variants", "standard", "C", "--dataset", "digits",
            "--train-limit", "80", "--batch-size", "40", "--warmup-steps", "1", "--epochs-scale", str(1 / 6),
            "--pgd-eval-size", "4", "--num-threads", "1", "--no-progress", "--seeds", *map(str, seeds)]  # fmt: skip


@pytest.mark.slow
def test_seeds_train_replicas_per_variant_each_fine_tune_from_its_own_seed(tmp_path, capsys, one_thread):
    out, work = tmp_path / "zoo", tmp_path / "runs"
    assert train_zoo.main(seeds_argv(out, work, 0, 1)) == 0
    assert train_zoo.main(seeds_argv(out, work, 2)) == 0  # a later session adds a seed
    err = capsys.readouterr().err
    assert "standard: already in" not in err and "(seed 1): already" not in err  # seed 2 alone was asked for
    assert "[zoo] C (seed 2): training" in err and "[zoo] C (seed 1): training" in err

    manifest = json.loads((out / "zoo.json").read_text())
    assert zoo_seeds(manifest) == {"standard": [0, 1, 2], "C": [0, 1, 2]}
    assert common_seeds(manifest) == [0, 1, 2]
    for variant in ("standard", "C"):
        reps = variant_replicas(manifest, variant)
        assert [r.card["config"]["seed"] for r in reps] == [0, 1, 2]  # each card says the seed it was trained with
        assert len({sha256_file(out / r.file) for r in reps}) == 3  # three different trainings
        assert all(sha256_file(out / r.file) == r.sha256 for r in reps)
    for seed in (1, 2):  # C of seed s is fine-tuned from standard of seed s, not from seed 0
        init = entry_for_seed(manifest, "C", seed).card["config"]["init"]
        assert Path(init) == work / f"seed{seed}" / "standard" / "model.pt"
    assert Path(entry_for_seed(manifest, "C", 0).card["config"]["init"]) == work / "standard" / "model.pt"

    one = load_zoo(out, seed=1)
    assert one.variants == ["standard", "C"]
    assert one["C"].path == out / "seeds" / "1" / "C.pt" and one["C"].card["config"]["seed"] == 1
    assert load_zoo(out)["C"].path == out / "C.pt"  # the primary checkpoint by default
    with pytest.raises(CheckpointError, match=r"no variant has a checkpoint of seed 7 \(seeds: \[0, 1, 2\]\)"):
        load_zoo(out, seed=7)

    before = (out / "zoo.json").read_bytes()
    capsys.readouterr()
    assert train_zoo.main(seeds_argv(out, work, 0, 1, 2)) == 0  # up to date: nothing retrained or rewritten
    assert capsys.readouterr().err.count("already in") == 6 and (out / "zoo.json").read_bytes() == before

    # the report over the three seeds: claims pooled with the seed as the top level, n = seeds x images
    from analysis.report import main as report_main

    report = tmp_path / "report"
    assert report_main(["--zoo", str(out), "--out", str(report), "--quick", "--only", "continuity,fairness",
                        "--set", "n_images=12", "--no-progress", "--device", "cpu",
                        "--zoo-seeds", "all"]) == 0  # fmt: skip
    assert "seed 1: fairness not repeated (it reads no zoo checkpoint" in capsys.readouterr().err
    assert (report / "results" / "fairness.json").is_file()  # the primary seed's report: run once, there
    assert not (report / "seeds" / "1" / "results" / "fairness.json").exists()
    seed1 = json.loads((report / "seeds" / "1" / "summary.json").read_text())["experiments"]
    assert seed1["fairness"]["left_out"] == "run once, in the primary seed's report"  # why it is missing there
    assert seed1["probes"]["left_out"] == "--only"
    assert "Run once, in the primary seed's report, and pooled once: fairness" in (report / "REPORT.md").read_text()
    claims = pd.read_csv(report / "across_seeds" / "claims.csv")
    measured = claims[claims["seeds_per_variant"].notna()]
    colour = measured["key"].str.startswith("fairness")
    assert colour.sum() == 2 and (~colour).sum() > 0
    assert set(measured.loc[~colour, "seeds_per_variant"]) == {3}
    assert set(measured.loc[~colour, "scope"]) == {"about the training method"}  # three independently trained seeds
    # the colour bias rests on its own runs (quick: one training seed), not on three copies of them
    assert set(measured.loc[colour, "seeds_per_variant"]) == {1}
    assert set(measured.loc[colour, "scope"]) == {"about these checkpoints"}
    tests = pd.read_csv(report / "across_seeds" / "claim_tests.csv")
    assert tests["n"].astype(str).str.contains("3 seed").any()
    per_seed = pd.read_csv(report / "across_seeds" / "claims_per_seed.csv")
    assert sorted(per_seed["training_seed"].unique()) == [0, 1, 2]


@pytest.mark.slow
def test_a_lost_work_dir_is_restored_from_the_zoo_not_trained_again(tmp_path, capsys, one_thread):
    """A new session (runs/ gone, the zoo kept): the zoo's checkpoints of the same recipe and flags are put back
    as the finished runs, so they are neither retrained nor re-evaluated, and a fine-tune added later starts from
    the zoo's standard of its own seed."""
    out, work = tmp_path / "zoo", tmp_path / "runs"
    standard_only = [a for a in seeds_argv(out, work, 0, 1) if a != "C"]
    assert train_zoo.main(standard_only) == 0
    manifest = json.loads((out / "zoo.json").read_text())
    seed1_standard = entry_for_seed(manifest, "standard", 1)
    shutil.rmtree(work)
    capsys.readouterr()

    assert train_zoo.main(seeds_argv(out, work, 0, 1)) == 0
    err = capsys.readouterr().err
    assert err.count("its run folder was gone: restored from the zoo") == 2, err  # standard of seeds 0 and 1
    assert "[zoo] standard (seed 1): training" not in err and "[zoo] C (seed 1): training" in err
    restored = work / "seed1" / "standard" / "model.pt"
    assert sha256_file(restored) == seed1_standard.sha256  # the very checkpoint C of seed 1 starts from
    manifest = json.loads((out / "zoo.json").read_text())
    assert entry_for_seed(manifest, "standard", 1).sha256 == seed1_standard.sha256  # not rewritten
    assert Path(entry_for_seed(manifest, "C", 1).card["config"]["init"]) == restored

    other_flags = [a if a != "80" else "60" for a in seeds_argv(out, tmp_path / "runs2", 1)]  # another train limit
    capsys.readouterr()
    assert train_zoo.main([a for a in other_flags if a != "C"]) == 0
    err = capsys.readouterr().err
    assert "restored from the zoo" not in err and "[zoo] standard (seed 1): training" in err


@pytest.mark.slow
def test_a_fine_tune_alone_on_a_new_machine_starts_from_the_zoos_standard(tmp_path, capsys, one_thread):
    """``--variants C`` alone with the work dir gone: C of each seed fine-tunes from the zoo's standard of that
    seed (put back into the work dir), and a seed whose standard the zoo lacks is a clear error, not a traceback."""
    out, work = tmp_path / "zoo", tmp_path / "runs"
    assert train_zoo.main([a for a in seeds_argv(out, work, 0, 1) if a != "C"]) == 0
    seed1_standard = entry_for_seed(json.loads((out / "zoo.json").read_text()), "standard", 1)
    shutil.rmtree(work)
    capsys.readouterr()

    c_only = [a for a in seeds_argv(out, work, 0, 1) if a != "standard"]
    assert train_zoo.main(c_only) == 0
    err = capsys.readouterr().err
    assert "[zoo] standard (seed 1): restored from" in err and "[zoo] C (seed 1): training" in err, err
    assert "[zoo] standard (seed 1): training" not in err
    manifest = json.loads((out / "zoo.json").read_text())
    c1 = entry_for_seed(manifest, "C", 1)
    assert Path(c1.card["config"]["init"]) == work / "seed1" / "standard" / "model.pt"
    assert sha256_file(work / "seed1" / "standard" / "model.pt") == seed1_standard.sha256

    assert train_zoo.main([a for a in seeds_argv(out, work, 3) if a != "standard"]) == 2  # the zoo has no standard 3
    err = capsys.readouterr().err
    assert "C (seed 3) fine-tunes from standard of the same seed" in err and "add standard to --variants" in err
    assert "Traceback" not in err


def only_variant(argv: list[str], variant: str) -> list[str]:
    i = argv.index("--variants")
    return [*argv[: i + 1], variant, *argv[i + 3 :]]


@pytest.mark.slow
def test_two_processes_train_different_variants_into_one_zoo(tmp_path, one_thread):
    """The zoo's lock is held only while a finished seed is published, not through training: C and ADV trained
    into one zoo by two processes at once both land, neither losing the other's checkpoint."""
    out, work = tmp_path / "zoo", tmp_path / "runs"
    assert train_zoo.main([a for a in seeds_argv(out, work, 0) if a != "C"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "models.train_zoo", *only_variant(seeds_argv(out, work, 0), v)],
                              cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for v in ("C", "ADV")]  # fmt: skip
    done = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in done]
    manifest = json.loads((out / "zoo.json").read_text())
    assert set(manifest["variants"]) == {"standard", "C", "ADV"}
    for variant in ("standard", "C", "ADV"):
        assert sha256_file(out / f"{variant}.pt") == manifest["variants"][variant]["sha256"]


@pytest.mark.slow
def test_a_seed_that_cannot_publish_is_kept_and_published_by_the_rerun(tmp_path, capsys, one_thread, monkeypatch):
    """Another process holding the zoo's lock past the wait: a clear error, the trained and evaluated run kept,
    and the rerun publishes it without training or evaluating again."""
    out, work = tmp_path / "zoo", tmp_path / "runs"
    argv = [a for a in seeds_argv(out, work, 0) if a != "C"]
    code = ("import sys, time\nfrom models.safe_output import folder_lock\n"
            "with folder_lock(sys.argv[1], 'zoo build'):\n"
            "    print('locked', flush=True)\n    time.sleep(600)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(train_zoo, "PUBLISH_WAIT_S", 1.0)
        assert train_zoo.main(argv) != 0
        err = capsys.readouterr().err
        assert "is in use by another process" in err and f"pid {holder.pid}" in err
        assert (work / "standard" / "model.pt").is_file() and not (out / "zoo.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train_zoo.main(argv) == 0
    err = capsys.readouterr().err
    assert "[zoo] standard: evaluated earlier" in err and "training in" not in err
    assert json.loads((out / "zoo.json").read_text())["variants"]["standard"]["sha256"] == sha256_file(
        work / "standard" / "model.pt"
    )


def test_seeds_without_the_primary_need_a_zoo_that_has_it(tmp_path, capsys):
    code = train_zoo.main(seeds_argv(tmp_path / "zoo", tmp_path / "runs", 1, 2))
    assert code == 2
    err = capsys.readouterr().err
    assert "has no seed-0 checkpoint of standard, C" in err and "add 0 to --seeds" in err
    assert not (tmp_path / "runs").exists()  # refused before any training


def test_repeated_seeds_are_refused(tmp_path, capsys):
    assert train_zoo.main(seeds_argv(tmp_path / "zoo", tmp_path / "runs", 0, 0)) == 2
    assert "give distinct seeds" in capsys.readouterr().err


def test_a_manifest_without_replicas_reads_as_one_seed_per_variant():
    manifest = {"variants": {"standard": {"file": "standard.pt", "sha256": "a", "card": {"config": {"seed": 3}}},
                             "C": {"file": "C.pt", "sha256": "b", "card": {}}}}  # fmt: skip
    assert zoo_seeds(manifest) == {"standard": [3], "C": [0]}
    assert common_seeds(manifest) == [] and common_seeds(manifest, ["C"]) == [0]
    assert entry_for_seed(manifest, "standard", 3).primary and entry_for_seed(manifest, "standard", 0) is None


def test_an_experiment_that_reads_no_zoo_checkpoint_is_pooled_once(monkeypatch, tmp_path):
    """The colour bias trains its own networks from scratch: every zoo seed's report would repeat the same runs,
    and stacking the copies would count one set of runs as three replications. It is pooled once, as the
    primary seed's report has it; a measurement is stacked per seed."""
    from analysis import seed_report

    assert seed_report.zoo_independent() == ["fairness"]
    fair = pd.DataFrame({"variant": ["standard", "C"] * 2, "seed": [0, 0, 1, 1], "test_acc": [0.9, 0.92, 0.91, 0.9]})
    cont = pd.DataFrame({"variant": ["standard", "C"], "image": [0, 0], "ds": [1.0, 0.5]})
    folders = seed_report.report_folders(tmp_path, [0, 1, 2], 0)
    tables = {folders[0]: {"continuity": {"continuity": cont}, "fairness": {"fairness": fair}},
              folders[1]: {"continuity": {"continuity": cont}},  # not repeated in the other seeds' reports
              folders[2]: {"continuity": {"continuity": cont}}}  # fmt: skip
    monkeypatch.setattr(seed_report, "read_results", lambda folder: ({}, tables[Path(folder)]))
    pooled = seed_report.pooled_results(folders, primary=0)
    pd.testing.assert_frame_equal(pooled["fairness"]["fairness"], fair)  # once, its own seeds, no source_seed
    assert sorted(pooled["continuity"]["continuity"]["seed"].unique()) == [0, 1, 2]
    assert len(pooled["continuity"]["continuity"]) == 3 * len(cont)


def test_a_card_from_before_the_pgd_request_was_recorded_is_restored_not_trained_again(tmp_path):
    """The shipped zoo's primary standard card predates ``pgd_eval_request``: its PGD evaluation of the whole test
    split reads as request 0, so a fine-tune added later (C-control) starts from it instead of refusing."""
    shipped = Path(__file__).resolve().parents[1] / "assets" / "zoo" / "default"
    card = json.loads((shipped / "zoo.json").read_text())["variants"]["standard"]["card"]
    assert "pgd_eval_request" not in card and card["metrics"]["pgd_eval"]["images"] == card["metrics"]["test_size"]
    assert train_zoo.card_pgd_request(card) == 0
    subset = {"metrics": {"test_size": 100, "pgd_eval": {"images": 8}}}
    assert train_zoo.card_pgd_request(subset) == 8
    assert train_zoo.card_pgd_request({"metrics": {"test_size": 100}}) is None  # never attacked
    assert train_zoo.card_pgd_request({"pgd_eval_request": 4, **subset}) == 4  # a recorded request wins

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copyfile(shipped / "zoo.json", zoo / "zoo.json")
    shutil.copyfile(shipped / "standard.pt", zoo / "standard.pt")
    run = tmp_path / "runs" / "standard"
    assert train_zoo._restore_from_zoo(zoo, "standard.pt", run, card, "cpu-default", 0, {})
    assert sha256_file(run / "model.pt") == sha256_file(shipped / "standard.pt")
    other = tmp_path / "runs" / "other"
    assert not train_zoo._restore_from_zoo(zoo, "standard.pt", other, card, "cpu-default", 500, {})  # not the same
    assert not other.exists()
