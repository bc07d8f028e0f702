"""The chat history of the UI as plain dicts: building messages from replies, timing, export.

A user message is ``{"id", "role": "user", "content"}``; an assistant message also carries the
question, the guard action/category, dose warnings, disclaimer, timing, tokens, model, backend and the
generation settings it was produced with, so export and feedback need nothing else.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

Message = dict[str, Any]


def new_id() -> str:
    """Return a fresh message id."""
    return uuid.uuid4().hex[:12]


def user_message(text: str) -> Message:
    """Build the message of a user question."""
    return {"id": new_id(), "role": "user", "content": text}


def assistant_message(reply: Any, question: str, model: str, backend: str, settings: dict[str, Any],
                      disclaimer: str) -> Message:
    """Build the assistant message from an :class:`~medtune.inference.assistant.AssistantReply`."""
    answered = reply.decision.action == "answer"
    return {
        "id": new_id(), "role": "assistant", "content": reply.text,
        "answer": reply.raw_answer if answered else reply.text,
        "question": question, "action": reply.decision.action, "category": reply.decision.category,
        "dose_warnings": list(reply.dose_warnings), "disclaimer": disclaimer if answered else "",
        "seconds": round(reply.seconds, 3),
        "first_token_seconds": None if reply.first_token_seconds is None else round(reply.first_token_seconds, 3),
        "tokens": reply.tokens, "model": model, "backend": backend, "settings": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def history_for_model(messages: list[Message]) -> list[dict[str, str]]:
    """The role/content pairs the Assistant needs (guard canned replies are left out)."""
    out: list[dict[str, str]] = []
    for message in messages:
        if message["role"] == "user":
            out.append({"role": "user", "content": message["content"]})
        elif message.get("action", "answer") == "answer":
            out.append({"role": "assistant", "content": str(message.get("answer") or message["content"])})
        elif out and out[-1]["role"] == "user":
            out.pop()  # a refused/emergency turn is not useful context for the model
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
    """The conversation and its metadata (model, settings, export time) as pretty JSON."""
    return json.dumps({**meta, "exported": time.strftime("%Y-%m-%dT%H:%M:%S"), "messages": messages},
                      indent=2, ensure_ascii=False)


def to_markdown(messages: list[Message], meta: dict[str, Any]) -> str:
    """The conversation as a readable Markdown document."""
    lines = ["# medtune conversation", ""]
    lines += [f"- **{key}**: {value}" for key, value in meta.items()]
    lines += [f"- **exported**: {time.strftime('%Y-%m-%d %H:%M:%S')}", ""]
    for message in messages:
        if message["role"] == "user":
            lines += ["## You", "", message["content"], ""]
            continue
        lines += ["## Assistant", "", message["content"], ""]
        if message.get("action", "answer") != "answer":
            lines += [f"_guardrail: {message.get('category')}_", ""]
        lines += [f"_{timing_caption(message)}_", ""]
    return "\n".join(lines)
