"""models.import_model: torchvision / timm state_dicts become lab checkpoints with the same logits; unsafe files are
refused with a clear line and exit status 2, as a user sees them on the command line."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from models import import_model as IM
from models.checkpoints import load_checkpoint, load_model
from models.import_model import main

ROOT = Path(__file__).resolve().parent.parent
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

CIFAR_MEAN, CIFAR_STD = ["0.4914", "0.4822", "0.4465"], ["0.247", "0.2435", "0.2616"]


def _probe(n: int = 3, size: int = 32, seed: int = 7) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _normalised(x: torch.Tensor, mean: list[str], std: list[str]) -> torch.Tensor:
    m = torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1)
    s = torch.tensor([float(v) for v in std]).view(1, 3, 1, 1)
    return (x - m) / s


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """A torchvision resnet18 (10 classes) as .pth and a timm test_resnet (10 classes) as .safetensors, seeded,
    with BatchNorm statistics that are not the defaults (so a lost buffer would change the logits)."""
    folder = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=10)
    tm = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    for model in (tv, tm):
        model.train()
        with torch.no_grad():
            model(_probe(8, 32, seed=1) * 3)  # move the running statistics away from 0/1
        model.eval()
    torch.save(tv.state_dict(), folder / "tv.pth")
    safetensors_torch.save_file(tm.state_dict(), str(folder / "tm.safetensors"))
    return {"folder": folder, "tv": tv, "tm": tm}


def import_tv(src: dict, out: Path, *extra: str) -> int:
    args = ["--arch", "torchvision:resnet18", "--dataset", "digits", "--input-size", "32", "--out", str(out)]
    return main([str(src["folder"] / "tv.pth"), *args, "--mean", *CIFAR_MEAN, "--std", *CIFAR_STD, *extra])


def test_torchvision_state_dict_imports_with_identical_logits(sources, tmp_path, capsys, one_thread):
    out = tmp_path / "tv.pt"
    classes = ",".join(f"c{i}" for i in range(10))
    assert import_tv(sources, out, "--classes", classes, "--variant", "mine") == 0
    printed = capsys.readouterr().out
    assert "fc.weight -> head.weight" in printed and "GradCAM layer layer4" in printed
    model, meta = load_model(out)
    spec = meta["network"]
    assert spec["name"] == "torchvision:resnet18" and spec["num_classes"] == 10 and spec["input_size"] == 32
    assert spec["classifier"] == "fc" and spec["gradcam_layer"] == "layer4"
    assert spec["mean"] == [float(v) for v in CIFAR_MEAN] and spec["std"] == [float(v) for v in CIFAR_STD]
    assert meta["variant"] == "mine" and meta["dataset"]["classes"] == classes.split(",")
    assert meta["dataset"]["name"] == "digits" and meta["dataset"]["image_shape"] == [3, 32, 32]
    assert meta["config"]["import"]["renamed_keys"] == {"fc.weight": "head.weight", "fc.bias": "head.bias"}
    assert model.gradcam_layer is model.body.layer4
    x = _probe()
    with torch.no_grad():
        want = sources["tv"](_normalised(x, CIFAR_MEAN, CIFAR_STD))
        assert torch.allclose(model(x), want, rtol=0, atol=1e-5)
        assert torch.allclose(model.forward_head(model.forward_features(x)), want, rtol=0, atol=1e-5)
    weights = load_checkpoint(out)["model"]
    assert "head.weight" in weights and "body.layer4.1.bn2.running_mean" in weights and "body.fc.weight" not in weights


def test_timm_safetensors_imports_with_identical_logits_and_timm_defaults(sources, tmp_path, capsys, one_thread):
    out = tmp_path / "tm.pt"
    assert main([str(sources["folder"] / "tm.safetensors"), "--arch", "timm:test_resnet", "--dataset", "digits",
                 "--input-size", "32", "--out", str(out)]) == 0  # fmt: skip
    model, meta = load_model(out)
    spec = meta["network"]
    assert spec["num_classes"] == 10  # inferred from the classifier's rows
    assert spec["mean"] == list(timm.get_pretrained_cfg("test_resnet").mean)  # timm's declared normalisation
    assert meta["dataset"]["classes"] == [str(i) for i in range(10)] and meta["variant"] == "tm"
    x = _probe()
    with torch.no_grad():
        want = sources["tm"](_normalised(x, [str(v) for v in spec["mean"]], [str(v) for v in spec["std"]]))
        assert torch.allclose(model(x), want, rtol=0, atol=1e-5)


def test_wrapped_and_prefixed_state_dict_is_unwrapped(sources, tmp_path, capsys, one_thread):
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sources["tv"].state_dict().items()}}, wrapped)
    out = tmp_path / "w.pt"
    assert main([str(wrapped), "--arch", "torchvision:resnet18", "--dataset", "digits", "--input-size", "32",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "stripped prefix 'module.'" in capsys.readouterr().out
    assert load_checkpoint(out)["config"]["import"]["stripped_prefix"] == "module."


def test_logit_mismatch_fails_loudly_and_keeps_nothing(sources, tmp_path, capsys, monkeypatch, one_thread):
    """If the rebuilt network computed anything else than the source, the import must fail, not write a file."""
    original = IM.ImportedNetwork.forward_head
    monkeypatch.setattr(IM.ImportedNetwork, "forward_head", lambda self, f: original(self, f) + 1e-3)
    out = tmp_path / "bad.pt"
    assert import_tv(sources, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the imported model's logits differ") and "nothing written" in err
    assert not out.exists()


def test_weights_that_do_not_fit_and_bad_options_are_one_line_errors(sources, tmp_path, capsys, one_thread):
    tv = str(sources["folder"] / "tv.pth")
    cases = [
        ([tv, "--arch", "timm:test_resnet"], "do not fit timm:test_resnet"),
        ([tv, "--arch", "torchvision:resnet18", "--num-classes", "7"], "do not fit"),
        ([tv, "--arch", "keras:resnet"], "expected 'torchvision:<arch>' or 'timm:<arch>'"),
        ([tv, "--arch", "torchvision:nonet"], "torchvision has no classification architecture 'nonet'"),
        ([tv, "--arch", "torchvision:resnet18", "--num-classes", "10", "--classes", "a,b"], "2 class names given"),
        ([tv, "--arch", "torchvision:resnet18", "--gradcam-layer", "layer9"], "no module 'layer9'"),
        ([str(tmp_path / "missing.pth"), "--arch", "torchvision:resnet18"], "weights file not found"),
    ]
    for args, message in cases:
        rc = main([*args, "--dataset", "digits", "--input-size", "32", "--out", str(tmp_path / "x.pt")])
        err = capsys.readouterr().err
        assert rc == 2, args
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (args, err)
    assert not (tmp_path / "x.pt").exists()
    assert main([tv, "--arch", "torchvision:resnet18", "--dataset", "nosuchset", "--out", str(tmp_path / "y.pt")]) == 2
    assert "unknown data set 'nosuchset'" in capsys.readouterr().err


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_whole_model_pickles_and_payloads_are_refused_without_running_them(sources, tmp_path, capsys, one_thread):
    full = tmp_path / "full.pt"
    torch.save(sources["tv"], full)  # torch.save(model): a pickle of the class, not a state_dict
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}, protocol=2))
    for path, named in ((full, "torchvision.models.resnet.ResNet"), (evil, "")):
        rc = main([str(path), "--arch", "torchvision:resnet18", "--dataset", "digits", "--out", str(tmp_path / "o.pt")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: refused to load {path}: it holds pickled Python objects"), err
        assert named in err and "model.state_dict()" in err and "weights_only" not in err
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_torchscript_archive_is_refused_from_the_command_line(sources, tmp_path):
    scripted = tmp_path / "scripted.pt"
    with pytest.warns(FutureWarning):  # torch.jit is deprecated, still what many people have
        torch.jit.save(torch.jit.trace(sources["tv"], _probe(1)), str(scripted))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "models.import_model", str(scripted), "--arch", "torchvision:resnet18",
         "--dataset", "digits", "--out", str(tmp_path / "o.pt")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TorchScript archive" in lines[0] and "model.state_dict()" in lines[0], proc.stderr
    assert "weights_only" not in proc.stderr and not (tmp_path / "o.pt").exists()


def test_a_lab_checkpoint_is_not_imported_again(tiny_zoo, tmp_path, capsys):
    rc = main([str(tiny_zoo / "standard.pt"), "--arch", "torchvision:resnet18", "--dataset", "digits",
               "--out", str(tmp_path / "o.pt")])  # fmt: skip
    assert rc == 2 and "already a lab checkpoint" in capsys.readouterr().err


def test_gradcam_runs_on_the_chosen_layer_and_warns_when_its_map_is_below_4x4(sources, tmp_path, capsys, one_thread):
    import warnings

    from analysis.attributions import gradcam

    assert import_tv(sources, tmp_path / "tv.pt") == 0
    model, _ = load_model(tmp_path / "tv.pt")
    targets = torch.tensor([0, 1])
    with pytest.warns(UserWarning, match="GradCAM map is only 1x1"):  # 32 px through resnet18: layer4 is 1x1
        maps, extras = gradcam(model, _probe(2, 32), targets, layer="layer4")
    assert maps.shape == (2, 32, 32) and extras["raw"].shape == (2, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 128 px: layer4 is 4x4, no warning
        maps, extras = gradcam(model, _probe(2, 128), targets)
    assert maps.shape == (2, 128, 128) and extras["raw"].shape == (2, 4, 4)


# ----------------------------------------------------------------------------- checked against data


def _write_cifar_folder(root: Path, n_train: int = 500, n_test: int = 400, seed: int = 0) -> None:
    """A CIFAR-10-format folder (python pickles) of two classes that differ only in brightness: 'dark' images around
    0.05, 'bright' ones around 0.25. The data's channel statistics (mean ~0.15, std ~0.1) put the classes at about -1
    and +1; ImageNet's (mean ~0.45, std ~0.23) put both below -1, where a network trained on the data's sees 'dark'."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 2, n)
        pixels = np.where(labels == 1, 0.25, 0.05)[:, None] + rng.normal(0, 0.02, (n, 3072))
        return {b"data": np.clip(pixels * 255, 0, 255).round().astype(np.uint8), b"labels": labels.tolist()}

    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"dark", b"bright"]}, protocol=2))
    for name, n in [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]:
        (d / name).write_bytes(pickle.dumps(batch(n), protocol=2))


