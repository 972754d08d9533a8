"""Release basics: the licence, the citation file (validated against the official CFF 1.2.0 schema), one version
number read at run time, printed by every command's ``--version`` and recorded in checkpoints, zoo manifests and
REPORT.md, and the changelog."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from models.version import package_version, version_string

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CFF_SCHEMA = ROOT / "tests" / "data" / "cff-1.2.0-schema.json"
ARXIV_ID = "2011.09789"


def _citation() -> dict:
    """CITATION.cff as JSON-like data: YAML dates become ISO strings, as the CFF tools read them."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.isoformat() if isinstance(value, _dt.date) else value

    return plain(yaml.safe_load((ROOT / "CITATION.cff").read_text()))


# ----------------------------------------------------------------------------- licence and version


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    lines = [line.strip() for line in text.strip().splitlines()]
    assert lines[0] == "Apache License"
    assert lines[1].startswith("Version 2.0")
    for part in ("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "END OF TERMS AND CONDITIONS",
                 "APPENDIX: How to apply the Apache License to your work.",
                 "Copyright 2026 The Semantic Continuity Lab authors"):  # fmt: skip
        assert part in text, part
    assert len(re.findall(r"^\s*\d\. [A-Z][\w ]+\.", text, re.M)) == 9  # the nine numbered sections
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def test_version_has_one_source_pyproject():
    assert re.fullmatch(r"\d+\.\d+\.\d+", PYPROJECT_VERSION)
    assert package_version() == PYPROJECT_VERSION
    assert version_string().startswith(PYPROJECT_VERSION)


# ----------------------------------------------------------------------------- citation


