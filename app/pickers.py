"""Widgets that pick what a page shows: a test image (gallery) or an upload (validated, with its
out-of-distribution notice), and the variants. Nothing here computes; it asks the caches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch

from analysis import gallery_filters as gf
from app import images, page_labels, results_store, saliency_cache, zoo_cache
from app.components import Context, backend_preview, class_name, class_names, load_dataset, md_escape
from app.uploads import ALLOWED_FORMATS, MAX_BYTES, MAX_PIXELS, UploadError, validate_image_bytes
from models.data import DatasetError
from models.perturbations import KINDS, MAX_LEVEL


@dataclass
class PickedImage:
    image: np.ndarray  # float32 (3, H, W) in [0, 1]
    label: int | None  # None for uploads
    title: str
    source: str  # "gallery" | "upload"
    index: int | None = None  # data set index (gallery)


CHANGED_LIMIT = 1000  # without a report, "prediction changed" looks at this many test images


def _per_image(ctx: Context, ds) -> gf.PerImage | None:
    """The report's per-image results for this zoo, when they were measured on the chosen data set."""
    if ctx.handle is None:
        return None
    results = results_store.load_results(ctx.handle)
    summary = results.summary
    if results.folder is None or summary.get("dataset") not in (None, ctx.dataset_name):
        return None
    per_image = gf.PerImage.from_report(results.tables, summary.get("settings") or {}, len(ds))
    return per_image if per_image.ds is not None or per_image.correct is not None else None


@st.cache_data(max_entries=32, show_spinner="Predicting the test images with and without the perturbation...")
def _changed(zoo_key: str, variant: str, kind: str, level: int, dataset_args: tuple, indices_key: tuple,
             _handle: zoo_cache.ZooHandle, _ds, _indices: np.ndarray) -> np.ndarray:  # fmt: skip
    """``gallery_filters.prediction_changes`` of one variant on the images at ``_indices`` (cached per zoo,
    variant, kind, level, data set and image set)."""
    from analysis.attributions import model_lock

    model = _handle.zoo.models[variant]
    with model_lock(model):
        return gf.prediction_changes(model, _ds.images[torch.as_tensor(_indices)], kind, level)


def _filter_settings(ctx: Context, key: str, show: str, columns) -> tuple[str, str, int]:
    """The variant, kind and level a filter is for: the page's own kind and level when it has them
    (``<key>_kind``, ``<key>_level``: the saliency page's), else chosen here."""
    handle = ctx.handle
    variants = list(handle.variants) if handle else []
    variant = columns[0].selectbox("of variant", variants, key=f"{key}_filter_variant",
                                   help="Whose DS, prediction or mistakes the filter uses.")  # fmt: skip
    state = st.session_state
    page_kind = state.get(f"{key}_kind")
    page_level = state.get(f"{key}_level", state.get(f"{key}_level_kept"))  # the saliency page keeps its level
    if show in (gf.LARGEST_DS, gf.CHANGED) and page_kind not in KINDS:
        kind = columns[1].selectbox("for perturbation", list(KINDS), key=f"{key}_filter_kind")
    else:
        kind = page_kind if page_kind in KINDS else next(iter(KINDS))
    if show in (gf.LARGEST_DS, gf.CHANGED) and page_level is None:
        level = columns[2].slider("at level", 1, MAX_LEVEL, 1, key=f"{key}_filter_level")
    else:
        level = max(1, int(page_level or 1))  # level 0 is the original: nothing changes there
    return str(variant), str(kind), int(level)


