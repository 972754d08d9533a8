"""Turn a classifier trained elsewhere (a torchvision or timm state_dict) into a lab checkpoint.

    python -m models.import_model weights.pth --arch torchvision:resnet18 --dataset cifar10 \\
        --data-root /data/cifar --input-size 32 --mean 0.4914 0.4822 0.4465 --std 0.247 0.2435 0.2616 \\
        --variant mine --out imported/mine.pt

What is read: a ``state_dict`` saved with ``torch.save(model.state_dict(), path)`` (``.pt``/``.pth``,
read with ``torch.load(weights_only=True)``) or a ``.safetensors`` file. A dict that wraps the
weights under ``state_dict``, ``model`` or ``model_state_dict`` is unwrapped, and a ``module.``
(DataParallel / DistributedDataParallel) or ``_orig_mod.`` (torch.compile) prefix on every key is
stripped. TorchScript archives and pickles of whole models are refused: they carry code (or
objects whose unpickling can run code); save ``model.state_dict()`` instead.

What the checkpoint holds: the network spec ``{"name": "torchvision:<arch>" | "timm:<arch>",
"num_classes", "mean", "std", "gradcam_layer", "classifier", "input_size"}``, from which
``models.networks.create_network`` rebuilds it everywhere (zoo, dashboard, report). The lab's
networks take pixels in [0, 1] and normalise inside (``normalize``), and split into ``body``
(pooled features) and ``head`` (logits). So the source's keys are **renamed**:

* ``<classifier>.weight`` / ``<classifier>.bias`` -> ``head.weight`` / ``head.bias``, where
  ``<classifier>`` is the final ``nn.Linear`` with ``num_classes`` outputs (timm's declared
  classifier, e.g. ``fc`` or ``head.fc``; for torchvision e.g. ``fc`` or ``classifier.1``);
* every other key ``k`` -> ``body.k``;
* added: ``normalize.mean`` and ``normalize.std`` (the ``--mean``/``--std`` given).

Before it is kept, the written checkpoint is loaded back as the lab loads it and its logits are
compared with the source model's (the source fed normalised pixels) on a seeded probe batch; any
difference beyond float rounding fails, writing nothing. The checkpoint is written beside ``--out`` and moved
there only once checked; a file already at ``--out`` is kept as ``<out>.old-<timestamp>``, never deleted.
Before it is written, the model is also evaluated on a seeded sample of the data set's test split
(``models.import_check``: the accuracy is printed and recorded; a default normalisation far from the data's own is
warned about; ``--expect-accuracy`` refuses below).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoints import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    load_model,
    make_checkpoint,
    network_spec,
    non_finite_tensors,
    safe_torch_load,
    sha256_file,
)
from models.cli import add_threads_argument, make_parser, run_cli
from models.errors import LabError
from models.import_check import DEFAULT_IMAGES, AccuracyCheck, check_accuracy
from models.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImportedNetwork,
    build_source_model,
    create_network,
    find_classifier,
    split_imported_name,
)
from models.safe_output import replacing

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
PROBE_SEED = 0


class ModelImportError(LabError):
    """Weights that cannot be imported: unsafe file, unknown architecture, or weights that do not fit."""


@dataclass
class ImportResult:
    """What :func:`import_model` wrote and checked."""

    path: Path
    network: dict[str, Any]
    renamed: dict[str, str]  # source key -> lab key, for the keys whose name changed beyond the body. prefix
    stripped_prefix: str | None
    max_logit_diff: float
    accuracy: AccuracyCheck | None = None  # the check against the test split (None: --check-images 0)
    kept: Path | None = None  # where the file that was at --out before went (<out>.old-<timestamp>)


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a state_dict file (``.safetensors``, else torch's format read weights-only).

    Returns the state_dict and the prefix stripped from every key (or None).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelImportError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelImportError(f"cannot read {path} as safetensors: {exc}") from exc
    else:
        try:
            state = safe_torch_load(path)
        except LabError as exc:
            raise ModelImportError(str(exc)) from exc
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise ModelImportError(f"{path} is already a lab checkpoint: use it directly (e.g. in `python -m models.zoo`)")
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict) and state[key]:
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise ModelImportError(f"{path} holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelImportError(f"{path} is not a state_dict: entries {bad[:5]} are not named tensors")
    for prefix in STRIPPED_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}, prefix
    return state, None


def infer_num_classes(arch: str, state: dict[str, torch.Tensor]) -> int:
    """The number of classes the weights were trained for: rows of the classifier's weight."""
    classifier = find_classifier(build_source_model(arch, 2), 2)
    weight = state.get(f"{classifier}.weight")
    if weight is None or weight.ndim != 2:
        raise ModelImportError(f"cannot infer the number of classes: no {classifier}.weight; pass --num-classes")
    return int(weight.shape[0])


