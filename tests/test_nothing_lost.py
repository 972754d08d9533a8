"""Nothing lost, nothing read outside the zoo (issue 18): each reproduction of the issue, driven as a user does, ends
with the right result or one ``error:`` line and exit 2, and every file that was there before is byte-identical
afterwards (sha256). A corpus of hostile zoos (traversal, absolute path, symlink, wrong hash, NaN weights) is run
against every loader."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.checkpoints import (
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    load_model,
    load_zoo,
    make_checkpoint,
    network_spec,
    write_zoo_manifest,
)
from models.networks import create_network
from models.objectives import VARIANTS
from models.safe_output import folder_lock, lock_path, move_aside, replacing
from tests.conftest import make_tiny_zoo

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def hashes(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (symlinks by their target's text)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(folder))] = "link:" + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept_copies(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f"{target.name}.old-*"))


def leftovers(target: Path) -> list[Path]:
    """Temporary siblings and lock files of ``target`` still on disk."""
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error(stderr: str) -> str:
    lines = error_lines(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def run(*args: str, limit_bytes: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <args>`` from the repository; ``limit_bytes`` caps the size of any file it writes (a full disk)."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap if limit_bytes else None)  # fmt: skip


@pytest.fixture
def holder():
    """Start a process that holds the lock of a folder (as a live run does) until the test ends."""
    started = []

    def start(target: Path) -> subprocess.Popen:
        code = ("import sys, time\nfrom models.safe_output import folder_lock\n"
                "with folder_lock(sys.argv[1], 'training run'):\n"
                "    print('locked', flush=True)\n    time.sleep(600)\n")  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                text=True)  # fmt: skip
        started.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def tiny_checkpoint(path: Path, nan: bool = False, dataset: str = "digits") -> Path:
    torch.manual_seed(0)
    model = create_network("resnet18-cifar", 10, width=4)
    if nan:
        with torch.no_grad():
            next(iter(model.parameters())).view(-1)[0] = float("nan")
    desc = {"name": dataset, "split": "train", "num_classes": 10}
    ckpt = make_checkpoint(model, variant="standard", network=network_spec("resnet18-cifar", 10, 4),
                           config={"variant": "standard", "dataset": dataset}, dataset=desc)  # fmt: skip
    atomic_torch_save(ckpt, path)
    return path


# --- 1. train_zoo never writes over a zoo in place -------------------------------------------------------------


def zoo_argv(out: Path, work: Path) -> list[str]:
    return ["--out", str(out), "--work-dir", str(work), "--variants", "standard", "--dataset", "digits",
            "--train-limit", "100", "--batch-size", "40", "--warmup-steps", "1", "--epochs-scale", str(1 / 6),
            "--pgd-eval-size", "4", "--num-threads", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def digits_work(tmp_path_factory) -> Path:
    """A work folder in which train_zoo has trained and evaluated ``standard`` on digits (once per module)."""
    from models import train_zoo

    base = tmp_path_factory.mktemp("zoo-work")
    before = torch.get_num_threads()
    try:
        assert train_zoo.main(zoo_argv(base / "fresh", base / "work")) == 0
    finally:
        torch.set_num_threads(before)
    assert load_zoo(base / "fresh").variants == ["standard"] and not leftovers(base / "fresh")
    return base / "work"


def test_train_zoo_that_fails_at_the_manifest_leaves_the_zoo_byte_identical(digits_work, tmp_path, capsys):
    """Issue 18.1: retraining standard on digits into a zoo of another data set fails at the manifest step; the
    zoo's files used to be replaced already, so it no longer loaded."""
    from models import train_zoo

    zoo = make_tiny_zoo(tmp_path / "Z", dataset={"name": "fashion-mnist", "split": "train", "num_classes": 10})
    before = hashes(zoo)
    work = shutil.copytree(digits_work, tmp_path / "W")
    capsys.readouterr()
    assert train_zoo.main(zoo_argv(zoo, work)) == 2
    assert "variants must share data set" in one_error(capsys.readouterr().err)
    assert hashes(zoo) == before and not kept_copies(zoo) and not leftovers(zoo)
    assert load_zoo(zoo).variants == list(VARIANTS)


