"""Many users against one zoo: the embedded default (in this process) vs the Ray Serve backend, batching on and off.

    .venv/bin/python bench/backend.py [--zoo assets/zoo/default] [--users 1 4 8] [--requests 6] [--method gradcam]
    .venv/bin/python bench/backend.py --users 1 8 --duration 300 --out bench-backend-300s.json   # issue 21's run
    .venv/bin/python bench/backend.py --users 1 2 --duration 30                                  # a smoke run
    .venv/bin/python bench/backend.py --users 1 8 --duration 300 --workload page   # users as the saliency page asks

Each simulated user is a thread that asks, in a bounded loop of ``--requests`` images (or, with ``--duration S``,
new images until S seconds have passed: still bounded), for one variant's maps (``--method``, every level of one
kind, the saliency page's request) of images no other user asks for, then for that image's predictions; with
``--workload page`` it asks, per image, for every variant's maps and predictions at once, as many in flight as
the dashboard's light job pool runs, so that requests of one variant from several users meet in a batch. Three
servers answer the same requests (``--servers``): ``embedded`` (``LocalComputeService`` in this process: the
per-model locks serialise users), ``service`` (``scl-backend`` on a loopback port with ``@serve.batch``) and
``service, no batching`` (``nobatch``: the same with batches of one); with ``--duration`` each server runs S
seconds per user count (the command above: 2 x 3 x 300 s, some 30 minutes plus Ray's start-up). Printed per
server and user count: requests, errors (the first one's text), throughput (requests/s), p50/p95 latency, the
service's mean batch size (requests per batch call) and requests per model pass (``/pass``: a batch holding
several variants runs one pass per variant, so only this figure says what batching saved) and how many
sampled answers (every ``--check-every``-th image's) equal the embedded
default's within float32 tolerance; plus Ray's start-up time and the resident memory of its processes; then one
line per goal of issue 21: ``goal <goal> measured <figure> met|NOT MET``. Everything stops by itself; nothing
listens beyond 127.0.0.1. The restart goal is ``bench/backend_restart.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# "identical" for float32 answers: batched and unbatched passes may sum in another order (a few float32 ulps per
# layer), so |service - embedded| <= ATOL + RTOL * |embedded| elementwise (tests/test_backend_service.py's bound)
RTOL, ATOL = 1e-4, 1e-5
MAX_CHECKED = 8  # sampled images per user and run compared with the embedded default (a maps and a predictions each)
SERVERS = {"embedded": "embedded", "service": "service", "nobatch": "service, no batching"}


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


def first_difference(want: Any, got: Any, rtol: float = RTOL, atol: float = ATOL, where: str = "") -> str | None:
    """Where two answers (dataclasses, arrays, dicts, lists, numbers) differ beyond ``rtol``/``atol`` (float arrays
    and floats: ``|got - want| <= atol + rtol * |want|``, as ``numpy.allclose``; anything else: exactly), with the
    largest difference; None when they agree."""
    where = where or type(want).__name__
    if isinstance(want, np.ndarray) or isinstance(got, np.ndarray):
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            return f"{where}: shape {got.shape} instead of {want.shape}"
        if want.dtype.kind in "fc" and got.dtype.kind in "fc":
            if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
                worst = float(np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                return f"{where}: differs by up to {worst:.3g}"
        elif not np.array_equal(got, want):
            return f"{where}: {int(np.sum(got != want))} of {want.size} values differ"
        return None
    if hasattr(want, "__dataclass_fields__"):
        if type(want) is not type(got):
            return f"{where}: {type(got).__name__} instead of {type(want).__name__}"
        return first_difference(vars(want), vars(got), rtol, atol, where)
    if isinstance(want, dict):
        if not isinstance(got, dict) or want.keys() != got.keys():
            return f"{where}: keys {sorted(got) if isinstance(got, dict) else got!r} instead of {sorted(want)}"
        return next((d for k in want if (d := first_difference(want[k], got[k], rtol, atol, f"{where}.{k}"))), None)
    if isinstance(want, list | tuple):
        if not isinstance(got, list | tuple) or len(want) != len(got):
            return f"{where}: {got!r} instead of {want!r}"
        pairs = enumerate(zip(want, got, strict=True))
        return next((d for i, (a, b) in pairs if (d := first_difference(a, b, rtol, atol, f"{where}[{i}]"))), None)
    if isinstance(want, float) and isinstance(got, float | int):
        same = bool(np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True))
        return None if same else f"{where}: {got!r} instead of {want!r}"
    return None if want == got else f"{where}: {got!r} instead of {want!r}"


def run_users(service, users: int, per_user: int, variants: list[str], size: int, method: str, kind: str,
              duration: float | None = None, check_every: int = 0, page_workers: int = 0) -> dict:  # fmt: skip
    """``users`` threads, each ``per_user`` images of its own, or with ``duration`` as many new images as it can
    start within that many seconds; the latency of each request, the errors (the first one's text) and, every
    ``check_every``-th image (0: none, at most ``MAX_CHECKED`` per user), the request with the answer, to compare
    with the embedded default's (``"checked"``).

    Per image, ``page_workers`` 0 (the ``requests`` workload) asks for one variant's maps, then its predictions,
    the variants taken in turn; ``page_workers`` n (the ``page`` workload: what the saliency page does) asks for
    every variant's maps and predictions of the image, n requests at a time (the dashboard's light job pool), and
    the time until all have answered is that page's latency (``p50_page_s``, ``p95_page_s``)."""
    from analysis.service_api import MapsRequest, PredictionsRequest

    start = time.perf_counter()
    end = None if duration is None else start + duration

    def user(u: int) -> tuple[list[float], int, str | None, list, list[float]]:
        lat, errors, first, kept, sampled, pages = [], 0, None, [], 0, []
        rng = np.random.default_rng(1000 * users + u)  # as images(per_user, size, seed=1000 * users + u)
        pool = ThreadPoolExecutor(page_workers) if page_workers else None

        def ask(req, keep: bool) -> tuple[float, Any, str | None]:
            t = time.perf_counter()
            try:
                got = (service.maps if isinstance(req, MapsRequest) else service.predictions)(req)
                return time.perf_counter() - t, (req, got) if keep else None, None
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                return time.perf_counter() - t, None, f"{type(exc).__name__}: {exc}"

        i = 0
        while (i < per_user) if end is None else (time.perf_counter() < end):
            img = rng.random((3, size, size), dtype=np.float32)
            keep = check_every > 0 and i % check_every == 0 and sampled < MAX_CHECKED
            sampled += keep
            asked = variants if pool else [variants[(u + i) % len(variants)]]
            reqs = [r for v in asked for r in (MapsRequest(v, img, kind, method, i % 10),
                                                PredictionsRequest(v, img, kind))]  # fmt: skip
            t_page = time.perf_counter()
            answers = list(pool.map(ask, reqs, [keep] * len(reqs))) if pool else [ask(r, keep) for r in reqs]
            pages.append(time.perf_counter() - t_page)
            for seconds, pair, error in answers:
                lat.append(seconds)
                kept += [pair] if pair else []
                errors += error is not None
                first = first or error
            i += 1
        if pool:
            pool.shutdown()
        return lat, errors, first, kept, pages

    with ThreadPoolExecutor(users) as pool:
        results = list(pool.map(user, range(users)))
    wall = time.perf_counter() - start
    lat = sorted(x for r in results for x in r[0])
    pages = sorted(x for r in results for x in r[4])
    row = {"users": users, "requests": len(lat), "errors": sum(r[1] for r in results),
           "first_error": next((r[2] for r in results if r[2]), None), "wall_s": wall,
           "throughput_rps": len(lat) / wall, "p50_s": statistics.median(lat) if lat else float("nan"),
           "p95_s": float(np.percentile(lat, 95)) if lat else float("nan"),
           "checked": [pair for r in results for pair in r[3]]}  # fmt: skip
    if page_workers:
        row.update(pages=len(pages), p50_page_s=statistics.median(pages) if pages else float("nan"),
                   p95_page_s=float(np.percentile(pages, 95)) if pages else float("nan"))  # fmt: skip
    return row


