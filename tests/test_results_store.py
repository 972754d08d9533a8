"""How the report stores its tables: per-image parts gzip-compressed (they grow to several MiB with seven variants,
over the repository's 5 MiB limit on tracked files), reproducibly, and read back the same way as plain CSV."""

from __future__ import annotations

import gzip
import json

import pandas as pd

from analysis.report import main
from analysis.results_store import read_folder, read_results, table_file, table_stem, write_table
from tests.conftest import make_tiny_zoo
from tests.test_report import TINY


def test_a_per_image_part_is_named_csv_gz_and_the_main_table_stays_csv():
    assert table_file("continuity", "ds", True) == "continuity.csv"
    assert table_file("continuity", "per_image", False) == "continuity_per_image.csv.gz"
    assert table_file("neighbourhood_rank", "per_anchor", False) == "neighbourhood_rank_per_anchor.csv.gz"
    assert table_stem("results/x_per_image.csv.gz") == table_stem("results/x_per_image.csv") == "results/x_per_image"


def test_compressed_tables_are_reproducible_and_read_back_exactly(tmp_path):
    df = pd.DataFrame({"variant": ["standard", "C"] * 50, "image": range(100), "ds": [0.125 * i for i in range(100)]})
    write_table(df, tmp_path / "a.csv.gz")
    write_table(df, tmp_path / "b.csv.gz")
    first = (tmp_path / "a.csv.gz").read_bytes()
    assert first[:2] == b"\x1f\x8b" and first == (tmp_path / "b.csv.gz").read_bytes()  # gzip, no timestamp inside
    assert gzip.decompress(first).decode().splitlines()[0] == "variant,image,ds"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv.gz"), df)


def test_the_report_writes_per_image_parts_compressed_and_resume_and_the_dashboard_read_them(tmp_path):
    zoo, out = make_tiny_zoo(tmp_path / "zoo"), tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    base = ["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1", *sets]
    assert main([*base, "--only", "continuity"]) == 0
    doc = json.loads((out / "results" / "continuity.json").read_text())
    assert doc["files"]["parts"]["per_image"] == "results/continuity_per_image.csv.gz"
    assert (out / "results" / "continuity_per_image.csv.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert not (out / "results" / "continuity_per_image.csv").exists()
    per_image = read_results(out)[1]["continuity"]["per_image"]
    assert {"variant", "kind", "level", "image", "ds"} <= set(per_image.columns) and len(per_image) > 0

    folder = read_folder(out)  # what the dashboard reads
    assert not folder.problems
    name, found = folder.find({"variant", "kind", "level", "image", "ds"}, "continuity_per_image")
    assert name == "results/continuity_per_image.csv.gz"
    pd.testing.assert_frame_equal(found, per_image)

    stamp = (out / "results" / "continuity_per_image.csv.gz").stat().st_mtime_ns
    assert main([*base, "--only", "continuity", "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["experiments"]["continuity"]["reused"]
    assert (out / "results" / "continuity_per_image.csv.gz").stat().st_mtime_ns == stamp


def test_an_older_report_with_plain_csv_per_image_parts_still_reads(tmp_path):
    """A report written before the parts were compressed (the committed one, say) names .csv files; it reads as is."""
    zoo, out = make_tiny_zoo(tmp_path / "zoo"), tmp_path / "report"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["--zoo", str(zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1", *sets,
                 "--only", "continuity"]) == 0  # fmt: skip
    res = out / "results"
    pd.read_csv(res / "continuity_per_image.csv.gz").to_csv(res / "continuity_per_image.csv", index=False)
    (res / "continuity_per_image.csv.gz").unlink()
    for path in (res / "continuity.json", out / "summary.json"):
        path.write_text(path.read_text().replace("continuity_per_image.csv.gz", "continuity_per_image.csv"))
    assert len(read_results(out)[1]["continuity"]["per_image"]) > 0
    assert "results/continuity_per_image.csv" in read_folder(out).tables


def test_the_recorded_commit_is_dirty_for_changed_code_only(tmp_path):
    """A result records the commit it was computed on; a staged report's own files and a zoo being trained into
    (recorded by sha256 in every result) do not make it '-dirty', a changed module does."""
    import subprocess

    from models.version import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for name in ("code.py", "staging/report/a.csv", "assets/zoo/default/zoo.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    clean = git_commit(tmp_path)
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (tmp_path / "staging/report/a.csv").write_text("1\n")
    (tmp_path / "assets/zoo/default/zoo.json").write_text("1\n")
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("1\n")
    assert git_commit(tmp_path) == clean + "-dirty"
