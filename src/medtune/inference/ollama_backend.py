"""Inference through an Ollama server with the official ``ollama`` client (host configurable)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medtune.errors import UserError
from medtune.inference.base import GenerationSettings, Message, ModelInfo
from medtune.inference.history import approximate_token_count


class OllamaBackend:
    """A model served by Ollama (``ollama create`` it from ``medtune export --ollama NAME``)."""

    name = "ollama"

    def __init__(self, model: str, *, url: str | None = None, context_window: int = 2048,
                 timeout: float = 600) -> None:
        """Connect to Ollama at ``url`` (default ``http://127.0.0.1:11434``)."""
        try:
            import ollama
        except ImportError:
            raise UserError("the ollama backend needs the ollama client: pip install 'medtune[serve]'") from None
        self.model_name = model
        self.url = url or "http://127.0.0.1:11434"
        self.client = ollama.Client(host=self.url, timeout=timeout)
        self.context_window = context_window

    def info(self) -> ModelInfo:
        """Describe the model (the server is not contacted)."""
        return ModelInfo(backend=self.name, model=self.model_name, context_window=self.context_window,
                         extra={"url": self.url})

    def _options(self, settings: GenerationSettings) -> dict[str, Any]:
        """Map settings to Ollama options."""
        options: dict[str, Any] = {"temperature": settings.temperature, "top_p": settings.top_p,
                                   "top_k": settings.top_k, "repeat_penalty": settings.repetition_penalty,
                                   "num_predict": settings.max_new_tokens, "num_ctx": self.context_window}
        if settings.stop:
            options["stop"] = list(settings.stop)
        return options

    def stream_chat(self, messages: list[Message], settings: GenerationSettings) -> Iterator[str]:
        """Yield answer pieces from ``/api/chat`` streaming."""
        import httpx
        import ollama

        try:
            for chunk in self.client.chat(model=self.model_name, messages=messages, stream=True,
                                          options=self._options(settings)):
                piece = chunk["message"]["content"]
                if piece:
                    yield piece
        except (httpx.ConnectError, ConnectionError):
            raise UserError(f"cannot reach Ollama at {self.url}; start it (`ollama serve`) or pass --url.") from None
        except ollama.ResponseError as error:
            raise UserError(f"ollama: {error.error}; create the model with `ollama create {self.model_name} "
                            "-f Modelfile` (see `medtune export --ollama`).") from None

    def chat(self, messages: list[Message], settings: GenerationSettings) -> str:
        """Return the whole answer."""
        return "".join(self.stream_chat(messages, settings))

    def count_tokens(self, messages: list[Message]) -> int:
        """Approximate token count (Ollama has no tokenize endpoint)."""
        return approximate_token_count(messages)
