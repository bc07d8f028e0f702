"""The backend registry: a name -> class path map, imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

from medtune.errors import UserError
from medtune.inference.base import Backend

BACKENDS: dict[str, str] = {
    "transformers": "medtune.inference.transformers_backend:TransformersBackend",
    "llamacpp": "medtune.inference.llamacpp_backend:LlamaCppBackend",
    "ollama": "medtune.inference.ollama_backend:OllamaBackend",
    "openai": "medtune.inference.openai_backend:OpenAIBackend",
}


def load_backend(kind: str = "transformers", model: str | None = "smollm2-135m-instruct", **options: Any) -> Backend:
    """Create the backend ``kind`` for ``model``; options (url, n_ctx, dtype ...) go to its constructor.

    Raises:
        UserError: for an unknown backend name.
    """
    if kind not in BACKENDS:
        raise UserError(f"backend '{kind}' is unknown; choose one of: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    options = {k: v for k, v in options.items() if v is not None}
    if kind == "openai":
        return cls(model, **options)  # type: ignore[no-any-return]
    if model is None:
        raise UserError(f"backend '{kind}' needs a model; pass --model.")
    return cls(model, **options)  # type: ignore[no-any-return]
