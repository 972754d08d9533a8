"""Static checks of what a new user runs first: README commands, CI, requirements, Dockerfile, house rules."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _tracked_python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.split()]


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    assert "./lab dashboard" in README and "./lab test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands[-1] == "exec ./lab test"
    assert "set -euo pipefail" in ci


def _pins(name: str) -> list[str]:
    return [
        line for line in (ROOT / name).read_text().splitlines() if line.strip() and not line.startswith(("#", "-r "))
    ]


def test_requirements_pin_every_package_and_the_required_torch():
    runtime, dev, nodeps = _pins("requirements.txt"), _pins("requirements-dev.txt"), _pins("requirements-nodeps.txt")
    for lines in (runtime, dev, nodeps):
        assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line) for line in lines), lines
    assert "torch==2.14.1" in runtime and "torchvision==0.29.1" in runtime
    for needed in (
        "captum",
        "lime",
        "umap-learn",
        "streamlit",
        "plotly",
        "scikit-learn",
        "tqdm",
        "timm",
        "safetensors",
    ):
        assert any(line.lower().startswith(needed + "==") for line in runtime), needed
    for tool in ("pytest", "playwright", "ruff"):  # test and lint tools stay out of the runtime (and the image)
        assert any(line.lower().startswith(tool + "==") for line in dev), tool
        assert not any(line.lower().startswith(tool + "==") for line in runtime), tool
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()
    assert any(line.startswith("torchattacks==") for line in nodeps)


def test_package_is_installable_with_console_scripts():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    scripts = project["project"]["scripts"]
    for name in ("scl-train", "scl-zoo", "scl-report", "scl-dashboard"):
        module, _, function = scripts[name].partition(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), name


def test_no_file_edits_sys_path_or_cites_documents_outside_the_repository():
    for path in _tracked_python_files():
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        if rel == "tests/test_packaging.py":  # this test names what it looks for
            continue
        assert "sys.path.insert" not in text and "sys.path.append" not in text, rel
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in out:
        path = ROOT / rel
        if rel == "tests/test_packaging.py" or path.suffix not in (".py", ".md", ".toml", ".txt", ".cff", ""):
            continue
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        assert "../shared" not in text, rel
        assert not re.search(r"DESIGN(\.md| section| §)", text), rel


def test_dockerfile_is_debian_non_root_serves_8501_with_a_health_check():
    # the base is debian:bookworm-slim pinned by digest, overridable with --build-arg BASE_IMAGE=...
    base = re.search(r"^ARG BASE_IMAGE=(\S+)\s*$", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"debian:bookworm-slim@sha256:[0-9a-f]{64}", base.group(1)), base
    assert re.findall(r"^FROM\s+(.+?)\s*$", DOCKERFILE, re.M) == ["${BASE_IMAGE}"]
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^EXPOSE 8501\s*$", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/_stcore/health" in DOCKERFILE
    assert "dataset-fashion-mnist" in DOCKERFILE
    assert "SCL_ADDRESS=0.0.0.0" in DOCKERFILE  # serves outside the container
    assert "docker build" in README and "docker run -p 8501:8501" in README and "--gpus all" in README


def test_dockerfile_copies_only_existing_files_and_installs_with_the_readme_command():
    for line in re.findall(r"^COPY\s+(.+)$", DOCKERFILE, re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    run_lines = re.findall(r"^RUN\s+(.+)$", DOCKERFILE, re.M)
    assert "./lab setup" in run_lines  # the README's set-up (pip install -e . included)
    assert "./lab setup" in README
    # ./lab setup installs the package, so the package and pyproject.toml are in the image before it runs
    setup_at = DOCKERFILE.index("\nRUN ./lab setup")
    for needed in ("pyproject.toml", "models", "analysis", "app", "lab"):
        assert re.search(rf"^COPY\s.*\b{re.escape(needed)}\b", DOCKERFILE[:setup_at], re.M), needed
    # the image carries the runtime requirements only: never the test and lint tools
    assert "requirements-dev.txt" not in DOCKERFILE.replace("(requirements-dev.txt)", "")
    pip_runs = [line for line in run_lines if "pip install" in line]
    assert all("requirements-dev" not in line for line in pip_runs)
    cmd = re.search(r"^CMD\s+(.+)$", DOCKERFILE, re.M).group(1)
    assert cmd == '["./lab", "dashboard"]'


def test_streamlit_config_is_hardened():
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert re.search(r"enableXsrfProtection\s*=\s*true", config)
    assert re.search(r"maxUploadSize\s*=\s*\d+", config)
    assert re.search(r"headless\s*=\s*true", config)
    assert re.search(r"gatherUsageStats\s*=\s*false", config)


def test_house_rules_safe_loading_and_streamlit_only_in_app():
    for path in _tracked_python_files():
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{rel}: {call}"
        if re.search(r"^\s*(import streamlit|from streamlit)", text, re.M):
            assert rel.startswith(("app/", "tests/")), f"{rel} imports streamlit"
        if rel.startswith("models/"):
            assert not re.search(r"^\s*(from|import) (analysis|app)\b", text, re.M), f"{rel} imports downstream"
        if rel.startswith("analysis/"):
            assert not re.search(r"^\s*(from|import) app\b", text, re.M), f"{rel} imports app"


def test_console_scripts_run_from_another_directory(tmp_path):
    """`pip install -e .` (done by ./lab setup) puts the commands on the venv's path; they work from anywhere."""
    import sys

    from models.version import package_version

    bin_dir = Path(sys.executable).parent
    for script in ("scl-train", "scl-zoo", "scl-report", "scl-dashboard", "scl-import", "scl-zoo-assemble"):
        path = bin_dir / script
        assert path.is_file(), f"{script} is not installed: run ./lab setup"
        out = subprocess.run([str(path), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and package_version() in out.stdout, (script, out.stdout, out.stderr)
