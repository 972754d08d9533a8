"""A zoo with replicas in the dashboard: the zoo page shows each variant's seed spread, the sidebar picks a seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.seed_spread import seed_card_table, seed_spread
from models.checkpoints import atomic_torch_save, make_checkpoint, network_spec, write_zoo_manifest
from models.networks import create_network
from tests.test_app import ENTRY, TIMEOUT, AppTest, assert_clean
from tests.test_dashboard_pages import _point_results_at

VARIANTS = ("standard", "C")
ACCURACY = {("standard", 0): 0.50, ("standard", 1): 0.60, ("C", 0): 0.40, ("C", 1): 0.70}


def make_seeded_zoo(folder: Path, controls: tuple[str, ...] = ()) -> Path:
    """Two variants x two seeds of untrained width-4 networks on digits; cards carry per-seed accuracies.
    ``controls``: more variants, of seed 0 only (a control not yet trained on the other seeds)."""
    dataset = {"name": "digits", "split": "train", "size": 1437, "num_classes": 10}
    folder.mkdir(parents=True, exist_ok=True)
    files, cards, replicas = {}, {}, {}
    for i, variant in enumerate(VARIANTS + controls):
        for seed in (0, 1) if variant in VARIANTS else (0,):
            torch.manual_seed(100 * seed + i)
            model = create_network("resnet18-cifar", 10, width=4)
            ckpt = make_checkpoint(model, variant=variant, network=network_spec("resnet18-cifar", 10, 4),
                                   config={"variant": variant, "dataset": "digits", "seed": seed}, dataset=dataset,
                                   metrics={})  # fmt: skip
            name = f"{variant}.pt" if seed == 0 else f"seeds/{seed}/{variant}.pt"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(ckpt, folder / name)
            card = {"variant": variant, "config": {"seed": seed},
                    "metrics": {"test_clean_acc": ACCURACY.get((variant, seed), 0.5), "test_pgd10_acc": 0.1 * seed,
                                "ds_level1_sum": 1.0 + seed}}  # fmt: skip
            if seed == 0:
                files[variant], cards[variant] = name, card
            else:
                replicas.setdefault(variant, {})[seed] = (name, card)
    write_zoo_manifest(folder, files, cards, name="seeded", replicas=replicas)
    return folder


@pytest.fixture
def seeded_zoo(tmp_path, monkeypatch, cache_dir) -> Path:
    zoo = make_seeded_zoo(tmp_path / "zoo")
    monkeypatch.setenv("SCL_ZOO", str(zoo))
    _point_results_at(monkeypatch, tmp_path / "results")
    return zoo


def test_seed_spread_is_the_mean_and_spread_over_each_variants_seeds(tmp_path):
    manifest = json.loads((make_seeded_zoo(tmp_path / "zoo") / "zoo.json").read_text())
    table = seed_card_table(manifest)
    assert list(zip(table["variant"], table["seed"], table["primary"], strict=True)) == [
        ("standard", 0, True), ("standard", 1, False), ("C", 0, True), ("C", 1, False)]  # fmt: skip
    spread = seed_spread(table).set_index("variant")
    for variant in VARIANTS:
        values = [ACCURACY[(variant, s)] for s in (0, 1)]
        assert spread.loc[variant, "test_clean_acc_mean"] == pytest.approx(np.mean(values))
        assert spread.loc[variant, "test_clean_acc_std"] == pytest.approx(np.std(values, ddof=1))
        assert spread.loc[variant, "n_seeds"] == 2 and spread.loc[variant, "seeds"] == [0, 1]


def open_zoo_page() -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.switch_page("views/zoo.py")
    return at.run()


def test_zoo_page_shows_the_seed_spread_and_the_sidebar_picks_a_seed(seeded_zoo):
    at = open_zoo_page()
    assert_clean(at)
    assert any("Seeds" in h.value for h in at.subheader)
    clean = [m.value for m in at.metric if m.label == "Clean accuracy"]
    assert clean == ["50.0%", "40.0%"]  # the primary checkpoints by default
    picker = next(s for s in at.sidebar.selectbox if s.label == "Training seed")
    assert picker.options == ["primary checkpoints", "seed 1"]
    picker.set_value(1)
    at.run()
    assert_clean(at)
    assert [m.value for m in at.metric if m.label == "Clean accuracy"] == ["60.0%", "70.0%"]  # seed 1's cards


def test_a_zoo_without_replicas_shows_no_seed_picker(tiny_zoo, tmp_path, monkeypatch, cache_dir):
    monkeypatch.setenv("SCL_ZOO", str(tiny_zoo))
    _point_results_at(monkeypatch, tmp_path / "results")
    at = open_zoo_page()
    assert_clean(at)
    assert not [s for s in at.sidebar.selectbox if s.label == "Training seed"]
    assert not any("Seeds" in h.value for h in at.subheader)


def test_the_report_measures_the_checkpoints_of_a_chosen_training_seed(tmp_path, cache_dir, one_thread):
    from analysis.report import main as report_main

    zoo = make_seeded_zoo(tmp_path / "zoo")
    out = tmp_path / "report-seed1"
    args = ["--zoo", str(zoo), "--out", str(out), "--quick", "--only", "continuity", "--set", "n_images=8",
            "--no-progress", "--device", "cpu", "--zoo-seed", "1"]  # fmt: skip
    assert report_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training_seeds"] == {"standard": 1, "C": 1}
    primary = tmp_path / "report-primary"
    assert report_main([*args[:2], "--out", str(primary), *args[4:-2]]) == 0
    assert json.loads((primary / "summary.json").read_text())["training_seeds"] == {"standard": 0, "C": 0}
    assert report_main([*args[:-1], "7"]) == 2  # a seed the zoo does not hold: one clear error


def test_a_report_per_training_seed_then_claims_on_the_pooled_results(tmp_path, cache_dir, one_thread):
    from analysis.report import main as report_main
    from analysis.seed_report import pooled_results, report_folders

    zoo = make_seeded_zoo(tmp_path / "zoo")
    out = tmp_path / "report"
    args = ["--zoo", str(zoo), "--out", str(out), "--quick", "--only", "continuity", "--set", "n_images=8",
            "--no-progress", "--device", "cpu", "--zoo-seeds", "all"]  # fmt: skip
    assert report_main(args) == 0
    folders = report_folders(out, [0, 1], 0)
    assert folders == {0: out, 1: out / "seeds" / "1"}
    for seed, folder in folders.items():  # each seed's checkpoints measured by a whole report of their own
        assert json.loads((folder / "summary.json").read_text())["training_seeds"] == {"standard": seed, "C": seed}
    pooled = pooled_results(folders)["continuity"]
    per_image = next(t for part, t in pooled.items() if "per_image" in part)
    assert sorted(per_image["seed"].unique()) == [0, 1]
    assert len(per_image[per_image["seed"] == 0]) == len(per_image[per_image["seed"] == 1]) > 0
    across = out / "across_seeds"
    for name in ("claims.csv", "claim_tests.csv", "claims_per_seed.csv"):
        assert (across / name).is_file()
    pooled_claims = pd.read_csv(across / "claims.csv")
    measured = pooled_claims[pooled_claims["seeds_per_variant"].notna()]
    assert len(measured) and set(measured["seeds_per_variant"]) == {2}  # both training seeds behind each verdict
    assert set(measured["scope"]) == {"about these checkpoints"}  # fewer than 3 seeds: not about the method
    tests = pd.read_csv(across / "claim_tests.csv")
    assert tests["n"].astype(str).str.startswith("2 seed").any()
    per_seed = pd.read_csv(across / "claims_per_seed.csv")
    assert sorted(per_seed["training_seed"].unique()) == [0, 1]
    report = (out / "REPORT.md").read_text()
    assert report.count("## Across training seeds") == 1 and "`seeds/1/`" in report
    assert report_main([*args[:-1], "0", "5"]) == 2  # a seed the zoo lacks: one clear error, nothing run


def test_a_control_on_fewer_seeds_is_measured_on_those_it_has(tmp_path, cache_dir, one_thread, capsys):
    """The paper's variants on seeds 0 and 1, the matched C control on seed 0 only (still training): the report
    across seeds runs (it need not wait for the control), says what the control lacks, measures it in seed 0's
    report only, and keeps its role for the pooled claims."""
    from analysis.report import main as report_main
    from analysis.seed_report import pooled_results, report_folders

    zoo = make_seeded_zoo(tmp_path / "zoo", controls=("C-control",))
    out = tmp_path / "report"
    args = ["--zoo", str(zoo), "--out", str(out), "--quick", "--only", "continuity", "--set", "n_images=8",
            "--no-progress", "--device", "cpu", "--zoo-seeds", "all"]  # fmt: skip
    assert report_main(args) == 0
    assert "C-control has no checkpoint of seed(s) 1: its verdicts rest on the seeds it has" in capsys.readouterr().err
    seeds = {s: json.loads((f / "summary.json").read_text())["training_seeds"] for s, f in
             report_folders(out, [0, 1], 0).items()}  # fmt: skip
    assert seeds == {0: {"standard": 0, "C": 0, "C-control": 0}, 1: {"standard": 1, "C": 1}}
    per_image = next(t for p, t in pooled_results(report_folders(out, [0, 1], 0))["continuity"].items()
                     if "per_image" in p)  # fmt: skip
    assert set(per_image.loc[per_image["variant"] == "C-control", "seed"]) == {0}
    assert set(per_image.loc[per_image["variant"] == "C", "seed"]) == {0, 1}
    assert (out / "across_seeds" / "claims.csv").is_file()
    assert report_main([*args[:-1], "0", "1"]) == 0  # the seeds asked for by number: the same
    lacking_paper = make_seeded_zoo(tmp_path / "zoo2", controls=("ADV",))  # a paper variant on seed 0 only
    assert report_main(["--zoo", str(lacking_paper), *args[2:]]) == 2
    assert "in the paper's roles" in capsys.readouterr().err


def test_pooling_needs_two_seeds(tiny_zoo, tmp_path, capsys):
    from analysis.report import main as report_main

    args = ["--zoo", str(tiny_zoo), "--out", str(tmp_path / "r"), "--quick", "--zoo-seeds", "all"]
    assert report_main(args) == 2
    assert "pooling needs two or more" in capsys.readouterr().err


def test_a_seeds_checkpoints_carry_their_own_hashes(tmp_path):
    """Anything stored about a checkpoint (results, precomputed maps) is keyed by its sha256: a replica's."""
    from app.zoo_cache import open_zoo
    from models.replicas import entry_for_seed

    zoo = make_seeded_zoo(tmp_path / "zoo")
    manifest = json.loads((zoo / "zoo.json").read_text())
    primary, seed1 = open_zoo(zoo, "cpu"), open_zoo(zoo, "cpu", seed=1)
    assert primary.hashes == {v: manifest["variants"][v]["sha256"] for v in VARIANTS}
    assert seed1.hashes == {v: entry_for_seed(manifest, v, 1).sha256 for v in VARIANTS}
    assert set(seed1.hashes.values()).isdisjoint(primary.hashes.values())
    assert primary.key != seed1.key


