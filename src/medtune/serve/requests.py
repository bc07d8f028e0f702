"""What ``medtune serve`` accepts from a client: the request's fields (only those medtune supports are
forwarded, each checked), its messages (roles, count), the limits a deployer sets, and the conversation the
engine gets after the guard's conversation check. Every rejection is an HTTP 400 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from medtune.guard.conversation import check_conversation
from medtune.prompts import strip_control_strings

#: Request fields passed on to the engine (after type checks); ``max_completion_tokens`` becomes ``max_tokens``.
FORWARDED_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty",
                    "frequency_penalty")
#: Request fields read by medtune itself and not forwarded.
OWN_FIELDS = ("model", "messages", "stream", "n", "user", "stream_options", "max_completion_tokens")
_ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class ServeLimits:
    """What one client may ask of the server (settable with ``medtune serve`` options)."""

    max_body_bytes: int = 1_000_000       # 413 above this
    max_messages: int = 64                # 400 above this
    max_tokens: int = 1024                # a larger max_tokens is lowered to this
    max_concurrent: int = 4               # engine calls at once
    max_queue: int = 32                   # requests waiting for a slot; 429 + Retry-After beyond


def message_text(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of ``{"type": "text"}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def engine_fields(body: dict[str, Any], limits: ServeLimits) -> dict[str, Any]:
    """The sampling fields forwarded to the engine, checked; unknown or unsupported fields raise a 400.

    Raises:
        HTTPException: 400 naming the unsupported fields or the field with a bad value.
    """
    unknown = sorted(set(body) - set(FORWARDED_FIELDS) - set(OWN_FIELDS))
    if unknown:
        raise HTTPException(400, f"unsupported field(s): {', '.join(unknown)}; medtune serve accepts "
                                 f"{', '.join(sorted(FORWARDED_FIELDS + OWN_FIELDS))}")
    if body.get("n", 1) != 1:
        raise HTTPException(400, "'n' must be 1: every answer is checked on its own")
    out: dict[str, Any] = {}
    if "max_completion_tokens" in body and "max_tokens" not in body:
        body = {**body, "max_tokens": body["max_completion_tokens"]}
    for name in FORWARDED_FIELDS:
        if body.get(name) is None:
            continue
        value = body[name]
        if name == "max_tokens":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HTTPException(400, "'max_tokens' must be a positive integer")
            value = min(value, limits.max_tokens)
        elif name == "stop":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) for s in value):
                raise HTTPException(400, "'stop' must be a string or a list of at most 4 strings")
        elif name == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise HTTPException(400, "'seed' must be an integer")
        elif not isinstance(value, int | float) or isinstance(value, bool) or not -2 <= value <= 2 or \
                (name in ("temperature", "top_p") and value < 0):
            raise HTTPException(400, f"'{name}' must be a number in its OpenAI range")
        out[name] = value
    return out


def checked_messages(body: Any, limits: ServeLimits) -> list[dict[str, str]]:
    """The request's messages as ``{"role", "content"}`` text turns, up to and including the last user turn.

    Raises:
        HTTPException: 400 for a missing, malformed or too long message list.
    """
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise HTTPException(400, "'messages' must be a non-empty list of messages")
    if len(messages) > limits.max_messages:
        raise HTTPException(400, f"too many messages ({len(messages)}); at most {limits.max_messages}")
    out = []
    for number, message in enumerate(messages, 1):
        role = message.get("role")
        if role not in _ROLES:
            raise HTTPException(400, f"message {number}: role {role!r} is not supported (use {', '.join(_ROLES)})")
        out.append({"role": "system" if role == "developer" else str(role),
                    "content": message_text(message.get("content"))})
    users = [i for i, m in enumerate(out) if m["role"] == "user"]
    if not users:
        raise HTTPException(400, "'messages' needs at least one user message")
    return out[: users[-1] + 1]


def guarded_messages(guard: Any, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], Any, list[str]]:
    """(the conversation sent to the engine, the guard's decision on the last turn, notes on dropped turns).

    With a guard: its system prompt, then the turns :func:`check_conversation` lets the model see and the
    sanitized last turn. Without one: control strings stripped, client system messages kept.
    """
    if guard is None:
        return [{"role": m["role"], "content": strip_control_strings(m["content"])} for m in messages], None, []
    check = check_conversation(guard, [m for m in messages if m["role"] != "system"])
    sent = [{"role": "system", "content": guard.system_prompt}, *check.model_turns(),
            {"role": "user", "content": check.decision.sanitized_input}]
    return sent, check.decision, check.notes
