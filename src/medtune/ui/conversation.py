"""The chat history of the UI as plain dicts: building messages from replies, timing, export.

A user message is ``{"id", "role": "user", "content"}``; an assistant message also carries the
question, the guard action/category, dose warnings, disclaimer, timing, tokens, model, backend and the
generation settings it was produced with, so export and feedback need nothing else. An answer produced with
retrieval (RAG) also has ``grounded`` True, ``rag_index``/``rag_k``, ``citations`` (the retrieved passages as
dicts: id, title, url, source, focus_area, text, score, document_id) and ``evidence`` (whether any passage
reached :data:`medtune.rag.grounding.NO_EVIDENCE_THRESHOLD`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

Message = dict[str, Any]
CITATION_FIELDS = ("id", "title", "url", "source", "focus_area", "text", "score", "document_id")
_MEDQUAD_COLLECTION = re.compile(r"^\d+_(.+?)_QA")  # "2_GARD_QA/0000004" -> GARD
_SOURCES_MARK = "\n\nSources:"  # how Assistant.stream appends the citation list (or NO_EVIDENCE) to reply.text


def new_id() -> str:
    """Return a fresh message id."""
    return uuid.uuid4().hex[:12]


def user_message(text: str, sanitized: str | None = None) -> Message:
    """Build the message of a user question (``sanitized``: what the guard left of it, for the model)."""
    message: Message = {"id": new_id(), "role": "user", "content": text}
    if sanitized is not None:
        message["model_content"] = sanitized
    return message


def organisation(passage: dict[str, Any]) -> str:
    """Who published a passage: the MedQuAD collection (GARD, NIDDK, ...) or else its ``source``."""
    match = _MEDQUAD_COLLECTION.match(str(passage.get("document_id") or ""))
    return match.group(1).replace("_", " ") if match else str(passage.get("source") or "")


def _citation(passage: Any) -> Message:
    """The fields of a retrieved passage (dict or Passage) kept in the conversation (plain JSON types)."""
    values = passage if isinstance(passage, dict) else vars(passage)
    out = {key: values.get(key, "") for key in CITATION_FIELDS}
    out["score"] = round(float(values.get("score") or 0.0), 4)
    out["organisation"] = organisation(out)
    return out


def assistant_message(reply: Any, question: str, model: str, backend: str, settings: dict[str, Any],
                      disclaimer: str, rag_index: str | None = None, rag_k: int | None = None) -> Message:
    """Build the assistant message from an :class:`~medtune.inference.assistant.AssistantReply`.

    ``rag_index`` names the retrieval index the answer was grounded in (None: no retrieval).
    """
    from medtune.rag.grounding import has_evidence

    answered = reply.decision.action == "answer"
    message: Message = {
        "id": new_id(), "role": "assistant", "content": reply.text,
        "answer": (getattr(reply, "answer", "") or reply.raw_answer) if answered else reply.text,
        "question": question, "action": reply.decision.action, "category": reply.decision.category,
        "dose_warnings": list(reply.dose_warnings), "disclaimer": disclaimer if answered else "",
        "seconds": round(reply.seconds, 3),
        "first_token_seconds": None if reply.first_token_seconds is None else round(reply.first_token_seconds, 3),
        "tokens": reply.tokens, "model": model, "backend": backend, "settings": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if rag_index and answered:
        citations = [_citation(c) for c in (getattr(reply, "citations", None) or [])]
        message.update(grounded=True, rag_index=rag_index, rag_k=rag_k, citations=citations,
                       evidence=has_evidence(citations), cited=list(getattr(reply, "cited", None) or []),
                       invalid_citations=list(getattr(reply, "invalid_citations", None) or []),
                       citation_warning=getattr(reply, "citation_warning", None),
                       citation_note=getattr(reply, "citation_note", None))
    return message


def is_grounded(message: Message) -> bool:
    """True for an answer produced with retrieval."""
    return bool(message.get("grounded"))


def has_sources(message: Message) -> bool:
    """True for a grounded answer with at least one passage above the no-evidence threshold."""
    return is_grounded(message) and bool(message.get("evidence")) and bool(message.get("citations"))


def answer_text(message: Message) -> str:
    """The text of a message without the source list the Assistant appends to grounded answers."""
    content = str(message.get("content") or "")
    if is_grounded(message) and _SOURCES_MARK in content:
        content = content.rpartition(_SOURCES_MARK)[0]
    return content


def sources_markdown(message: Message) -> list[str]:
    """Markdown lines listing the sources of a grounded answer (or the no-evidence note); [] otherwise."""
    if not is_grounded(message):
        return []
    if not has_sources(message):
        from medtune.rag.grounding import NO_EVIDENCE

        return [f"_{NO_EVIDENCE}_", ""]
    lines = [f"**Sources** (index `{message.get('rag_index')}`)", ""]
    for number, passage in enumerate(message["citations"], 1):
        title = str(passage.get("title") or "untitled")
        head = f"[{title}]({passage['url']})" if passage.get("url") else title
        meta = " · ".join(x for x in (organisation(passage), f"relevance {float(passage.get('score') or 0):.2f}")
                          if x)
        lines.append(f"- [{number}] {head} — {meta}")
        text = " ".join(str(passage.get("text") or "").split())
        if text:
            lines.append(f"  > {text}")
    return [*lines, ""]


def history_for_model(messages: list[Message]) -> list[dict[str, str]]:
    """The turns the Assistant needs, each marked with the guard's action (``guard_action``): the sanitized
    question (``model_content``) and the answer or canned reply. The Assistant shows the model only answered
    turns and the guard all of them (an earlier red flag still counts); turns refused as injections and
    source lists are left out."""
    out: list[dict[str, str]] = []
    for message in messages:
        if message["role"] == "user":
            out.append({"role": "user", "content": str(message.get("model_content", message["content"]))})
            continue
        action = str(message.get("action", "answer"))
        if message.get("category") == "injection" and action != "answer":
            if out and out[-1]["role"] == "user":
                out.pop()  # the refused text may still carry instructions: never show it again
            continue
        if out and out[-1]["role"] == "user":
            out[-1]["guard_action"] = action
        out.append({"role": "assistant", "content": str(message.get("answer") or answer_text(message)),
                    "guard_action": action})
    return out


def timing_caption(message: Message) -> str:
    """One line: response time, time to first token, tokens and tokens/s."""
    seconds = float(message.get("seconds") or 0.0)
    parts = [f"Response time {seconds:.2f} s"]
    if message.get("first_token_seconds") is not None:
        parts.append(f"first token {message['first_token_seconds']:.2f} s")
    if message.get("tokens"):
        parts.append(f"{message['tokens']} tokens · {message['tokens'] / max(seconds, 1e-9):.1f} tok/s")
    return " · ".join(parts)


def average_seconds(messages: list[Message]) -> tuple[float | None, int]:
    """Mean response time of the assistant messages and how many there are."""
    times = [float(m["seconds"]) for m in messages if m["role"] == "assistant" and m.get("seconds") is not None]
    return (sum(times) / len(times) if times else None), len(times)


def to_json(messages: list[Message], meta: dict[str, Any]) -> str:
    """The conversation and its metadata (model, settings, export time) as pretty JSON (with any citations)."""
    return json.dumps({**meta, "exported": time.strftime("%Y-%m-%dT%H:%M:%S"), "messages": messages},
                      indent=2, ensure_ascii=False)


def to_markdown(messages: list[Message], meta: dict[str, Any]) -> str:
    """The conversation as a readable Markdown document (grounded answers list their sources)."""
    lines = ["# medtune conversation", ""]
    lines += [f"- **{key}**: {value}" for key, value in meta.items()]
    lines += [f"- **exported**: {time.strftime('%Y-%m-%d %H:%M:%S')}", ""]
    for message in messages:
        if message["role"] == "user":
            lines += ["## You", "", message["content"], ""]
            continue
        lines += ["## Assistant", "", answer_text(message), ""]
        lines += sources_markdown(message)
        if message.get("action", "answer") != "answer":
            lines += [f"_guardrail: {message.get('category')}_", ""]
        lines += [f"_{timing_caption(message)}_", ""]
    return "\n".join(lines)