def test_a_training_experiments_runs_stay_distinct_across_zoo_seeds():
    from analysis.seed_report import RUN_STRIDE, _with_seed

    runs = pd.DataFrame({"alpha": [0.0, 1.0, 0.0, 1.0], "seed": [0, 0, 1, 1], "test_acc": [0.5, 0.4, 0.6, 0.5]})
    pooled = pd.concat([_with_seed(runs, 0), _with_seed(runs, 2)], ignore_index=True)
    assert pooled.groupby(["seed", "alpha"]).size().eq(1).all()  # one row per run and alpha
    assert sorted(pooled["source_seed"].unique()) == [0, 2] and pooled["seed"].nunique() == 4
    assert (pooled["seed"] == pooled["source_seed"] * RUN_STRIDE + pooled["repeat_seed"]).all()
    measured = _with_seed(pd.DataFrame({"image": [1, 2], "ds": [0.1, 0.2]}), 2)
    assert list(measured["seed"]) == [2, 2] and "source_seed" not in measured


def test_the_dashboard_shows_the_pooled_claims_and_each_seeds_own_report(seeded_zoo, tmp_path, one_thread):
    """A report over both training seeds in the results folder: the claims page shows the pooled claims first
    (its own checkpoints' claims one click away, each seed's verdicts side by side); the other seed's report is
    not mixed into the folder's results, and choosing that seed reads its own report."""
    from analysis.report import main as report_main
    from analysis.results_store import read_folder, seed_report_folder

    out = tmp_path / "results" / seeded_zoo.name
    args = ["--zoo", str(seeded_zoo), "--out", str(out), "--quick", "--only", "continuity", "--set", "n_images=8",
            "--no-progress", "--device", "cpu", "--zoo-seeds", "all"]  # fmt: skip
    assert report_main(args) == 0
    names = set(read_folder(out).tables)
    assert "results/continuity.csv" in names and "across_seeds/claims.csv" in names
    assert not [n for n in names if n.startswith("seeds/")]  # seed 1's report is not the folder's own
    assert seed_report_folder(out, 1) == out / "seeds" / "1" and seed_report_folder(out, None) == out
    assert seed_report_folder(out, 5) == out  # no report of its own: the folder's

    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.switch_page("views/claims.py")
    at.run()
    assert_clean(at)
    scope = next(r for r in at.radio if r.label == "Verdicts")
    assert scope.value == "pooled"
    captions = [c.value for c in at.caption]
    assert any("Source: `across_seeds/claims.csv`" in c for c in captions), captions
    assert any("Each training seed's own verdicts (2 seeds)" in e.label for e in at.expander)
    scope.set_value("own")
    at.run()
    assert_clean(at)
    assert any("Source: `claims.csv`" in c.value for c in at.caption)
    assert any("Across training seeds" in m.value for m in at.markdown)  # the primary report's REPORT.md

    next(s for s in at.sidebar.selectbox if s.label == "Training seed").set_value(1)
    at.run()
    assert_clean(at)
    assert not [r for r in at.radio if r.label == "Verdicts"]  # seed 1's own report: its own claims only
    assert any("Source: `claims.csv`" in c.value for c in at.caption)
    assert not any("Across training seeds" in m.value for m in at.markdown)  # seed 1's REPORT.md, not the primary's
    assert not [w for w in at.warning if "No report of training seed" in w.value]

    import shutil

    shutil.rmtree(out / "seeds")  # a report of the primary checkpoints only: the page says so for seed 1
    at.run()
    assert_clean(at)
    assert any("No report of training seed 1's checkpoints" in w.value for w in at.warning)
