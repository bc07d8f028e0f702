"""Inference through any OpenAI-compatible server (llama.cpp server, vLLM) with the official ``openai`` client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from medtune.errors import UserError
from medtune.inference.base import GenerationSettings, Message, ModelInfo
from medtune.inference.history import approximate_token_count

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


class OpenAIBackend:
    """A chat model behind ``/v1/chat/completions`` (base_url configurable)."""

    name = "openai"

    def __init__(self, model: str | None = None, *, url: str | None = None, api_key: str | None = None,
                 context_window: int = 2048, timeout: float = 600, max_retries: int | None = None) -> None:
        """Connect to ``url`` (default ``http://127.0.0.1:8000/v1``); ``model`` None = the server's first.

        ``max_retries``: the openai client's own retries, with exponential backoff (and the server's Retry-After), of
        a request that failed to connect or got 408, 409, 429 or 5xx; None = the client's default (2).
        """
        try:
            from openai import DEFAULT_MAX_RETRIES, OpenAI
        except ImportError:
            raise UserError("the openai backend needs the openai client: pip install 'medtune[serve]'") from None
        self.url = url or "http://127.0.0.1:8000/v1"
        key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self.client = OpenAI(base_url=self.url, api_key=key, timeout=timeout,
                             max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries)
        self._model = model
        self.context_window = context_window

    @property
    def model_name(self) -> str:
        """The served model id (asks the server when none was given)."""
        if self._model is None:
            import openai

            try:
                self._model = self.client.models.list().data[0].id
            except openai.APIConnectionError:
                raise UserError(f"cannot reach an OpenAI-compatible server at {self.url}; "
                                "start one (`medtune serve MODEL`) or pass --url.") from None
        return self._model

    def info(self) -> ModelInfo:
        """Describe the model."""
        return ModelInfo(backend=self.name, model=self.model_name, context_window=self.context_window,
                         extra={"url": self.url})

    def _params(self, settings: GenerationSettings) -> dict[str, Any]:
        """Map settings to the request; top_k and repetition penalty go in ``extra_body`` (llama.cpp, vLLM)."""
        params: dict[str, Any] = {"temperature": settings.temperature, "top_p": settings.top_p,
                                  "max_tokens": settings.max_new_tokens,
                                  "extra_body": {"top_k": settings.top_k,
                                                 "repeat_penalty": settings.repetition_penalty,
                                                 "repetition_penalty": settings.repetition_penalty}}
        if settings.stop:
            params["stop"] = list(settings.stop)[:4]  # the OpenAI API allows up to 4
        if settings.json_schema is not None:
            # llama.cpp's servers (C++ and llama-cpp-python) compile this to a grammar; vLLM accepts it too
            params["response_format"] = {"type": "json_object", "schema": settings.json_schema}
        return params

    def stream_chat(self, messages: list[Message], settings: GenerationSettings) -> Iterator[str]:
        """Yield answer pieces from a streamed chat completion."""
        import openai

        try:
            stream = self.client.chat.completions.create(
                model=self.model_name, messages=cast("list[ChatCompletionMessageParam]", messages), stream=True,
                **self._params(settings))
            assert isinstance(stream, openai.Stream)  # stream=True (the **params leave mypy the non-stream overload)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.APIConnectionError:
            raise UserError(f"cannot reach an OpenAI-compatible server at {self.url}; "
                            "start one (`medtune serve MODEL`) or pass --url.") from None

    def chat(self, messages: list[Message], settings: GenerationSettings) -> str:
        """Return the whole answer."""
        return "".join(self.stream_chat(messages, settings))

    def count_tokens(self, messages: list[Message]) -> int:
        """Approximate token count (the OpenAI API has no tokenize endpoint)."""
        return approximate_token_count(messages)
