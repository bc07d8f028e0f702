"""The interface every inference backend implements (transformers, llamacpp, ollama, openai)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Message = dict[str, str]
RepetitionScope = Literal["answer", "prompt+answer"]
REPETITION_SCOPES: tuple[str, ...] = ("answer", "prompt+answer")


def repetition_penalty_kwargs(penalty: float, scope: str, prompt_length: int) -> dict[str, Any]:
    """``model.generate`` keyword arguments for a repetition penalty over ``scope`` (transformers).

    ``prompt+answer`` is transformers' own default: every token of the context counts, the prompt included, so the
    end-of-turn token the chat template writes after each prompt turn is penalised too and answers run longer.
    ``answer`` counts only the tokens generated so far (transformers' ``prompt_ignore_length``), the penalty's
    intent; ``prompt_length`` is the (left-padded) prompt width of the batch.
    """
    if penalty == 1.0:  # explicit, so a penalty in the model's own generation_config.json does not apply either
        return {"repetition_penalty": 1.0}
    if scope == "prompt+answer":
        return {"repetition_penalty": penalty}
    if scope != "answer":
        raise ValueError(f"repetition scope {scope!r}: choose one of {', '.join(REPETITION_SCOPES)}")
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    processor = RepetitionPenaltyLogitsProcessor(float(penalty), prompt_ignore_length=int(prompt_length))
    return {"repetition_penalty": 1.0, "logits_processor": LogitsProcessorList([processor])}


@dataclass
class GenerationSettings:
    """Decoding settings shared by all backends. temperature 0 means greedy."""

    temperature: float = 0.3
    top_p: float = 0.9
    top_k: int = 40
    num_beams: int = 1
    repetition_penalty: float = 1.1
    # which tokens the penalty counts (transformers backend): the answer so far, or (transformers' default) the prompt
    # too; llama.cpp and Ollama count the last 64 tokens (repeat_last_n), prompt tail included
    repetition_scope: RepetitionScope = "answer"
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
