"""Each zoo seed's report keeps its training runs in its own work folder (``analysis.seed_report.seed_work_dir``)."""

from __future__ import annotations

from pathlib import Path

from analysis.seed_report import seed_work_dir


def test_the_primary_seed_uses_the_work_dir_and_the_others_their_own_folder_in_it():
    assert seed_work_dir("w", None, None) == Path("w")  # a one-zoo report
    assert seed_work_dir("w", 0, 0) == Path("w")
    assert seed_work_dir("w", 2, 0) == Path("w/seeds/2")
    assert seed_work_dir(None, 2, 0) is None  # a temporary folder of its own
