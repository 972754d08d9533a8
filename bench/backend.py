"""Many users against one zoo: the embedded default (in this process) vs the Ray Serve backend, batching on and off.

    .venv/bin/python bench/backend.py [--zoo assets/zoo/default] [--users 1 4 8] [--requests 6] [--method gradcam]

Each simulated user is a thread that asks, in a bounded loop of ``--requests`` requests, for one variant's maps
(``--method``, every level of one kind, the saliency page's request) of images no other user asks for, then for
that image's predictions. Three servers answer the same requests: ``embedded`` (``LocalComputeService`` in this
process: the per-model locks serialise users), ``service`` (``scl-backend`` on a loopback port with
``@serve.batch``) and ``service, no batching`` (the same with batches of one). Printed per server and user count:
requests, errors, throughput (requests/s), p50/p95 latency and the service's mean batch size; plus Ray's start-up
time and the resident memory of its processes. Everything stops by itself; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants_rss_mib(pid: int) -> float:
    """Resident memory (MiB) of every process below ``pid`` (Ray's raylet, GCS, workers, replicas), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    below, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - below
        below |= frontier
    total = 0
    for p in below:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((3, size, size), dtype=np.float32) for _ in range(n)]


def run_users(service, users: int, per_user: int, variants: list[str], size: int, method: str, kind: str) -> dict:
    """``users`` threads, each ``per_user`` (maps, predictions) pairs on its own images; latencies of each request."""
    from analysis.service_api import MapsRequest, PredictionsRequest

    def user(u: int) -> tuple[list[float], int]:
        lat, errors = [], 0
        for i, img in enumerate(images(per_user, size, seed=1000 * users + u)):
            variant = variants[(u + i) % len(variants)]
            for req in (MapsRequest(variant, img, kind, method, i % 10), PredictionsRequest(variant, img, kind)):
                t = time.perf_counter()
                try:
                    (service.maps if isinstance(req, MapsRequest) else service.predictions)(req)
                except Exception:  # noqa: BLE001 - counted, the run goes on
                    errors += 1
                lat.append(time.perf_counter() - t)
        return lat, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        results = list(pool.map(user, range(users)))
    wall = time.perf_counter() - start
    lat = sorted(x for r in results for x in r[0])
    return {"users": users, "requests": len(lat), "errors": sum(r[1] for r in results),
            "throughput_rps": len(lat) / wall, "p50_s": statistics.median(lat),
            "p95_s": float(np.percentile(lat, 95))}  # fmt: skip


def start_ray(ray, tries: int) -> None:
    """``ray.init`` on this machine, again after a start that timed out: Ray waits a fixed 30 s for its raylet,
    which a loaded 2-core machine can miss (then "The current node timed out during startup")."""
    for attempt in range(1, tries + 1):
        try:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            if attempt == tries or "timed out during startup" not in str(exc):
                raise
            print(f"Ray did not start (attempt {attempt} of {tries}: {exc}); starting it again", flush=True)