def filtered_gallery(ctx: Context, ds, key: str, label: int | None) -> tuple[np.ndarray, str]:
    """The test images the gallery offers (data set indices, in the filter's order) and a caption saying what
    they are: every image, or those of a filter (``analysis.gallery_filters``) on the report's per-image
    results; of one class when ``label`` is given."""
    labels = ds.labels.numpy()
    show = st.selectbox("Show", gf.FILTERS, key=f"{key}_filter",
                        help="Every test image, or the ones worth a look: the largest DS for a perturbation and "
                        "level, a prediction the perturbation changes, or a misclassified image (from the "
                        "report's per-image results).")  # fmt: skip
    if show == gf.ALL:
        return images.gallery_indices(ds, label), ""
    variant, kind, level = _filter_settings(ctx, key, show, st.columns(3))
    per_image = _per_image(ctx, ds)
    what = {gf.LARGEST_DS: f"largest DS first, {variant} under {kind} level {level}",
            gf.CHANGED: f"{variant}'s prediction changed by {kind} level {level}",
            gf.MISCLASSIFIED: f"misclassified by {variant}"}[show]  # fmt: skip
    changed = None
    try:
        if show == gf.CHANGED:
            if per_image is None:  # no report: look at the first test images
                per_image = gf.PerImage(np.arange(min(len(ds), CHANGED_LIMIT)))
            indices = per_image.indices
            changed = _changed(ctx.handle.key, variant, kind, level, ctx.dataset_args,
                               (len(indices), int(indices[:1].sum()), int(indices.sum())), ctx.handle, ds,
                               indices)  # fmt: skip
        idx = gf.candidates(per_image, show, labels, label=label, variant=variant, kind=kind, level=level,
                            changed=changed)  # fmt: skip
    except gf.FilterError as exc:
        st.warning(f"This filter is not available: {md_escape(exc)}.")
        return images.gallery_indices(ds, label), ""
    pool = len(per_image.indices) if per_image is not None else len(ds)
    return idx, f"{len(idx)} of the {pool} test images the filter looks at: {md_escape(what)}."


def gallery_picker(ctx: Context, ds, key: str, names: list[str] | None) -> PickedImage:
    """Pick a test image: a class filter, a filter on the per-image results (largest DS, prediction changed,
    misclassified) and an example slider, with a strip of thumbnails."""
    choices = ["any class", *[class_name(names, i) for i in range(len(ds.classes))]]
    c1, c2 = st.columns([1, 2])
    with c1:
        chosen = st.selectbox("Class", choices, key=f"{key}_class")
    label = None if chosen == "any class" else choices.index(chosen) - 1
    with c2:
        idx, note = filtered_gallery(ctx, ds, key, label)
    if len(idx) == 0:
        st.warning("No test image of this class." if not note else f"No test image here: {note}")
        st.stop()
    if note:
        st.caption(note)
    top = len(idx) - 1
    if not 0 <= int(st.session_state.get(f"{key}_example", 0)) <= top:  # a filter left fewer images: the first
        st.session_state[f"{key}_example"] = 0
    pos = 0 if top == 0 else st.slider("Example", 0, top, 0, key=f"{key}_example",
                                       help="Position among the test images shown (of the chosen class and "
                                       "filter).")  # fmt: skip
    index = int(idx[min(pos, len(idx) - 1)])
    image, y = images.dataset_image(ds, index)
    strip = idx[pos : pos + 8]
    st.image([backend_preview(ds.images[i].numpy()) for i in strip],
             caption=[f"#{i}" + (" ◀" if i == index else "") for i in strip], width=56)  # fmt: skip
    return PickedImage(image, y, f"test image #{index} ({class_name(names, y)})", "gallery", index)


def upload_picker(ctx: Context, key: str) -> PickedImage | None:
    """An uploader; the file is validated (size, format, pixels, decoding) before anything uses it.

    Every file reaches the validator (no ``type=`` filter in the browser), so a refused one (an SVG, a
    text file) gets a visible error and no result of an earlier file stays on the page. Accepted uploads
    are scored for being unlike the zoo's data (:func:`ood_notice`)."""
    handle = ctx.handle
    size = handle.image_size if handle else 32
    file = st.file_uploader(
        f"Upload an image ({', '.join(ALLOWED_FORMATS)}; up to {MAX_BYTES // (1024 * 1024)} MB and "
        f"{MAX_PIXELS // 1_000_000} megapixels)",
        key=f"{key}_upload",
        help=f"Converted to RGB, EXIF orientation applied, shorter side resized to {size} px and centre-cropped.",
    )
    if file is None:
        st.info("Upload a photograph to explain it, or switch to the test-set gallery.")
        return None
    memo_key = f"{key}_upload_memo"
    memo = st.session_state.get(memo_key)
    file_id = (getattr(file, "file_id", None), file.name, file.size, size)
    if memo is None or memo[0] != file_id:
        try:
            result: Any = validate_image_bytes(file.getvalue(), size)
        except UploadError as exc:
            result = exc
        st.session_state[memo_key] = memo = (file_id, result)
    result = memo[1]
    name = md_escape(file.name)
    if isinstance(result, UploadError):
        st.error(f"**{name} was not accepted.** {md_escape(result)}")
        return None
    st.caption(f"Uploaded **{name}**: {md_escape(result.describe())}.")
    ood_notice(ctx, result.pixels)
    return PickedImage(result.pixels, None, f"upload {file.name}", "upload")


