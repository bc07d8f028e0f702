"""Streamlit entry script of ``medtune ui``: page setup, styling and navigation (Chat, Runs).

Run it with ``medtune ui`` (or ``python -m streamlit run src/medtune/ui/app.py``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from medtune.ui import chat, components

st.set_page_config(page_title="medtune assistant", page_icon=":material/medical_services:", layout="centered",
                   initial_sidebar_state="auto")
components.load_css()
page = st.navigation([
    st.Page(chat.render, title="Chat", icon=":material/chat:", url_path="chat", default=True),
    st.Page(Path(__file__).with_name("pages") / "runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
])
page.run()
