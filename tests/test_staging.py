"""The report built over sessions (staging/): what git keeps of its work dir, and the script's usage check."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ignored(path: str) -> bool:
    """Whether git ignores ``path`` (need not exist) under the repository's .gitignore."""
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False)
    assert done.returncode in (0, 1), done
    return done.returncode == 0


def test_only_the_scored_runs_row_files_of_the_staged_work_dir_are_kept():
    for run, row in (("staging/report-work/fairness/shortcut/C/seed-3", "fairness_row.json"),
                     ("staging/report-work/seeds/2/transfer/digits/ADV/seed-1", "transfer_row.json"),
                     ("staging/report-work/alpha_sweep/alpha-0.1-seed-0", "alpha_row.json")):  # fmt: skip
        assert not ignored(f"{run}/{row}"), row
        for transient in ("model.pt", "checkpoint.pt", "config.json", "metrics.jsonl", "../init-fresh-head.pt"):
            assert ignored(f"{run}/{transient}"), transient
    assert not ignored("staging/report/results/continuity.json") and not ignored("staging/continue.sh")


def test_the_script_refuses_a_duration_that_is_not_minutes():
    done = subprocess.run(["bash", "staging/continue.sh", "soon"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "usage: staging/continue.sh [MINUTES]" in done.stderr


def test_what_is_still_to_run_across_the_seeds_reports(tmp_path):
    import json

    from analysis.seed_report import unfinished, zoo_independent

    once = zoo_independent()[0]

    def summary(folder, **status):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps({"experiments": status}))

    ok, not_selected, does_not_apply = {"status": "ok"}, {"status": "skipped"}, {"status": "skipped", "reason": "x"}
    summary(tmp_path, continuity=ok, probes=not_selected, transfer=does_not_apply, **{once: {"status": "not run"}})
    summary(tmp_path / "seeds" / "1", continuity={"status": "failed"}, probes=ok, **{once: not_selected})
    (tmp_path / "seeds" / "2").mkdir()
    (tmp_path / "seeds" / ".2.lock").write_text("4242")  # the lock a running seed report holds: not a seed
    assert unfinished(tmp_path) == ["probes", once, "continuity (seed 1)", "(no report) (seed 2)"]
    summary(tmp_path, continuity=ok, probes=ok, **{once: ok})
    summary(tmp_path / "seeds" / "1", continuity=ok, probes=ok, **{once: not_selected})
    summary(tmp_path / "seeds" / "2", continuity=ok)
    assert unfinished(tmp_path) == []


def test_publishing_replaces_the_results_only_with_a_finished_pooled_report(tmp_path):
    import json
    import os
    import sys

    import pandas as pd

    staged, published = tmp_path / "staged", tmp_path / "published"
    for folder in (staged / "across_seeds", published):
        folder.mkdir(parents=True)
    row = {"key": "continuity", "control_verdict": "", "secondary_verdict": "", "scope": "x", "effect_ci": "e"}
    pd.DataFrame([{**row, "verdict": "holds", "n": "1 seed"}]).to_csv(published / "claims.csv", index=False)
    (published / "REPORT.md").write_text("the interim report\n")
    pd.DataFrame([{**row, "verdict": "holds", "n": "1 seed"}]).to_csv(staged / "claims.csv", index=False)
    pd.DataFrame([{**row, "verdict": "inconclusive", "n": "3 seeds"}]).to_csv(staged / "across_seeds" / "claims.csv",
                                                                              index=False)  # fmt: skip
    (staged / "REPORT.md").write_text("the final report\n")
    (staged / "summary.json").write_text(json.dumps({"experiments": {"continuity": {"status": "not run"}}}))
    env = {**os.environ, "SCL_STAGED": str(staged), "SCL_PUBLISHED": str(published),
           "SCL_CHANGES": str(tmp_path / "changes"), "SCL_PYTHON": sys.executable}  # fmt: skip

    def publish():
        return subprocess.run(["bash", "staging/publish.sh"], cwd=ROOT, env=env, capture_output=True, text=True)

    done = publish()  # unfinished: refused, nothing touched
    assert done.returncode == 1 and "still to run: continuity" in done.stderr
    assert (published / "REPORT.md").read_text() == "the interim report\n"
    (staged / "summary.json").write_text(json.dumps({"experiments": {"continuity": {"status": "ok"}}}))
    done = publish()
    assert done.returncode == 0, done.stderr
    assert (published / "REPORT.md").read_text() == "the final report\n"
    assert (published / "across_seeds" / "claims.csv").is_file() and (staged / "REPORT.md").is_file()
    assert "| continuity | verdict | holds | inconclusive | 1 seed | 3 seeds |" in (tmp_path / "changes.md").read_text()
    assert "(1 change(s))" in done.stdout
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary copy left