def classes_statement(ctx: Context) -> str | None:
    """One line on what the zoo's models can answer: their data set and its classes."""
    names = class_names(ctx) or class_names(ctx, load_dataset(ctx, stop=False) if ctx.dataset_name else None)
    if not names:
        return None
    dataset = ctx.handle.dataset_name if ctx.handle else ctx.dataset_name
    return (f"The zoo's models were trained on {md_escape(dataset)} and know only its {len(names)} classes: "
            f"{md_escape(', '.join(map(str, names)))}. Any other picture is still put into one of them.")  # fmt: skip


def ood_verdict(res: dict[str, Any]) -> str:
    """What the OOD check found, in words that agree with its verdict (``analysis.ood.assess``: flagged when at
    least half of the models score the image below their threshold): "2 of 6 models (C, ADV) score it below
    their threshold; flagged when at least half do"."""
    below, total = list(res.get("below") or []), len(res.get("thresholds") or res.get("scores") or {})
    if not below:
        return f"all {total} models score it above their threshold" if total else "no model scored it"
    who = f"{len(below)} of {total} model{'s' if total != 1 else ''} ({', '.join(below)})"
    return f"{who} score{'s' if len(below) == 1 else ''} it below their threshold; flagged when at least half do"


def ood_notice(ctx: Context, image: np.ndarray) -> dict[str, Any] | None:
    """A clear notice when an upload is unlike the zoo's test data (``analysis.ood``: energy score, threshold
    at the 5th percentile of the test split, computed once per zoo), with the classes the models know."""
    statement = classes_statement(ctx)
    if ctx.handle is None or not ctx.dataset_name:
        if statement:
            st.caption(statement)
        return None
    try:
        res = saliency_cache.ood_assessment(ctx.handle, ctx.dataset_args, image)
    except (DatasetError, ValueError, OSError) as exc:
        st.caption(f"No out-of-distribution check: the test split could not be loaded ({md_escape(exc)}).")
        return None
    if res["flagged"]:
        st.warning(
            "**This image looks unlike the data the zoo was trained on** (out of distribution): "
            f"{md_escape(ood_verdict(res))}. Predictions and maps below are the models' forced answers, not "
            "evidence of what the picture shows.",
            icon="⚠️",
        )
    else:
        st.caption(f"Out-of-distribution check passed: {md_escape(ood_verdict(res))}. A passed check is no "
                   "guarantee: confidence scores miss images a model is confidently wrong about.")  # fmt: skip
    scores = ", ".join(f"{md_escape(n)} {s:.3g}" for n, s in res["scores"].items())
    st.caption(f"{md_escape(res['description'])}. This image: {scores}." + (f" {statement}" if statement else ""))
    return res


def variant_picker(handle: zoo_cache.ZooHandle, key: str) -> list[str]:
    """The variants to show: the paper's four by default, any other variant of the zoo on request."""
    default = page_labels.default_variants(handle.variants)
    if list(default) == list(handle.variants):
        return list(default)
    chosen = st.multiselect(
        "Variants", handle.variants, default=default, key=f"{key}_variants",
        help="The paper's four are shown by default; controls (standard+jitter, ADV-mixed) and imported models "
        "can be added.",
    )  # fmt: skip
    return [v for v in handle.variants if v in chosen]


def image_picker(ctx: Context, key: str, allow_upload: bool = True) -> PickedImage | None:
    """Gallery or upload; returns the picked image (None while nothing usable is chosen)."""
    ds = load_dataset(ctx, stop=not allow_upload)
    names = class_names(ctx, ds)
    sources = ["Test-set gallery", "Upload an image"] if allow_upload else ["Test-set gallery"]
    if ds is None:
        sources = ["Upload an image"]
    source = st.radio("Image", sources, horizontal=True, key=f"{key}_source") if len(sources) > 1 else sources[0]
    if source == "Upload an image":
        return upload_picker(ctx, key)
    return gallery_picker(ctx, ds, key, names)
