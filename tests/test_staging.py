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


def test_only_the_colour_bias_row_files_of_the_staged_work_dir_are_kept():
    run = "staging/report-work/fairness/shortcut/C/seed-3"
    assert not ignored(f"{run}/fairness_row.json")
    for transient in ("model.pt", "checkpoint.pt", "config.json", "metrics.jsonl"):
        assert ignored(f"{run}/{transient}"), transient
    assert ignored("staging/report-work/alpha_sweep/alpha-0.1-seed-0/model.pt")
    assert not ignored("staging/report/results/continuity.json") and not ignored("staging/continue.sh")


def test_the_script_refuses_a_duration_that_is_not_minutes():
    done = subprocess.run(["bash", "staging/continue.sh", "soon"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "usage: staging/continue.sh [MINUTES]" in done.stderr
