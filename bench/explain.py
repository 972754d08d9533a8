"""Benchmark: attribution speed on one test image of a zoo, at the zoo's own input size (prints, never asserts).

    python bench/explain.py [--zoo assets/zoo/default] [--repeats 7] [--ig-steps N] [--lime-samples N]

Times the zoo's own variants (the paper's four where the zoo has them all, as the dashboard shows by default, else
every one the zoo has; nothing added) on the first test image of the zoo's data set,
read as the report reads it (its data root and image size from the checkpoints); when that data set cannot be read,
scikit-image's astronaut resized to the zoo's input size stands in, and the output says so. Without a zoo
(no ``<zoo>/zoo.json``), four randomly initialised width-16 CIFAR ResNet18s (``random-1`` .. ``random-4``) at 32x32
are timed. IG steps and LIME samples default to the values fitted to the input size
(``analysis.attribution_defaults``). Reports, as medians over repeats after a warm-up:

* IG + GradCAM for all variants in total (goal, at 32x32 with four variants: <= 1.0 s);
* LIME for all variants in total (goal, likewise: <= 3 s);
* LIME as configured here (felzenszwalb segments scaled to the input, one classifier batch) against LIME with
  lime's defaults (quickshift segmentation, batch_size=10) on one model, interleaved (goal >= 5x; skipped with
  ``--no-lime-defaults``, and by default above 64 px, where lime's defaults take minutes per image).

The goals were set for the shipped 32-px zoo; at other sizes the timings are printed without a verdict.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from analysis.attributions import explain, get_method
from models.networks import create_network

ROOT = Path(__file__).resolve().parent.parent

GOAL_IG_GRADCAM_S = 1.0
GOAL_LIME_S = 3.0
GOAL_LIME_SPEEDUP = 5.0
GOAL_SHAPE, GOAL_VARIANTS = (3, 32, 32), 4
PAPER_FOUR = ("standard", "C", "ADV", "ADV+C")  # timed when the zoo has them all (the dashboard's default rows)


def load_zoo_models(zoo_dir: Path) -> tuple[dict[str, torch.nn.Module], str, object]:
    """The zoo's own models (and the loaded zoo), or four random width-16 networks (and None) without a zoo."""
    if (zoo_dir / "zoo.json").is_file():
        from models.checkpoints import load_zoo

        zoo = load_zoo(zoo_dir)
        shown = [v for v in PAPER_FOUR if v in zoo.variants]
        shown = shown if len(shown) == len(PAPER_FOUR) else zoo.variants
        models = {name: zoo.models[name].eval() for name in shown}
        return models, f"zoo {zoo_dir} ({', '.join(shown)} of {', '.join(zoo.variants)})", zoo
    models = {}
    for i in range(4):
        torch.manual_seed(i)
        models[f"random-{i + 1}"] = create_network("resnet18-cifar", 10, width=16).eval()
    return models, f"NO zoo at {zoo_dir / 'zoo.json'}: 4 randomly initialised width-16 CIFAR ResNet18s", None