def test_citation_file_is_valid_cff_1_2_0():
    schema = json.loads(CFF_SCHEMA.read_text())
    assert schema["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    cff = _citation()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(cff)]
    assert not errors, errors
    # the schema is strict enough to catch a broken file
    assert not validator.is_valid({k: v for k, v in cff.items() if k != "authors"})
    assert not validator.is_valid({**cff, "date-released": "29 November 2026"})


def test_citation_describes_this_release_and_the_paper():
    cff = _citation()
    for field in ("cff-version", "message", "title", "authors"):
        assert cff.get(field), field
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == "Semantic Continuity Lab" and cff["type"] == "software"
    assert cff["version"] == PYPROJECT_VERSION
    assert cff["license"] == "Apache-2.0"
    _dt.date.fromisoformat(cff["date-released"])

    (paper,) = [r for r in cff["references"] if r["type"] == "article"]
    assert paper["title"] == "An Experimental Study of Semantic Continuity for Deep Learning Models"
    assert [a["family-names"] for a in paper["authors"]] == ["Wu", "Sang", "Zhao", "Chen"]
    assert [a["given-names"] for a in paper["authors"]] == ["Shangxi", "Jitao", "Xian", "Lizhang"]
    assert paper["year"] == 2020
    ids = {i["type"]: i["value"] for i in paper["identifiers"]}
    assert ids["other"] == f"arXiv:{ARXIV_ID}" and ids["doi"] == f"10.48550/arXiv.{ARXIV_ID}"
    assert paper["url"] == f"https://arxiv.org/abs/{ARXIV_ID}"


def test_readme_bibtex_matches_the_citation_file():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How to cite", 1)[1]
    bibtex = re.search(r"```bibtex\n(.*?)```", section, re.S).group(1)
    assert re.search(rf"version\s*=\s*\{{{re.escape(PYPROJECT_VERSION)}\}}", bibtex)
    assert re.search(rf"date\s*=\s*\{{{re.escape(_citation()['date-released'])}\}}", bibtex)
    assert f"arXiv:{ARXIV_ID}" in bibtex and "Wu, Shangxi and Sang, Jitao and Zhao, Xian and Chen, Lizhang" in bibtex


# ----------------------------------------------------------------------------- changelog


def test_changelog_follows_keep_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?\s*$", text, re.M)
    assert releases[0] == ("Unreleased", "")
    assert ("0.1.0", "2026-11-29") in releases
    assert all(date for name, date in releases[1:]), releases  # every release but Unreleased is dated
    assert "https://keepachangelog.com/en/1.1.0/" in text
    headings = set(re.findall(r"^### (\w+)\s*$", text, re.M))
    assert headings <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, headings


# ----------------------------------------------------------------------------- --version of every command


@pytest.mark.parametrize("module", ["models.train", "models.train_zoo", "analysis.report", "app.launch"])
def test_every_command_prints_the_package_version(module):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(rf"(^|\s){re.escape(PYPROJECT_VERSION)}(\s|$)", proc.stdout), proc.stdout


# ----------------------------------------------------------------------------- the version in what the lab writes


def test_checkpoints_and_zoo_manifests_record_the_version(tmp_path):
    from models.checkpoints import load_checkpoint, read_zoo_manifest
    from tests.conftest import make_tiny_zoo

    zoo = make_tiny_zoo(tmp_path / "zoo")
    assert read_zoo_manifest(zoo)["lab_version"] == PYPROJECT_VERSION
    ckpt = load_checkpoint(zoo / "standard.pt")
    assert ckpt["lab_version"] == PYPROJECT_VERSION and ckpt["git_commit"]


def test_report_header_records_the_version(tiny_zoo, tmp_path):
    """The cheapest REPORT.md: every experiment skipped (only the zoo and the data set are loaded)."""
    from analysis.report import EXPERIMENTS, main

    out = tmp_path / "report"
    args = ["--zoo", str(tiny_zoo), "--out", str(out), "--quick", "--no-progress", "--num-threads", "1"]
    assert main([*args, "--skip", ",".join(EXPERIMENTS)]) == 0
    header = (out / "REPORT.md").read_text().split("\n## ", 1)[0]
    assert f"Semantic Continuity Lab {PYPROJECT_VERSION}" in header


def test_dashboard_footer_shows_the_version():
    from app.components import version_caption

    assert version_caption().startswith(f"Semantic Continuity Lab {PYPROJECT_VERSION}")


# ----------------------------------------------------------------------------- --help and --version of every command

CLI_MODULES = ["models.train", "models.train_zoo", "models.import_model", "models.zoo", "analysis.report", "app.launch"]
DEFAULT_MENTION = re.compile(r"\(default|default:")


def _option_entries(help_text: str) -> list[str]:
    """Each option of an argparse ``--help`` as one line (its wrapped help joined)."""
    body = help_text.split("\noptions:\n", 1)[-1].split("\n\n", 1)[0]
    return [" ".join(entry.split()) for entry in re.split(r"\n(?=  -)", body) if entry.strip()]


def _repeated_defaults(help_text: str) -> list[str]:
    return [e for e in _option_entries(help_text) if len(DEFAULT_MENTION.findall(e)) > 1 or "(default: None)" in e]


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_help_shows_each_default_once(module):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = _option_entries(proc.stdout)
    assert len(entries) >= 3, proc.stdout
    assert not _repeated_defaults(proc.stdout), _repeated_defaults(proc.stdout)
    assert any("(default: " in e for e in entries), proc.stdout  # defaults are shown, once


def test_the_plain_defaults_formatter_would_repeat_them():
    """The check above bites: argparse's ArgumentDefaultsHelpFormatter appends '(default: ...)' to help texts that
    already give their default, and '(default: None)' to options without one."""
    import argparse

    from models.train_cli import build_parser

    parser = build_parser()
    assert not _repeated_defaults(parser.format_help())
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    assert any("--lr" in e for e in _repeated_defaults(parser.format_help()))


@pytest.mark.parametrize("script", ["scl-train", "scl-zoo", "scl-report", "scl-dashboard", "scl-import",
                                    "scl-zoo-assemble"])  # fmt: skip
def test_version_prints_the_programs_own_name(script, tmp_path):
    path = Path(sys.executable).parent / script
    assert path.is_file(), f"{script} is not installed: run ./lab setup"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(path), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.match(rf"{re.escape(script)} {re.escape(PYPROJECT_VERSION)}(\s|$)", proc.stdout), proc.stdout


# ----------------------------------------------------------------------------- a dated entry per version


def test_the_changelog_dates_this_version_and_the_citation_gives_the_same_date():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = dict(re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})\s*$", text, re.M))
    assert PYPROJECT_VERSION in releases, f"CHANGELOG.md has no dated entry for {PYPROJECT_VERSION}"
    cff = _citation()
    assert cff["version"] == PYPROJECT_VERSION and cff["date-released"] == releases[PYPROJECT_VERSION]
    dates = [_dt.date.fromisoformat(d) for d in releases.values()]
    assert dates == sorted(dates, reverse=True), releases  # newest first, no release dated before an older one
