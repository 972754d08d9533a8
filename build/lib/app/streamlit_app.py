"""Semantic Continuity Lab: the dashboard's entry point.

    streamlit run app/streamlit_app.py                      # the shipped zoo, assets/zoo/default
    streamlit run app/streamlit_app.py -- --zoo PATH        # another zoo folder
    SCL_ZOO=PATH streamlit run app/streamlit_app.py         # the same, by environment

Page configuration, the shared sidebar (zoo folder, data set, device) and the navigation
(``st.navigation`` over the files in app/views/, one per page, widgets and layout only).
"""

from __future__ import annotations

from app import components

components.entry().run()
