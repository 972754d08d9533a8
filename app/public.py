"""The dashboard's side of public mode (``SCL_PUBLIC=1``, ``analysis.public_mode``) and of a remote backend.

* :func:`zoo_picker` / :func:`dataset_choices` / :func:`dataset_root`: visitors choose the operator's zoos and
  data sets by name (``SCL_ZOOS``, ``SCL_DATASETS`` or ``SCL_CATALOGUE``); no server path is typed or shown.
* :func:`redact`: error text without absolute paths (public mode only).
* :func:`gate`: with ``SCL_TOKEN`` set, the page asks for the access token before anything else.
* :func:`run_page`: a page whose compute backend went away shows one message, not a traceback; the next run
  (a reload or any widget) asks the backend again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from analysis.public_mode import ENV_TOKEN, Catalogue, is_public, redact_paths, token_ok
from analysis.service_client import BackendError, BackendUnavailable
from app import zoo_cache


def enabled() -> bool:
    return is_public()


@st.cache_resource(show_spinner=False)
def catalogue() -> Catalogue:
    """The operator's catalogue; without listed zoos, the server's one zoo (``--zoo``/``SCL_ZOO``) as "default"."""
    cat = Catalogue.from_env()
    if not cat.zoos:
        cat.zoos = {"default": zoo_cache.initial_zoo_path()}
    return cat


def zoo_picker() -> str:
    """A select box of the catalogue's zoo names; returns the chosen zoo's folder."""
    cat = catalogue()
    name = st.selectbox("Model zoo", list(cat.zoos), key="scl_zoo_name",
                        help="The zoos this server offers (chosen by its operator).")  # fmt: skip
    return cat.zoo_path(str(name), public=True)


def dataset_choices(names: list[str]) -> list[str]:
    """The data sets a visitor may choose: the catalogue's when it lists any, else the built-in ones."""
    listed = catalogue().datasets
    return [n for n in names if n in listed] if listed else names


def dataset_root(name: str | None) -> str | None:
    """The operator's root folder for data set ``name`` (None: built in)."""
    return catalogue().datasets.get(name) if name else None


def redact(text: str) -> str:
    """``text`` without absolute paths in public mode (zoo folders named by their catalogue name); else as is."""
    return redact_paths(text, catalogue().path_names()) if enabled() else text


def gate(keep_page: Callable[[], Any] | None = None) -> None:
    """With ``SCL_TOKEN`` set: ask for the token once per session and stop the page until it is right.

    ``keep_page`` registers the app's pages without showing them (``st.navigation(..., position="hidden")``): a
    run that stops before any navigation makes Streamlit drop the URL's page, so a deep link such as ``/saliency``
    would land on the default page once the token is entered."""
    import os

    expected = os.environ.get(ENV_TOKEN)
    if not expected or st.session_state.get("scl_token_ok"):
        return
    if keep_page is not None:
        keep_page()
    given = st.text_input("Access token", type="password", key="scl_token_input",
                          help="This server is private: ask its operator for the token.")  # fmt: skip
    if given and token_ok(given, expected):
        st.session_state["scl_token_ok"] = True
        st.rerun()
    if given:
        st.error("That is not this server's access token.")
    st.stop()


def run_page(page: Any) -> None:
    """``page.run()``; a backend that is away or refuses a request: one ``st.error`` line instead of a traceback."""
    try:
        page.run()
    except BackendUnavailable as exc:
        st.error(str(exc), icon="🔌")
    except BackendError as exc:
        st.error(f"The compute backend refused this request: {redact(str(exc))}")
