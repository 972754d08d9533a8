"""Static checks of what a new user runs first: README commands, CI, requirements, Dockerfile, house rules."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

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


# ----------------------------------------------------------------------------- the installed package is the clone


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_shipped_file_is_in_the_wheels_data_files():
    """The shipped zoo, its results and the Streamlit settings are installed with the wheel (data-files)."""
    import fnmatch

    data_files = _pyproject()["tool"]["setuptools"]["data-files"]
    patterns = [(dest, pattern) for dest, globs in data_files.items() for pattern in globs]
    tracked = subprocess.run(["git", "ls-files", "assets", ".streamlit/config.toml"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    assert ".streamlit/config.toml" in tracked and any(t.startswith("assets/zoo/default/") for t in tracked)
    for rel in tracked:
        hits = [dest for dest, pattern in patterns if fnmatch.fnmatch(rel, pattern) and "/" not in
                rel[len(pattern.rsplit("/", 1)[0]) + 1 :]]  # fmt: skip
        assert len(hits) == 1, f"{rel} is installed by {len(hits)} data-files entries"
        installed = hits[0].removeprefix("share/semantic-continuity-lab/")
        want = "streamlit" if rel.startswith(".streamlit/") else str(Path(rel).parent)
        assert installed == want, (rel, hits[0])


def test_every_runtime_import_is_a_declared_dependency():
    """Every third-party module that models/, analysis/ or app/ imports belongs to a distribution that
    pyproject.toml declares, as a dependency or in an extra (torchattacks included: pip resolves it to a version
    without the old requests pin)."""
    import ast
    import sys
    from importlib import metadata

    project = _pyproject()["project"]
    extras = [d for group in project.get("optional-dependencies", {}).values() for d in group]  # e.g. a server extra
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in [*project["dependencies"], *extras]}
    distributions = metadata.packages_distributions()
    imported = set()
    for folder in ("models", "analysis", "app"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = sorted(m for m in imported if m not in sys.stdlib_module_names and m not in ("models", "analysis",
                                                                                                "app"))  # fmt: skip
    assert "torchattacks" in third_party and "streamlit" in third_party
    for module in third_party:
        owners = {d.lower() for d in distributions.get(module, [])}
        assert owners & declared, f"{module} (from {sorted(owners) or 'no installed distribution'}) is not declared"


def test_the_launcher_passes_the_streamlit_settings_as_flags():
    from app.launch import config_flags, parse, streamlit_argv
    from models.assets import streamlit_config

    assert streamlit_config() == ROOT / ".streamlit" / "config.toml"
    flags = config_flags()
    pairs = dict(zip(flags[::2], flags[1::2], strict=True))
    assert pairs["--browser.gatherUsageStats"] == "false" and pairs["--server.enableXsrfProtection"] == "true"
    assert pairs["--server.maxUploadSize"] == "10" and pairs["--client.showErrorDetails"] == "type"
    args, extra = parse(["--port", "8600", "--address", "0.0.0.0", "--server.runOnSave", "true", "--", "--x.y", "1"])
    argv = streamlit_argv(args, extra)
    assert argv[:3] == ["streamlit", "run", str(ROOT / "app" / "streamlit_app.py")]
    assert argv[3:7] == ["--server.address", "0.0.0.0", "--server.port", "8600"]
    assert argv[7 : 7 + len(flags)] == flags and argv[-4:] == ["--server.runOnSave", "true", "--x.y", "1"]


def _run_module(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    import os
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_dashboard_help_is_the_labs_own_and_bad_options_are_one_line(tmp_path):
    out = _run_module("app.launch", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: scl-dashboard") and len(out.stdout.splitlines()) < 40, out.stdout
    for flag in ("--zoo", "--port", "--address", "--device", "--version"):
        assert flag in out.stdout, flag
    assert "(default: 8501)" in out.stdout and "(default: 127.0.0.1)" in out.stdout
    assert "fileWatcherType" not in out.stdout  # not Streamlit's thousands of lines
    for args, message in ((["--zoo", str(tmp_path / "nowhere")], "no such folder"), (["--port", "0"], "--port 0"),
                          (["--frobnicate"], "unrecognized argument: --frobnicate"),
                          (["--device", "tpu"], "invalid choice: 'tpu'")):  # fmt: skip
        bad = _run_module("app.launch", *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
        assert bad.stderr.strip().splitlines()[-1].startswith(("error:", "scl-dashboard: error:")), bad.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _source_copy(dest: Path) -> Path:
    """The files a clone would have (tracked, plus new ones not yet committed and not ignored), copied to ``dest``:
    the wheel is built from them, as from a fresh clone."""
    import shutil

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
def test_the_installed_wheel_serves_the_shipped_zoo_from_outside_the_clone(tmp_path):
    """pip wheel, install into a fresh venv (the dependencies come from the lab's venv through a .pth file, so
    torch is not installed again), then from a folder outside the clone: the commands are the lab's, the dashboard
    serves (health endpoint) with the Streamlit settings applied, and its page shows the shipped zoo."""
    import os
    import sys
    import sysconfig
    import time
    import urllib.request

    from models.version import package_version

    src = _source_copy(tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCL_", "PYTHON"))}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(src)], check=True, env=env, timeout=600)  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("semantic_continuity_lab-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site_packages = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site_packages / "lab-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, env=env, timeout=600)  # fmt: skip
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    bin_dir = venv / "bin"

    probe = "import app, models.assets as a; print(app.__file__); print(a.default_zoo())"
    where = subprocess.run([str(py), "-c", probe], cwd=outside, env=env, capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    assert where[0].startswith(str(site_packages)), where  # the wheel's package, not the clone
    assert where[1] == str(venv / "share" / "semantic-continuity-lab" / "assets" / "zoo" / "default"), where
    assert (Path(where[1]) / "zoo.json").is_file()

    version = subprocess.run([str(bin_dir / "scl-train"), "--version"], cwd=outside, env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert version.stdout.startswith(f"scl-train {package_version()}"), (version.stdout, version.stderr)
    helped = subprocess.run([str(bin_dir / "scl-dashboard"), "--help"], cwd=outside, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert helped.returncode == 0 and "--zoo" in helped.stdout and len(helped.stdout.splitlines()) < 40

    port = _free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as sink:
        server = subprocess.Popen([str(bin_dir / "scl-dashboard"), "--port", str(port)], cwd=outside, env=env,
                                  stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        health, deadline = "", time.monotonic() + 240
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as reply:
                    health = reply.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert health == "ok", (health, log.read_text()[-3000:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as reply:
            assert '<div id="root">' in reply.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=60)
    printed = log.read_text()
    assert "Collecting usage statistics" not in printed, printed  # browser.gatherUsageStats = false was applied
    assert f"127.0.0.1:{port}" in printed

    page = ("from streamlit.testing.v1 import AppTest\nimport app\nfrom pathlib import Path\n"
            "at = AppTest.from_file(str(Path(app.__file__).parent / 'streamlit_app.py'), default_timeout=240)\n"
            "at.run()\nassert not at.exception, [e.value for e in at.exception]\n"
            "print('\\n'.join(c.value for c in at.caption))\n")  # fmt: skip
    shown = subprocess.run([str(py), "-c", page], cwd=outside, env=env, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "Zoo **default**" in shown.stdout and where[1] in shown.stdout, shown.stdout
