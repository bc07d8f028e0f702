"""Answering free-text questions as served: system prompt, optional retrieval (sources-only abstention), optional guard.

:func:`answer_questions` is the one path ``medtune eval`` takes from questions to answer texts for both free-text
and rubric tasks; the scoring of those answers stays in :mod:`medtune.evaluate.runner`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from medtune.config import EvalConfig
from medtune.evaluate.tasks import Task


@dataclass
class Answers:
    """Generated (and, with a guard, served) answers of one task, with timing and guard/grounding signals."""

    texts: list[str]
    gens: list[Any]
    seconds: float
    per_example: dict[str, list[float]]
    grounded: Any = None


def answer_questions(task: Task, questions: list[str], model: Any, tokenizer: Any, settings: EvalConfig,
                     context: dict[str, Any], rag: Any, progress: Any,
                     hidden_documents: list[set[str]] | None = None) -> Answers:
    """Generate answers as served: the context's system prompt, optional retrieval (never from
    ``hidden_documents[i]`` for question i), optional guard."""
    from medtune.evaluate.generation import generate_answers, stop_token_ids

    guard = context.get("guard")
    decisions = [guard.check_input(q) for q in questions] if guard is not None else []
    if guard is not None:
        # the served behaviour: the guard's system prompt and sanitized question; canned replies unanswered
        context = {**context, "system_prompt": guard.system_prompt}
        questions = [d.sanitized_input or q for d, q in zip(decisions, questions, strict=True)]
    prompts, abstained, grounded = _prompts(questions, tokenizer, settings, context, rag, hidden_documents)
    to_generate = [prompt for prompt, abstain in zip(prompts, abstained, strict=True) if not abstain]
    bar = progress.add_task(f"{task.name}: generating", total=len(to_generate))
    began = time.perf_counter()
    stop_ids = stop_token_ids(tokenizer, context["style"] if settings.use_chat_template else "chat-template")
    if context.get("vllm") is not None:
        generated = context["vllm"].generate(to_generate, settings, stop_ids) if to_generate else []
        progress.advance(bar, len(to_generate))
    else:
        generated = generate_answers(model, tokenizer, to_generate, settings, stop_ids=stop_ids,
                                     on_batch=lambda n: progress.advance(bar, n)) if to_generate else []
    seconds = time.perf_counter() - began
    gens = with_abstentions(generated, abstained)
    answers = [g.text for g in gens]
    per: dict[str, list[float]] = {"hit_token_limit": [float(g.hit_limit) for g in gens],
                                   "latency_s": [g.seconds for g in gens],
                                   "new_tokens": [float(g.new_tokens) for g in gens]}
    if settings.rag_min_score is not None and rag is not None:
        per["rag_abstained"] = [float(a) for a in abstained]
    if guard is not None:
        served = [guard.finalize_answer(a) if d.action == "answer" else None for a, d in zip(answers, decisions,
                                                                                              strict=True)]
        answers = [s.text if s is not None else (d.response or "") for s, d in zip(served, decisions, strict=True)]
        per["guard_blocked"] = [float(d.action != "answer") for d in decisions]
        # referrals (emergency) and refusals/deferrals are different outcomes: counted apart
        per["guard_referred"] = [float(d.action == "emergency") for d in decisions]
        per["guard_refused"] = [float(d.action in ("refuse", "defer")) for d in decisions]
        per["guard_output_flagged"] = [float(bool(s and s.output_flags)) for s in served]
        per["guard_output_blocked"] = [float(bool(s and s.blocked)) for s in served]
    return Answers(answers, gens, seconds, per, grounded)


def _prompts(questions: list[str], tokenizer: Any, settings: EvalConfig, context: dict[str, Any], rag: Any,
             hidden_documents: list[set[str]] | None) -> tuple[list[str], list[bool], Any]:
    """Rendered prompts, which questions the sources-only mode abstains on (no model call), and the retrieval
    batch (None without ``rag``)."""
    from medtune.evaluate.generation import build_prompt

    if rag is None:
        prompts = [build_prompt(q, tokenizer, chat_template=settings.use_chat_template, style=context["style"],
                                system_prompt=context["system_prompt"]) for q in questions]
        return prompts, [False] * len(prompts), None
    from medtune.evaluate.grounded import grounded_prompts
    from medtune.rag.grounding import abstains

    grounded = grounded_prompts(questions, rag, tokenizer, style=context["style"],
                                system_prompt=context["system_prompt"], chat_template=settings.use_chat_template,
                                k=context.get("rag_k", 4), exclude_documents=hidden_documents,
                                header=context["passage_header"])
    return grounded.prompts, [abstains(p, settings.rag_min_score) for p in grounded.passages], grounded


def with_abstentions(generated: list[Any], abstained: list[bool]) -> list[Any]:
    """Generations in question order: the sources-only reply (no model call) where retrieval abstained."""
    from medtune.evaluate.generation import Generation
    from medtune.rag.grounding import NOT_COVERED

    produced = iter(generated)
    return [Generation(NOT_COVERED, 0, False, 0.0) if abstain else next(produced) for abstain in abstained]


def speed_and_limit_notes(answers: Answers, settings: EvalConfig, metrics: dict[str, float], notes: list[str]
                           ) -> None:
    """Add tokens/s and the token-limit warning (>= 10% of answers cut off) to ``metrics`` and ``notes``."""
    metrics["tokens_per_s"] = sum(g.new_tokens for g in answers.gens) / answers.seconds if answers.seconds else 0.0
    if metrics["hit_token_limit"] >= 0.1:
        notes.append(f"{metrics['hit_token_limit']:.0%} of the answers reached max_new_tokens="
                     f"{settings.max_new_tokens} and were cut off; raise --max-new-tokens so whole answers are scored.")
