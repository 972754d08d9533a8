"""Semantic Continuity Lab: the dashboard's entry point.

    streamlit run app/streamlit_app.py                      # the shipped zoo, assets/zoo/default
    streamlit run app/streamlit_app.py -- --zoo PATH        # another zoo folder
    SCL_ZOO=PATH streamlit run app/streamlit_app.py         # the same, by environment

Page configuration, the shared sidebar (zoo folder, data set, device) and the navigation
(``st.navigation`` over the files in app/views/, one per page, widgets and layout only).

Never a blank page: the first thing a run draws is a message saying what is loading, written before the slow
imports (torch, plotly, pandas) and the zoo; it is cleared just before the page itself runs.
"""

from __future__ import annotations

import streamlit as st

loading = st.empty()
loading.info("Loading the Semantic Continuity Lab: importing the libraries (a few seconds after a server start)...")

from app import components, public  # noqa: E402  (slow: imported after the message is on the page)

public.gate(keep_page=lambda: components.build_navigation(position="hidden"))  # SCL_TOKEN: the token first

loading.info("Loading the Semantic Continuity Lab: the model zoo and the data set...")
page = components.entry()
loading.empty()
if page.url_path != "saliency":  # leaving the saliency page stops its jobs; maps already computed stay a while
    from app import jobs

    jobs.get_runner().release(jobs.current_session_id(), keep=lambda job: job.state == "done")
public.run_page(page)  # the compute backend away: a message, no traceback
