"""models.import_model: torchvision / timm state_dicts become lab checkpoints with the same logits; unsafe files are
refused with a clear line and exit status 2, as a user sees them on the command line."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

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
        maps, extras = gradcam(model, _probe(2, 32), targets)
    assert maps.shape == (2, 32, 32) and extras["raw"].shape == (2, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 128 px: layer4 is 4x4, no warning
        maps, extras = gradcam(model, _probe(2, 128), targets)
    assert maps.shape == (2, 128, 128) and extras["raw"].shape == (2, 4, 4)