def test_train_zoo_over_an_existing_zoo_keeps_the_earlier_one_aside(digits_work, tmp_path, capsys):
    """Issue 18.1: the README's `train_zoo --out assets/zoo/default` retrains over the shipped zoo; the earlier zoo
    is now kept whole as <out>.old-<timestamp>, and the new one holds its other variants unchanged."""
    from models import train_zoo

    zoo = make_tiny_zoo(tmp_path / "Z")
    before = hashes(zoo)
    work = shutil.copytree(digits_work, tmp_path / "W")
    capsys.readouterr()
    assert train_zoo.main(zoo_argv(zoo, work)) == 0
    err = capsys.readouterr().err
    [kept] = kept_copies(zoo)
    assert hashes(kept) == before and f"kept as {kept}" in err and "evaluated earlier" in err
    new = load_zoo(zoo)
    assert new.variants == list(VARIANTS) and sha(zoo / "standard.pt") == sha(work / "standard" / "model.pt")
    assert all(sha(zoo / f"{v}.pt") == before[f"{v}.pt"] for v in VARIANTS if v != "standard")
    assert not leftovers(zoo)
    assert train_zoo.main(zoo_argv(zoo, work)) == 0  # up to date: nothing is written or moved again
    assert "already in" in capsys.readouterr().err and kept_copies(zoo) == [kept]


# --- 2. a report rerun without --resume keeps the earlier report ------------------------------------------------

REPORT_SETTINGS = ["--quick", "--set", "n_images=16", "--num-threads", "1", "--no-progress", "--device", "cpu"]


def test_a_report_rerun_without_resume_keeps_the_earlier_report(tiny_zoo, tmp_path, capsys, one_thread):
    """Issue 18.2: `--quick --only continuity` over a report used to delete it ("removed the previous report")."""
    from analysis.report import main

    out = tmp_path / "report"
    assert main(["--zoo", str(tiny_zoo), "--out", str(out), "--only", "continuity", *REPORT_SETTINGS]) == 0
    before = hashes(out)
    assert "summary.json" in before and any(name.startswith("results/") for name in before)
    capsys.readouterr()
    assert main(["--zoo", str(tiny_zoo), "--out", str(out), "--only", "continuity", *REPORT_SETTINGS]) == 0
    [kept] = kept_copies(out)
    assert hashes(kept) == before and f"kept as {kept}" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["experiments"]["continuity"]["status"] == "ok"
    assert not leftovers(out)


def test_a_second_report_into_a_folder_in_use_is_refused(tiny_zoo, tmp_path, holder, capsys):
    from analysis.report import main

    out = tmp_path / "report"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    proc = holder(out)
    assert main(["--zoo", str(tiny_zoo), "--out", str(out), *REPORT_SETTINGS]) == 2
    assert f"pid {proc.pid}" in one_error(capsys.readouterr().err)
    assert hashes(out) == {"mine.txt": sha(out / "mine.txt")}


