"""Semantic Continuity Lab: the dashboard's entry point.

    streamlit run app/streamlit_app.py                      # the shipped zoo, assets/zoo/default
    streamlit run app/streamlit_app.py -- --zoo PATH        # another zoo folder
    SCL_ZOO=PATH streamlit run app/streamlit_app.py         # the same, by environment

Page configuration, the shared sidebar (zoo folder, data set, device) and the navigation
(``st.navigation`` over the files in app/pages/, one per page, widgets and layout only).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path; the packages live one level up
    sys.path.insert(0, str(ROOT))

from app import components  # noqa: E402

components.entry().run()
