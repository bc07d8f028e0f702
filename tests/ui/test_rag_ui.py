"""Retrieval-augmented answers in the chat UI, on a small real MedQuAD index (6 GARD documents, 13 QA pairs).

The model is the fake backend (fixed tokens); retrieval, grounding prompts, citations, the Sources expander,
the no-evidence note, the toggle, the "no index" hint, load errors, export and `medtune ui --rag` are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from medtune.cli import get_app  # noqa: E402
from medtune.errors import UserError  # noqa: E402
from medtune.rag.grounding import (  # noqa: E402
    GROUNDING_INSTRUCTIONS,
    NO_EVIDENCE,
    NO_EVIDENCE_INSTRUCTIONS,
    NO_EVIDENCE_THRESHOLD,
)
from medtune.ui.conversation import (  # noqa: E402
    answer_text,
    assistant_message,
    history_for_model,
    to_json,
    to_markdown,
    user_message,
)
from medtune.ui.sidebar import BUILD_INDEX_COMMAND, RAG_LABEL  # noqa: E402

from .tests_ui_paths import ask as _ask  # noqa: E402
from .tests_ui_paths import start_app  # noqa: E402

TIMEOUT = 180  # the first grounded question loads the MiniLM encoder on CPU
SLICE = {"2_GARD_QA": 6}  # 6 answered GARD documents, 13 QA pairs
ON_TOPIC = "What are the signs and symptoms of abetalipoproteinemia?"
ON_TOPIC_DOCUMENT = "2_GARD_QA/0000011"
OFF_TOPIC = "What were the football scores in the world cup final in 1998?"
FAKE_ANSWER = "Type 2 diabetes often starts with thirst and tiredness."


# --------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def rag_index(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A real index ``medquad`` of a few MedQuAD documents in its own MEDTUNE_HOME (built once per module)."""
    from tests.rag.conftest import extract_slice

    from medtune.rag.builder import build_index
    from medtune.rag.chunking import make_title
    from medtune.rag.sources import IndexSource, iter_rows

    source = extract_slice(shared_data, tmp_path_factory.mktemp("ui_rag_slice"), SLICE)
    home = tmp_path_factory.mktemp("ui_rag_home")
    spec = IndexSource("medquad", source, f"medquad:{source}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDTUNE_HOME", str(home))
        manifest = build_index([spec], "medquad", max_words=400, progress=False)
    rows = list(iter_rows(spec))
    titles = {make_title(row["focus_area"], row["question"]): row for row in rows}
    return SimpleNamespace(home=home, manifest=manifest, rows=rows, titles=titles)


