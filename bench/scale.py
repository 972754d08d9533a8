"""Benchmark: the shipped 32-px zoo beside a 224-px zoo of two torchvision resnet50s, side by side (prints only).

    python bench/scale.py [--shipped assets/zoo/default] [--work DIR] [--images 100] [--budget 1GB]
                          [--ig-steps N] [--lime-samples N] [--levels 0,1,2,3,4] [--kind brightness] [--level 2]

What it builds (in ``--work``, a temporary folder by default): an ImageNet-style folder (``train/<class>``,
``val/<class>``) of about ``--images`` JPEGs cut at seeded random positions and scales from seven scikit-image
photographs (one class each), two randomly initialised torchvision ``resnet50`` state_dicts (seeds 0 and 1, nothing
downloaded), imported with ``models.import_model`` at ``--input-size 224`` and assembled with ``models.zoo``, as
README "Use your own models" does.

What it measures, per zoo, each in a fresh process (so peak memory is that zoo's alone), on the zoo's first test
image at its own input size, every method with its defaults fitted to the input size and the memory budget
``--budget``:

* the estimates first (``analysis.attribution_estimates``, as a page deciding what to make opt-in would ask):
  they pay the one-time per-network cost probe, timed on its own;
* the shown level first: IG + GradCAM of the original and the image at ``--kind``/``--level``, every shown variant
  (the paper's four where the zoo has them, else all), beside the estimate;
* every level (``--levels``) in one pass, IG + GradCAM, every shown variant;
* LIME of the shown level's image on one variant (and its estimate);
* the measuring process's peak RSS (ru_maxrss);
* IG's peak memory (the rise of ru_maxrss in a process of its own, after loading the zoo) on the shown level's two
  images, with the budget and without one (every interpolated image in one batch);
* the report's estimated full run (``analysis.experiments.estimate_cpu_s`` scaled by the zoo's forward FLOPs);
* sessions, in a process of their own standing in for the dashboard's server (its job runner,
  ``analysis.job_runner.JobRunner`` with the server's quota, and its compute services, ``LocalComputeService`` on
  the shared models for light jobs and on private copies for heavy ones, as ``app.compute`` builds them): a light
  request (predictions of every level and the shown level's GradCAM of a new image, one variant) from a second
  session, ``--light-requests`` times idle and as many times while another session's LIME jobs run (p50/p95), and
  the server's RSS ``--rss-wait`` seconds (default 60) after both sessions closed, beside its warm baseline (after
  loading and one light request). ``--sessions-only`` measures only this (a quick check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field", "immunohistochemistry")
PAPER_FOUR = ("standard", "C", "ADV", "ADV+C")


# ----------------------------------------------------------------------------- building the 224-px zoo


def write_photo_folder(root: Path, n_images: int, seed: int = 0) -> list[str]:
    """``root/{train,val}/<photo>/*.jpg``: about ``n_images`` crops (60% train) of the scikit-image photographs."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    per_class = max(2, n_images // len(PHOTOS))
    for name in PHOTOS:
        photo = getattr(data, name)()
        photo = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        h, w = photo.shape[:2]
        for i in range(per_class):
            side = int(rng.uniform(0.5, 1.0) * min(h, w))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            split = "train" if i < round(0.6 * per_class) else "val"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            crop.resize((256, 256), Image.Resampling.LANCZOS).save(folder / f"{name}_{i:03d}.jpg", quality=90)
    return list(PHOTOS)


def build_resnet50_zoo(work: Path, n_images: int) -> Path:
    """The 224-px zoo of two random torchvision resnet50s over the photo folder; returns its folder."""
    import torchvision

    from models.import_model import import_model
    from models.zoo import assemble_zoo

    root = work / "photos"
    classes = write_photo_folder(root, n_images)
    paths = {}
    for seed, variant in enumerate(("resnet50-a", "resnet50-b")):
        torch.manual_seed(seed)
        weights = work / f"{variant}.pth"
        torch.save(torchvision.models.resnet50(weights=None, num_classes=len(classes)).state_dict(), weights)
        out = work / "imported" / f"{variant}.pt"
        import_model(weights, "torchvision:resnet50", out, dataset="imagefolder", data_root=str(root),
                     input_size=224, classes=classes, variant=variant)  # fmt: skip
        paths[variant] = out
    zoo = work / "zoo224"
    assemble_zoo(zoo, paths, roles={"resnet50-a": "baseline", "resnet50-b": "other"}, force=True)
    return zoo


# ----------------------------------------------------------------------------- measuring one zoo (child process)


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _first_test_image(zoo: Any) -> tuple[torch.Tensor, str]:
    """The zoo's first test image at its own input size, read as the report reads its data set."""
    from models.data import load_dataset

    config = next(iter(zoo.entries.values())).meta.get("config", {})
    name = zoo.dataset.get("name") or config.get("dataset")
    size = int(zoo.dataset.get("image_shape", [3, 32, 32])[-1])
    if name == "imagefolder":
        image = load_dataset(name, "test", config.get("data_root"), image_size=size, stream=True)[0][0][None]
    else:
        image = load_dataset(name, "test", config.get("data_root"), image_size=config.get("image_size")).images[:1]
    return image.float(), f"{name} test image 0"


def _shown(zoo: Any) -> list[str]:
    four = [v for v in PAPER_FOUR if v in zoo.variants]
    return four if len(four) == len(PAPER_FOUR) else list(zoo.variants)


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Timings and memory of one zoo (run in its own process)."""
    torch.set_num_threads(args.threads)
    from analysis.attribution_estimates import estimate
    from analysis.attributions import explain, get_method
    from analysis.experiments import FULL, estimate_cpu_s
    from analysis.memory_budget import set_memory_budget
    from analysis.network_cost import sample_cost, zoo_cost_scale
    from analysis.roles import zoo_roles
    from models.checkpoints import load_zoo
    from models.perturbations import perturb

    set_memory_budget(args.budget)
    load_s, zoo = _timed(lambda: load_zoo(args.measure))
    image, source = _first_test_image(zoo)
    shape = tuple(image.shape[1:])
    variants = _shown(zoo)
    models = {v: zoo.models[v].eval() for v in variants}
    ig_opts = get_method("integrated_gradients").options(input_size=shape)
    lime_opts = get_method("lime").options(input_size=shape)
    if args.ig_steps:
        ig_opts["n_steps"] = args.ig_steps
    if args.lime_samples:
        lime_opts["num_samples"] = args.lime_samples
    pair = torch.cat([image, perturb(image, args.kind, args.level)])
    levels = [int(v) for v in args.levels.split(",")]
    every = torch.cat([perturb(image, args.kind, lv) for lv in levels])
    with torch.no_grad():
        targets = {v: int(m(image).argmax(1)) for v, m in models.items()}

    def ig_cam(batch: torch.Tensor) -> None:
        for v, m in models.items():
            explain("integrated_gradients", m, batch, [targets[v]] * len(batch), **ig_opts)
            explain("gradcam", m, batch, [targets[v]] * len(batch))

    first_model = next(iter(models.values()))
    est_start = time.perf_counter()
    est_ig = sum(estimate("integrated_gradients", m, shape, 2, **ig_opts).seconds for m in models.values())
    est_cam = sum(estimate("gradcam", m, shape, 2).seconds for m in models.values())
    est_lime = estimate("lime", first_model, shape, 1, **lime_opts)
    probe_s = time.perf_counter() - est_start  # the one-time cost probes, paid here instead of in the first map
    first_s, _ = _timed(lambda: ig_cam(pair))
    every_s, _ = _timed(lambda: ig_cam(every))
    lime_s, lime_ex = _timed(
        lambda: explain("lime", first_model, pair[1:], [targets[variants[0]]], **lime_opts)
    )  # fmt: skip
    cost = sample_cost(first_model, shape)
    scale = zoo_cost_scale(zoo)
    full = sum(estimate_cpu_s(FULL, zoo_roles(zoo), 10_000, scale).values())
    return {
        "zoo": str(args.measure), "variants": variants, "networks": sorted({e.meta["network"]["name"]
                                                                             for e in zoo.entries.values()}),
        "image": f"{source}, {shape[-2]}x{shape[-1]}", "load_s": load_s, "ig_steps": ig_opts["n_steps"],
        "lime_samples": lime_opts["num_samples"], "lime_segments": int(lime_ex.extras["n_segments"][0]),
        "lime_batch": int(lime_ex.extras["batch_size"]), "sample_mib": cost.backward_bytes / 2**20,
        "probe_s": probe_s, "first_s": first_s, "first_est_s": est_ig + est_cam, "every_s": every_s,
        "levels": levels, "lime_s": lime_s, "lime_est_s": est_lime.seconds, "lime_slow": est_lime.slow,
        "peak_rss_mib": _rss() / 2**20, "cost_scale": scale, "full_estimate_cpu_s": full,
    }  # fmt: skip


def ig_peak(args: argparse.Namespace) -> dict[str, Any]:
    """The rise of ru_maxrss during IG of the shown level's two images on one variant (own process)."""
    torch.set_num_threads(args.threads)
    from analysis.attributions import explain, get_method
    from models.checkpoints import load_zoo
    from models.perturbations import perturb

    zoo = load_zoo(args.ig_peak)
    image, _ = _first_test_image(zoo)
    model = zoo.models[_shown(zoo)[0]].eval()
    pair = torch.cat([image, perturb(image, args.kind, args.level)])
    opts = get_method("integrated_gradients").options(input_size=tuple(image.shape[1:]))
    if args.ig_steps:
        opts["n_steps"] = args.ig_steps
    with torch.no_grad():
        target = int(model(image).argmax(1))
    budget = args.budget if args.with_budget else "1TB"
    before = _rss()
    ex = explain("integrated_gradients", model, pair, [target, target], memory_budget=budget,
                 internal_batch_size=10**6, **opts)  # fmt: skip
    return {"rise_mib": (_rss() - before) / 2**20, "internal": int(ex.extras["internal_batch_size"]),
            "budget": budget, "samples": 2 * int(opts["n_steps"])}  # fmt: skip


def _current_rss() -> int:
    """The process's resident set now (not its peak), in bytes."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def sessions(args: argparse.Namespace) -> dict[str, Any]:
    """A light request's latency from one session, idle and while another session runs LIME, and the RSS after
    both sessions closed vs the warm baseline, on the dashboard's runner and compute services (own process)."""
    torch.set_num_threads(args.threads)
    from analysis.attributions import get_method
    from analysis.job_runner import JobRunner
    from analysis.jobs_protocol import HeavyQuota
    from analysis.service_api import LocalComputeService, MapsRequest, PredictionsRequest
    from app.compute import PrivateCopies
    from app.long_lived import trim
    from models.checkpoints import load_zoo

    zoo = load_zoo(args.sessions)
    image, _ = _first_test_image(zoo)
    base = image[0].numpy().astype(np.float32)
    variant = _shown(zoo)[0]

    class Handle:  # what PrivateCopies needs of the dashboard's ZooHandle
        variants = zoo.variants

        @staticmethod
        def model(v: str):
            return zoo.entries[v].model

        @staticmethod
        def lock(v: str):
            from analysis.attributions import model_lock

            return model_lock(zoo.entries[v].model)

    light_svc = LocalComputeService(zoo)
    heavy_svc = LocalComputeService(zoo, models=PrivateCopies(Handle()))
    runner = JobRunner(is_alive=lambda sid: True, sweep_s=None, on_release=trim, quota=HeavyQuota.from_env())
    rng = np.random.default_rng(0)
    lime_opts = tuple(
        sorted(
            {
                **get_method("lime").options(input_size=tuple(base.shape)),
                **({"num_samples": args.lime_samples} if args.lime_samples else {}),
            }.items()
        )
    )

    def new_image() -> np.ndarray:
        return np.clip(base + rng.normal(0, 0.02, base.shape).astype(np.float32), 0, 1)

    def light_request() -> float:
        """Predictions of every level, then the shown level's GradCAM of a new image (the page's light jobs)."""
        img = new_image()
        start = time.perf_counter()
        preds = runner.submit(
            "B", "light", lambda job: light_svc.predictions(PredictionsRequest(variant, img, args.kind))
        )
        assert preds.wait(3600) and preds.state == "done", preds.error
        target = int(preds.result.pred[0])
        cam = runner.submit(
            "B",
            "light",
            lambda job: light_svc.maps(MapsRequest(variant, img, args.kind, "gradcam", target, (args.level,))),
        )
        assert cam.wait(3600) and cam.state == "done", cam.error
        return time.perf_counter() - start

    def lime_job(job, img: np.ndarray) -> Any:
        req = MapsRequest(variant, img, args.kind, "lime", 0, (args.level,), lime_opts)
        return heavy_svc.maps(req, progress=job.report, should_stop=job.should_stop)

    light_request()  # warm: the first forward and GradCAM hooks
    trim()
    warm = _current_rss()
    idle = [light_request() for _ in range(args.light_requests)]
    heavy = [runner.submit("A", "heavy", lime_job, new_image(), label="lime") for _ in range(args.lime_jobs)]
    while not any(j.state == "running" for j in heavy):
        time.sleep(0.05)
    busy, overlapped = [], 0
    for _ in range(args.light_requests):
        running = any(j.state == "running" for j in heavy)
        busy.append(light_request())
        overlapped += running and any(j.state == "running" for j in heavy)
    lime_done = sum(j.state == "done" for j in heavy)
    peak = _rss()
    runner.close_session("A")
    runner.close_session("B")
    for job in heavy:
        job.wait(3600)
    del heavy
    trim()
    time.sleep(args.rss_wait)
    trim()
    after = _current_rss()
    runner.shutdown()
    return {"idle_p50": _percentile(idle, 50), "idle_p95": _percentile(idle, 95), "busy_p50": _percentile(busy, 50),
            "busy_p95": _percentile(busy, 95), "n": args.light_requests, "overlapped": overlapped,
            "lime_done": lime_done, "lime_samples": dict(lime_opts).get("num_samples"), "warm_mib": warm / 2**20,
            "after_mib": after / 2**20, "peak_mib": peak / 2**20, "rss_wait_s": args.rss_wait}  # fmt: skip


# ----------------------------------------------------------------------------- the parent: run and print


def _child(flags: list[str], args: argparse.Namespace) -> dict[str, Any]:
    common = ["--budget", args.budget, "--kind", args.kind, "--level", str(args.level), "--levels", args.levels,
              "--threads", str(args.threads)]  # fmt: skip
    if args.ig_steps:
        common += ["--ig-steps", str(args.ig_steps)]
    if args.lime_samples:
        common += ["--lime-samples", str(args.lime_samples)]
    common += ["--light-requests", str(args.light_requests), "--lime-jobs", str(args.lime_jobs), "--rss-wait",
               str(args.rss_wait)]  # fmt: skip
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *flags, *common], cwd=ROOT, text=True,
                         capture_output=True, timeout=3600)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"error: {' '.join(flags)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(label: str, a: str, b: str) -> str:
    return f"| {label} | {a} | {b} |"


def _s(x: float) -> str:
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def sessions_rows(small: dict, large: dict) -> list[str]:
    """The two session figures: a light request beside another session's LIME, RSS after the sessions closed."""

    def light(d: dict) -> str:
        return (f"p50 {_s(d['idle_p50'])}, p95 {_s(d['idle_p95'])} idle; p50 {_s(d['busy_p50'])}, p95 "
                f"{_s(d['busy_p95'])} beside LIME (p95 x{d['busy_p95'] / d['idle_p95']:.2f}; {d['overlapped']}/"
                f"{d['n']} overlapped it)")  # fmt: skip

    def rss(d: dict) -> str:
        change = 100 * (d["after_mib"] / d["warm_mib"] - 1)
        after, warm, peak = d["after_mib"], d["warm_mib"], d["peak_mib"]
        return f"{after:,.0f} MiB vs {warm:,.0f} MiB warm ({change:+.1f}%; peak {peak:,.0f} MiB)"

    return [
        _row(f"light request of a second session (predictions + GradCAM, one variant, n={small['n']}) idle vs while "
             f"another session runs LIME ({small['lime_samples']} / {large['lime_samples']} samples)",
             light(small), light(large)),
        _row(f"server RSS {small['rss_wait_s']:g} s after every session closed vs its warm baseline", rss(small),
             rss(large)),
    ]  # fmt: skip


def report_table(small: dict, large: dict, peaks: dict, budget: str, sess: tuple[dict, dict] | None = None) -> str:
    s = _s

    def m(x: float) -> str:
        return f"{x:,.0f} MiB"

    rows = [
        "| | shipped 32-px zoo | 224-px zoo (2 x torchvision resnet50) |",
        "|---|---|---|",
        _row("variants shown", f"{len(small['variants'])} ({', '.join(small['variants'])})",
             f"{len(large['variants'])} ({', '.join(large['variants'])})"),
        _row("image", small["image"], large["image"]),
        _row("IG steps / LIME samples (fitted to the input)", f"{small['ig_steps']} / {small['lime_samples']}",
             f"{large['ig_steps']} / {large['lime_samples']}"),
        _row("one interpolated image, forward+backward (measured)", f"{small['sample_mib']:.1f} MiB",
             f"{large['sample_mib']:.1f} MiB"),
        _row("cost probes, once per network and size", s(small["probe_s"]), s(large["probe_s"])),
        _row("first map of the shown level (IG + GradCAM, original + level, all shown variants)",
             f"{s(small['first_s'])} (estimated {s(small['first_est_s'])})",
             f"{s(large['first_s'])} (estimated {s(large['first_est_s'])})"),
        _row(f"every level ({','.join(map(str, small['levels']))}), IG + GradCAM, all shown variants",
             s(small["every_s"]), s(large["every_s"])),
        _row("LIME, one image, one variant (segments; lime batch)",
             f"{s(small['lime_s'])} (estimated {s(small['lime_est_s'])}{', slow' if small['lime_slow'] else ''}; "
             f"{small['lime_segments']} segments; batch {small['lime_batch']})",
             f"{s(large['lime_s'])} (estimated {s(large['lime_est_s'])}{', slow' if large['lime_slow'] else ''}; "
             f"{large['lime_segments']} segments; batch {large['lime_batch']})"),
        _row("peak RSS of the measuring process", m(small["peak_rss_mib"]), m(large["peak_rss_mib"])),
        _row(f"IG peak memory, 2 images, budget {budget} (interpolated images per pass)",
             f"+{m(peaks['small_budget']['rise_mib'])} ({peaks['small_budget']['internal']})",
             f"+{m(peaks['large_budget']['rise_mib'])} ({peaks['large_budget']['internal']})"),
        _row("IG peak memory, 2 images, no budget (all in one pass)",
             f"+{m(peaks['small_free']['rise_mib'])} ({peaks['small_free']['internal']})",
             f"+{m(peaks['large_free']['rise_mib'])} ({peaks['large_free']['internal']})"),
        _row("report: estimated full run (FLOPs vs the reference network)",
             f"{small['full_estimate_cpu_s']:,.0f} CPU s (x{small['cost_scale']:.2f})",
             f"{large['full_estimate_cpu_s']:,.0f} CPU s (x{large['cost_scale']:.1f})"),
    ]  # fmt: skip
    if sess is not None:
        rows += sessions_rows(*sess)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipped", type=Path, default=ROOT / "assets" / "zoo" / "default")
    parser.add_argument("--work", type=Path, default=None, help="where the 224-px zoo is built (default: temporary)")
    parser.add_argument("--images", type=int, default=100, help="JPEGs in the photo folder (about)")
    parser.add_argument("--budget", default="1GB", help="memory budget of every method (SCL_MEMORY_BUDGET syntax)")
    parser.add_argument("--ig-steps", type=int, default=None, help="default: fitted to each zoo's input size")
    parser.add_argument("--lime-samples", type=int, default=None, help="default: fitted to each zoo's input size")
    parser.add_argument("--levels", default="0,1,2,3,4", help="the levels of 'every level'")
    parser.add_argument("--kind", default="brightness")
    parser.add_argument("--level", type=int, default=2, help="the shown level")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--light-requests", type=int, default=10, help="light requests timed idle and beside LIME")
    parser.add_argument("--lime-jobs", type=int, default=4, help="LIME jobs the busy session queues")
    parser.add_argument("--rss-wait", type=float, default=60.0, help="seconds after the sessions closed before RSS")
    parser.add_argument("--sessions-only", action="store_true", help="measure only the two-session figures")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ig-peak", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--with-budget", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    if args.ig_peak:
        print(json.dumps(ig_peak(args)))
        return 0
    if args.sessions:
        print(json.dumps(sessions(args)))
        return 0

    start = time.perf_counter()
    load0 = os.getloadavg()[0]
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="scl-scale-")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    print(f"building the 224-px zoo in {work} ...", flush=True)
    build_s, large_zoo = _timed(lambda: build_resnet50_zoo(work, args.images))
    n_jpegs = len(list((work / "photos").rglob("*.jpg")))
    print(f"built in {build_s:.0f} s ({n_jpegs} JPEGs); measuring ...", flush=True)
    sess = (_child(["--sessions", str(args.shipped)], args), _child(["--sessions", str(large_zoo)], args))
    if not args.sessions_only:
        small = _child(["--measure", str(args.shipped)], args)
        large = _child(["--measure", str(large_zoo)], args)
        peaks = {
            f"{name}_{mode}": _child(["--ig-peak", str(zoo), *(["--with-budget"] if mode == "budget" else [])], args)
            for name, zoo in (("small", args.shipped), ("large", large_zoo))
            for mode in ("budget", "free")
        }
    load1 = os.getloadavg()[0]
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}, {os.cpu_count()} CPUs, {args.threads} torch "
        f"threads, load average {load0:.1f} at the start and {load1:.1f} at the end; torch {torch.__version__}; "
        f"budget {args.budget}; kind {args.kind}, shown level {args.level}; "
        f"whole run {time.perf_counter() - start:.0f} s"
    )
    if args.sessions_only:
        print("| | shipped 32-px zoo | 224-px zoo (2 x torchvision resnet50) |\n|---|---|---|")
        print("\n".join(sessions_rows(*sess)))
    else:
        print(report_table(small, large, peaks, args.budget, sess))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