def test_bad_report_settings_are_one_line(tiny_zoo, tmp_path, capsys):
    """Issue 18.7: `--set n_images=-5` ran 995 images with an estimate of "-0"."""
    from analysis.report import main

    for setting in ("n_images=-5", "n_images=0", "pgd_images=-1", "seeds=-1"):
        assert main(["--zoo", str(tiny_zoo), "--out", str(tmp_path / "r"), "--set", setting, "--no-progress"]) == 2
        assert setting.split("=")[0] in one_error(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


# --- 3. import_model never replaces or deletes an existing --out ------------------------------------------------


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory) -> dict[str, Path]:
    """A seeded timm test_resnet state_dict (10 classes), and the same with one NaN."""
    timm = pytest.importorskip("timm")
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    state = timm.create_model("test_resnet", pretrained=False, num_classes=10).state_dict()
    torch.save(state, folder / "good.pth")
    bad = {k: v.clone() for k, v in state.items()}
    next(v for v in bad.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    torch.save(bad, folder / "nan.pth")
    return {"good": folder / "good.pth", "nan": folder / "nan.pth"}


def import_argv(weights: Path, out: Path, *extra: str) -> list[str]:
    return [str(weights), "--arch", "timm:test_resnet", "--dataset", "digits", "--input-size", "32", "--out",
            str(out), "--num-threads", "1", *extra]  # fmt: skip


def test_an_import_that_fails_its_check_keeps_the_existing_out(timm_weights, tmp_path, capsys, one_thread):
    """Issue 18.3: a state_dict with one NaN said "nothing written" and deleted the file that was at --out."""
    from models.import_model import main

    out = tiny_checkpoint(tmp_path / "mine.pt")
    before = hashes(tmp_path)
    assert main(import_argv(timm_weights["nan"], out)) == 2
    assert "non-finite weights" in one_error(capsys.readouterr().err)
    assert hashes(tmp_path) == before and not leftovers(out)


def test_an_import_over_an_existing_out_keeps_it_aside(timm_weights, tmp_path, capsys, one_thread):
    from models.import_model import main

    out = tiny_checkpoint(tmp_path / "mine.pt")
    before = sha(out)
    assert main(import_argv(timm_weights["good"], out)) == 0
    [kept] = kept_copies(out)
    assert sha(kept) == before and f"as {kept}" in capsys.readouterr().out
    assert load_checkpoint(out)["network"]["name"] == "timm:test_resnet" and not leftovers(out)


def test_import_sizes_and_data_roots_are_checked(timm_weights, tmp_path, capsys, monkeypatch, one_thread):
    """Issue 18.7: --input-size -32 was a traceback and 0 silently 224; a missing --data-root was accepted and a
    relative one stored as typed (the report then failed from another folder)."""
    from models.import_model import main

    out = tmp_path / "x.pt"
    for flags, words in [(["--input-size", "-32"], "--input-size -32"), (["--input-size", "0"], "--input-size 0"),
                         (["--data-root", str(tmp_path / "nowhere")], "no such folder")]:  # fmt: skip
        args = import_argv(timm_weights["good"], out)
        args[args.index("--input-size") : args.index("--input-size") + 2] = []
        assert main([*args, *flags]) == 2
        assert words in one_error(capsys.readouterr().err)
        assert not out.exists() and not leftovers(out)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(import_argv(timm_weights["good"], out, "--data-root", "data")) == 0
    assert load_checkpoint(out)["config"]["data_root"] == str((tmp_path / "data").resolve())


# --- 4. one writer per run folder and per zoo folder -----------------------------------------------------------

TRAIN = ["--dataset", "digits", "--train-limit", "64", "--epochs", "0.1", "--num-threads", "1", "--no-progress"]


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(tmp_path, holder, capsys):
    """Issue 18.4: two runs into one --out both exited 0; --force moved a live run aside; --resume ran alongside."""
    from models.train_cli import main

    out = tmp_path / "run"
    out.mkdir()
    tiny_checkpoint(out / "checkpoint.pt")
    before = hashes(out)
    proc = holder(out)
    for extra in ([], ["--resume"], ["--force"]):
        target = out if extra else tmp_path / "other"
        if not extra:
            holder(target)  # a fresh folder a live run has just started in
        assert main(["--out", str(target), *TRAIN, *extra]) == 2
        line = one_error(capsys.readouterr().err)
        assert "in use by another process" in line and "a training run" in line
    assert f"pid {proc.pid}" in line
    assert hashes(out) == before and not kept_copies(out)


def test_the_lock_of_a_dead_process_is_taken_over(tiny_zoo, tmp_path, holder, capsys):
    from models.zoo import main

    out = tmp_path / "zoo"
    proc = holder(out)
    assert main(["--out", str(out), "--variant", f"standard={tiny_zoo / 'standard.pt'}"]) == 2
    assert f"pid {proc.pid}" in one_error(capsys.readouterr().err) and not out.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()  # left behind by kill -9
    assert main(["--out", str(out), "--variant", f"standard={tiny_zoo / 'standard.pt'}"]) == 0
    assert load_zoo(out).variants == ["standard"] and not leftovers(out)


def test_models_zoo_force_keeps_the_earlier_zoo(tiny_zoo, tmp_path, capsys):
    from models.zoo import main

    out = tmp_path / "zoo"
    assert main(["--out", str(out), "--variant", f"standard={tiny_zoo / 'standard.pt'}"]) == 0
    before = hashes(out)
    assert main(["--out", str(out), "--variant", f"C={tiny_zoo / 'C.pt'}"]) == 2  # without --force: refused
    assert hashes(out) == before
    assert main(["--out", str(out), "--variant", f"C={tiny_zoo / 'C.pt'}", "--force"]) == 0
    [kept] = kept_copies(out)
    assert hashes(kept) == before and load_zoo(out).variants == ["C"]


def test_a_lock_nests_in_one_process_and_is_removed_after():
    target = Path("/tmp") / f"scl-lock-test-{os.getpid()}"
    with folder_lock(target), folder_lock(target):
        assert lock_path(target).exists()
    assert not lock_path(target).exists()


# --- 5. and 6. paths read from a manifest stay inside the zoo; results are found from the zoo's folder -----------


def hostile_zoo(kind: str, base: Path) -> tuple[Path, Path]:
    """A one-variant zoo whose manifest is hostile in the way ``kind`` says; returns (zoo, the file outside it)."""
    zoo, outside = base / "zoo", base / "outside_secret.pt"
    zoo.mkdir(parents=True)
    tiny_checkpoint(outside)
    tiny_checkpoint(zoo / "standard.pt", nan=kind == "nan")
    write_zoo_manifest(zoo, {"standard": "standard.pt"}, {})
    manifest = json.loads((zoo / "zoo.json").read_text())
    item = manifest["variants"]["standard"]
    if kind == "traversal":
        item["file"], item["sha256"] = "../outside_secret.pt", sha(outside)  # a matching hash
    elif kind == "absolute":
        item["file"], item["sha256"] = str(outside), sha(outside)
    elif kind == "symlink":
        (zoo / "link.pt").symlink_to(outside)
        item["file"], item["sha256"] = "link.pt", sha(outside)
    elif kind == "wrong-hash":
        item["sha256"] = "0" * 64
    elif kind == "missing":
        item["file"] = "gone.pt"
    (zoo / "zoo.json").write_text(json.dumps(manifest))
    return zoo, outside


HOSTILE = ("traversal", "absolute", "symlink", "wrong-hash", "missing", "nan")
REFUSAL = {"traversal": "not a path inside", "absolute": "not a path inside", "symlink": "leads outside",
           "wrong-hash": "is missing or does not match", "missing": "is missing or does not match",
           "nan": "non-finite weights"}  # fmt: skip


def _load_zoo(zoo: Path) -> None:
    load_zoo(zoo)


def _transfer_paths(zoo: Path) -> None:
    from analysis.transfer import variant_paths

    for path in variant_paths(zoo).values():
        load_model(path)  # what the transfer experiment does with each path


def _dashboard(zoo: Path) -> None:
    from app.zoo_cache import open_zoo

    open_zoo(zoo, "cpu")


LOADERS = {"load_zoo": (_load_zoo, HOSTILE), "app": (_dashboard, HOSTILE),
           # the transfer experiment hashes nothing itself (the report hands it a verified Zoo): paths and weights
           "transfer": (_transfer_paths, ("traversal", "absolute", "symlink", "nan"))}  # fmt: skip


@pytest.mark.parametrize(("loader", "kind"), [(name, kind) for name, (_, kinds) in LOADERS.items() for kind in kinds])
def test_every_loader_refuses_every_hostile_zoo_before_opening_outside(loader, kind, tmp_path, monkeypatch):
    """Issue 18.5: `../outside_secret.txt` was opened and hashed, and with a matching sha256 it loaded."""
    import models.checkpoints as C

    zoo, outside = hostile_zoo(kind, tmp_path)
    outside, loader = Path(os.path.realpath(outside)), LOADERS[loader][0]
    opened = []
    for name in ("sha256_file", "safe_torch_load"):
        real = getattr(C, name)
        monkeypatch.setattr(C, name, lambda p, *a, _real=real, **k: (opened.append(Path(p)), _real(p, *a, **k))[1])
    with pytest.raises(CheckpointError, match=REFUSAL[kind]):
        loader(zoo)
    assert all(Path(os.path.realpath(p)) != outside for p in opened), opened


@pytest.mark.parametrize("kind", ["traversal", "wrong-hash", "missing", "nan"])
def test_the_report_command_refuses_a_hostile_zoo_in_one_line(kind, tmp_path, capsys):
    from analysis.report import main

    zoo, _ = hostile_zoo(kind, tmp_path)
    assert main(["--zoo", str(zoo), "--out", str(tmp_path / "r"), "--quick", "--no-progress"]) == 2
    assert REFUSAL[kind] in one_error(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_a_missing_and_a_changed_file_read_the_same(tmp_path):
    """Issue 18.5: "is missing" vs "does not match" told whether a file exists."""
    messages = []
    for kind in ("missing", "wrong-hash"):
        zoo, _ = hostile_zoo(kind, tmp_path / kind)
        with pytest.raises(CheckpointError) as info:
            load_zoo(zoo)
        messages.append(
            str(info.value).replace(str(zoo), "ZOO").replace("gone.pt", "FILE").replace("standard.pt", "FILE")
        )
    assert messages[0] == messages[1]


def test_nan_weights_load_only_when_allowed(tmp_path, capsys):
    path = tiny_checkpoint(tmp_path / "nan.pt", nan=True)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model(path)
    load_model(path, allow_nan=True)
    assert "warning:" in capsys.readouterr().err


def test_results_are_found_from_the_zoo_folder_never_from_its_manifest_name(tmp_path):
    """Issue 18.6: a zoo named `../../../../tmp/x` made the Claims page show every CSV and JSON there."""
    from app.results_store import RESULTS_ROOT, results_folders

    zoo = tmp_path / "myzoo"
    handle = SimpleNamespace(name="../../../../" + str(tmp_path / "secret").lstrip("/"), path=str(zoo))
    folders = [Path(os.path.abspath(f)) for f in results_folders(handle)]
    assert Path(os.path.abspath(RESULTS_ROOT / "myzoo")) in folders
    assert all(f.name in ("myzoo", "results") and not str(f).startswith(str(tmp_path / "secret")) for f in folders)


# --- 7. errors are one line: full disk, unwritable output, stale temporary files --------------------------------


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_earlier_file(tmp_path):
    """Issue 18.7: a full disk while saving was `RuntimeError: [enforce fail at inline_container.cc:672]`."""
    out = tmp_path / "run"
    proc = run("models.train", "--out", str(out), *TRAIN, limit_bytes=20_000)
    assert proc.returncode == 2 and "cannot write" in one_error(proc.stderr), proc.stderr[-2000:]
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_a_full_disk_while_assembling_a_zoo_changes_nothing(tiny_zoo, tmp_path):
    out = make_tiny_zoo(tmp_path / "zoo")
    before = hashes(out)
    proc = run("models.zoo", "--out", str(out), "--variant", f"C={tiny_zoo / 'C.pt'}", "--force", limit_bytes=20_000)
    assert proc.returncode == 2 and "File too large" in one_error(proc.stderr)
    assert hashes(out) == before and not kept_copies(out) and not leftovers(out)


def test_an_output_that_cannot_be_a_folder_is_one_line(tiny_zoo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run("models.zoo", "--out", str(blocker / "zoo"), "--variant", f"C={tiny_zoo / 'C.pt'}")
    assert proc.returncode == 2 and str(blocker) in one_error(proc.stderr)
    assert blocker.read_text() == "not a folder"


def test_temporary_files_of_a_killed_process_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".model.pt.{dead.pid}.abc.tmp", tmp_path / f".zoo.tmp-{dead.pid}-ab12"]
    stale[0].write_bytes(b"")
    stale[1].mkdir()
    live = tmp_path / f".model.pt.{os.getpid()}.def.tmp"  # a write in progress in a live process: kept
    live.write_bytes(b"")
    tiny_checkpoint(tmp_path / "model.pt")
    with replacing(tmp_path / "zoo", folder=True) as staged:
        (staged.path / "x").write_text("1")
    assert not any(p.exists() for p in stale) and live.exists() and (tmp_path / "zoo" / "x").read_text() == "1"


def test_replacing_removes_its_temporary_sibling_on_failure_and_keeps_the_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("earlier")
    with pytest.raises(KeyboardInterrupt), replacing(target, folder=True) as staged:
        (staged.path / "a").write_text("half")
        raise KeyboardInterrupt
    assert (target / "a").read_text() == "earlier" and not leftovers(target)
    assert move_aside(target).name.startswith("out.old-") and not target.exists()
    with folder_lock(tmp_path / "x"):
        code = f"from models.safe_output import folder_lock as f\nwith f({str(tmp_path / 'x')!r}): pass"
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 1 and f"OutputInUse: {tmp_path / 'x'} is in use" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr


# --- 8. signals: Ctrl-C while a command starts, SIGTERM in the report ----------------------------------------------


def default_sigint() -> None:
    """In the child before it starts: Ctrl-C's default disposition. A test run started in the background by a
    non-interactive shell (``cmd &``) ignores SIGINT, and a child would inherit that (Python then installs no
    KeyboardInterrupt handler), which is not what a user's terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_torch(proc: subprocess.Popen) -> None:
    """Return once ``proc`` has begun importing torch (its native library is mapped)."""
    maps = Path(f"/proc/{proc.pid}/maps")
    while proc.poll() is None:
        try:
            if "libtorch" in maps.read_text():
                return
        except OSError:
            return
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when torch is being imported")
@pytest.mark.parametrize("command", [["models.train", "--dataset", "digits"], ["analysis.report", "--quick"],
                                     ["models.zoo", "--variant", "a=b"]])  # fmt: skip
def test_ctrl_c_while_a_command_starts_is_one_line_not_a_traceback(command, tmp_path):
    """Issue 18.7: SIGINT during start-up printed a KeyboardInterrupt traceback."""
    args = [sys.executable, "-m", *command, "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    _wait_for_torch(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_sigterm_in_the_report_writes_the_summary_and_removes_its_temporary_folder(tiny_zoo, tmp_path):
    """Issue 18.7: SIGTERM to the report outside a training step left no summary and leaked its temporary folder."""
    tmp, out = tmp_path / "tmp", tmp_path / "report"
    tmp.mkdir()
    args = [sys.executable, "-m", "analysis.report", "--zoo", str(tiny_zoo), "--out", str(out), "--only",
            "continuity,probes", *REPORT_SETTINGS]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, env={**ENV, "TMPDIR": str(tmp)}, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "(1/2) continuity" in line:
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["experiments"]["probes"]["status"] == "not run"
    assert not list(tmp.glob("scl-report-*")) and not leftovers(out)


def test_init_onto_a_data_set_whose_classes_mean_something_else_says_so(tmp_path, capsys, one_thread):
    """Issue 18.7: `--init` of a 10-class CIFAR import onto digits kept the head without a word."""
    from models.train_cli import main

    init = tmp_path / "cifar.pt"
    torch.manual_seed(0)
    model = create_network("resnet18-cifar", 10, width=4)
    desc = {"name": "cifar10", "split": "train", "num_classes": 10, "classes": [str(i) for i in range(10)]}
    atomic_torch_save(make_checkpoint(model, variant="standard", network=network_spec("resnet18-cifar", 10, 4),
                                      config={"dataset": "cifar10"}, dataset=desc), init)  # fmt: skip
    assert main(["--out", str(tmp_path / "run"), "--init", str(init), *TRAIN]) == 0
    assert "was trained on cifar10" in capsys.readouterr().err


def test_an_on_disk_data_set_without_its_folder_names_the_flag(tmp_path, capsys):
    """Issue 18.7: `cifar10 ... pass root=<dir>` named the Python argument, not the flag."""
    from models.train_cli import main

    assert main(["--out", str(tmp_path / "run"), "--dataset", "cifar10", "--no-progress"]) == 2
    assert "--data-root <dir>" in one_error(capsys.readouterr().err) and not (tmp_path / "run").exists()


def test_a_zoo_is_not_assembled_from_nan_weights_unless_allowed(tmp_path, capsys):
    from models.zoo import main

    nan = tiny_checkpoint(tmp_path / "nan.pt", nan=True)
    assert main(["--out", str(tmp_path / "zoo"), "--variant", f"standard={nan}"]) == 2
    assert "non-finite weights" in one_error(capsys.readouterr().err) and not (tmp_path / "zoo").exists()
    assert main(["--out", str(tmp_path / "zoo"), "--variant", f"standard={nan}", "--allow-nan"]) == 0
    assert "warning:" in capsys.readouterr().err
    assert load_zoo(tmp_path / "zoo", allow_nan=True).variants == ["standard"]


def test_a_variant_name_never_leads_the_zoo_page_outside_the_zoo(tmp_path):
    from app.cards import card_markdown

    (tmp_path / "zoo" / "cards").mkdir(parents=True)
    (tmp_path / "secret.md").write_text("secret")
    (tmp_path / "zoo" / "cards" / "standard.md").write_text("# card")
    handle = SimpleNamespace(path=str(tmp_path / "zoo"))
    assert card_markdown(handle, "standard") == "# card" and card_markdown(handle, "../../secret") is None
