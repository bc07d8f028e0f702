"""Local inference with transformers: HF folders, run folders (adapter applied), merged models, GGUF files.

The model is loaded through :func:`medtune.models.load_causal_lm`, so it follows the device policy
(:mod:`medtune.devices`): on the GPU when there is one, a QLoRA run in the quantization it was trained in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from medtune.inference.base import GenerationSettings, Message, ModelInfo, repetition_penalty_kwargs
from medtune.inference.streaming import cut_at_stop
from medtune.served_model import served_model


def _prompt_style(model: str) -> str:
    """Return the prompt style a run folder was trained with (``chat-template`` otherwise)."""
    return served_model(model).prompt_style


def generate_kwargs(settings: GenerationSettings, tokenizer: Any, prompt_length: int = 0) -> dict[str, Any]:
    """Map :class:`GenerationSettings` to ``model.generate`` keyword arguments (temperature 0 = greedy) for a prompt
    of ``prompt_length`` tokens."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "num_beams": settings.num_beams,
        "pad_token_id": tokenizer.pad_token_id,
        **repetition_penalty_kwargs(settings.repetition_penalty, settings.repetition_scope, prompt_length),
    }
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tokenizer)
    return kwargs


class TransformersBackend:
    """A model loaded in-process with transformers (+ PEFT for run/adapter folders)."""

    name = "transformers"

    def __init__(self, model: str = "smollm2-135m-instruct", *, dtype: str = "auto",
                 gguf_file: str | None = None, context_window: int | None = None,
                 model_obj: Any = None, tokenizer: Any = None) -> None:
        """Load ``model`` (alias, folder, run folder, .gguf); ``model_obj``/``tokenizer`` skip loading (tests, export)."""
        from medtune.models import load_causal_lm, load_tokenizer

        self.model_name = model
        self.style = _prompt_style(model)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model, gguf_file)
        self.model = model_obj if model_obj is not None else load_causal_lm(model, dtype=dtype, gguf_file=gguf_file,
                                                                                            merge_adapter=True)
        self.model.eval()
        self.last_generated_tokens: int | None = None
        config = self.model.config
        self._context = context_window or int(getattr(config, "max_position_embeddings", 2048) or 2048)

    def info(self) -> ModelInfo:
        """Describe the loaded model (parameters, base model, adapter, context window)."""
        adapter = None
        base = getattr(self.model.config, "_name_or_path", None)
        if hasattr(self.model, "peft_config"):
            adapter = self.model_name
        return ModelInfo(backend=self.name, model=self.model_name,
                         parameters=sum(p.numel() for p in self.model.parameters()),
                         base_model=str(base) if base else None, adapter=adapter, context_window=self._context,
                         extra={"prompt_style": self.style, "dtype": str(self.model.dtype),
                                "device": str(self.model.device)})

    def render(self, messages: list[Message]) -> str:
        """Render the conversation with the model's chat template (or the run's literal style)."""
        from medtune.prompts import render_messages

        return render_messages(messages, self.style, self.tokenizer, generation_prompt=True)

    def _inputs(self, messages: list[Message]) -> Any:
        """Tokenize the rendered prompt (special tokens come from the template, none added) on the model's device."""
        encoded = self.tokenizer(self.render(messages), return_tensors="pt", add_special_tokens=False)
        return encoded.to(self.model.device)

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The token ids of the rendered prompt, as :meth:`stream_chat` feeds them to the model."""
        return [int(i) for i in self._inputs(messages)["input_ids"][0]]

    def stream_chat(self, messages: list[Message], settings: GenerationSettings) -> Iterator[str]:
        """Generate in a thread and yield text as TextIteratorStreamer produces it (beams: one piece)."""
        import torch
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        prompt_length = int(inputs["input_ids"].shape[1])
        kwargs = generate_kwargs(settings, self.tokenizer, prompt_length)
        self.last_generated_tokens = None
        if settings.num_beams > 1:  # streamers do not support beam search
            with torch.inference_mode():
                output = self.model.generate(**inputs, **kwargs)
            self.last_generated_tokens = int(output.shape[1]) - prompt_length
            text = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            yield from cut_at_stop([text], settings.stop)
            return
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    output = self.model.generate(**inputs, **kwargs, streamer=streamer)
                self.last_generated_tokens = int(output.shape[1]) - prompt_length
            except BaseException as error:  # surfaced in the caller's thread
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from cut_at_stop((piece for piece in streamer if piece), settings.stop)
        thread.join()
        if errors:
            raise errors[0]

    def chat(self, messages: list[Message], settings: GenerationSettings) -> str:
        """Return the whole answer."""
        return "".join(self.stream_chat(messages, settings))

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens of the rendered conversation including the assistant header."""
        return int(self._inputs(messages)["input_ids"].shape[1])

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a plain text."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def served_prompt_ids(backend: TransformersBackend, questions: list[str]) -> list[list[int]]:
    """The token ids ``medtune ask`` feeds ``backend`` for each question (no history): the Assistant's messages
    with the served system prompt (:func:`medtune.prompts.served_system_prompt`), rendered by the backend."""
    from medtune.guard import Guard
    from medtune.guard.config import default_guard_config
    from medtune.inference.assistant import Assistant
    from medtune.prompts import served_system_prompt

    guard = Guard(default_guard_config().model_copy(update={"classifier": False}))  # no classifier: not used
    assistant = Assistant(backend, guard, system_prompt=served_system_prompt(backend.model_name))
    return [backend.prompt_ids(assistant.build_messages(question, [])) for question in questions]
