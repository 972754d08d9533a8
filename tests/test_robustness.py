"""analysis.robustness: Table 2, the eps sweep, the stronger-attack audit and its gradient-masking warnings."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.robustness import (
    adversarial_examples,
    attack_audit,
    attack_name,
    eps_sweep,
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
    assert list(df.columns) == ["variant", "eps", "eps_255", "accuracy"]
    assert df["eps_255"].tolist() == pytest.approx([0.0, 2.0, 8.0])
    assert df["accuracy"].iloc[0] == accuracy(tiny_model, images, labels)


def test_attack_audit_grid(tiny_model, batch):
    images, _ = batch
    labels = tiny_model(images).argmax(1)
    df = attack_audit({"net": tiny_model}, images, labels, steps_list=(1, 2), restarts=2)
    assert list(df.columns) == ["variant", "attack", "steps", "restarts", "loss", "accuracy"]
    assert df["attack"].tolist() == ["PGD-1", "PGD-2", "PGD-1 margin", "PGD-2 margin", "PGD-2 x2", "PGD-2 margin x2"]
    assert df["accuracy"].between(0, 1).all()
    assert attack_name(50, "margin", 3) == "PGD-50 margin x3"


def _audit(variant: str, ce: list[float], margin: list[float], restarts: float) -> pd.DataFrame:
    rows = [(variant, attack_name(s, "ce"), s, 1, "ce", a) for s, a in zip((10, 20, 50), ce, strict=True)]
    rows += [(variant, attack_name(s, "margin"), s, 1, "margin", a) for s, a in zip((10, 20, 50), margin, strict=True)]
    rows += [(variant, attack_name(50, "ce", 3), 50, 3, "ce", restarts)]
    return pd.DataFrame(rows, columns=["variant", "attack", "steps", "restarts", "loss", "accuracy"])


def test_masking_warnings_flag_falling_accuracy_and_not_a_flat_one():
    flat = _audit("ADV", [0.40, 0.40, 0.395], [0.40, 0.39, 0.39], 0.39)
    assert masking_warnings(flat) == []
    falling = _audit("ADV+C", [0.50, 0.40, 0.30], [0.30, 0.30, 0.30], 0.28)
    warnings = masking_warnings(pd.concat([flat, falling]))
    assert warnings and all(w.startswith("ADV+C") for w in warnings)
    assert any("keeps falling" in w for w in warnings)
    assert any("PGD-50 x3" in w for w in warnings)  # the strongest attack is named


def test_masking_warnings_strict_decrease_and_stronger_attacks():
    creeping = _audit("C", [0.400, 0.395, 0.390], [0.40, 0.40, 0.40], 0.39)  # small but steady fall
    assert any("keeps falling" in w for w in masking_warnings(creeping))
    margin_wins = _audit("C", [0.40, 0.40, 0.40], [0.30, 0.30, 0.30], 0.40)  # flat, but the margin loss does better
    (message,) = masking_warnings(margin_wins)
    assert "PGD-10 margin" in message and "PGD-10 (40.0%)" in message


def test_adversarial_examples_stay_in_the_eps_ball(tiny_model, batch):
    images, labels = batch
    adv, table = adversarial_examples(tiny_model, images, labels, eps=4 / 255, steps=2, batch_size=3)
    assert adv.shape == images.shape and adv.min() >= 0 and adv.max() <= 1
    assert list(table.columns) == ["label", "clean_pred", "clean_conf", "adv_pred", "adv_conf", "linf"]
    assert len(table) == len(images) and (table["linf"] <= 4 / 255 + 1e-6).all()
    assert table["adv_conf"].between(0, 1).all()
