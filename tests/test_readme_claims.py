"""The README's claims summary says what the committed report on the shipped zoo decided: every claim of
``assets/results/default/claims.csv`` is named in the README row of its verdict, and in no other row."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

# how the README names each claim of the report (a phrase found in exactly one row of its claims table)
README_NAMES = {
    "discontinuity": "standard models are discontinuous",
    "continuity": "C and ADV+C lower DS",
    "alpha_continuity": "a larger α lowers DS",
    "alpha_accuracy": "small accuracy cost",
    "probe_channel_translation": "channel translation",
    "probe_randomised_centre": "randomised centre",
    "probe_sliding_puzzle": "sliding puzzle",
    "robustness_ADV+C_vs_ADV": "ADV+C vs ADV under PGD-10",
    "robustness_C_vs_standard": "C vs standard under PGD-10",
    "robustness_strongest": "under the attack ensemble",
    "interpretability_integrated_gradients": "IG and LIME mask share",
    "interpretability_gradcam": "GradCAM mask share",
    "interpretability_lime": "IG and LIME mask share",
    "transfer_digits": "transfer to digits",
    "transfer_fashion-mnist": "domain shift to background-free Fashion-MNIST",
    "robustness_matched_clean": "ADV+C vs ADV at matched clean accuracy",
    "explanation_continuity_integrated_gradients": "Integrated Gradients explanations change less",
    "explanation_continuity_gradcam": "GradCAM explanations change less",
    "fairness": "colour bias",
    "fairness_shortcut": "shortcut design",
}


def readme_verdict_rows() -> dict[str, str]:
    """verdict -> the claims text of that row in the README's table under "Its claims:"."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("Its claims:") :].split("\n\n")[1]
    rows = {}
    for line in table.splitlines()[2:]:
        found = re.match(r"\| ([a-z ]+) \| (.*) \|$", line)
        assert found, line
        rows[found.group(1)] = found.group(2)
    return rows


def committed_claims() -> pd.DataFrame:
    """The committed report's headline claims: pooled over the training seeds where the report has them
    (``across_seeds/``), else its primary checkpoints'."""
    report = ROOT / "assets" / "results" / "default"
    pooled = report / "across_seeds" / "claims.csv"
    return pd.read_csv(pooled if pooled.is_file() else report / "claims.csv")


def test_readme_claims_table_follows_the_committed_report():
    claims = committed_claims()
    rows = readme_verdict_rows()
    assert set(claims["key"]) == set(README_NAMES), "a claim without a README name (or a name without a claim)"
    for key, verdict in zip(claims["key"], claims["verdict"], strict=True):
        name = README_NAMES[key]
        assert verdict in rows, f"{key}: verdict {verdict!r} has no row in the README's claims table"
        assert name in rows[verdict], f"{key}: {name!r} not in the README's {verdict!r} row"
        others = [v for v, text in rows.items() if v != verdict and name in text]
        assert not others, f"{key}: {name!r} also named in the README's {others} row(s)"
    assert set(rows) == set(claims["verdict"]), "a README row for a verdict no claim has"
