"""``scl-precompute``: the gallery's maps and the whole-test-set embeddings of a zoo, computed ahead for the dashboard.

For every variant, perturbation kind, attribution method (default: those the saliency page ticks) and level, the
maps of the zoo's test images (the dashboard's gallery; ``--limit N`` the first N, ``--images 3,8,10-20`` a
selection) explaining the class the variant predicts on the original image, as the page does; and every variant's
whole-test-set logits and penultimate features (the embeddings page). Chunks of images go through the methods in
batches on the best device (``--device auto``), each method within the memory budget (``--memory-budget``,
``SCL_MEMORY_BUDGET``), with a progress bar. Results go to ``analysis.precomputed_store`` (default
``<zoo>/precomputed``), keyed by checkpoint sha256 and settings; each finished chunk is written atomically, so
Ctrl-C or SIGTERM stops it (exit 130) and the same command continues with the chunks not yet written.

Several GPUs: ``torchrun --nproc_per_node N -m analysis.precompute --zoo Z``; with ``WORLD_SIZE`` > 1 each rank
takes every N-th chunk (:func:`shard`) and writes its own files.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis import precomputed_store as store
from models.checkpoints import CheckpointError
from models.errors import LabError, SettingsError
from models.safe_output import describe_os_error, folder_lock

__all__ = ["EMBED_CHUNK", "REPRESENTATIONS", "WorkItem", "dataset_spec", "default_methods", "main", "parse_images",
           "plan", "precompute", "shard"]  # fmt: skip

EXIT_INTERRUPTED = 130
EMBED_CHUNK = 1024  # images per embeddings chunk (a multiple of the whole-set batch size, 512)
REPRESENTATIONS = ("logits", "features")


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """This rank's share of ``items``: every ``world_size``-th one from ``rank`` (ranks share nothing, and together
    cover every item once)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    return list(items[rank::world_size])


def parse_images(text: str, n: int) -> list[int]:
    """``"3,8,10-20"`` -> sorted unique indices of the test split (SettingsError naming a bad or out-of-range one)."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise SettingsError(f"--images {part!r}: expected indices such as 3,8,10-20") from None
        if a > b or a < 0 or b >= n:
            raise SettingsError(f"--images {part!r}: the test split has images 0-{n - 1}")
        out.update(range(a, b + 1))
    if not out:
        raise SettingsError("--images names no image")
    return sorted(out)


def default_methods() -> list[str]:
    """The methods the saliency page computes without being asked (``Method.selected_by_default``)."""
    from analysis.attributions import METHOD_REGISTRY

    return [name for name, m in METHOD_REGISTRY.items() if m.selected_by_default]


def dataset_spec(zoo: Any, data_root: str | None = None) -> tuple:
    """(name, "test", root, image_size) of the zoo's test split, as the dashboard loads it (``app.zoo_cache``)."""
    first = next(iter(zoo.entries.values()))
    dataset = dict(zoo.dataset or first.meta.get("dataset") or {})
    config = dict(first.meta.get("config") or {})
    name = str(dataset.get("name") or config.get("dataset") or "fashion-mnist-m")
    shape = dataset.get("image_shape")
    if isinstance(shape, list | tuple) and len(shape) >= 2:
        size = int(shape[-1])
    elif config.get("image_size"):
        size = int(config["image_size"])
    else:
        size = 224 if name == "imagefolder" else 32
    return (name, "test", data_root or config.get("data_root") or None, size)


@dataclass(frozen=True)
class WorkItem:
    """One chunk of work: maps of ``indices`` for (variant, kind, method), or one variant's embeddings."""

    what: str  # "maps" | "embeddings"
    variant: str
    first: int
    indices: tuple[int, ...]
    kind: str = ""
    method: str = ""
    representation: str = ""


