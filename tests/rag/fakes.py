"""Test doubles for the grounded Assistant: a backend that streams a fixed answer and a fixed retriever."""

from __future__ import annotations

from medtune.rag.retriever import Passage


class ScriptedBackend:
    """A backend that streams a fixed answer, without a model."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def info(self):
        from medtune.inference.base import ModelInfo

        return ModelInfo(backend="scripted", model="scripted", parameters=0, base_model=None, adapter=None,
                         context_window=2048)

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def stream_chat(self, messages, settings):
        yield from self.answer.split(" ")[:1] + [" " + w for w in self.answer.split(" ")[1:]]

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())


class FixedRetriever:
    """Returns the first k of a fixed list of passages."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages

    def retrieve(self, question: str, k: int) -> list[Passage]:
        return self.passages[:k]
