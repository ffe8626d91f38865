"""The dashboard's entrypoint: ``poolstride dashboard`` serves this file with ``python -m
dashboard.serve run`` (``streamlit run``, warmed up first: :mod:`dashboard.serve`).

It checks the database once, then routes to one page per file in ``views/`` (not ``pages/``: that
folder name also switches on Streamlit's older folder-based navigation). Each page has an explicit
``url_path`` so its address is stable (``/pareto?job=3``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import _data
from search.store import StoreError, display_url

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="poolstride", page_icon=":material/account_tree:", layout="wide")

url = _data.database_url()
try:
    _data.check(url)
except StoreError as exc:  # one line that names the database and says what is wrong with it
    st.error(str(exc))
    st.stop()

page = st.navigation(
    [
        # The default page is served at the app's root address, so it needs no url_path.
        st.Page(VIEWS / "queue.py", title="Queue", icon=":material/list:", default=True),
        st.Page(
            VIEWS / "pareto.py", title="Pareto", icon=":material/scatter_plot:", url_path="pareto"
        ),
        st.Page(
            VIEWS / "stages.py", title="Stages", icon=":material/bar_chart:", url_path="stages"
        ),
        st.Page(VIEWS / "trials.py", title="Trials", icon=":material/table:", url_path="trials"),
        st.Page(
            VIEWS / "architecture.py",
            title="Architecture",
            icon=":material/schema:",
            url_path="architecture",
        ),
    ]
)
st.sidebar.caption(f"Database: {display_url(url)} (read-only)")
page.run()