def plan(variants: Sequence[str], indices: Sequence[int], n_images: int, kinds: Sequence[str],
         methods: Sequence[str], representations: Sequence[str], chunk_size: int) -> list[WorkItem]:  # fmt: skip
    """Every chunk to compute, earliest images first (so the first gallery images are complete first), then the
    embeddings. Map chunks cover test indices [c * chunk_size, (c + 1) * chunk_size) of the selection."""
    chunks: dict[int, list[int]] = {}
    for i in indices:
        chunks.setdefault(int(i) // chunk_size * chunk_size, []).append(int(i))
    items = [WorkItem("maps", v, first, tuple(idx), kind, m) for first, idx in sorted(chunks.items())
             for v in variants for kind in kinds for m in methods]  # fmt: skip
    for first in range(0, n_images, EMBED_CHUNK):
        idx = tuple(range(first, min(n_images, first + EMBED_CHUNK)))
        items += [WorkItem("embeddings", v, first, idx, representation=r) for v in variants for r in representations]
    return items


def _existing(path: Path, required: Sequence[str], wanted: Sequence[int],
              log: Callable[[str], None]) -> dict[str, np.ndarray] | None:  # fmt: skip
    """The chunk already at ``path``: only its ``index`` when it holds every ``wanted`` image (then it is skipped),
    every array when some are missing (to extend it); None when absent or unreadable (said in one line)."""
    if not path.is_file():
        return None
    try:
        small = store.read_arrays(path, ("index", "fingerprint") if "fingerprint" in required else ("index",))
        if set(wanted) <= set(small["index"].tolist()):
            return small
        return store.read_chunk(path, required)
    except store.CorruptChunk as exc:
        log(f"note: {exc}; computing it again (the unreadable file is kept beside it as .old-...)")
        return None


def _merge(old: dict[str, np.ndarray] | None, new: dict[str, np.ndarray], per_image: Sequence[str]) -> dict:
    """``new``'s rows added to ``old``'s, ordered by test index (a chunk extended by a later, larger selection)."""
    if old is None:
        return new
    order = np.argsort(np.concatenate([old["index"], new["index"]]), kind="stable")
    out = dict(new)
    for key in per_image:
        out[key] = np.concatenate([old[key], new[key]])[order]
    return out


def _targets(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """Each image's predicted class (what the page's maps explain)."""
    from analysis.per_image import logits_of

    return logits_of(model, images).argmax(1).astype(np.int64)


def _map_chunk(model: torch.nn.Module, images: torch.Tensor, item: WorkItem, targets: np.ndarray,
               levels: Sequence[int]) -> dict[str, np.ndarray]:  # fmt: skip
    """Maps (n, L, H, W) of one chunk: every image at every level in one ``explain`` call (the method chunks it to
    the memory budget), and its per-level scalar extras."""
    from analysis.attributions import explain, get_method
    from analysis.per_image import _scalar_extras, level_batch

    idx = list(item.indices)
    x = torch.cat([level_batch(images[i].numpy(), item.kind, levels) for i in idx])
    n, n_levels = len(idx), len(levels)
    opts = get_method(item.method).options(input_size=tuple(x.shape[1:]))
    ex = explain(item.method, model, x, np.repeat(targets, n_levels).tolist(), **opts)
    extras = [_scalar_extras(ex.extras, k) for k in range(n * n_levels)]
    names = sorted({k for e in extras for k in e})
    out = {
        "index": np.asarray(idx, dtype=np.int64),
        "digest": np.asarray([store.image_digest(images[i].numpy()) for i in idx], dtype="<U32"),
        "target": np.asarray(targets, dtype=np.int64),
        "levels": np.asarray(levels, dtype=np.int64),
        "maps": np.asarray(ex.maps, dtype=np.float32).reshape(n, n_levels, *ex.maps.shape[-2:]),
    }
    for name in names:
        out[f"extra_{name}"] = np.asarray([e.get(name, np.nan) for e in extras], dtype=np.float64).reshape(n, n_levels)
    return out


def _embedding_chunk(model: torch.nn.Module, images: torch.Tensor, item: WorkItem, fingerprint: str) -> dict:
    from analysis.attributions import model_lock
    from analysis.embeddings import predict_features
    from models.evaluation import predict_logits

    x = images[list(item.indices)]
    with model_lock(model):
        logits = predict_logits(model, x, 512)
        rep = logits if item.representation == "logits" else predict_features(model, x, 512)
    return {"index": np.asarray(item.indices, dtype=np.int64), "rep": rep.numpy().astype(np.float32),
            "pred": logits.argmax(1).numpy().astype(np.int64), "fingerprint": np.asarray(fingerprint)}  # fmt: skip


MAP_ROWS = ("index", "digest", "target", "maps")


def precompute(
    zoo_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    methods: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    representations: Sequence[str] = REPRESENTATIONS,
    limit: int | None = None,
    images: str | None = None,
    chunk_size: int = 16,
    device: str = "auto",
    data_root: str | None = None,
    maps: bool = True,
    embeddings: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> dict[str, Any]:
    """Compute what is not stored yet; returns {"out", "computed", "skipped", "items"} (this rank's chunks)."""
    from tqdm.auto import tqdm

    from analysis.attributions import METHOD_REGISTRY
    from analysis.per_image import ALL_LEVELS
    from models.checkpoints import load_zoo
    from models.data import load_dataset
    from models.devices import init_distributed, pick_device
    from models.perturbations import KINDS

    methods = list(methods) if methods else default_methods()
    unknown = [m for m in methods if m not in METHOD_REGISTRY]
    if unknown:
        raise SettingsError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHOD_REGISTRY)}")
    kinds = list(kinds) if kinds else list(KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise SettingsError(f"--kinds: unknown {', '.join(bad)}; known: {', '.join(KINDS)}")
    bad = [r for r in representations if r not in REPRESENTATIONS]
    if bad:
        raise SettingsError(f"--representations: unknown {', '.join(bad)}; known: {', '.join(REPRESENTATIONS)}")
    if chunk_size < 1 or (limit is not None and limit < 1):
        raise SettingsError("--chunk-size and --limit must be at least 1")
    dev = pick_device(device)
    dist = init_distributed(dev)
    if dist.world_size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
    zoo = load_zoo(zoo_path, device=dev)
    if not zoo.entries:
        raise CheckpointError(f"zoo {zoo_path} lists no variants")
    variants = list(variants) if variants else zoo.variants
    bad = [v for v in variants if v not in zoo.entries]
    if bad:
        raise SettingsError(f"--variants: unknown {', '.join(bad)}; the zoo has {', '.join(zoo.variants)}")
    root = Path(out) if out is not None else store.default_root(zoo.path)
    spec = dataset_spec(zoo, data_root)
    ds = load_dataset(spec[0], spec[1], spec[2], image_size=spec[3])
    n = len(ds)
    chosen = parse_images(images, n) if images else list(range(n))
    chosen = chosen[:limit] if limit else chosen
    items = plan(variants, chosen if maps else [], n, kinds, methods, representations if embeddings else (),
                 chunk_size)  # fmt: skip
    mine = shard(items, dist.rank, dist.world_size)
    hashes = {v: str((zoo.manifest["variants"].get(v) or {}).get("sha256", "")) for v in zoo.variants}
    shape = tuple(ds.images.shape[1:])
    fingerprint = store.dataset_fingerprint(ds.images)
    targets: dict[tuple[str, int], np.ndarray] = {}
    computed = skipped = 0
    lock_target = root if dist.world_size == 1 else root / f"rank-{dist.rank}"
    with folder_lock(lock_target, "scl-precompute"):
        bar = tqdm(mine, disable=not progress or not dist.is_main, unit="chunk", desc="precompute", file=sys.stderr)
        for item in bar:
            model = zoo.entries[item.variant].model
            if item.what == "maps":
                settings = store.map_settings(item.variant, hashes[item.variant], item.kind, item.method, shape)
            else:
                settings = store.embedding_settings(item.variant, hashes[item.variant], item.representation, spec, n)
            folder = store.entry_dir(root, settings)
            path = folder / store.chunk_name(item.first)
            required = (
                ("index", *MAP_ROWS, "levels") if item.what == "maps" else ("index", "rep", "pred", "fingerprint")
            )
            old = _existing(path, required, item.indices, log)
            have = set(old["index"].tolist()) if old is not None else set()
            todo = [i for i in item.indices if i not in have]
            if item.what == "embeddings" and old is not None and str(old.get("fingerprint")) != fingerprint:
                old, todo = None, list(item.indices)  # another data set under the same name: computed again
            if not todo:
                skipped += 1
                continue
            bar.set_postfix_str(f"{item.variant} {item.kind or item.representation} {item.method}".strip())
            store.write_settings(folder, settings)
            part = WorkItem(item.what, item.variant, item.first, tuple(todo), item.kind, item.method,
                            item.representation)  # fmt: skip
            if item.what == "maps":
                key = (item.variant, item.first)
                if key not in targets:
                    targets.clear()
                    targets[key] = _targets(model, ds.images[list(item.indices)])
                t = targets[key][[item.indices.index(i) for i in todo]]
                new = _map_chunk(model, ds.images, part, t, ALL_LEVELS)
                rows = (*MAP_ROWS, *(k for k in new if k.startswith("extra_")))
                if old is not None and set(k for k in old if k.startswith("extra_")) != set(rows[len(MAP_ROWS) :]):
                    new, old = _map_chunk(model, ds.images, item, targets[key], ALL_LEVELS), None
                store.write_chunk(path, _merge(old, new, rows))
            else:
                store.write_chunk(path, _merge(old, _embedding_chunk(model, ds.images, part, fingerprint),
                                               ("index", "rep", "pred")))  # fmt: skip
            computed += 1
        bar.close()
    if dist.world_size > 1:
        import torch.distributed as tdist

        tdist.barrier()
        if dist.is_main:
            store.write_index(root)
        tdist.barrier()
        tdist.destroy_process_group()
        return {"out": str(root), "computed": computed, "skipped": skipped, "items": len(mine)}
    if dist.is_main:
        store.write_index(root)
    return {"out": str(root), "computed": computed, "skipped": skipped, "items": len(mine)}


def build_parser() -> argparse.ArgumentParser:
    from models.assets import default_zoo
    from models.cli import add_threads_argument, make_parser

    p = make_parser(
        "scl-precompute",
        "Compute a zoo's gallery maps (every variant, kind, level and method) and whole-test-set embeddings ahead, "
        "for the dashboard to read at once. Resumable: rerun the same command after a stop.",
    )
    p.add_argument("--zoo", default=str(default_zoo()), help="zoo folder (with zoo.json)")
    p.add_argument("--out", default=None, help=f"store folder (default: ${store.ENV_STORE}, else <zoo>/precomputed)")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated attribution methods (default: the saliency page's default selection)",
    )
    p.add_argument("--variants", default=None, help="comma-separated variants (default: every variant of the zoo)")
    p.add_argument("--kinds", default=None, help="comma-separated perturbation kinds (default: every kind)")
    p.add_argument("--representations", default=",".join(REPRESENTATIONS), help="embeddings to store")
    p.add_argument("--limit", type=int, default=None, help="only the first N gallery images (of --images)")
    p.add_argument("--images", default=None, help="test-split indices, e.g. 3,8,10-20 (default: all)")
    p.add_argument("--chunk-size", type=int, default=16, help="images per map chunk (one file, one batch)")
    p.add_argument("--no-maps", action="store_true", help="skip the gallery maps")
    p.add_argument("--no-embeddings", action="store_true", help="skip the whole-test-set embeddings")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--memory-budget", default=None, help="per-method memory budget, e.g. 2GB or 25%% "
                   "(default: $SCL_MEMORY_BUDGET, else 25%% of the free memory)")  # fmt: skip
    p.add_argument("--data-root", default=None, help="folder of the zoo's on-disk data set (if it has one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(p)
    return p


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; 0 done, 2 bad input, 130 stopped (rerun to continue)."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM stops like Ctrl-C
    try:
        if args.num_threads:
            torch.set_num_threads(args.num_threads)
        if args.memory_budget is not None:
            from analysis.memory_budget import set_memory_budget

            set_memory_budget(args.memory_budget)
        summary = precompute(
            args.zoo, args.out, methods=_names(args.methods), variants=_names(args.variants), kinds=_names(args.kinds),
            representations=_names(args.representations) or (), limit=args.limit, images=args.images,
            chunk_size=args.chunk_size, device=args.device, data_root=args.data_root, maps=not args.no_maps,
            embeddings=not args.no_embeddings, progress=not args.no_progress,
        )  # fmt: skip
    except (ValueError, CheckpointError, LabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped; the chunks written are kept: rerun the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{summary['out']}: {summary['computed']} chunks computed, {summary['skipped']} already stored",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
