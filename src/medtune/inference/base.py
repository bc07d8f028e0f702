"""The interface every inference backend implements (transformers, llamacpp, ollama, openai)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, str]


@dataclass
class GenerationSettings:
    """Decoding settings shared by all backends. temperature 0 means greedy."""

    temperature: float = 0.3
    top_p: float = 0.9
    top_k: int = 40
    num_beams: int = 1
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    # a JSON schema the reply must follow (OpenAI-compatible servers: grammar-constrained decoding in llama.cpp)
    json_schema: dict[str, Any] | None = None


@dataclass
class ModelInfo:
    """What a backend can say about the model it serves (shown in the UI and `medtune ask`)."""

    backend: str
    model: str
    parameters: int | None = None
    base_model: str | None = None
    adapter: str | None = None
    context_window: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """A chat model behind one interface."""

    name: str

    def info(self) -> ModelInfo:
        """Describe the model."""
        ...

    def stream_chat(self, messages: list[Message], settings: GenerationSettings) -> Iterator[str]:
        """Yield the assistant's answer as text pieces, as they are generated."""
        ...

    def chat(self, messages: list[Message], settings: GenerationSettings) -> str:
        """Return the whole assistant answer."""
        ...

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens the rendered conversation takes (for trimming history to the context window)."""
        ...
