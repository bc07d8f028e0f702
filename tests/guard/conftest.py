"""Fixtures: a backend that records what it is sent (the default `guard` fixture is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medtune.inference.base import GenerationSettings, ModelInfo


class RecordingBackend:
    """A backend that answers a fixed text and keeps every message list it receives."""

    name = "recording"

    def __init__(self, answer: str = "Asthma is a long-term condition of the airways.") -> None:
        self.answer = answer
        self.calls: list[list[dict[str, str]]] = []

    def info(self) -> ModelInfo:
        return ModelInfo(backend="recording", model="fake", context_window=4096)

    def stream_chat(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Iterator[str]:
        self.calls.append([dict(m) for m in messages])
        yield from self.answer.split(" ")[:1]
        yield " " + " ".join(self.answer.split(" ")[1:])

    def chat(self, messages: list[dict[str, str]], settings: GenerationSettings) -> str:
        return "".join(self.stream_chat(messages, settings))

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) // 4 + 4 for m in messages)


@pytest.fixture
def recording_backend() -> RecordingBackend:
    """A fresh recording backend."""
    return RecordingBackend()