def goals(rows: list[dict]) -> list[str]:
    """The issue's goals from the figures: 8 users' p95 within 2x one user's, batching >= 1.5x, no errors."""
    by = {(r["server"], r["users"]): r for r in rows}
    lines = []
    for server in dict.fromkeys(r["server"] for r in rows):
        users = sorted(u for s, u in by if s == server)
        if len(users) > 1:
            one, most = by[(server, users[0])], by[(server, users[-1])]
            ratio = most["p95_s"] / one["p95_s"]
            lines.append(f"{server}: p95 at {users[-1]} users = {ratio:.2f}x that at {users[0]} "
                         f"(goal <= 2x: {'met' if ratio <= 2 else 'not met'})")  # fmt: skip
    for (server, users), row in by.items():
        off = by.get(("service, no batching", users))
        if server == "service" and off is not None:
            gain = row["throughput_rps"] / off["throughput_rps"]
            lines.append(f"batching gain at {users} user{'s' * (users != 1)}: {gain:.2f}x (goal >= 1.5x: "
                         f"{'met' if gain >= 1.5 else 'not met'})")  # fmt: skip
    errors = sum(r["errors"] for r in rows)
    lines.append(f"errors: {errors} of {sum(r['requests'] for r in rows)} requests (goal 0: "
                 f"{'met' if errors == 0 else 'not met'})")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default=str(ROOT / "assets" / "zoo" / "default"))
    p.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=6, help="images per user (each: a maps and a predictions request)")
    p.add_argument("--method", default="gradcam")
    p.add_argument("--kind", default="brightness")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    p.add_argument("--ray-tries", type=int, default=3, help="starts of Ray to try (one that timed out: again)")
    args = p.parse_args(argv)
    began, load_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only, the bench's own instance

    import ray
    import torch
    from ray import serve

    from analysis.backend_service import BackendConfig, serve_zoos
    from analysis.service_api import LocalComputeService
    from analysis.service_client import RemoteComputeService
    from models.checkpoints import load_zoo

    zoo = load_zoo(args.zoo, "cpu")
    variants = zoo.variants
    size = int(next(iter(zoo.entries.values())).meta.get("dataset", {}).get("image_shape", [3, 32, 32])[-1])
    torch.set_num_threads(1)
    rows = []
    embedded = LocalComputeService(zoo, lambda *a: None)
    run_users(embedded, 1, 1, variants, size, args.method, args.kind)  # warm-up (imports, first passes)
    for users in args.users:
        rows.append({"server": "embedded", **run_users(embedded, users, args.requests, variants, size, args.method,
                                                        args.kind)})  # fmt: skip
        print(rows[-1], flush=True)

    t0 = time.perf_counter()
    start_ray(ray, args.ray_tries)
    port = free_port()
    base = BackendConfig(port=port, device="cpu", num_cpus=1, max_ongoing_requests=64, batch_wait_timeout_s=0.02)
    try:
        for name, batching in (("on", True), ("off", False)):
            cfg = BackendConfig(**{**vars(base), "zoos": {name: args.zoo}, "batching": batching})
            url = serve_zoos(cfg)
        startup = time.perf_counter() - t0
        rss = descendants_rss_mib(os.getpid())
        print(f"Ray + both deployments ready in {startup:.1f} s; Ray's processes hold {rss:.0f} MiB", flush=True)
        for name, label in (("on", "service"), ("off", "service, no batching")):
            client = RemoteComputeService(url, name)
            run_users(client, 1, 1, variants, size, args.method, args.kind)
            for users in args.users:
                before = client.info()["batches"]
                rows.append({"server": label, **run_users(client, users, args.requests, variants, size,
                                                           args.method, args.kind)})  # fmt: skip
                after = client.info()["batches"]
                n = sum(after[m]["requests"] - before[m]["requests"] for m in after)
                rows[-1]["mean_batch"] = n / max(1, sum(after[m]["batches"] - before[m]["batches"] for m in after))
                print(rows[-1], flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"\n{'server':<22} {'users':>5} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} "
          f"{'batch':>6}")  # fmt: skip
    for r in rows:
        batch = f"{r['mean_batch']:.2f}" if "mean_batch" in r else "-"
        print(f"{r['server']:<22} {r['users']:>5} {r['requests']:>8} {r['errors']:>6} {r['throughput_rps']:>7.2f} "
              f"{r['p50_s']:>7.3f} {r['p95_s']:>7.3f} {batch:>6}")  # fmt: skip
    summary = goals(rows)
    print("\n" + "\n".join(summary))
    if args.out:
        info = {"began": began, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_at_start": load_start, "load_at_end": os.getloadavg(),
                "zoo": Path(args.zoo).name, "method": args.method, "ray_startup_s": startup, "ray_rss_mib": rss,
                "rows": rows, "goals": summary}  # fmt: skip
        Path(args.out).write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
