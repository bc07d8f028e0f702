"""Shared options of `medtune ask` and `medtune chat`: build the backend, guard and Assistant."""

from __future__ import annotations

from typing import Any


def build_assistant(model: str, backend: str, url: str | None, temperature: float, max_new_tokens: int,
                    top_p: float, top_k: int, repetition_penalty: float, num_beams: int, stop: list[str],
                    no_guard: bool, guard_config: str | None, rag: str | None = None,
                    rag_min_score: float | None = None, repair_citations: bool = True) -> Any:
    """Load the backend, the guard and (with ``rag``, an index name) a retriever; return an Assistant
    (``rag_min_score``: sources-only mode; ``repair_citations``: see :class:`~medtune.inference.assistant.Assistant`)."""
    from medtune.errors import UserError

    if rag_min_score is not None and not rag:
        raise UserError("--rag-min-score needs --rag NAME (the index whose passage scores it thresholds).")
    from medtune.inference.assistant import Assistant, load_backend
    from medtune.inference.base import GenerationSettings

    options: dict[str, Any] = {"url": url} if backend in ("ollama", "openai") else {}
    model_name = None if backend == "openai" and model == "default" else model
    if backend in ("transformers", "llamacpp") and model == "default":
        model_name = "smollm2-135m-instruct"
    guard = None
    if not no_guard:
        from medtune.guard import Guard

        guard = Guard.from_yaml(guard_config) if guard_config else Guard()
    settings = GenerationSettings(temperature=temperature, top_p=top_p, top_k=top_k, num_beams=num_beams,
                                  repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
                                  stop=list(stop))
    retriever = None
    if rag:
        from medtune.rag import open_retriever

        retriever = open_retriever(name=rag)
    from medtune.prompts import served_passage_header, served_system_prompt

    system_prompt = served_system_prompt(model_name) if guard is not None else None
    return Assistant(load_backend(backend, model_name, **options), guard, settings, retriever=retriever,
                     system_prompt=system_prompt, rag_min_score=rag_min_score,
                     repair_citations=repair_citations, passage_header=served_passage_header(model_name))


def after_stream(reply: Any) -> str:
    """What to print once the streamed tokens are on screen: the rest of the reply (citation notes, sources,
    disclaimer), or the whole reply again when it changed what was streamed (guard rewrite, repaired citations).
    A canned or blocked reply (no model answer) was streamed whole: nothing follows it."""
    if not reply.raw_answer:
        return ""
    streamed = (reply.streamed or reply.raw_answer).strip()
    if reply.text.startswith(streamed):
        return reply.text[len(streamed):]
    return "\n\n" + reply.text if reply.raw_answer else reply.text


def timing_line(reply: Any) -> str:
    """One dim line with the response time, time to first token and tokens/s."""
    parts = [f"{reply.seconds:.2f} s"]
    if reply.first_token_seconds is not None:
        parts.append(f"first token {reply.first_token_seconds:.2f} s")
    if reply.tokens:
        parts.append(f"{reply.tokens} tokens, {reply.tokens / max(reply.seconds, 1e-9):.1f} tok/s")
    if reply.decision.action != "answer":
        parts.append(f"guard: {reply.decision.category}")
    return " · ".join(parts)
