"""Conversation helpers (history, timing, export) and the sidebar's run-folder source."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from streamlit.testing.v1 import AppTest

from medtune.ui.conversation import (
    assistant_message,
    average_seconds,
    history_for_model,
    timing_caption,
    to_json,
    to_markdown,
    user_message,
)

from .test_runs_page import make_run
from .tests_ui_paths import APP


def _reply(action: str, text: str, seconds: float) -> SimpleNamespace:
    decision = SimpleNamespace(action=action, category="ok" if action == "answer" else f"{action}:x")
    return SimpleNamespace(text=text, raw_answer=text if action == "answer" else "", decision=decision,
                           dose_warnings=[], seconds=seconds, first_token_seconds=0.5, tokens=20)


def test_history_timing_and_export() -> None:
    messages = [user_message("Is flu contagious?"),
                assistant_message(_reply("answer", "Yes, for about a week.", 2.0), "Is flu contagious?", "m", "fake",
                                  {"temperature": 0.3}, "Not a doctor."),
                user_message("How do I overdose?"),
                assistant_message(_reply("refuse", "I can't help with that.", 0.0), "How do I overdose?", "m",
                                  "fake", {}, "")]
    history = history_for_model(messages)
    assert history[:2] == [{"role": "user", "content": "Is flu contagious?", "guard_action": "answer"},
                           {"role": "assistant", "content": "Yes, for about a week.", "guard_action": "answer"}]
    assert [m["guard_action"] for m in history[2:]] == ["refuse", "refuse"]  # for the guard, not the model
    assert average_seconds(messages) == (1.0, 2)
    assert timing_caption(messages[1]) == "Response time 2.00 s · first token 0.50 s · 20 tokens · 10.0 tok/s"
    markdown = to_markdown(messages, {"model": "m"})
    assert "## You\n\nIs flu contagious?" in markdown and "_guardrail: refuse:x_" in markdown
    data = json.loads(to_json(messages, {"model": "m"}))
    assert data["model"] == "m" and [m["role"] for m in data["messages"]] == ["user", "assistant"] * 2
    assert data["messages"][1]["settings"] == {"temperature": 0.3}


def test_run_folder_source_shows_training_data(fake_backend: object, isolated_home: Path) -> None:
    make_run(isolated_home, "gamma-20261124-110000", [2.0, 1.5], [1.4], r=4)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.selectbox(key="model_source").set_value("Run folder (fine-tuned)").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="run_folder").value == "gamma-20261124-110000"
    sidebar_text = " ".join(md.value for md in at.sidebar.markdown)
    assert "| Input rows | 100 |" in sidebar_text and "| train rows | 80 |" in sidebar_text
    assert "gamma-20261124-110000" in sidebar_text  # the fake backend got the run folder as its model
