"""analysis.robustness: Table 2, the attack ensemble (worst case per image), the eps sweep, the facts that replace
the gradient-masking heuristic."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analysis.robustness import (
    AUDIT_COLUMNS,
    adversarial_examples,
    attack_audit,
    attack_name,
    ensemble_correct,
    ensemble_tables,
    eps_sweep,
    large_eps_warnings,
    masking_warnings,
    robustness_table,
)
from models.checkpoints import load_zoo
from models.evaluation import accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def zoo_models(tiny_zoo):
    return load_zoo(tiny_zoo).models


def test_robustness_table_pgd_never_beats_clean(zoo_models, batch):
    images, _ = batch
    models = dict(list(zoo_models.items())[:2])
    # Labels = each model's own clean predictions, so clean accuracy is 1 and PGD can only lower it.
    for variant, model in models.items():
        labels = model(images).argmax(1)
        df = robustness_table({variant: model}, images, labels, steps=3)
        assert list(df.columns) == ["variant", "clean_acc", "pgd_acc"]
        row = df.iloc[0]
        assert row["clean_acc"] == 1.0 and 0.0 <= row["pgd_acc"] <= row["clean_acc"]


def test_eps_sweep_starts_at_clean_accuracy(tiny_model, batch):
    images, labels = batch
    df = eps_sweep({"net": tiny_model}, images, labels, eps_values=(0.0, 2 / 255, 8 / 255), steps=2)
    assert list(df.columns) == ["variant", "eps", "eps_255", "accuracy", "n_images"]
    assert df["eps_255"].tolist() == pytest.approx([0.0, 2.0, 8.0])
    assert df["accuracy"].iloc[0] == accuracy(tiny_model, images, labels)


def test_attack_audit_grid(tiny_model, batch):
    images, _ = batch
    labels = tiny_model(images).argmax(1)
    df = attack_audit({"net": tiny_model}, images, labels, steps_list=(1, 2), restarts=2)
    assert list(df.columns) == AUDIT_COLUMNS
    assert df["attack"].tolist() == ["PGD-1", "PGD-2", "PGD-1 margin", "PGD-2 margin", "PGD-2 x2", "PGD-2 margin x2"]
    assert df["accuracy"].between(0, 1).all()
    assert attack_name(50, "margin", 3) == "PGD-50 margin x3"


def test_ensemble_worst_case_is_at_most_every_attack(tiny_model):
    gen = torch.Generator().manual_seed(5)
    images = torch.rand(12, 3, 32, 32, generator=gen)
    labels = tiny_model(images).argmax(1)  # clean accuracy 1: every attack has something to break
    labels[:2] = (labels[:2] + 1) % 10  # and two images wrong already
    df = ensemble_correct(tiny_model, images, labels, eps=2 / 255, apgd_steps=3, apgd_targets=2, batch_size=5)
    assert list(df.columns) == ["image", "clean", "pgd10", "apgd_ce", "apgd_t", "worst"]
    assert not df["clean"][:2].any() and df["clean"][2:].all()
    for attack in ("clean", "pgd10", "apgd_ce", "apgd_t"):
        assert (df["worst"] <= df[attack]).all(), attack  # per image: robust only if every attack fails
    assert (df["worst"] == df[["clean", "pgd10", "apgd_ce", "apgd_t"]].all(axis=1)).all()

    summary, audit, per_image = ensemble_tables({"net": tiny_model}, images, labels, eps=2 / 255, apgd_steps=3,
                                                apgd_targets=2)  # fmt: skip
    row = summary.iloc[0]
    assert row["worst_acc"] <= min(row["pgd_acc"], row["apgd_ce_acc"], row["apgd_t_acc"]) <= row["clean_acc"]
    assert row["pgd10_overestimate"] == pytest.approx(row["pgd_acc"] - row["worst_acc"])
    assert len(per_image) == 12 and audit["attack"].tolist()[-1] == "worst case"


def _audit(variant: str, pgd: float, worst: float) -> pd.DataFrame:
    return pd.DataFrame([(variant, "PGD-10", 10, 1, "ce", pgd, 100, 0.0),
                         (variant, "worst case", 0, 1, "ensemble", worst, 100, pgd - worst)],
                        columns=AUDIT_COLUMNS)  # fmt: skip


def test_masking_warnings_state_the_overestimate_and_warn_only_when_large():
    (fact,) = masking_warnings(_audit("ADV", 0.40, 0.395))
    assert "PGD-10 overestimates robust accuracy by 0.5 points" in fact and "WARNING" not in fact
    (warn,) = masking_warnings(_audit("ADV+C", 0.50, 0.30))
    assert "by 20.0 points" in warn and "WARNING" in warn and "worst case" in warn


def test_large_eps_sanity_check():
    sweep = pd.DataFrame({"variant": ["A", "A", "B", "B"], "eps_255": [8.0, 32.0, 8.0, 32.0],
                          "accuracy": [0.4, 0.01, 0.5, 0.3]})  # fmt: skip
    ok, bad = large_eps_warnings(sweep)
    assert ok.startswith("A: sanity check passed") and bad.startswith("B: WARNING")
    assert "not run" in large_eps_warnings(sweep[sweep["eps_255"] < 32])[0]


def test_masking_warnings_read_an_old_audit_table():
    old = pd.DataFrame({"variant": ["ADV"] * 2, "attack": ["PGD-10", "PGD-50"], "steps": [10, 50],
                        "restarts": [1, 1], "loss": ["ce", "ce"], "accuracy": [0.4, 0.3]})  # fmt: skip
    (message,) = masking_warnings(old)
    assert "by 10.0 points" in message and "PGD-50" in message


def test_adversarial_examples_stay_in_the_eps_ball(tiny_model, batch):
    images, labels = batch
    adv, table = adversarial_examples(tiny_model, images, labels, eps=4 / 255, steps=2, batch_size=3)
    assert adv.shape == images.shape and adv.min() >= 0 and adv.max() <= 1
    assert list(table.columns) == ["label", "clean_pred", "clean_conf", "adv_pred", "adv_conf", "linf"]
    assert len(table) == len(images) and (table["linf"] <= 4 / 255 + 1e-6).all()
    assert table["adv_conf"].between(0, 1).all()