@pytest.fixture(scope="module")
def brightness(tmp_path_factory) -> dict:
    """The CIFAR-format folder and a torchvision resnet18 (2 classes) trained a few steps on it with the data's own
    normalisation, BatchNorm statistics set from the training images, saved as a state_dict."""
    from models.data import load_dataset

    folder = tmp_path_factory.mktemp("brightness")
    _write_cifar_folder(folder / "cifar")
    train = load_dataset("cifar10", "train", folder / "cifar")
    x, y = train.images, train.labels
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3))
    norm = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(15):
        pick = torch.randint(0, len(y), (32,))
        loss = torch.nn.functional.cross_entropy(net(norm[pick]), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for module in net.modules():  # exact running statistics of the training images (not a few momentum steps)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        net.train()(norm)
    torch.set_num_threads(before)
    torch.save(net.eval().state_dict(), folder / "bright.pth")
    return {"folder": folder, "root": folder / "cifar", "mean": mean.tolist(), "std": std.tolist()}


def import_bright(src: dict, out: Path, *extra: str) -> int:
    return main([str(src["folder"] / "bright.pth"), "--arch", "torchvision:resnet18", "--dataset", "cifar10",
                 "--data-root", str(src["root"]), "--input-size", "32", "--out", str(out), "--check-images", "300",
                 "--num-threads", "1", *extra])  # fmt: skip


def _percentages(text: str) -> list[float]:
    import re

    return [float(v) for v in re.findall(r"(\d+\.\d)%", text)]


def test_a_wrong_default_normalisation_is_warned_about_with_both_accuracies(brightness, tmp_path, capsys):
    """Without --mean/--std the import uses ImageNet's values; the logit check passes, but the accuracy on the test
    split is far from the one with the data's own statistics: the import says so, with both numbers."""
    out = tmp_path / "wrong.pt"
    assert import_bright(brightness, out) == 0
    captured = capsys.readouterr()
    warnings_ = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings_) == 1, (captured.out, captured.err)
    (warning,) = warnings_
    default_acc, data_acc = _percentages(warning)
    assert data_acc >= 90.0 and data_acc - default_acc > 3.0, warning
    assert "--mean/--std" in warning and "300 test images" in warning
    assert f"accuracy {default_acc:.1f}% on 300 test images of cifar10" in captured.out
    check = load_checkpoint(out)["config"]["import"]["accuracy_check"]  # the card's record
    assert check["images"] == 300 and not check["normalisation_given"]
    assert round(100 * check["accuracy"], 1) == default_acc and round(100 * check["data_accuracy"], 1) == data_acc
    assert check["data_mean"] == pytest.approx(brightness["mean"], abs=0.01)  # test split ~ training statistics

    right = tmp_path / "right.pt"
    stats = ["--mean", *map(str, brightness["mean"]), "--std", *map(str, brightness["std"])]
    assert import_bright(brightness, right, *stats) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    (given_acc,) = _percentages(captured.out.split("accuracy ", 1)[1].splitlines()[0])
    assert given_acc >= 90.0
    assert load_checkpoint(right)["config"]["import"]["accuracy_check"]["normalisation_given"]