def zoo_test_images(zoo: object, n: int = 1) -> tuple[torch.Tensor, str]:
    """The first ``n`` test images of the zoo's data set at its input size (as the report loads them), else the
    astronaut resized to that size; (images, where they came from)."""
    from skimage import data, transform

    shape = tuple((getattr(zoo, "dataset", None) or {}).get("image_shape") or (3, 32, 32))
    if zoo is not None:
        from models.data import load_dataset

        config = next(iter(zoo.entries.values())).meta.get("config", {})  # type: ignore[attr-defined]
        name = zoo.dataset.get("name") or config.get("dataset")  # type: ignore[attr-defined]
        try:
            if name == "imagefolder":
                folder = load_dataset(name, "test", config.get("data_root"), image_size=shape[-1], stream=True)
                images = torch.stack([folder[i][0] for i in range(min(n, len(folder)))])
            else:
                images = load_dataset(name, "test", config.get("data_root"), image_size=config.get("image_size")).images
                images = images[:n]
            return images.float(), f"{name} test images 0..{len(images) - 1}"
        except Exception as exc:  # noqa: BLE001 - any reason: fall back to a photograph and say why
            print(f"(could not load the zoo's data set {name!r}: {type(exc).__name__}: {exc})")
    crop = data.astronaut()[40:296, 120:376] / 255.0
    image = transform.resize(crop, shape[-2:], anti_aliasing=True)
    images = torch.from_numpy(image.transpose(2, 0, 1)[None]).float().repeat(n, 1, 1, 1)
    return images, f"{shape[-2]}x{shape[-1]} crop of skimage.data.astronaut"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def verdict(ok: bool, applies: bool) -> str:
    if not applies:
        return "no goal at this size"
    return "goal met" if ok else "goal NOT met"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ROOT / "assets" / "zoo" / "default")
    parser.add_argument("--repeats", type=int, default=7, help="repeats for IG+GradCAM (LIME uses half, >= 3)")
    parser.add_argument("--ig-steps", type=int, default=None, help="default: fitted to the input size")
    parser.add_argument("--lime-samples", type=int, default=None, help="default: fitted to the input size")
    parser.add_argument("--no-lime-defaults", action="store_true", help="skip the comparison with lime's defaults")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    models, source, zoo = load_zoo_models(args.zoo)
    image, image_source = zoo_test_images(zoo)
    shape = tuple(image.shape[1:])
    ig_opts = get_method("integrated_gradients").options(input_size=shape)
    lime_opts = get_method("lime").options(input_size=shape)
    if args.ig_steps:
        ig_opts["n_steps"] = args.ig_steps
    if args.lime_samples:
        lime_opts["num_samples"] = args.lime_samples
    goals = shape == GOAL_SHAPE and len(models) == GOAL_VARIANTS
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"models: {source}")
    print(f"image:  {image_source}, shape {tuple(image.shape)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"load average {load:.2f} on {os.cpu_count()} CPUs (other work slows these timings)"
    )

    first = next(iter(models.values()))
    for model in models.values():  # warm-up: first calls pay for allocation, imports and the cost probe
        explain("integrated_gradients", model, image, **ig_opts)
        explain("gradcam", model, image)
    explain("lime", first, image, **lime_opts)

    ig_runs, cam_runs, total_runs = [], [], []
    for _ in range(args.repeats):
        ig = sum(timed(lambda m=m: explain("integrated_gradients", m, image, **ig_opts)) for m in models.values())
        cam = sum(timed(lambda m=m: explain("gradcam", m, image)) for m in models.values())
        ig_runs.append(ig)
        cam_runs.append(cam)
        total_runs.append(ig + cam)
    total = statistics.median(total_runs)
    print(
        f"\nIG ({ig_opts['n_steps']} steps) + GradCAM, {len(models)} variants: {total:.3f} s "
        f"(IG {statistics.median(ig_runs):.3f} s, GradCAM {statistics.median(cam_runs):.3f} s; "
        f"median of {args.repeats}) -- goal <= {GOAL_IG_GRADCAM_S} s: {verdict(total <= GOAL_IG_GRADCAM_S, goals)}"
    )

    lime_repeats = max(3, args.repeats // 2)
    lime_runs = [
        sum(timed(lambda m=m: explain("lime", m, image, **lime_opts)) for m in models.values())
        for _ in range(lime_repeats)
    ]
    lime_total = statistics.median(lime_runs)
    segments = explain("lime", first, image, **lime_opts).extras["n_segments"][0]
    print(
        f"LIME ({lime_opts['num_samples']} samples, felzenszwalb: {segments} segments), {len(models)} variants: "
        f"{lime_total:.3f} s (median of {lime_repeats}) -- goal <= {GOAL_LIME_S} s: "
        f"{verdict(lime_total <= GOAL_LIME_S, goals)}"
    )

    if args.no_lime_defaults or shape[-1] > 64:
        print("LIME vs lime's defaults: skipped" + ("" if args.no_lime_defaults else f" at {shape[-1]} px"))
        return
    lime_default = {"num_samples": lime_opts["num_samples"], "segmentation": "lime-default", "batch_size": 10}
    explain("lime", first, image, **lime_default)
    ours_runs, default_runs = [], []
    for _ in range(lime_repeats):
        ours_runs.append(timed(lambda: explain("lime", first, image, **lime_opts)))
        default_runs.append(timed(lambda: explain("lime", first, image, **lime_default)))
    ours, default = statistics.median(ours_runs), statistics.median(default_runs)
    default_ex = explain("lime", first, image, **lime_default)
    default_segments = default_ex.extras["n_segments"][0]
    if default_segments == 1:
        empty = "one weight for the whole image: no spatial information"
    else:
        empty = "an empty map" if not np.abs(default_ex.maps).any() else "a spatial map"
    ratio = default / ours
    print(
        f"LIME on one model, {lime_opts['num_samples']} samples: configured {ours:.3f} s vs lime defaults (quickshift: "
        f"{default_segments} segment(s), {empty}; batch_size=10) {default:.3f} s -> {ratio:.1f}x faster "
        f"(median of {lime_repeats}, interleaved) -- goal >= {GOAL_LIME_SPEEDUP}x: "
        f"{verdict(ratio >= GOAL_LIME_SPEEDUP, goals)}"
    )


if __name__ == "__main__":
    main()
