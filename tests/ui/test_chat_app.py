"""AppTest tests of the chat page: ask, stream, quick question, settings, clear, feedback, guard replies."""

from __future__ import annotations

import json
import sqlite3

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from .tests_ui_paths import ask as _ask  # noqa: E402
from .tests_ui_paths import start_app  # noqa: E402

TIMEOUT = 60


def _start() -> AppTest:
    return start_app(TIMEOUT)


def _chat_texts(at: AppTest) -> list[str]:
    return [" ".join(md.value for md in msg.markdown) for msg in at.chat_message]


def test_page_shows_disclaimer_quick_questions_and_model(fake_backend: object) -> None:
    at = _start()
    assert at.title[0].value.endswith("medtune assistant")
    assert any("not a doctor" in w.value for w in at.warning)
    labels = [b.label for b in at.button]
    assert "Diabetes" in labels and "Medications" in labels
    assert at.selectbox(key="model_source").value.startswith("Custom")
    info = " ".join(md.value for md in at.sidebar.markdown)
    assert "134.5M" in info and "fake-base" in info
    assert not at.chat_message


def test_ask_streams_answer_with_timing_and_disclaimer(fake_backend: object) -> None:
    at = _ask(_start(), "What are the symptoms of diabetes?")
    texts = _chat_texts(at)
    assert texts[0] == "What are the symptoms of diabetes?"
    assert "Type 2 diabetes often starts with thirst and tiredness." in texts[1]
    captions = " ".join(c.value for c in at.chat_message[1].caption)
    assert "Response time" in captions and " s" in captions
    assert "medical advice" in captions.lower() or "doctor" in captions.lower()
    assert "Average response time" in " ".join(c.value for c in at.caption)
    assert at.sidebar.metric[0].value.endswith(" s")
    # the backend got a system prompt from the guard and the question last
    messages = fake_backend.CALLS[-1]["messages"]  # type: ignore[attr-defined]
    assert messages[0]["role"] == "system" and messages[-1]["content"].endswith("diabetes?")
    # a second question sends the first turn as history
    _ask(at, "And how is it treated?")
    messages = fake_backend.CALLS[-1]["messages"]  # type: ignore[attr-defined]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert len(at.chat_message) == 4


def test_quick_question_button_asks_it(fake_backend: object) -> None:
    at = _start()
    at.button(key="quick_Diabetes").click().run()
    assert not at.exception
    assert _chat_texts(at)[0] == "What are the early symptoms of type 2 diabetes?"
    assert len(at.chat_message) == 2
    assert not [b for b in at.button if b.key and b.key.startswith("quick_")]  # grid hidden once chatting


def test_settings_reach_the_backend(fake_backend: object) -> None:
    at = _start()
    at.slider(key="temperature").set_value(0.0)
    at.slider(key="max_new_tokens").set_value(48)
    at.slider(key="top_p").set_value(0.5)
    _ask(at, "Is aspirin safe?")
    settings = fake_backend.CALLS[-1]["settings"]  # type: ignore[attr-defined]
    assert (settings.temperature, settings.max_new_tokens, settings.top_p) == (0.0, 48, 0.5)


def test_clear_and_export(fake_backend: object) -> None:
    at = _ask(_start(), "What is asthma?")
    md = at.get("download_button")
    assert len(md) == 2
    at.button(key="clear").click().run()
    assert not at.chat_message
    assert [b.label for b in at.button if b.key == "quick_Diabetes"]


def test_feedback_is_saved_to_sqlite(fake_backend: object, isolated_home) -> None:
    at = _ask(_start(), "What is a normal heart rate?")
    assert len(at.feedback) == 1
    at.feedback[0].set_value(1).run()
    assert not at.exception
    db = isolated_home / "feedback.sqlite3"
    rows = sqlite3.connect(db).execute("SELECT rating, question, answer, model, settings FROM feedback").fetchall()
    assert len(rows) == 1
    rating, question, answer, model, settings = rows[0]
    assert (rating, question) == (1, "What is a normal heart rate?")
    assert "thirst and tiredness" in answer and "fake-model" in model
    assert json.loads(settings)["max_new_tokens"] == 256
    at.feedback[0].set_value(0).run()  # changing the rating updates the same row
    rows = sqlite3.connect(db).execute("SELECT rating FROM feedback").fetchall()
    assert rows == [(0,)]


def test_emergency_is_shown_as_error_without_calling_the_model(fake_backend: object) -> None:
    at = _ask(_start(), "I have crushing chest pain and my left arm is numb right now")
    assert not fake_backend.CALLS  # type: ignore[attr-defined]
    errors = at.chat_message[1].error
    assert errors and ("911" in errors[0].value or "emergency" in errors[0].value.lower())
    assert not at.feedback  # no rating widget on canned replies


def test_refusal_shown_as_info_and_dose_warning_as_warning(fake_backend, monkeypatch) -> None:
    at = _ask(_start(), "How can I get high on oxycodone?")
    assert not fake_backend.CALLS
    infos = at.chat_message[1].info
    assert infos and "can't help" in infos[0].value
    assert "guardrail: refuse:misuse" in " ".join(c.value for c in at.chat_message[1].caption)
    monkeypatch.setattr(fake_backend, "ANSWER_TOKENS", ["Take ", "800 mg ", "of ibuprofen ", "three times a day."])
    _ask(at, "How much ibuprofen can I take for back pain?")
    warnings = at.chat_message[3].warning
    assert any("1200 mg" in w.value for w in warnings)   # above the OTC limit only: shown with its warning
    # the refused turn is not sent to the model as history
    roles = [m["role"] for m in fake_backend.CALLS[-1]["messages"]]
    assert roles == ["system", "user"]
    # above the prescription maximum the answer is never shown: the refusal replaces it
    monkeypatch.setattr(fake_backend, "ANSWER_TOKENS", ["Take ", "5000 mg ", "of ibuprofen ", "per day."])
    _ask(at, "What is the most ibuprofen I can take in a day for back pain?")
    shown = " ".join(str(getattr(e, "value", "")) for e in at.chat_message[5].children.values()) \
        if hasattr(at.chat_message[5], "children") else ""
    shown += " ".join(i.value for i in at.chat_message[5].info) + " ".join(m.value for m in at.chat_message[5].markdown)
    assert "5000 mg" not in shown and "can't help" in shown


def test_backend_load_error_is_shown(fake_backend, monkeypatch) -> None:
    monkeypatch.setenv("MEDTUNE_UI_BACKEND", "ui_fake_backend:NoSuchBackend")
    at = _start()
    assert any("Could not load" in e.value for e in at.error)
    assert at.chat_input(key="chat_input").disabled
