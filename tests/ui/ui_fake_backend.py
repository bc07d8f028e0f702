"""A small Backend for the UI tests: yields fixed tokens and records what it was asked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medtune.inference.base import GenerationSettings, Message, ModelInfo

ANSWER_TOKENS = ["Type 2 diabetes ", "often starts ", "with thirst ", "and tiredness."]
CALLS: list[dict[str, Any]] = []


class FakeBackend:
    """Implements the Backend protocol of medtune.inference.base without a model."""

    name = "fake"

    def __init__(self, model: str | None = None, **options: Any) -> None:
        self.model = model or "fake-model"
        self.options = options

    def info(self) -> ModelInfo:
        return ModelInfo(backend="fake", model=self.model, parameters=134_515_008, base_model="fake-base",
                         adapter=None, context_window=2048)

    def stream_chat(self, messages: list[Message], settings: GenerationSettings) -> Iterator[str]:
        CALLS.append({"messages": [dict(m) for m in messages], "settings": settings})
        yield from ANSWER_TOKENS

    def chat(self, messages: list[Message], settings: GenerationSettings) -> str:
        return "".join(self.stream_chat(messages, settings))

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)
