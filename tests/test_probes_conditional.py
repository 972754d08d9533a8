"""analysis.probes.conditional_probe_accuracy / conditional_probe_share on a constructed per-image table."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.probes import both_clean_correct, conditional_probe_accuracy, conditional_probe_share

N = 10
PROBE = "channel_translation"


def _table() -> pd.DataFrame:
    """A is right on clean images 0-7, B on 2-7. Under the probe A stays right on 0-3 (and 4 at level 1/16), B on
    2-3 and on 9, which it gets wrong clean. Plain probe accuracy favours A only through A's extra clean images."""
    right = {
        ("A", "clean"): set(range(8)),
        ("B", "clean"): set(range(2, 8)),
        ("A", "1/32"): {0, 1, 2, 3},
        ("A", "1/16"): {0, 1, 2, 3, 4},
        ("B", "1/32"): {2, 3, 9},
        ("B", "1/16"): {2, 3, 9},
    }
    rows = [{"variant": v, "probe": PROBE, "level_label": label, "image": i, "correct": i in ok}
            for (v, label), ok in right.items() for i in range(N)]  # fmt: skip
    return pd.DataFrame(rows)


def test_both_clean_correct_is_the_intersection():
    assert both_clean_correct(_table(), "A", "B").tolist() == [2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="no clean per-image correctness for variant 'C'"):
        both_clean_correct(_table(), "A", "C")


def test_conditional_accuracy_removes_the_clean_accuracy_advantage():
    df = _table()
    plain = df[df["level_label"] == "1/32"].groupby("variant")["correct"].mean()
    assert plain["A"] - plain["B"] == pytest.approx(0.1)  # 4/10 vs 3/10
    out = conditional_probe_accuracy(df, "A", "B").set_index("level_label")
    assert list(out.index) == ["1/32", "1/16"]
    assert (out["n_images"] == 6).all() and (out["n_total"] == N).all()
    assert out.loc["1/32", ["accuracy_a", "accuracy_b"]].tolist() == pytest.approx([2 / 6, 2 / 6])
    assert out.loc["1/32", "effect"] == 0 and out.loc["1/32", "p"] == 1.0  # image 9 (B wrong clean) left out
    assert out.loc["1/16", "effect"] == pytest.approx(1 / 6)  # image 4 alone
    assert out.loc["1/16", "ci_low"] <= out.loc["1/16", "effect"] <= out.loc["1/16", "ci_high"]


def test_conditional_share_is_the_claims_metric_on_common_images():
    res = conditional_probe_share(_table(), "A", "B", PROBE)
    # per image over the two levels: A and B both 1 on images 2, 3; A 0.5 on image 4; 0 elsewhere
    assert res.n_images == 6
    assert res.effect == pytest.approx(0.5 / 6)
    with pytest.raises(ValueError, match="no probed levels"):
        conditional_probe_share(_table(), "A", "B", "sliding_puzzle")