def rename_keys(state: dict[str, torch.Tensor], classifier: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Source keys -> lab keys (see the module docstring); returns the new dict and the classifier renames."""
    renamed, head = {}, {}
    for key, value in state.items():
        if key.startswith(f"{classifier}."):
            head[key] = "head." + key[len(classifier) + 1 :]
            renamed[head[key]] = value
        else:
            renamed["body." + key] = value
    return renamed, head


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ModelImportError(f"the weights do not fit {what}: {str(exc).splitlines()[-1].strip()}") from exc
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise ModelImportError(
            f"the weights do not fit {what}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} (wrong --arch?)"
        )


def _defaults(arch: str) -> dict[str, Any]:
    """timm's declared input size and normalisation for ``arch``; ImageNet's (224) for torchvision."""
    framework, name = split_imported_name(arch)
    if framework == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(name)
        if cfg is not None:
            return {"input_size": int(cfg.input_size[-1]), "mean": list(cfg.mean), "std": list(cfg.std)}
    return {"input_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def probe_logits_diff(source: torch.nn.Module, lab: torch.nn.Module, input_size: int, batch: int = 4) -> float:
    """Largest |logit difference| of the two models on a seeded probe batch (source gets normalised pixels)."""
    gen = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.rand(batch, 3, input_size, input_size, generator=gen)
    with torch.no_grad():
        want = source.eval()(lab.normalize(x))
        got = lab.eval()(x)
    if want.shape != got.shape:
        return float("inf")
    return float((want - got).abs().max())


def import_model(
    weights: str | os.PathLike,
    arch: str,
    out: str | os.PathLike,
    *,
    dataset: str,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    gradcam_layer: str | None = None,
    data_root: str | None = None,
    variant: str | None = None,
    check_images: int = DEFAULT_IMAGES,
    expect_accuracy: float | None = None,
) -> ImportResult:
    """Import ``weights`` of architecture ``arch`` (``"torchvision:<name>"`` / ``"timm:<name>"``) to ``out``.

    ``dataset`` names the lab data set it was trained on (analysis and the dashboard load its
    test split). Unset options default to: ``num_classes`` from ``classes`` or the weights,
    ``classes`` "0".."n-1", ``input_size``/``mean``/``std`` timm's declared ones or ImageNet's
    (224), ``gradcam_layer`` the last module with a 4D output. Before writing, the model is evaluated on
    ``check_images`` seeded test images (0: not checked; see ``models.import_check``). Raises ModelImportError.
    """
    normalisation_given = mean is not None and std is not None
    data_root = _checked_inputs(input_size, num_classes, data_root)
    try:
        split_imported_name(arch)
    except ValueError as exc:
        raise ModelImportError(str(exc)) from exc
    state, stripped = read_state_dict(weights)
    bad = non_finite_tensors(state)
    if bad:
        raise ModelImportError(
            f"{weights} holds non-finite weights (NaN or inf) in {len(bad)} tensor(s), e.g. {', '.join(bad[:3])}; "
            "nothing written"
        )
    try:
        num_classes = num_classes or (len(classes) if classes else None) or infer_num_classes(arch, state)
        classes = [str(c) for c in classes] if classes else [str(i) for i in range(num_classes)]
        if len(classes) != num_classes:
            raise ModelImportError(f"{len(classes)} class names given for {num_classes} classes")
        defaults = _defaults(arch)
        size = int(input_size or defaults["input_size"])
        mean, std = list(mean or defaults["mean"]), list(std or defaults["std"])
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ModelImportError(f"--mean and --std need 3 values each (std > 0); got {mean} and {std}")
        source = build_source_model(arch, num_classes)
        _load_strict(source, state, f"{arch} with {num_classes} classes")
        lab = create_network(arch, num_classes, mean=mean, std=std, gradcam_layer=gradcam_layer, input_size=size)
    except ValueError as exc:
        raise ModelImportError(str(exc)) from exc
    assert isinstance(lab, ImportedNetwork)
    renamed, head_keys = rename_keys(state, lab.classifier_name)
    _load_strict(lab, {**renamed, **{f"normalize.{k}": v for k, v in lab.normalize.state_dict().items()}}, arch)
    spec = network_spec(
        arch, num_classes, None, mean=mean, std=std, gradcam_layer=lab.gradcam_layer_name,
        classifier=lab.classifier_name, input_size=size,
    )  # fmt: skip
    record = _import_record(weights, arch, head_keys, stripped)
    name = variant or Path(weights).stem
    config = {"variant": name, "dataset": dataset, "data_root": data_root, "image_size": size, "network": arch,
              "import": record}  # fmt: skip
    description = {"name": dataset, "split": "train", "num_classes": num_classes, "classes": classes,
                   "image_shape": [3, size, size]}  # fmt: skip
    checked = None
    if check_images or expect_accuracy is not None:  # measured before anything is written, recorded on the card
        checked = check_accuracy(lab, dataset, data_root, image_size=size, normalisation_given=normalisation_given,
                                 images=check_images or DEFAULT_IMAGES, expect=expect_accuracy)  # fmt: skip
        record["accuracy_check"] = checked.record()
    out = Path(out).expanduser()
    with replacing(out, folder=False) as staged:  # written beside --out; an earlier --out is kept aside, not lost
        ckpt = make_checkpoint(lab, variant=name, network=spec, config=config, dataset=description)
        atomic_torch_save(ckpt, staged.path)
        diff = _verify_written(staged.path, source, lab, size)
    return ImportResult(out, spec, head_keys, stripped, diff, checked, kept=staged.kept)


def _checked_inputs(input_size: int | None, num_classes: int | None, data_root: str | None) -> str | None:
    """Refuse non-positive sizes and a --data-root that is not a folder; returns the root made absolute (so the
    checkpoint works from any folder)."""
    for flag, value in (("--input-size", input_size), ("--num-classes", num_classes)):
        if value is not None and value <= 0:
            raise ModelImportError(f"{flag} {value}: must be a positive number")
    if data_root is None:
        return None
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise ModelImportError(f"--data-root {data_root}: no such folder")
    return str(root.resolve())


def _import_record(
    weights: str | os.PathLike, arch: str, head_keys: dict[str, str], stripped: str | None
) -> dict[str, Any]:
    """The checkpoint config's ``import`` entry: where the weights came from and how their keys were changed."""
    return {
        "file": str(Path(weights).expanduser().resolve()),
        "sha256": sha256_file(Path(weights).expanduser()),
        "architecture": arch,
        "renamed_keys": head_keys,
        "other_keys": "prefixed with body.",
        "added_keys": ["normalize.mean", "normalize.std"],
        "stripped_prefix": stripped,
    }


def _verify_written(out: Path, source: torch.nn.Module, lab: ImportedNetwork, size: int) -> float:
    """Reload ``out`` and compare its logits with ``source``'s on a seeded probe batch; returns the largest difference.

    Deletes ``out`` (the temporary file being checked) and raises ModelImportError beyond the tolerance (and
    deletes it on any other error, too).
    """
    try:
        reloaded, _ = load_model(out)
        diff = probe_logits_diff(source, reloaded, size)
        with torch.no_grad():
            scale = 1e-5 * max(1.0, float(source(lab.normalize(torch.zeros(1, 3, size, size))).abs().max()))
        if not diff <= scale:
            raise ModelImportError(
                f"the imported model's logits differ from the source model's by {diff:.3g} on a seeded probe "
                f"batch (tolerance {scale:.1g}); nothing written"
            )
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return diff


def _class_names(args: argparse.Namespace) -> list[str] | None:
    if args.classes_file:
        path = Path(args.classes_file).expanduser()
        if not path.is_file():
            raise ModelImportError(f"--classes-file {path} not found")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [c.strip() for c in args.classes.split(",")] if args.classes else None


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("scl-import", "Import a torchvision or timm state_dict as a lab checkpoint.")
    parser.add_argument("weights", help="state_dict file: .pt/.pth (torch.save(model.state_dict())) or .safetensors")
    parser.add_argument("--arch", required=True, help="torchvision:<name> (e.g. torchvision:resnet18) or timm:<name>")
    parser.add_argument("--out", required=True, help="lab checkpoint to write (.pt)")
    parser.add_argument("--dataset", required=True, help="lab data set it was trained on (cifar10, imagefolder, ...)")
    parser.add_argument("--data-root", help="where that data set lives on disk (for on-disk data sets)")
    parser.add_argument("--num-classes", type=int, help="default: len(--classes), else the classifier's rows")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--classes", help="class names, comma-separated, in label order")
    group.add_argument("--classes-file", help="class names, one a line, in label order")
    parser.add_argument("--input-size", type=int, help="input side in pixels (default: timm's declared, else 224)")
    parser.add_argument("--mean", type=float, nargs=3, help="normalisation mean it was trained with (default: "
                        "timm's declared, else ImageNet's)")  # fmt: skip
    parser.add_argument("--std", type=float, nargs=3, help="normalisation std it was trained with (same defaults)")
    parser.add_argument("--gradcam-layer", help="module name for GradCAM (default: last module with a 4D output)")
    parser.add_argument("--variant", help="variant name stored in the checkpoint (default: the file's stem)")
    parser.add_argument("--check-images", type=int, default=DEFAULT_IMAGES, help="seeded test images the imported "
                        "model is evaluated on before it is written (0: no check)")  # fmt: skip
    parser.add_argument("--expect-accuracy", type=float, help="refuse the import below this test accuracy (0-1)")
    add_threads_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.num_threads:
            torch.set_num_threads(args.num_threads)
        from models.datasets import dataset_names

        if args.dataset not in dataset_names():
            raise ModelImportError(f"unknown data set {args.dataset!r}; registered: {', '.join(dataset_names())}")
        result = import_model(
            args.weights, args.arch, args.out, dataset=args.dataset, num_classes=args.num_classes,
            classes=_class_names(args), input_size=args.input_size, mean=args.mean, std=args.std,
            gradcam_layer=args.gradcam_layer, data_root=args.data_root, variant=args.variant,
            check_images=args.check_images, expect_accuracy=args.expect_accuracy,
        )  # fmt: skip
        spec = result.network
        if result.kept is not None:
            print(f"kept the earlier {result.path} as {result.kept}")
        print(f"wrote {result.path}: {spec['name']}, {spec['num_classes']} classes, input {spec['input_size']}px")
        print(f"  normalisation mean {spec['mean']} std {spec['std']}; GradCAM layer {spec['gradcam_layer']}")
        renames = ", ".join(f"{a} -> {b}" for a, b in result.renamed.items())
        print(f"  keys renamed: {renames}; all others prefixed body.; added normalize.mean/std")
        if result.stripped_prefix:
            print(f"  stripped prefix {result.stripped_prefix!r} from every key")
        print(f"  logits equal the source model's on a seeded probe batch (max |diff| {result.max_logit_diff:.3g})")
        if result.accuracy is not None:
            print(f"  {result.accuracy.summary()}")
            if result.accuracy.warning:
                print(f"warning: {result.accuracy.warning}", file=sys.stderr)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