def test_expect_accuracy_refuses_the_import_and_keeps_the_previous_out(brightness, tmp_path, capsys):
    out = tmp_path / "mine.pt"
    out.write_bytes(b"the previous checkpoint")
    assert import_bright(brightness, out, "--expect-accuracy", "0.9") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the imported model's accuracy is ") and err.count("\n") == 1, err
    assert "below --expect-accuracy 90.0%" in err and "--mean/--std" in err and "nothing written" in err
    assert out.read_bytes() == b"the previous checkpoint"
    stats = ["--mean", *map(str, brightness["mean"]), "--std", *map(str, brightness["std"])]
    assert import_bright(brightness, out, *stats, "--expect-accuracy", "0.9") == 0
    assert load_checkpoint(out)["config"]["import"]["accuracy_check"]["accuracy"] >= 0.9
    assert import_bright(brightness, out, "--expect-accuracy", "90") == 2  # a fraction, not a percentage
    assert "--expect-accuracy is a fraction in [0, 1]" in capsys.readouterr().err
    assert import_bright(brightness, out, "--check-images", "-5") == 2
    assert "--check-images -5: must be a positive number" in capsys.readouterr().err


def test_the_zoo_card_records_the_measured_accuracy(brightness, tmp_path, capsys):
    from models.checkpoints import read_zoo_manifest
    from models.zoo import main as zoo_main

    out = tmp_path / "mine.pt"
    stats = ["--mean", *map(str, brightness["mean"]), "--std", *map(str, brightness["std"])]
    assert import_bright(brightness, out, *stats) == 0
    printed = capsys.readouterr().out
    assert zoo_main(["--out", str(tmp_path / "zoo"), "--variant", f"mine={out}"]) == 0
    card = read_zoo_manifest(tmp_path / "zoo")["variants"]["mine"]["card"]
    accuracy = card["imported_from"]["accuracy_check"]["accuracy"]
    assert f"accuracy {100 * accuracy:.1f}% on 300 test images" in printed


