"""Training throughput of the four variants, measured side by side in one run.

    python bench/train_step.py [--batch-size 128] [--steps 8] [--pgd-steps 3 10] [--device auto]

Prints images/s for each variant on the default network (width-16 CIFAR ResNet18,
32x32 inputs, channels_last) and the ratios of step time against ``standard``:
C/standard (goal <= 2.1) and ADV-K/standard (goal <= 1.1 x (K+1)). Steps of the
variants are interleaved round by round so that machine load affects all alike;
the median over rounds is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.networks import create_network
from models.objectives import ObjectiveConfig, get_objective
from models.train import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed rounds (each runs every variant once)")
    parser.add_argument("--pgd-steps", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    model = create_network("resnet18-cifar", 10, width=args.width).to(device, memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    gen = torch.Generator().manual_seed(0) if device.type == "cpu" else None

    runs = {"standard": ("standard", ObjectiveConfig()), "C": ("C", ObjectiveConfig())}
    for k in args.pgd_steps:
        step = 2.5 * (8 / 255) / k
        runs[f"ADV-{k}"] = ("ADV", ObjectiveConfig(pgd_steps=k, pgd_step=step))
        runs[f"ADV+C-{k}"] = ("ADV+C", ObjectiveConfig(pgd_steps=k, pgd_step=step))

    def one_step(variant: str, cfg: ObjectiveConfig) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = get_objective(variant)(model, x, y, cfg, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for variant, cfg in runs.values():  # warm-up
        one_step(variant, cfg)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.steps):
        for name, (variant, cfg) in runs.items():
            times[name].append(one_step(variant, cfg))

    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, width {args.width}, "
        f"median of {args.steps} interleaved rounds"
    )
    print(f"{'variant':<12}{'images/s':>10}{'step ms':>10}{'x standard':>12}")
    for name, t in median.items():
        print(f"{name:<12}{args.batch_size / t:>10.1f}{1000 * t:>10.1f}{t / median['standard']:>12.2f}")
    ratio_c = median["C"] / median["standard"]
    print(f"\nC/standard = {ratio_c:.2f} (goal <= 2.1: {'met' if ratio_c <= 2.1 else 'NOT met'})")
    for k in args.pgd_steps:
        ratio = median[f"ADV-{k}"] / median["standard"]
        goal = 1.1 * (k + 1)
        print(f"ADV-{k}/standard = {ratio:.2f} (goal <= {goal:.1f}: {'met' if ratio <= goal else 'NOT met'})")


if __name__ == "__main__":
    main()
