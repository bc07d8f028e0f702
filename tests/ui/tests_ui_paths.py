"""Paths of the UI scripts for AppTest, and the two AppTest steps every chat test takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

UI_SRC = Path(__file__).resolve().parents[2] / "src" / "medtune" / "ui"
APP = UI_SRC / "app.py"
RUNS_PAGE = UI_SRC / "pages" / "runs.py"


def start_app(timeout: float) -> Any:
    """Run the chat app once in AppTest and check that it rendered without an exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at: Any, text: str) -> Any:
    """Type ``text`` into the chat input, rerun, and check that no exception was raised."""
    at.chat_input(key="chat_input").set_value(text).run()
    assert not at.exception, at.exception
    return at
