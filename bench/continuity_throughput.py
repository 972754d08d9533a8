"""Benchmark: DS evaluation throughput against plain inference throughput (prints, never asserts).

    python bench/continuity_throughput.py [--zoo assets/zoo/default] [--variant standard] [--images N]
                                          [--batch-size 512] [--num-threads T]

Measures, on the fashion-mnist-m test split (all 10,000 images unless ``--images``), one model:

* DS evaluation: ``analysis.continuity.ds_table`` over all 4 kinds x 4 levels, i.e. one clean pass and 16
  perturbed passes, each image perturbed (Table 1) and forwarded, DS computed per image;
* plain inference: ``models.evaluation.predict_logits`` of the same model over the same number of images
  (17 passes over the split, no perturbation).

Throughput = images forwarded per second; ratio = DS throughput / inference throughput (goal >= 0.8: the
perturbations and the DS arithmetic cost at most a quarter of the forward passes). The two run interleaved, one
batch-sized chunk at a time, and both wall-clock and process CPU time are reported: on a machine shared with a
training job the wall-clock ratio is noise, the CPU ratio is not. Uses the shipped zoo if
``<zoo>/zoo.json`` exists, otherwise a randomly initialised width-16 CIFAR ResNet18 (the timings depend on the
architecture, not on the weights; the output says which).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from analysis.continuity import LEVELS, ds_table
from models.data import load_dataset
from models.evaluation import predict_logits
from models.networks import create_network
from models.perturbations import KINDS, perturb

ROOT = Path(__file__).resolve().parent.parent

GOAL_RATIO = 0.8


def load_model(zoo_dir: Path, variant: str) -> tuple[torch.nn.Module, str]:
    if (zoo_dir / "zoo.json").is_file():
        from models.checkpoints import load_zoo

        zoo = load_zoo(zoo_dir)
        if variant not in zoo.entries:
            raise SystemExit(f"variant {variant!r} not in zoo {zoo_dir} ({', '.join(zoo.variants)})")
        return zoo.models[variant], f"shipped zoo {zoo_dir}, variant {variant}"
    torch.manual_seed(0)
    model = create_network("resnet18-cifar", 10, width=16).eval()
    return model, f"NO zoo at {zoo_dir / 'zoo.json'}: a RANDOMLY INITIALISED width-16 resnet18-cifar"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", default=str(ROOT / "assets" / "zoo" / "default"))
    parser.add_argument("--variant", default="standard")
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--num-threads", "--threads", dest="threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, source = load_model(Path(args.zoo), args.variant)
    test = load_dataset("fashion-mnist-m", "test")
    images = test.images[: args.images] if args.images else test.images
    n, passes = len(images), 1 + len(KINDS) * len(LEVELS)
    print(f"model: {source}")
    print(f"data: fashion-mnist-m test, {n} images; {passes} passes (clean + {len(KINDS)} kinds x {len(LEVELS)} "
          f"levels); batch {args.batch_size}; {torch.get_num_threads()} torch thread(s)")  # fmt: skip

    # Both measurements run interleaved, chunk by chunk (a chunk = one batch, which is how both functions work
    # through the data anyway), alternating which goes first: on a machine shared with other jobs a load change
    # then hits both alike. Wall and process CPU time are both reported; on a busy machine trust the CPU ratio.
    chunk = args.batch_size
    ds_table({args.variant: model}, images[:chunk], batch_size=chunk)  # warm-up (allocator, kernels)
    predict_logits(model, images[:chunk], chunk)
    wall = {"infer": 0.0, "ds": 0.0, "perturb": 0.0}
    cpu = dict.fromkeys(wall, 0.0)

    def timed(key: str, fn) -> None:
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall[key] += time.perf_counter() - w
        cpu[key] += time.process_time() - c

    def infer(x: torch.Tensor) -> None:
        for _ in range(passes):
            predict_logits(model, x, chunk)

    def perturb_only(x: torch.Tensor) -> None:  # where the difference goes: the perturbations alone
        for kind in KINDS:
            for level in LEVELS:
                perturb(x, kind, level)

    cells = 0
    for i, start in enumerate(range(0, n, chunk)):
        x = images[start : start + chunk]
        jobs = [("infer", lambda x=x: infer(x)),
                ("ds", lambda x=x: ds_table({args.variant: model}, x, batch_size=chunk))]  # fmt: skip
        for key, fn in jobs if i % 2 == 0 else jobs[::-1]:
            timed(key, fn)
        timed("perturb", lambda x=x: perturb_only(x))
        cells += 1

    total = n * passes
    print(f"{cells} chunk(s) of {chunk} images, inference and DS interleaved")
    for clock, t in (("wall", wall), ("CPU", cpu)):
        infer_rate, ds_rate = total / t["infer"], total / t["ds"]
        ratio = ds_rate / infer_rate
        print(f"[{clock:4s}] plain inference: {t['infer']:7.2f} s = {infer_rate:7.1f} img/s; DS evaluation: "
              f"{t['ds']:7.2f} s = {ds_rate:7.1f} img/s; perturbations alone {t['perturb']:.2f} s "
              f"({100 * t['perturb'] / t['ds']:.0f}% of DS)")  # fmt: skip
        print(f"[{clock:4s}] ratio DS / inference throughput: {ratio:.3f} (goal >= {GOAL_RATIO}: "
              f"{'met' if ratio >= GOAL_RATIO else 'NOT met'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