def check_answers(embedded, checked: list) -> dict:
    """The embedded default's answer to each sampled (request, answer): how many agree, the first difference."""
    from analysis.service_api import MapsRequest

    differ, first = 0, None
    for req, got in checked:
        want = (embedded.maps if isinstance(req, MapsRequest) else embedded.predictions)(req)
        diff = first_difference(want, got)
        if diff:
            differ += 1
            first = first or f"{type(req).__name__}({req.variant}): {diff}"
    return {"compared": len(checked), "differ": differ, "first_difference": first}


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


def goal_line(goal: str, measured: str, met: bool) -> str:
    """One goal with its measured figure and verdict, in columns so the lines read side by side."""
    return f"goal {goal:<60} measured {measured:<36} {'met' if met else 'NOT MET'}"


def goals(rows: list[dict]) -> list[str]:
    """The issue's goals from the figures: most users' p95 within 2x one user's, batching >= 1.5x the throughput
    of batching off, no errors, the service's sampled answers equal to the embedded default's."""
    by = {(r["server"], r["users"]): r for r in rows}
    lines = []
    for server in dict.fromkeys(r["server"] for r in rows):
        users = sorted(u for s, u in by if s == server)
        if len(users) > 1:
            one, most = by[(server, users[0])], by[(server, users[-1])]
            key = "p95_page_s" if "p95_page_s" in one else "p95_s"  # a page workload: a new level is a whole page
            ratio = most[key] / one[key]
            measured = f"{ratio:.2f}x ({most[key]:.3f} s / {one[key]:.3f} s)"
            what = "page p95" if key == "p95_page_s" else "p95"
            lines.append(goal_line(f"{server}: {what} at {users[-1]} users <= 2x at {users[0]}", measured, ratio <= 2))
    for (server, users), row in by.items():
        off = by.get(("service, no batching", users))
        if server == "service" and off is not None:
            gain = row["throughput_rps"] / off["throughput_rps"]
            lines.append(goal_line(f"batching at {users} user{'s' * (users != 1)}: >= 1.5x the req/s of off",
                                   f"{gain:.2f}x ({row['throughput_rps']:.2f} / {off['throughput_rps']:.2f} req/s)",
                                   gain >= 1.5))  # fmt: skip
    errors, requests = sum(r["errors"] for r in rows), sum(r["requests"] for r in rows)
    first = next((r["first_error"] for r in rows if r.get("first_error")), None)
    lines.append(goal_line("errors: 0", f"{errors} of {requests} requests", errors == 0)
                 + (f" (first: {first})" if first else ""))  # fmt: skip
    checks = [r["check"] for r in rows if r.get("check")]
    if checks:
        compared, differ = sum(c["compared"] for c in checks), sum(c["differ"] for c in checks)
        first = next((c["first_difference"] for c in checks if c["first_difference"]), None)
        lines.append(goal_line(f"answers equal the embedded's (rtol {RTOL:g}, atol {ATOL:g})",
                               f"{compared - differ} of {compared} sampled equal", compared > 0 and differ == 0)
                     + (f" (first: {first})" if first else ""))  # fmt: skip
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default=str(ROOT / "assets" / "zoo" / "default"))
    p.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=6, help="images per user (each: a maps and a predictions request)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="instead of --requests: each user asks for new images until S seconds have passed")  # fmt: skip
    p.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS),
                   help="which to measure (default all: embedded, service, nobatch)")  # fmt: skip
    p.add_argument("--check-every", type=int, default=5,
                   help=f"compare every Nth image's answers with the embedded default's (at most {MAX_CHECKED} per "
                   "user and run; 0: none)")  # fmt: skip
    p.add_argument("--variants", nargs="+", default=None,
                   help="the variants users take turns on (default: all the zoo's; one variant: every concurrent "
                   "request may join one batch, which those of other variants, other models, never do)")  # fmt: skip
    p.add_argument("--workload", choices=["requests", "page"], default="requests",
                   help="requests: each user asks for one variant's maps of an image, the variants in turn; page: "
                   "each user asks for every variant's maps of an image, as the saliency page does, "
                   "--page-workers at a time, and a page's latency is the time to its last answer")  # fmt: skip
    p.add_argument("--page-workers", type=int, default=None,
                   help="requests of one page in flight at once (default: the dashboard's light job pool, "
                   "max(2, min(4, CPUs)))")  # fmt: skip
    p.add_argument("--method", default="gradcam")
    p.add_argument("--kind", default="brightness")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    p.add_argument("--ray-tries", type=int, default=3, help="starts of Ray to try (one that timed out: again)")
    args = p.parse_args(argv)
    if args.duration is not None and not 0 < args.duration <= 3600:
        p.error("--duration must be more than 0 and at most 3600 seconds")
    if args.page_workers is not None and args.page_workers < 1:
        p.error("--page-workers must be at least 1")
    if min(args.users) < 1 or args.requests < 1 or args.check_every < 0:
        p.error("--users and --requests must be at least 1, --check-every at least 0")
    if not Path(args.zoo, "zoo.json").is_file():
        p.error(f"--zoo {args.zoo}: not a zoo folder (no zoo.json)")
    return args