def test_an_unloadable_test_split_is_one_error_line_naming_the_way_out(sources, tmp_path, capsys, one_thread):
    out, empty = tmp_path / "o.pt", tmp_path / "empty"
    empty.mkdir()  # a folder without the CIFAR files
    args = [str(sources["folder"] / "tv.pth"), "--arch", "torchvision:resnet18", "--dataset", "cifar10",
            "--input-size", "32", "--out", str(out), "--data-root", str(empty)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load the test split of 'cifar10'") and err.count("\n") == 1, err
    assert "--check-images 0" in err and not out.exists()
    assert main([*args, "--check-images", "0"]) == 0  # the check skipped on request
    assert "accuracy_check" not in load_checkpoint(out)["config"]["import"]


def test_a_folder_of_imported_weights_given_as_a_zoo_is_told_to_assemble_it(sources, tmp_path, capsys, one_thread):
    """The report on a folder of imported checkpoints (no zoo.json): the error names models.zoo, the tool that
    assembles them, not only models.train_zoo, which would train the lab's own networks."""
    from analysis.report import main as report_main

    folder = tmp_path / "imported"
    assert import_tv(sources, folder / "tv.pt", "--check-images", "0") == 0
    capsys.readouterr()
    assert report_main(["--zoo", str(folder), "--out", str(tmp_path / "report"), "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no zoo.json in {folder}") and err.count("\n") == 1, err
    assert f"python -m models.zoo --out <zoo folder> --variant NAME={folder / 'tv.pt'}" in err
