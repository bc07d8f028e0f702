"""Paths of the UI scripts for AppTest."""

from pathlib import Path

UI_SRC = Path(__file__).resolve().parents[2] / "src" / "medtune" / "ui"
APP = UI_SRC / "app.py"
RUNS_PAGE = UI_SRC / "pages" / "runs.py"