def print_table(rows: list[dict]) -> None:
    pages = any("p95_page_s" in r for r in rows)
    print(f"\n{'server':<22} {'users':>5} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} "
          + (f"{'page p95':>8} " if pages else "") + f"{'batch':>6} {'/pass':>6} {'equal':>7}")  # fmt: skip
    for r in rows:
        batch = f"{r['mean_batch']:.2f}" if "mean_batch" in r else "-"
        per_pass = f"{r['per_pass']:.2f}" if "per_pass" in r else "-"
        check = r.get("check")
        equal = f"{check['compared'] - check['differ']}/{check['compared']}" if check else "-"
        page = f"{r['p95_page_s']:>8.3f} " if pages else ""
        print(f"{r['server']:<22} {r['users']:>5} {r['requests']:>8} {r['errors']:>6} {r['throughput_rps']:>7.2f} "
              f"{r['p50_s']:>7.3f} {r['p95_s']:>7.3f} {page}{batch:>6} {per_pass:>6} {equal:>7}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began, load_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only, the bench's own instance

    import torch

    from analysis.service_api import LocalComputeService
    from models.checkpoints import load_zoo

    zoo = load_zoo(args.zoo, "cpu")
    variants = args.variants or zoo.variants
    unknown = sorted(set(variants) - set(zoo.variants))
    if unknown:
        print(f"error: --variants {' '.join(unknown)}: not in the zoo ({', '.join(zoo.variants)})", file=sys.stderr)
        return 2
    size = int(next(iter(zoo.entries.values())).meta.get("dataset", {}).get("image_shape", [3, 32, 32])[-1])
    torch.set_num_threads(1)
    rows = []
    light_pool = max(2, min(4, os.cpu_count() or 2))  # analysis.job_runner.JobRunner's light workers
    page_workers = (args.page_workers or light_pool) if args.workload == "page" else 0
    run = {"variants": variants, "size": size, "method": args.method, "kind": args.kind, "page_workers": page_workers}
    embedded = LocalComputeService(zoo, lambda *a: None)
    run_users(embedded, 1, 1, **run)  # warm-up (imports, first passes)
    mode = f"{args.duration:g} s per user count" if args.duration else f"{args.requests} images per user"
    print(f"{began}, load average {' '.join(f'{x:.2f}' for x in load_start)}; {mode}; {args.method} on "
          f"{args.kind}; variants {', '.join(variants)}", flush=True)  # fmt: skip
    if "embedded" in args.servers:
        for users in args.users:
            row = {"server": "embedded", **run_users(embedded, users, args.requests, **run, duration=args.duration)}
            row.pop("checked")
            rows.append(row)
            print({k: v for k, v in row.items()}, flush=True)

    startup = rss = None
    remote = [(name, SERVERS[name]) for name in ("service", "nobatch") if name in args.servers]
    if remote:
        import ray
        from ray import serve

        from analysis.backend_service import BackendConfig, serve_zoos
        from analysis.service_client import RemoteComputeService

        t0 = time.perf_counter()
        start_ray(ray, args.ray_tries)
        port = free_port()
        base = BackendConfig(port=port, device="cpu", num_cpus=1, max_ongoing_requests=64, batch_wait_timeout_s=0.02)
        try:
            for name, _ in remote:
                cfg = BackendConfig(**{**vars(base), "zoos": {name: args.zoo}, "batching": name == "service"})
                url = serve_zoos(cfg)
            startup = time.perf_counter() - t0
            rss = descendants_rss_mib(os.getpid())
            print(f"Ray + {len(remote)} served zoo(s) ready in {startup:.1f} s; Ray's processes hold {rss:.0f} MiB",
                  flush=True)  # fmt: skip
            for name, label in remote:
                client = RemoteComputeService(url, name)
                run_users(client, 1, 1, **run)
                for users in args.users:
                    before = client.info()["batches"]
                    row = {"server": label, **run_users(client, users, args.requests, **run, duration=args.duration,
                                                        check_every=args.check_every)}  # fmt: skip
                    after = client.info()["batches"]
                    n = sum(after[m]["requests"] - before[m]["requests"] for m in after)
                    row["mean_batch"] = n / max(1, sum(after[m]["batches"] - before[m]["batches"] for m in after))
                    # a batch of several variants runs one pass per variant: requests per pass is what batching saves
                    row["per_pass"] = n / max(1, sum(after[m]["passes"] - before[m]["passes"] for m in after))
                    row["check"] = check_answers(embedded, row.pop("checked"))  # outside the timed run
                    rows.append(row)
                    print(row, flush=True)
        finally:
            serve.shutdown()
            ray.shutdown()

    print_table(rows)
    summary = goals(rows)
    print("\n" + "\n".join(summary))
    if args.out:
        info = {"began": began, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_at_start": load_start, "load_at_end": os.getloadavg(), "zoo": Path(args.zoo).name,
                "method": args.method, "kind": args.kind, "variants": variants, "duration_s": args.duration,
                "workload": args.workload, "page_workers": page_workers,
                "requests": args.requests,
                "ray_startup_s": startup, "ray_rss_mib": rss, "tolerance": {"rtol": RTOL, "atol": ATOL},
                "rows": rows, "goals": summary}  # fmt: skip
        Path(args.out).write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
