"""UI test fixtures: the fake backend module on sys.path and selected through MEDTUNE_UI_BACKEND."""

from __future__ import annotations

from pathlib import Path

import pytest

UI_SRC = Path(__file__).resolve().parents[2] / "src" / "medtune" / "ui"


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> object:
    """Make the UI use tests/ui/ui_fake_backend.FakeBackend; return the module (its CALLS list)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import ui_fake_backend

    ui_fake_backend.CALLS.clear()
    monkeypatch.setenv("MEDTUNE_UI_BACKEND", "ui_fake_backend:FakeBackend")
    monkeypatch.setenv("MEDTUNE_UI_MODEL", "fake-model")
    return ui_fake_backend
