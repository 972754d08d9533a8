"""``scl-claims-diff``: the verdicts that moved between two reports, with the evidence beside them."""

from __future__ import annotations

import pandas as pd

from analysis.claims_diff import ABSENT, main, verdict_changes


def claims(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"key": k, "verdict": v, "control_verdict": c, "secondary_verdict": "", "scope": "s",
                          "n": n, "effect_ci": f"{k} effect"} for k, v, c, n in rows])  # fmt: skip


def test_only_the_decisions_that_moved_are_listed_with_both_sides_evidence():
    before = claims(("a", "holds", "holds", "1 seed"), ("b", "holds", "partly", "1 seed"), ("gone", "holds", "", "1"))
    after = claims(("a", "holds", "holds", "3 seeds"), ("b", "inconclusive", "partly", "3 seeds"),
                   ("new", "does not hold", "", "3 seeds"))  # fmt: skip
    changes = verdict_changes(before, after)
    assert changes[["key", "field", "before", "after"]].values.tolist() == [
        ["b", "verdict", "holds", "inconclusive"],
        ["new", "verdict", ABSENT, "does not hold"],
        ["gone", "verdict", "holds", ABSENT],
    ]  # "a" kept its verdicts: not listed although its n changed
    assert changes.loc[0, "n_before"] == "1 seed" and changes.loc[0, "n_after"] == "3 seeds"
    assert changes.loc[1, "n_before"] == "" and changes.loc[1, "effect_after"] == "new effect"


def test_the_cli_reads_a_reports_pooled_claims_first_and_fails_in_one_line(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    (new / "across_seeds").mkdir(parents=True)
    old.mkdir()
    claims(("a", "holds", "", "1 seed")).to_csv(old / "claims.csv", index=False)
    claims(("a", "holds", "", "1 seed")).to_csv(new / "claims.csv", index=False)  # its own checkpoints: unchanged
    claims(("a", "does not hold", "", "3 seeds")).to_csv(new / "across_seeds" / "claims.csv", index=False)
    assert main([str(old), str(new), "--csv", str(tmp_path / "changes.csv")]) == 0
    out = capsys.readouterr().out
    assert "| a | verdict | holds | does not hold | 1 seed | 3 seeds |" in out
    assert pd.read_csv(tmp_path / "changes.csv")["after"].tolist() == ["does not hold"]
    assert main([str(old), str(old / "claims.csv")]) == 0 and capsys.readouterr().out.strip() == "No verdict changed."
    assert main([str(old), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no claims table" in err and "Traceback" not in err
