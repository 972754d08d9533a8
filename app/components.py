"""Widgets and layout shared by the pages: the sidebar, results sections (the pickers: :mod:`app.pickers`).

Nothing here computes; it asks the caches (:mod:`app.zoo_cache`, :mod:`app.results_store`).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from analysis.results_store import SEED_REPORTS, Results
from app import long_lived, public, results_store, zoo_cache
from models.checkpoints import CheckpointError
from models.data import DatasetError
from models.objectives import VARIANT_REGISTRY
from models.registry import FieldView

DS_CAPTION = "DS = ||F(x') - F(x)||² on the logits, summed over classes; lower = more continuous."
VARIANT_HELP = FieldView(VARIANT_REGISTRY, lambda v: v.help)  # name -> one-line help (a live registry view)
ICON = Path(__file__).resolve().parent / "static" / "icon.png"  # served by this server: no request leaves it
_MARKDOWN_SPECIAL = "\\`*_{}[]()<>#+-.!|~$:^&="


def md_escape(text: object) -> str:
    """``text`` shown literally inside Streamlit Markdown: every Markdown, directive (``:red[...]``), emoji
    shortcode and LaTeX character backslash-escaped, newlines flattened (file names, user input)."""
    s = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in s)


# ----------------------------------------------------------------------------- page set-up and navigation

# Page files live in app/views/, not app/pages/: Streamlit auto-discovers a folder named pages/ beside the
# entry script and shows its raw file names as a menu until st.navigation runs.
PAGES_DIR = Path(__file__).resolve().parent / "views"


@functools.cache
def page_icon():
    """The favicon, a small PNG shipped in app/static (an emoji or ``:material/...:`` icon would make the
    browser fetch an image from a public CDN)."""
    from PIL import Image

    with Image.open(ICON) as img:
        return img.copy()


def setup_page() -> None:
    st.set_page_config(
        page_title="Semantic Continuity Lab",
        page_icon=page_icon(),
        layout="wide",
        initial_sidebar_state="expanded",
        menu_items={"About": "Semantic Continuity Lab: measure and explain the semantic continuity of image "
                             "classifiers (standard, C, ADV, ADV+C)."},
    )  # fmt: skip


def build_navigation(position: str = "sidebar"):
    """``st.navigation`` over app/views/ (returns the page to run); ``position="hidden"`` registers the pages
    without drawing the menu (the access-token gate keeps a deep link's page so)."""
    page = lambda name, title, icon, **kw: st.Page(PAGES_DIR / f"{name}.py", title=title, icon=icon, **kw)  # noqa: E731
    return st.navigation(
        {
            "Models": [page("zoo", "The zoo", ":material/science:", default=True)],
            "Explore": [
                page("saliency", "Saliency side by side", ":material/local_fire_department:"),
                page("explanation_continuity", "Explanation continuity", ":material/timeline:"),
                page("sanity_checks", "Sanity checks", ":material/rule:"),
                page("faithfulness", "Faithfulness (ROAD)", ":material/verified:"),
                page("embeddings", "Neighbourhood embeddings", ":material/scatter_plot:"),
            ],
            "Experiments": [
                page("continuity", "Continuity curves", ":material/show_chart:"),
                page("probes", "Semantic probes", ":material/extension:"),
                page("robustness", "Robustness", ":material/shield:"),
                page("transfer", "Transfer", ":material/swap_horiz:"),
                page("fairness", "Fairness", ":material/balance:"),
                page("claims", "Claims", ":material/fact_check:"),
            ],
        },
        position=position,
    )


_IMPORTS_FROZEN = False


def entry():
    """What the entry script does on every run: page config, navigation, sidebar; returns the page to run."""
    global _IMPORTS_FROZEN
    if not _IMPORTS_FROZEN:  # once per server process: the modules imported by now live as long as it does
        long_lived.freeze()
        _IMPORTS_FROZEN = True
    setup_page()
    navigation = build_navigation()
    sidebar()
    return navigation


# ----------------------------------------------------------------------------- sidebar and context


@dataclass
class Context:
    """What every page needs: the zoo (or why there is none) and the data set choice."""

    zoo_path: str
    device: str
    handle: zoo_cache.ZooHandle | None
    zoo_error: str | None
    dataset_name: str | None
    data_root: str | None

    @property
    def dataset_args(self) -> tuple:
        """Arguments of ``zoo_cache.get_dataset`` (also a cache key)."""
        size = self.handle.image_size if self.handle else None
        return (self.dataset_name, "test", self.data_root or None, size)


def _load_handle(path: str, device: str) -> tuple[zoo_cache.ZooHandle | None, str | None]:
    try:
        return zoo_cache.get_zoo(path, device), None
    except CheckpointError as exc:
        return None, public.redact(str(exc))
    except Exception as exc:  # anything else about a bad folder: a message, not a traceback
        return None, public.redact(f"could not load the zoo at {path}: {type(exc).__name__}: {exc}")


def sidebar() -> Context:
    """Zoo folder, data set and device, in the sidebar; remembered in the session."""
    state = st.session_state
    if "scl_zoo_path" not in state:
        state["scl_zoo_path"] = zoo_cache.initial_zoo_path()
    device = zoo_cache.device_name()
    with st.sidebar:
        st.markdown("### Model zoo")
        locked = os.environ.get("SCL_ZOO_LOCKED", "").lower() in ("1", "true", "yes")
        if public.enabled():  # public mode: the operator's zoos by name, never a typed server path
            path = public.zoo_picker()
        else:
            path = st.text_input(
                "Zoo folder",
                key="scl_zoo_path",
                disabled=locked,
                help="A folder with zoo.json and one checkpoint per variant. Also settable with "
                "`streamlit run app/streamlit_app.py -- --zoo PATH` or the SCL_ZOO environment variable"
                + (" (locked by SCL_ZOO_LOCKED on this server)." if locked else "."),
            )
        handle, error = _load_handle(path, device)
        handle = seed_picker(handle, path, device)
        if handle is None:
            st.error("No zoo loaded (see the page).", icon="⚠️")
        else:
            st.caption(f"**{handle.name}**: {', '.join(handle.variants)}")
        from models.data import dataset_names

        names = public.dataset_choices(dataset_names())
        default = handle.dataset_name if handle else None
        if state.get("scl_dataset_for") != path:  # a new zoo: follow its data set
            state["scl_dataset_for"] = path
            state["scl_dataset"] = default if default in names else (names[0] if names else None)
        dataset_name = st.selectbox(
            "Data set (test split)", names, key="scl_dataset",
            help="The gallery and the experiments use this data set's test split; by default the zoo's own.",
        )  # fmt: skip
        if public.enabled():  # the operator's folder for the chosen data set, never a typed one
            data_root = public.dataset_root(dataset_name)
        else:
            with st.expander("Data location", expanded=False):
                data_root = st.text_input(
                    "Data root (for cifar10, svhn, imagefolder...)",
                    value=(handle.data_root or "") if handle else "",
                    key=f"scl_data_root::{path}",
                )
        st.markdown(f"Device: **{device}**")
        if device == "cpu":
            st.caption("No GPU found: everything runs on the CPU.")
        st.caption(version_caption())
    ctx = Context(path, device, handle, error, dataset_name, data_root or None)
    state["scl_context"] = ctx
    return ctx


def seed_picker(handle: zoo_cache.ZooHandle | None, path: str, device: str) -> zoo_cache.ZooHandle | None:
    """A zoo with replicas (several training seeds per variant): which seed's checkpoints the pages show."""
    from models.replicas import variant_replicas, zoo_seeds

    if handle is None:
        return None
    manifest = handle.zoo.manifest
    seeds = sorted({s for held in zoo_seeds(manifest).values() for s in held})
    if len(seeds) < 2:
        return handle
    primary = {variant_replicas(manifest, v)[0].seed for v in handle.variants}
    options = [None, *[s for s in seeds if s not in primary]]
    chosen = st.selectbox(
        "Training seed", options, key=f"scl_seed::{path}",
        format_func=lambda s: "primary checkpoints" if s is None else f"seed {s}",
        help="This zoo holds several training runs per variant. The zoo page shows every seed's cards with "
        "their mean and spread; the other pages show the checkpoints of the seed chosen here "
        "(variants without it are left out).",
    )  # fmt: skip
    if chosen is None:
        return handle
    picked, error = _load_handle_seed(path, device, chosen)
    if picked is None:
        st.warning(error or f"seed {chosen} could not be loaded; showing the primary checkpoints")
        return handle
    return picked


def _load_handle_seed(path: str, device: str, seed: int) -> tuple[zoo_cache.ZooHandle | None, str | None]:
    try:
        return zoo_cache.get_zoo(path, device, seed), None
    except Exception as exc:  # a missing or changed replica file: a message, the primary checkpoints shown
        return None, public.redact(f"seed {seed}: {exc}")


@functools.cache
def version_caption() -> str:
    """The sidebar's footer: ``Semantic Continuity Lab 0.2.0 · commit 1a2b3c4d5e6f`` (git read once per process)."""
    from models.checkpoints import git_commit
    from models.version import package_version

    commit = git_commit()
    return f"Semantic Continuity Lab {package_version()}" + ("" if commit == "unknown" else f" · commit {commit[:12]}")


def context() -> Context:
    """The context the entry script put in the session for this run (every page starts with this)."""
    ctx = st.session_state.get("scl_context")
    return ctx if ctx is not None else sidebar()


def require_zoo(ctx: Context) -> zoo_cache.ZooHandle:
    """The loaded zoo, or an explanation and stop."""
    if ctx.handle is None:
        st.error(f"**No model zoo could be loaded.** {ctx.zoo_error}")
        st.info(
            "Point the sidebar's *Zoo folder* at a zoo, or train one:\n\n"
            "```\npython -m models.train_zoo --out assets/zoo/default\n```\n"
            "A zoo is a folder with `zoo.json` and one checkpoint per variant (standard, C, ADV, ADV+C)."
        )
        st.stop()
    return ctx.handle


def load_dataset(ctx: Context, stop: bool = True):
    """The test split of the chosen data set, or an explanation (and stop unless ``stop`` is False)."""
    if not ctx.dataset_name:
        st.error("No data set chosen.")
        if stop:
            st.stop()
        return None
    try:
        return zoo_cache.get_dataset(*ctx.dataset_args)
    except (DatasetError, ValueError, OSError) as exc:
        st.error(f"**The data set {ctx.dataset_name!r} could not be loaded.** {exc}")
        if stop:
            st.stop()
        return None


def check_classes(ctx: Context, ds) -> None:
    """Warn when the chosen data set does not match the zoo's classes."""
    handle = ctx.handle
    if handle is None or ds is None:
        return
    num = handle.zoo.entries[handle.variants[0]].meta.get("network", {}).get("num_classes")
    if num is not None and int(num) != len(ds.classes):
        st.warning(
            f"The zoo's networks have {num} classes but {ctx.dataset_name!r} has {len(ds.classes)}: "
            "predictions will not match the labels."
        )


def class_names(ctx: Context, ds=None) -> list[str] | None:
    if ctx.handle and ctx.handle.classes:
        return ctx.handle.classes
    return list(ds.classes) if ds is not None else None


def class_name(names: list[str] | None, index: int) -> str:
    return str(names[index]) if names and 0 <= index < len(names) else str(index)


def backend_preview(image: np.ndarray) -> np.ndarray:
    """(3,H,W) float -> (H,W,3) uint8 for st.image."""
    from app.figures import to_uint8_hwc

    return to_uint8_hwc(image)


# ----------------------------------------------------------------------------- results sections


def results_or_quick(
    ctx: Context,
    experiment: str | None,
    title: str,
) -> tuple[Results, dict[str, pd.DataFrame] | None]:
    """Precomputed results of the zoo, and quick results computed in this server if asked for.

    When the results folder is missing, say how to compute it and offer a button that runs a
    quick version now (``experiment`` None: no quick version exists, only the command).
    """
    handle = require_zoo(ctx)
    results = results_store.load_results(handle)
    for problem in results.problems:
        st.warning(f"Unreadable result file: {problem}")
    quick = None
    if experiment is not None and ctx.dataset_name and results.folder is None:  # the report's results win
        n = results_store.QUICK_SIZES[experiment]
        quick = results_store.quick_results(handle, ctx.dataset_args, experiment, n)
    if results.folder is None:
        where = public.redact(" or ".join(f"`{p}`" for p in results_store.results_folders(handle)))
        st.info(
            f"**No precomputed results for zoo {handle.name!r}** (looked in {where}). Compute them with\n\n"
            f"```\n{public.redact(results_store.report_command(handle))}\n```"
        )
    else:
        st.caption(public.redact(f"Results read from `{results.folder}`."))
        if handle.seed is not None and Path(results.folder).parent.name != SEED_REPORTS:
            st.warning(f"No report of training seed {handle.seed}'s checkpoints here: the results below are the "
                       "primary checkpoints'. `scl-report --zoo-seeds all` measures every seed's.")  # fmt: skip
    if experiment is not None and quick is None and ctx.dataset_name and results.folder is None:
        n = results_store.QUICK_SIZES[experiment]
        label = f"Compute a quick version now ({n} test images)"
        if st.button(label, key=f"quick_{experiment}", type="primary"):
            bar = st.progress(0.0, text=f"{title}: starting")
            with st.spinner(f"Computing {title.lower()} on {n} images..."):
                quick = results_store.run_quick(handle, ctx.dataset_args, experiment, n,
                                          progress=lambda f, text: bar.progress(min(1.0, f), text=text))  # fmt: skip
            bar.empty()
    if quick is not None:
        n = results_store.QUICK_SIZES[experiment]
        st.caption(
            f"⚡ Quick results on the first {n} test images, computed in this server (not saved); "
            "the report command gives the full version."
        )
    return results, quick


def pick(results: Results, quick: dict[str, pd.DataFrame] | None, quick_name: str, columns: set[str],
         hint: str | None = None) -> tuple[str | None, pd.DataFrame | None]:  # fmt: skip
    """A table from the results folder with these columns, else the quick one."""
    name, df = results.find(columns, hint)
    if df is not None:
        return name, df
    if quick and quick_name in quick and columns <= set(quick[quick_name].columns):
        return f"quick: {quick_name}", quick[quick_name]
    return None, None


MASKING_GAP_POINTS = 0.5  # PGD-10 above the strongest attack by less than this: a fact to state, not a warning
_GAP = re.compile(r"overestimates robust accuracy by (-?\d+(?:\.\d+)?) points")


def note_is_warning(note: object) -> bool:
    """Whether a report note deserves a warning box rather than a caption: it says WARNING, or it states that
    PGD-10 overestimates robust accuracy by at least ``MASKING_GAP_POINTS`` points, or it speaks of masking
    (and is not a "no sign of masking" or a passed check). "Overestimates ... by 0.0 points" is a caption."""
    text = str(note)
    gap = _GAP.search(text)
    if gap is not None:
        return "WARNING" in text or abs(float(gap.group(1))) >= MASKING_GAP_POINTS
    lower = text.lower()
    return "warning" in lower or ("masking" in lower and "no sign" not in lower and "passed" not in lower)


def report_status(results: Results, *experiments: str) -> None:
    """What the report says about these experiments: failures, notes (masking warnings stand out), settings."""
    if results.folder is None:
        return
    mode = results.summary.get("mode")
    for name in experiments:
        record = results.experiment(name)
        if not record:
            continue
        status = record.get("status")
        if status == "failed":
            st.warning(f"The report's **{name}** experiment failed: {record.get('error', 'no details')}")
            continue
        if status == "skipped":
            st.caption(f"The report skipped **{name}**.")
            continue
        for note in record.get("notes") or []:
            if note_is_warning(note):
                st.warning(str(note), icon="⚠️")
            else:
                st.caption(f"{name}: {note}")
        settings = record.get("settings") or {}
        if settings or mode:
            text = ", ".join(f"{k}={v}" for k, v in settings.items())
            elapsed = record.get("elapsed_s")
            st.caption(
                f"{name}: report mode **{record.get('mode', mode) or '?'}**" + (f"; {text}" if text else "")
                + (f"; {elapsed:.0f} s" if isinstance(elapsed, int | float) else "")
            )  # fmt: skip


def show_table(df: pd.DataFrame, name: str | None = None, percent_columns: tuple[str, ...] | None = None) -> None:
    """A table with human column names and accuracies in % (``app.tables``: by its rule unless ``percent_columns``)."""
    from app.tables import display_table, is_accuracy

    percent = [c for c in (df.columns if percent_columns is None else percent_columns) if c in df]
    percent = [c for c in percent if percent_columns is not None or is_accuracy(c)]
    shown = display_table(df, percent)
    config = {label: st.column_config.NumberColumn(label, format="%.1f")
              for c, label in zip(df.columns, shown.columns, strict=True) if c in percent}  # fmt: skip
    height = min(36 * (len(shown) + 1) + 4, 420)
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config, height=height)
    if name:
        st.caption(f"Source: `{name}`")


def other_files(results: Results, hints: tuple[str, ...], shown: set[str]) -> None:
    """Any further table or document whose name matches the page, in an expander."""
    rest = {n: obj for n, obj in results.named(*hints).items() if n not in shown}
    if not rest:
        return
    with st.expander(f"More result files for this page ({len(rest)})"):
        for n, obj in rest.items():
            st.markdown(f"**{n}**")
            if isinstance(obj, pd.DataFrame):
                st.dataframe(obj, hide_index=True, width="stretch")
            else:
                st.json(obj, expanded=False)


def zoo_header(ctx: Context) -> None:
    handle = ctx.handle
    if handle is not None:
        st.caption(public.redact(f"Zoo **{handle.name}** · data set **{ctx.dataset_name}** · device **{ctx.device}** · "
                                 f"`{Path(handle.path)}`"))  # fmt: skip