@pytest.fixture
def rag_ui(rag_index: SimpleNamespace, fake_backend: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake backend with MEDTUNE_HOME holding the real index; retrieval off by default."""
    monkeypatch.setenv("MEDTUNE_HOME", str(rag_index.home))
    monkeypatch.delenv("MEDTUNE_UI_RAG", raising=False)
    return fake_backend


def _start() -> AppTest:
    return start_app(TIMEOUT)


def _last_assistant(at: AppTest) -> dict[str, Any]:
    message = at.session_state["messages"][-1]
    assert message["role"] == "assistant"
    return message


def _sources_expanders(chat_message: Any) -> list[Any]:
    return [e for e in chat_message.expander if e.label.startswith("Sources")]


# ------------------------------------------------------------------------------------- grounded answers

@pytest.mark.slow
def test_grounded_answer_cites_indexed_documents(rag_ui: Any, rag_index: SimpleNamespace) -> None:
    at = _start()
    toggle = at.toggle(key="rag_on")
    assert toggle.label == RAG_LABEL and not toggle.disabled and toggle.value is False  # MEDTUNE_UI_RAG empty
    toggle.set_value(True).run()
    assert at.selectbox(key="rag_index").value == "medquad"
    assert at.slider(key="rag_k").value == 4
    at.slider(key="rag_k").set_value(3).run()
    _ask(at, ON_TOPIC)

    message = _last_assistant(at)
    assert message["grounded"] is True and message["evidence"] is True
    assert (message["rag_index"], message["rag_k"]) == ("medquad", 3)
    citations = message["citations"]
    assert len(citations) == 3
    for citation in citations:  # every cited passage is one of the indexed QA pairs
        assert citation["title"] in rag_index.titles, citation["title"]
        assert citation["url"] == rag_index.titles[citation["title"]]["url"]
        assert 0.0 <= citation["score"] <= 1.0 and citation["organisation"] == "GARD"
    assert citations[0]["document_id"] == ON_TOPIC_DOCUMENT
    assert "Abetalipoproteinemia" in citations[0]["title"] and citations[0]["score"] >= NO_EVIDENCE_THRESHOLD

    # the model was given the numbered passages
    prompt = rag_ui.CALLS[-1]["messages"]
    assert GROUNDING_INSTRUCTIONS in prompt[0]["content"]
    assert f"[1] {citations[0]['title']}" in prompt[-1]["content"]
    assert prompt[-1]["content"].endswith(f"Question: {ON_TOPIC}")

    # rendering: answer, then "Sources (3)" with "[n] title" linked to the URL, relevance and passage text
    bubble = at.chat_message[1]
    assert FAKE_ANSWER in " ".join(md.value for md in bubble.markdown)
    expanders = _sources_expanders(bubble)
    assert [e.label for e in expanders] == ["Sources (3)"]
    links = [md.value for md in expanders[0].markdown]
    assert links[0] == f"**[1]** [{citations[0]['title']}]({citations[0]['url']})"
    assert len(links) == 3 and links[2].startswith("**[3]** [")
    captions = [c.value for c in expanders[0].caption]
    assert captions[0].startswith("GARD") and f"relevance {citations[0]['score']:.2f}" in captions[0]
    assert expanders[0].text[0].value == citations[0]["text"].strip()
    assert not [i for i in bubble.info if NO_EVIDENCE in i.value]
    # the fake answer cites no source: the reader is told so above the sources
    assert message["cited"] == [] and message["invalid_citations"] == []
    assert message["citation_warning"].startswith("Citation check")
    assert [w.value for w in bubble.warning] == [message["citation_warning"]]

    # the next turn sends only the answer as history, not the sources list
    _ask(at, "How is it treated?")
    history = rag_ui.CALLS[-1]["messages"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
    assert history[2]["content"] == FAKE_ANSWER
    assert "Sources:" in message["content"]  # ... although the stored full reply has it

    # exports list the sources
    messages = at.session_state["messages"]
    markdown = to_markdown(messages, {"model": "fake"})
    assert f"- [1] [{citations[0]['title']}]({citations[0]['url']}) — GARD · relevance" in markdown
    assert markdown.count("**Sources** (index `medquad`)") == sum(bool(m.get("evidence")) for m in messages) >= 1
    exported = json.loads(to_json(messages, {"model": "fake"}))["messages"][1]
    assert [c["title"] for c in exported["citations"]] == [c["title"] for c in citations]

    # feedback records which index answered
    from medtune.ui.feedback import FeedbackStore

    at.feedback[0].set_value(1).run()
    record = next(r for r in FeedbackStore().records() if r.message_id == message["id"])
    assert record.settings["rag_index"] == "medquad" and record.settings["rag_k"] == 3


@pytest.mark.slow
def test_answer_citing_a_missing_source_is_flagged(rag_ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_UI_RAG", "medquad")
    monkeypatch.setattr(rag_ui, "ANSWER_TOKENS", ["It is inherited [1] ", "and cured by surgery [9]."])
    at = _start()
    _ask(at, ON_TOPIC)
    message = _last_assistant(at)
    assert message["evidence"] is True and message["cited"] == [1] and message["invalid_citations"] == [9]
    bubble = at.chat_message[1]
    warnings = [w.value for w in bubble.warning]
    assert len(warnings) == 1 and "[9]" in warnings[0] and "[1]" not in warnings[0]
    assert message["citation_warning"] in to_markdown(at.session_state["messages"], {})


@pytest.mark.slow
def test_a_wrong_citation_number_is_corrected_unless_switched_off(rag_ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.evaluate.hallucination import split_sentences
    from medtune.rag.grounding import SUPPORT_THRESHOLD, support_score

    monkeypatch.setenv("MEDTUNE_UI_RAG", "medquad")
    at = _start()
    _ask(at, ON_TOPIC)
    texts = [c["text"] for c in _last_assistant(at)["citations"]]
    # a sentence of one shown passage that another shown passage does not state, cited with the other's number
    sentence, right, wrong = next(
        (s.rstrip("."), i + 1, j + 1) for i, text in enumerate(texts) for s in split_sentences(text)
        for j, other in enumerate(texts)
        if i != j and len(s.split()) >= 6 and support_score(s, other) < SUPPORT_THRESHOLD)
    monkeypatch.setattr(rag_ui, "ANSWER_TOKENS", [f"{sentence} [{wrong}]."])
    _ask(at, ON_TOPIC)
    message = _last_assistant(at)
    assert message["answer"] == f"{sentence} [{right}]." and message["cited"] == [right]
    assert f"[{wrong}] -> [{right}]" in message["citation_note"]
    assert message["citation_note"] in [c.value for c in at.chat_message[-1].caption]

    at.toggle(key="rag_repair_citations").set_value(False).run()
    _ask(at, ON_TOPIC)
    kept = _last_assistant(at)
    assert kept["answer"] == f"{sentence} [{wrong}]." and kept["cited"] == [wrong] and not kept["citation_note"]


@pytest.mark.slow
def test_off_topic_question_shows_no_evidence(rag_ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_UI_RAG", "medquad")  # what `medtune ui --rag medquad` sets
    at = _start()
    assert at.toggle(key="rag_on").value is True
    _ask(at, OFF_TOPIC)
    message = _last_assistant(at)
    assert message["grounded"] is True and message["evidence"] is False
    assert message["citations"] and max(c["score"] for c in message["citations"]) < NO_EVIDENCE_THRESHOLD
    bubble = at.chat_message[1]
    assert [i.value for i in bubble.info] == [NO_EVIDENCE]
    assert not _sources_expanders(bubble)
    assert NO_EVIDENCE_INSTRUCTIONS in rag_ui.CALLS[-1]["messages"][0]["content"]
    assert "[1]" not in rag_ui.CALLS[-1]["messages"][-1]["content"]
    assert f"_{NO_EVIDENCE}_" in to_markdown(at.session_state["messages"], {})


@pytest.mark.slow
def test_sources_only_mode_says_not_covered_without_calling_the_model(rag_ui: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.rag.grounding import NOT_COVERED

    monkeypatch.setenv("MEDTUNE_UI_RAG", "medquad")
    at = _start()
    switch = at.toggle(key="rag_sources_only")
    assert switch.value is False and not switch.disabled and at.slider(key="rag_min_score").disabled
    switch.set_value(True).run()
    assert at.slider(key="rag_min_score").value == 0.75 and not at.slider(key="rag_min_score").disabled
    calls = len(rag_ui.CALLS)
    _ask(at, OFF_TOPIC)
    message = _last_assistant(at)
    assert message["answer"] == NOT_COVERED and message["tokens"] == 0 and len(rag_ui.CALLS) == calls
    assert FAKE_ANSWER not in message["content"] and not message["citations"]
    at.slider(key="rag_min_score").set_value(0.0).run()
    _ask(at, ON_TOPIC)
    assert _last_assistant(at)["answer"] == FAKE_ANSWER and len(rag_ui.CALLS) == calls + 1


@pytest.mark.slow
def test_toggle_off_answers_without_retrieval(rag_ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_UI_RAG", "medquad")
    at = _start()
    at.toggle(key="rag_on").set_value(False).run()
    assert at.selectbox(key="rag_index").disabled and at.slider(key="rag_k").disabled
    _ask(at, ON_TOPIC)
    message = _last_assistant(at)
    assert "citations" not in message and not message.get("grounded")
    assert message["content"].count("Sources:") == 0
    prompt = rag_ui.CALLS[-1]["messages"]
    assert prompt[-1]["content"] == ON_TOPIC and GROUNDING_INSTRUCTIONS not in prompt[0]["content"]
    assert not _sources_expanders(at.chat_message[1]) and not at.chat_message[1].info


# ------------------------------------------------------------------------------------ no index / errors

def test_no_index_disables_the_toggle_and_shows_the_build_command(fake_backend: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_UI_RAG", "medquad")  # asked for, but not built in this MEDTUNE_HOME
    at = _start()
    toggle = at.toggle(key="rag_on")
    assert toggle.disabled and toggle.value is False
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert f"`{BUILD_INDEX_COMMAND}`" in captions
    assert BUILD_INDEX_COMMAND == "medtune index build medquad:medquad/MedQuAD_xml.tar.gz --name medquad"
    _ask(at, ON_TOPIC)
    assert "citations" not in _last_assistant(at)
    assert fake_backend.CALLS[-1]["messages"][-1]["content"] == ON_TOPIC


def test_unopenable_index_falls_back_to_plain_answers(fake_backend: Any, isolated_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    broken = isolated_home / "indexes" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text(json.dumps({"name": "broken", "pairs": 1}))  # no settings, no chunks
    monkeypatch.setenv("MEDTUNE_UI_RAG", "broken")
    at = _start()
    assert at.toggle(key="rag_on").value is True
    assert any("Could not open the index 'broken'" in e.value for e in at.sidebar.error)
    _ask(at, ON_TOPIC)
    assert "citations" not in _last_assistant(at)
    assert FAKE_ANSWER in " ".join(md.value for md in at.chat_message[1].markdown)


def test_unknown_rag_index_warns(fake_backend: Any, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = isolated_home / "indexes" / "other"
    other.mkdir(parents=True)
    (other / "manifest.json").write_text(json.dumps({"name": "other", "pairs": 5, "chunks": 7, "documents": 2}))
    monkeypatch.setenv("MEDTUNE_UI_RAG", "nosuch")
    at = _start()
    assert at.toggle(key="rag_on").value is False and not at.toggle(key="rag_on").disabled
    assert any("`nosuch`" in w.value and "other" in w.value for w in at.sidebar.warning)
    assert at.selectbox(key="rag_index").options == ["other"]
    assert "2 documents · 5 QA pairs · 7 passages" in " ".join(c.value for c in at.sidebar.caption)


# ------------------------------------------------------------------------------------ conversation / CLI

def _reply(text: str, raw: str, citations: list[dict[str, Any]], action: str = "answer") -> SimpleNamespace:
    decision = SimpleNamespace(action=action, category="ok" if action == "answer" else f"{action}:x")
    return SimpleNamespace(text=text, raw_answer=raw, decision=decision, dose_warnings=[], seconds=1.0,
                           first_token_seconds=0.2, tokens=5, citations=citations)


def test_conversation_keeps_citations_and_strips_sources_from_history() -> None:
    passage = {"id": "c1", "title": "Flu — What is flu ?", "url": "https://example.org/flu", "source": "medquad",
               "focus_area": "Flu", "text": "Flu is a viral infection.", "score": 0.71, "document_id":
               "4_MPlus_Health_Topics_QA/0000123", "rank_score": 0.03, "extra": {}}
    grounded = assistant_message(_reply("Flu is viral [1].\n\nNot a doctor.\n\nSources:\n[1] Flu — What is flu ? — "
                                        "https://example.org/flu", "", [passage]),
                                 "What is flu?", "m", "fake", {}, "Not a doctor.", rag_index="medquad", rag_k=2)
    assert grounded["citations"][0]["organisation"] == "MPlus Health Topics"
    assert set(grounded["citations"][0]) >= {"title", "url", "score", "text", "document_id"}
    assert "rank_score" not in grounded["citations"][0] and grounded["evidence"] is True
    assert answer_text(grounded) == "Flu is viral [1].\n\nNot a doctor."
    messages = [user_message("What is flu?"), grounded]
    assert history_for_model(messages)[-1] == {"role": "assistant", "content": "Flu is viral [1].\n\nNot a doctor.",
                                               "guard_action": "answer"}
    markdown = to_markdown(messages, {})
    assert "- [1] [Flu — What is flu ?](https://example.org/flu) — MPlus Health Topics · relevance 0.71" in markdown
    assert "  > Flu is a viral infection." in markdown and "\nSources:" not in markdown
    weak = assistant_message(_reply("Dunno.\n\n" + NO_EVIDENCE, "Dunno.", [{**passage, "score": 0.1}]), "q", "m",
                             "fake", {}, "", rag_index="medquad", rag_k=2)
    assert weak["evidence"] is False and f"_{NO_EVIDENCE}_" in to_markdown([weak], {})
    refused = assistant_message(_reply("I can't help.", "", [], action="refuse"), "q", "m", "fake", {}, "",
                                rag_index="medquad", rag_k=2)
    assert "grounded" not in refused and "Sources" not in to_markdown([refused], {})


def test_ui_rag_option_checks_the_index_and_sets_the_env(isolated_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = runner.invoke(get_app(), ["ui", "--rag", "medquad"])
    assert isinstance(missing.exception, UserError) and BUILD_INDEX_COMMAND in str(missing.exception)
    folder = isolated_home / "indexes" / "medquad"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "medquad"}))
    seen: dict[str, Any] = {}

    def fake_call(command: list[str], env: dict[str, str]) -> int:
        seen.update(command=command, env=env)
        return 0

    import medtune.children

    monkeypatch.setattr(medtune.children, "run_child", fake_call)
    result = runner.invoke(get_app(), ["ui", "--rag", "medquad"])
    assert result.exit_code == 0, result.output
    assert seen["env"]["MEDTUNE_UI_RAG"] == "medquad"
    runner.invoke(get_app(), ["ui"])
    assert seen["env"]["MEDTUNE_UI_RAG"] == ""
