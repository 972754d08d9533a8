"""The image's two roles and the compose file, checked statically (building the image is tests/test_docker.py)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_entrypoint_takes_a_role():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["docker/entrypoint.sh"]' in text and 'CMD ["./lab", "dashboard"]' in text
    assert re.search(r"^ENV .*SCL_PUBLIC=1", text, re.M), "public mode is the image's default"
    for copied in ("backend.yaml", "docker"):
        assert re.search(rf"^COPY .*\b{re.escape(copied)}\b", text, re.M), copied
    assert "docker/healthcheck.py" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "docker" not in ignored and "backend.yaml" not in ignored


def entrypoint_with_lab(tmp_path: Path, lab: str) -> Path:
    """The entry point in a copy of /app's layout whose ./lab is the stand-in script ``lab``."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "lab").write_text(lab)
    (app / "lab").chmod(0o755)
    entry = tmp_path / "entrypoint.sh"
    entry.write_text((ROOT / "docker" / "entrypoint.sh").read_text().replace("cd /app", f"cd {app}"))
    entry.chmod(0o755)
    return entry


def test_entrypoint_dispatches_dashboard_backend_and_commands(tmp_path):
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "exec ./lab dashboard" in script and "./lab backend --host 0.0.0.0" in script
    # Run it with a stand-in ./lab: each role reaches the right command.
    entry = entrypoint_with_lab(tmp_path, '#!/usr/bin/env bash\necho "lab $*"\n')

    def run(*args: str) -> str:
        return subprocess.run([str(entry), *args], capture_output=True, text=True, check=True, timeout=30).stdout

    assert run().strip() == "lab dashboard"
    assert run("dashboard", "--port", "9").strip() == "lab dashboard --port 9"
    assert run("backend", "--zoo", "x=/zoo").strip() == "lab backend --host 0.0.0.0 --port 8000 --zoo x=/zoo"
    assert run("echo", "hi").strip() == "hi"
    assert run("./lab", "dashboard").strip() == "lab dashboard"  # the image's default command


def test_docker_stop_reaches_the_backend_as_ctrl_c(tmp_path):
    """`docker stop` sends SIGTERM to PID 1, which a Python backend without a handler ignores (then SIGKILL, Ray
    never shut down; seen with podman on 2026-12-02): the entry point passes it on as SIGINT, the backend's Ctrl+C."""
    backend = tmp_path / "backend.py"  # a stand-in backend: serves until Ctrl+C, then shuts down and exits 0
    backend.write_text(
        "import time\ntry:\n    print('serving', flush=True)\n    time.sleep(120)\n"  # the signal may come at once
        "except KeyboardInterrupt:\n    print('shut down on SIGINT', flush=True)\n"
    )
    lab = f'#!/usr/bin/env bash\nexec "{sys.executable}" "{backend}"\n'
    entry = entrypoint_with_lab(tmp_path, lab)
    # As PID 1 in a container starts: no signal ignored (a test run in the background may ignore SIGINT).
    proc = subprocess.Popen([str(entry), "backend"], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "serving"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout.read().strip() == "shut down on SIGINT"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_compose_starts_both_roles_with_a_zoo_mounted():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["backend"]["command"][0] == "backend" and services["dashboard"]["command"] == ["dashboard"]
    assert services["dashboard"]["environment"]["SCL_BACKEND"] == "http://backend:8000"
    for name in ("backend", "dashboard"):
        assert any(v.endswith(":/zoo:ro") for v in services[name]["volumes"]), name
        assert "SCL_TOKEN" in services[name]["environment"]
    assert "ports" not in services["backend"], "the backend is reached only through the compose network"
    assert all(p.startswith("127.0.0.1:") for p in services["dashboard"]["ports"])
