"""The chat page: history, streamed answers from the guarded Assistant (optionally grounded in a retrieval
index), timing, feedback, export."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from medtune.errors import UserError
from medtune.ui import components, sidebar
from medtune.ui.conversation import (
    Message,
    assistant_message,
    average_seconds,
    history_for_model,
    to_json,
    to_markdown,
    user_message,
)
from medtune.ui.feedback import FeedbackRecord, FeedbackStore

MESSAGES = "messages"


def _messages() -> list[Message]:
    """The conversation kept in the session."""
    return st.session_state.setdefault(MESSAGES, [])


def _on_feedback(message: Message) -> None:
    """Save (or clear) the thumbs rating of one answer in the feedback database."""
    value = st.session_state.get(f"feedback_{message['id']}")
    store = FeedbackStore()
    if value is None:
        store.remove(message["id"])
        return
    settings = dict(message.get("settings", {}))
    if message.get("grounded"):
        settings.update(rag_index=message.get("rag_index"), rag_k=message.get("rag_k"))
    store.save(FeedbackRecord(
        message_id=message["id"], rating=int(value), question=message.get("question", ""),
        answer=message["content"], model=message.get("model", ""), backend=message.get("backend", ""),
        settings=settings, seconds=message.get("seconds"),
    ))
    st.toast("Thanks, your feedback was saved." if value else "Thanks, noted: this answer was not helpful.")


def _conversation_tools(choice: sidebar.ModelChoice | None, settings: dict[str, Any]) -> None:
    """Sidebar: running average, clear, and export as Markdown / JSON."""
    st.subheader("Conversation")
    mean, count = average_seconds(_messages())
    st.metric("Average response time", "-" if mean is None else f"{mean:.2f} s",
              help=f"over {count} answer(s)")
    if st.button("Clear conversation", key="clear", icon=":material/delete_sweep:", width="stretch",
                 disabled=not _messages()):
        st.session_state[MESSAGES] = []
    meta = {"model": choice.label if choice else "-", "settings": json.dumps(settings)}
    left, right = st.columns(2)
    left.download_button("Markdown", to_markdown(_messages(), meta), "conversation.md", "text/markdown",
                         key="export_md", icon=":material/download:", disabled=not _messages(), width="stretch")
    right.download_button("JSON", to_json(_messages(), meta), "conversation.json", "application/json",
                          key="export_json", icon=":material/download:", disabled=not _messages(), width="stretch")


def _load(choice: sidebar.ModelChoice) -> Any:
    """The cached backend for the choice, or None after showing why it could not be loaded."""
    try:
        return sidebar.cached_backend(choice.kind, choice.model, json.dumps(choice.options, sort_keys=True))
    except UserError as error:
        st.error(f"Could not load the model: {error}", icon=":material/error:")
    except Exception as error:  # noqa: BLE001 - a server being down must not crash the page
        st.error(f"Could not load {choice.label}: {type(error).__name__}: {error}", icon=":material/error:")
    return None


def _history() -> None:
    """Draw the conversation so far, with a feedback widget under every answer."""
    for message in _messages():
        if message["role"] == "user":
            with st.chat_message("user", avatar=components.USER_AVATAR):
                st.markdown(message["content"])
            continue
        with st.chat_message("assistant", avatar=components.ASSISTANT_AVATAR):
            components.render_assistant(message)
            if message.get("action") == "answer":
                st.feedback("thumbs", key=f"feedback_{message['id']}", on_change=_on_feedback, args=(message,))
    mean, count = average_seconds(_messages())
    if mean is not None:
        st.caption(f"Average response time: {mean:.2f} s over {count} answer(s)")


def _answer(question: str, backend: Any, choice: sidebar.ModelChoice, settings: dict[str, Any],
            retriever: Any = None, rag_index: str | None = None, rag_k: int = sidebar.RAG_DEFAULT_K,
            rag_min_score: float | None = None, repair_citations: bool = True) -> None:
    """Stream the answer to ``question``, store both turns and rerun to draw them in the history.

    With a ``retriever`` the Assistant puts the top ``rag_k`` passages of index ``rag_index`` in the prompt
    (``rag_min_score``: sources-only mode, "not covered" without a model call under that passage score;
    ``repair_citations``: move wrong citation numbers to the source that states the sentence).
    """
    from medtune.inference.assistant import Assistant
    from medtune.inference.base import GenerationSettings
    from medtune.prompts import served_passage_header, served_system_prompt

    assistant = Assistant(backend, sidebar.cached_guard(), GenerationSettings(**settings), retriever=retriever,
                          top_k_passages=rag_k, system_prompt=served_system_prompt(choice.model),
                          rag_min_score=rag_min_score if retriever is not None else None,
                          repair_citations=repair_citations, passage_header=served_passage_header(choice.model))
    history = history_for_model(_messages())
    with st.chat_message("user", avatar=components.USER_AVATAR):
        st.markdown(question)
    final: dict[str, Any] = {}

    def tokens() -> Any:
        for event in assistant.stream(question, history):
            if event.kind == "token":
                yield event.text
            else:
                final["reply"] = event.reply

    with st.chat_message("assistant", avatar=components.ASSISTANT_AVATAR):
        try:
            if retriever is not None:
                st.caption(f"Answering from the index `{rag_index}` (top {rag_k} passages)…")
            st.write_stream(tokens())
        except UserError as error:
            st.error(str(error), icon=":material/error:")
            return
        except Exception as error:  # noqa: BLE001 - e.g. a retrieval failure must not crash the page
            st.error(f"Could not answer: {type(error).__name__}: {error}", icon=":material/error:")
            return
    reply = final["reply"]
    disclaimer = sidebar.cached_guard().finalize_answer(reply.raw_answer).disclaimer if reply.raw_answer else ""
    _messages().extend([user_message(question, reply.decision.sanitized_input), assistant_message(
        reply, question, choice.label, choice.kind, settings, disclaimer,
        rag_index=rag_index if retriever is not None else None, rag_k=rag_k if retriever is not None else None)])
    st.rerun()


def render() -> None:
    """The whole chat page."""
    st.title("medtune assistant")
    components.disclaimer_banner()
    with st.sidebar:
        st.subheader("Model")
        choice = sidebar.model_picker()
        backend = _load(choice) if choice is not None else None
        if backend is not None and choice is not None:
            sidebar.model_details(backend, choice)
        st.subheader("Answer settings")
        settings = sidebar.generation_controls()
        st.subheader("Sources")
        rag_index, rag_k = sidebar.retrieval_controls()
        rag_min_score = sidebar.sources_only_control(rag_index is not None)
        repair_citations = sidebar.citation_repair_control(rag_index is not None)
        retriever = sidebar.load_retriever(rag_index)
        _conversation_tools(choice, settings)
    _history()
    clicked = components.quick_questions() if not _messages() else None
    typed = st.chat_input("Ask a health question…", key="chat_input", disabled=backend is None)
    question = (typed or clicked or "").strip()
    if question and backend is not None and choice is not None:
        _answer(question, backend, choice, settings, retriever, rag_index if retriever is not None else None,
                rag_k, rag_min_score, repair_citations)
