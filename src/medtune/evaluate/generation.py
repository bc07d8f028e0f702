"""Batched answer generation for free-text tasks: left padding, the model's chat template, the eval decoding settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medtune.config import EvalConfig
from medtune.inference.base import repetition_penalty_kwargs
from medtune.prompts import build_messages, end_of_turn_token, render_messages, strip_control_strings


@dataclass
class Generation:
    """One generated answer: text, new tokens, whether it hit the token limit without ending, seconds (batch share)."""

    text: str
    new_tokens: int
    hit_limit: bool
    seconds: float


def build_prompt(question: str, tokenizer: Any, *, chat_template: bool = True, style: str = "chat-template",
                 system_prompt: str | None = None) -> str:
    """Render a question for generation: the prompt style (chat template by default) or plain ``Question/Answer``."""
    question = strip_control_strings(question)
    if chat_template:
        return render_messages(build_messages(question, system_prompt), style, tokenizer, generation_prompt=True)
    return f"Question: {question}\nAnswer:"


def stop_token_ids(tokenizer: Any, style: str = "chat-template") -> list[int]:
    """EOS plus the end-of-turn token of the style (``<|im_end|>`` for ChatML)."""
    ids = {tokenizer.eos_token_id}
    try:
        eot = tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer, style))
        if isinstance(eot, int) and eot != tokenizer.unk_token_id:
            ids.add(eot)
    except Exception:  # noqa: BLE001 - templates without a clean end-of-turn token keep EOS only
        pass
    return sorted(i for i in ids if i is not None)


def generation_kwargs(settings: EvalConfig, tokenizer: Any, stop_ids: list[int]) -> dict[str, Any]:
    """Translate the eval decoding settings into ``model.generate`` keyword arguments (the repetition penalty is
    added per batch by :func:`generate_answers`, since its ``answer`` scope needs the batch's prompt width)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens, "num_beams": settings.num_beams,
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": stop_ids, "do_sample": settings.temperature > 0,
    }
    if settings.temperature > 0:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    return kwargs


def generate_answers(model: Any, tokenizer: Any, prompts: list[str], settings: EvalConfig, *,
                     stop_ids: list[int] | None = None, on_batch: Callable[[int], None] | None = None) -> list[Generation]:
    """Generate answers for ``prompts`` in batches of ``settings.batch_size`` (left padded, order kept).

    Prompts are sorted by length to limit padding; ``on_batch(n)`` is called after each batch (progress bars).
    """
    import torch

    stop_ids = stop_ids or stop_token_ids(tokenizer)
    kwargs = generation_kwargs(settings, tokenizer, stop_ids)
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    results: list[Generation | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    for start in range(0, len(order), settings.batch_size):
        chunk = order[start:start + settings.batch_size]
        batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {k: v.to(device) for k, v in batch.items()}
        penalty = repetition_penalty_kwargs(settings.repetition_penalty, settings.repetition_scope,
                                            int(batch["input_ids"].shape[1]))
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**batch, **kwargs, **penalty)
        seconds = (time.perf_counter() - began) / len(chunk)
        new = output[:, batch["input_ids"].shape[1]:]
        for row, index in enumerate(chunk):
            tokens = new[row].tolist()
            ended = [n for n, t in enumerate(tokens) if t in stop_ids]
            length = ended[0] + 1 if ended else len([t for t in tokens if t != tokenizer.pad_token_id])
            text = tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
            results[index] = Generation(text=text, new_tokens=length, hit_limit=not ended, seconds=seconds)
        if on_batch is not None:
            on_batch(len(chunk))
    return [r for r in results if r is not None]
