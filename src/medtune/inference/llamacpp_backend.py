"""Inference with llama.cpp (llama-cpp-python) on a GGUF file; the chat template comes from the GGUF."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.inference.base import GenerationSettings, Message, ModelInfo


def find_gguf(model: str) -> Path:
    """Resolve a GGUF file from a path, a built-in alias, a folder with one .gguf, or a run's ``export/``.

    Raises:
        ExportCheckError: for an export folder whose GGUF failed its check.
        UserError: when no single GGUF file can be found.
    """
    from medtune.models import BUILTIN_MODELS, builtin_gguf_path

    if model in BUILTIN_MODELS:
        return builtin_gguf_path(model)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    for report in (path / "export.json", path / "export" / "export.json"):
        exported = json.loads(report.read_text()) if report.is_file() else {}
        if exported.get("verify", {}).get("passed") is False:
            from medtune.export.checks import ExportCheckError

            raise ExportCheckError(f"{report}: this export failed its check ({exported['verify']['failures'][0]});"
                                   " export again, or pass a .gguf file to use it anyway.")
        if Path(exported.get("gguf", "")).is_file():
            return Path(exported["gguf"])
    for folder in (path, path / "export"):
        ggufs = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
        if len(ggufs) == 1:
            return ggufs[0]
        if len(ggufs) > 1:
            raise UserError(f"{folder}: several .gguf files ({', '.join(g.name for g in ggufs)}); name one.")
    raise UserError(f"{model}: no GGUF file found; the llamacpp backend needs a .gguf "
                    f"(run `medtune export {model} --format gguf` first).")


class LlamaCppBackend:
    """A GGUF model run by llama.cpp in-process."""

    name = "llamacpp"

    def __init__(self, model: str = "smollm2-135m-instruct", *, n_ctx: int = 2048,
                 n_threads: int | None = None, seed: int = 0, context_window: int | None = None) -> None:
        """Load the GGUF behind ``model`` with ``n_ctx`` tokens of context (all layers on the GPU with CUDA)."""
        from medtune.devices import llama_gpu_layers

        try:
            from llama_cpp import Llama
        except ImportError:
            raise UserError("the llamacpp backend needs llama-cpp-python: pip install 'medtune[serve]'") from None
        self.model_name = model
        self.path = find_gguf(model)
        n_ctx = context_window or n_ctx
        self.llm: Any = Llama(model_path=str(self.path), n_ctx=n_ctx, seed=seed, verbose=False,
                              n_threads=n_threads or max(1, min(4, os.cpu_count() or 1)),
                              n_gpu_layers=llama_gpu_layers())
        self._formatter: Any = None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            vocab = self.llm
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.detokenize([vocab.token_eos()], special=True).decode("utf-8", "ignore"),
                bos_token=vocab.detokenize([vocab.token_bos()], special=True).decode("utf-8", "ignore"),
            )

    def info(self) -> ModelInfo:
        """Describe the GGUF (parameters, context window, architecture, file type)."""
        meta = self.llm.metadata
        return ModelInfo(backend=self.name, model=str(self.path), parameters=self._n_params(),
                         context_window=int(self.llm.n_ctx()),
                         extra={"architecture": meta.get("general.architecture", "?"),
                                "file_type": meta.get("general.file_type", "?")})

    def _n_params(self) -> int | None:
        """Parameter count from llama.cpp (None when the binding lacks it)."""
        import llama_cpp

        model = getattr(self.llm, "_model", None)
        pointer = getattr(model, "model", None)
        return int(llama_cpp.llama_model_n_params(pointer)) if pointer is not None else None

    def _params(self, settings: GenerationSettings) -> dict[str, Any]:
        """Map settings to create_chat_completion arguments (beams are not supported by llama.cpp)."""
        greedy = settings.temperature <= 0
        return {"temperature": 0.0 if greedy else settings.temperature, "top_p": 1.0 if greedy else settings.top_p,
                "top_k": 1 if greedy else settings.top_k, "repeat_penalty": settings.repetition_penalty,
                "max_tokens": settings.max_new_tokens, "stop": list(settings.stop) or None}

    def stream_chat(self, messages: list[Message], settings: GenerationSettings) -> Iterator[str]:
        """Yield answer pieces from ``create_chat_completion(stream=True)``."""
        for chunk in self.llm.create_chat_completion(messages=messages, stream=True, **self._params(settings)):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def chat(self, messages: list[Message], settings: GenerationSettings) -> str:
        """Return the whole answer."""
        return "".join(self.stream_chat(messages, settings))

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens of the conversation rendered with the GGUF's chat template."""
        if self._formatter is None:
            return sum(self.count_text_tokens(m["content"]) + 4 for m in messages)
        prompt = self._formatter(messages=messages).prompt
        return len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a plain text."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
