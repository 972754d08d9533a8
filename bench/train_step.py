"""Training throughput of the four variants, and of the two memory formats, measured side by side in one run.

    python bench/train_step.py [--batch-size 128] [--steps 8] [--pgd-steps 3 10] [--width 16] [--device auto]
    python bench/train_step.py --width 4 8 16 --variants standard --formats contiguous channels_last

Prints images/s for each (width, memory format, variant) on the lab's CIFAR ResNet18 (32x32 inputs), the ratios
of step time against ``standard`` (C/standard goal <= 2.1, ADV-K/standard goal <= 1.1 x (K+1)) and, when both
memory formats run, channels_last's step time over contiguous's per width and variant: the measurement behind
``models.memory_format``'s default. Steps of all configurations are interleaved round by round so that machine
load affects all alike; the median over rounds is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from models.networks import create_network
from models.objectives import ObjectiveConfig, get_objective
from models.train import pick_device

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def make_step(
    width: int, fmt: str, variant: str, cfg: ObjectiveConfig, batch_size: int, device: torch.device
) -> Callable[[], float]:
    """A closure timing one optimiser step of ``variant`` on its own network and batch in memory format ``fmt``."""
    torch.manual_seed(0)
    memory_format = FORMATS[fmt]
    model = create_network("resnet18-cifar", 10, width=width).to(device, memory_format=memory_format).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch_size,), device=device)
    gen = torch.Generator().manual_seed(0) if device.type == "cpu" else None

    def one_step() -> float:
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

    return one_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed rounds (each runs every configuration once)")
    parser.add_argument("--pgd-steps", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--width", type=int, nargs="+", default=[16])
    parser.add_argument("--formats", nargs="+", choices=tuple(FORMATS), default=["channels_last"])
    parser.add_argument("--variants", nargs="+", choices=("standard", "C", "ADV", "ADV+C"), default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    objectives = {"standard": ("standard", ObjectiveConfig()), "C": ("C", ObjectiveConfig())}
    for k in args.pgd_steps:
        step = 2.5 * (8 / 255) / k
        objectives[f"ADV-{k}"] = ("ADV", ObjectiveConfig(pgd_steps=k, pgd_step=step))
        objectives[f"ADV+C-{k}"] = ("ADV+C", ObjectiveConfig(pgd_steps=k, pgd_step=step))
    if args.variants:
        objectives = {name: o for name, o in objectives.items() if o[0] in args.variants or name == "standard"}
    steps = {
        (width, fmt, name): make_step(width, fmt, variant, cfg, args.batch_size, device)
        for width in args.width
        for fmt in args.formats
        for name, (variant, cfg) in objectives.items()
    }
    for step in steps.values():  # warm-up
        step()
    times: dict[tuple[int, str, str], list[float]] = {key: [] for key in steps}
    for _ in range(args.steps):
        for key, step in steps.items():
            times[key].append(step())
    median = {key: statistics.median(t) for key, t in times.items()}

    print(
        f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, median of {args.steps} interleaved rounds"
    )
    print(f"{'width':>5} {'format':<14}{'variant':<12}{'images/s':>10}{'step ms':>10}{'x standard':>12}")
    for (width, fmt, name), t in median.items():
        ratio = t / median[(width, fmt, "standard")]
        print(f"{width:>5} {fmt:<14}{name:<12}{args.batch_size / t:>10.1f}{1000 * t:>10.1f}{ratio:>12.2f}")
    for width in args.width:
        for fmt in args.formats:
            base = median[(width, fmt, "standard")]
            if "C" in objectives:
                ratio_c = median[(width, fmt, "C")] / base
                print(f"\nwidth {width} {fmt}: C/standard = {ratio_c:.2f} (goal <= 2.1: {_met(ratio_c <= 2.1)})")
            for k in args.pgd_steps:
                if f"ADV-{k}" in objectives:
                    ratio, goal = median[(width, fmt, f"ADV-{k}")] / base, 1.1 * (k + 1)
                    verdict = _met(ratio <= goal)
                    print(f"width {width} {fmt}: ADV-{k}/standard = {ratio:.2f} (goal <= {goal:.1f}: {verdict})")
    if set(FORMATS) <= set(args.formats):
        print("\nchannels_last step time / contiguous step time (below 1: channels_last is faster)")
        for width in args.width:
            for name in objectives:
                ratio = median[(width, "channels_last", name)] / median[(width, "contiguous", name)]
                print(f"  width {width:>3} {name:<10} {ratio:.2f}")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
