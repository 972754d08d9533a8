"""Benchmark: attribution speed on one 32x32 image for the four variants (prints, never asserts).

    python bench/explain.py [--zoo assets/zoo/default] [--repeats 7]

Uses the shipped zoo if ``<zoo>/zoo.json`` exists; variants it lacks (no zoo, or
one still being trained) are stood in for by randomly initialised networks of the
same architecture (width-16 CIFAR ResNet18 without a zoo): the timings depend on
the architecture, not on the weights. The output says which is which. Reports, as medians over repeats after a
warm-up:

* IG (50 steps) + GradCAM for the four variants in total (goal <= 1.0 s);
* LIME, 1000 samples, for the four variants in total (goal <= 3 s);
* LIME as configured here (felzenszwalb segments, one classifier batch of 1000)
  against LIME with lime's defaults (quickshift segmentation, batch_size=10) on
  the same model and image, measured interleaved in this run (goal >= 5x).
  Both use 1000 samples and hide_color=0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from analysis.attributions import explain
from models.networks import create_network

ROOT = Path(__file__).resolve().parent.parent

GOAL_IG_GRADCAM_S = 1.0
GOAL_LIME_S = 3.0
GOAL_LIME_SPEEDUP = 5.0


def load_models(zoo_dir: Path) -> tuple[dict[str, torch.nn.Module], str, dict]:
    """The zoo's four models, or four random width-16 networks when there is no zoo."""
    from models.objectives import VARIANTS

    models: dict[str, torch.nn.Module] = {}
    spec, dataset = {"name": "resnet18-cifar", "num_classes": 10, "width": 16}, {}
    if (zoo_dir / "zoo.json").is_file():
        from models.checkpoints import CheckpointError, load_zoo

        try:
            zoo = load_zoo(zoo_dir)
            models, dataset = dict(zoo.models), zoo.dataset
            spec = next(iter(zoo.entries.values())).meta["network"]
            source = f"shipped zoo {zoo_dir} ({', '.join(zoo.variants)})"
        except CheckpointError as exc:  # e.g. a zoo still being written
            source = f"zoo at {zoo_dir} did not load ({exc})"
    else:
        source = f"NO zoo at {zoo_dir / 'zoo.json'}"
    missing = [v for v in VARIANTS if v not in models]
    for i, variant in enumerate(missing):
        torch.manual_seed(i)
        models[variant] = create_network(spec["name"], spec["num_classes"], width=spec.get("width")).eval()
    if missing:
        source += (
            f"; RANDOMLY INITIALISED {spec['name']} width {spec.get('width')} for {', '.join(missing)} "
            "(speed depends on the architecture, not the weights)"
        )
    return models, source, dataset


def load_image(dataset: dict) -> tuple[torch.Tensor, str]:
    """One 32x32 test image of the zoo's data set, else a crop of scikit-image's astronaut."""
    if dataset.get("name"):
        try:
            from models.data import load_dataset

            ds = load_dataset(dataset["name"], "test")
            if tuple(ds.images.shape[1:]) == (3, 32, 32):
                return ds.images[:1].float(), f"{dataset['name']} test image 0"
        except Exception as exc:  # fall back to a photograph; say why
            print(f"(could not load {dataset['name']!r}: {type(exc).__name__}: {exc})")
    from skimage import data, transform

    crop = data.astronaut()[40:296, 120:376] / 255.0
    image = transform.resize(crop, (32, 32), anti_aliasing=True)
    return torch.from_numpy(image.transpose(2, 0, 1)[None]).float(), "32x32 crop of skimage.data.astronaut"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def verdict(ok: bool) -> str:
    return "goal met" if ok else "goal NOT met"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ROOT / "assets" / "zoo" / "default")
    parser.add_argument("--repeats", type=int, default=7, help="repeats for IG+GradCAM (LIME uses half, >= 3)")
    args = parser.parse_args(argv)

    models, source, dataset = load_models(args.zoo)
    image, image_source = load_image(dataset)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"models: {source}")
    print(f"image:  {image_source}, shape {tuple(image.shape)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"load average {load:.2f} on {os.cpu_count()} CPUs (other work slows these timings)"
    )

    first = next(iter(models.values()))
    for model in models.values():  # warm-up: first calls pay for allocation and imports
        explain("integrated_gradients", model, image)
        explain("gradcam", model, image)
    explain("lime", first, image)
    explain("lime", first, image, segmentation="lime-default", batch_size=10)

    # IG + GradCAM, four variants
    ig_runs, cam_runs, total_runs = [], [], []
    for _ in range(args.repeats):
        ig = sum(timed(lambda m=m: explain("integrated_gradients", m, image)) for m in models.values())
        cam = sum(timed(lambda m=m: explain("gradcam", m, image)) for m in models.values())
        ig_runs.append(ig)
        cam_runs.append(cam)
        total_runs.append(ig + cam)
    total = statistics.median(total_runs)
    print(
        f"\nIG (50 steps) + GradCAM, {len(models)} variants: {total:.3f} s "
        f"(IG {statistics.median(ig_runs):.3f} s, GradCAM {statistics.median(cam_runs):.3f} s; "
        f"median of {args.repeats}) -- goal <= {GOAL_IG_GRADCAM_S} s: {verdict(total <= GOAL_IG_GRADCAM_S)}"
    )

    # LIME 1000 samples, four variants
    lime_repeats = max(3, args.repeats // 2)
    lime_runs = [
        sum(timed(lambda m=m: explain("lime", m, image)) for m in models.values()) for _ in range(lime_repeats)
    ]
    lime_total = statistics.median(lime_runs)
    segments = explain("lime", first, image).extras["n_segments"][0]
    print(
        f"LIME (1000 samples, felzenszwalb: {segments} segments, one batch), {len(models)} variants: "
        f"{lime_total:.3f} s (median of {lime_repeats}) -- goal <= {GOAL_LIME_S} s: "
        f"{verdict(lime_total <= GOAL_LIME_S)}"
    )

    # ours vs lime's defaults, side by side on one model, interleaved
    ours_runs, default_runs = [], []
    for _ in range(lime_repeats):
        ours_runs.append(timed(lambda: explain("lime", first, image)))
        default_runs.append(timed(lambda: explain("lime", first, image, segmentation="lime-default", batch_size=10)))
    ours, default = statistics.median(ours_runs), statistics.median(default_runs)
    default_ex = explain("lime", first, image, segmentation="lime-default", batch_size=10)
    default_segments = default_ex.extras["n_segments"][0]
    if default_segments == 1:
        empty = "one weight for the whole image: no spatial information"
    else:
        empty = "an empty map" if not np.abs(default_ex.maps).any() else "a spatial map"
    ratio = default / ours
    print(
        f"LIME on one model, 1000 samples: configured {ours:.3f} s vs lime defaults (quickshift: "
        f"{default_segments} segment(s), {empty}; batch_size=10) {default:.3f} s -> {ratio:.1f}x faster "
        f"(median of {lime_repeats}, interleaved) -- goal >= {GOAL_LIME_SPEEDUP}x: "
        f"{verdict(ratio >= GOAL_LIME_SPEEDUP)}"
    )


if __name__ == "__main__":
    main()
