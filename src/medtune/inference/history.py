"""Trim a conversation to the model's context window, oldest turns first, keeping system and the new question."""

from __future__ import annotations

from collections.abc import Callable

from medtune.errors import UserError
from medtune.inference.base import Message


def trim_history(
    messages: list[Message], count_tokens: Callable[[list[Message]], int], budget: int
) -> list[Message]:
    """Drop the oldest non-system turns until the rendered conversation takes at most ``budget`` tokens.

    The system message(s) and the last message (the new question) are always kept.

    Raises:
        UserError: when the system prompt and the question alone exceed the budget.
    """
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    if not rest:
        return list(messages)
    while True:
        candidate = system + rest
        if count_tokens(candidate) <= budget:
            return candidate
        if len(rest) == 1:
            raise UserError(
                f"the question and system prompt take {count_tokens(candidate)} tokens but only {budget} fit "
                "the context window after max_new_tokens; shorten the question or lower --max-new-tokens."
            )
        # drop the oldest turn; never leave an assistant message first
        rest = rest[1:]
        while len(rest) > 1 and rest[0]["role"] == "assistant":
            rest = rest[1:]


def approximate_token_count(messages: list[Message]) -> int:
    """Rough token count (4 characters per token + 4 per message) for servers without a tokenizer API."""
    return sum(len(m["content"]) // 4 + 4 for m in messages)
