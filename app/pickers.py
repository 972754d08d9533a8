"""Widgets that pick what a page shows: a test image (gallery) or an upload (validated, with its
out-of-distribution notice), and the variants. Nothing here computes; it asks the caches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from app import images, page_labels, saliency_cache, zoo_cache
from app.components import Context, backend_preview, class_name, class_names, load_dataset, md_escape
from app.uploads import ALLOWED_FORMATS, MAX_BYTES, MAX_PIXELS, UploadError, validate_image_bytes
from models.data import DatasetError


@dataclass
class PickedImage:
    image: np.ndarray  # float32 (3, H, W) in [0, 1]
    label: int | None  # None for uploads
    title: str
    source: str  # "gallery" | "upload"
    index: int | None = None  # data set index (gallery)


def gallery_picker(ctx: Context, ds, key: str, names: list[str] | None) -> PickedImage:
    """Pick a test image: a class filter and an example slider, with a strip of thumbnails."""
    choices = ["any class", *[class_name(names, i) for i in range(len(ds.classes))]]
    c1, c2 = st.columns([1, 2])
    with c1:
        chosen = st.selectbox("Class", choices, key=f"{key}_class")
    label = None if chosen == "any class" else choices.index(chosen) - 1
    idx = images.gallery_indices(ds, label)
    if len(idx) == 0:
        st.warning("No test image of this class.")
        st.stop()
    with c2:
        pos = st.slider("Example", 0, max(0, len(idx) - 1), 0, key=f"{key}_example",
                        help="Position among the test images of the chosen class.")  # fmt: skip
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
