"""Retrieval-augmented evaluation (``medtune eval --rag NAME``): grounded prompts and citation/leak signals.

Each free-text question is answered from the top-k passages of a :class:`~medtune.rag.retriever.Retriever`, with
the same grounded prompt as ``medtune ask --rag`` (:func:`medtune.rag.grounding.build_grounded_messages`). Per
example it records whether evidence was found, whether the answer cites a retrieved source, whether it cites a
number that was never retrieved, and whether the reference answer itself sits in the index (a leak that makes
the scores meaningless: build the index with ``--exclude-prepared-test``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medtune.prompts import render_messages, strip_control_strings


@dataclass
class GroundedBatch:
    """Prompts for generation plus what was retrieved for each question."""

    prompts: list[str]
    passages: list[list[Any]] = field(default_factory=list)


def _normalised(text: str) -> str:
    """Lower-case, whitespace-collapsed text for containment checks."""
    return " ".join(text.lower().split())


def grounded_prompts(questions: list[str], retriever: Any, tokenizer: Any, *, style: str = "chat-template",
                     system_prompt: str | None = None, chat_template: bool = True, k: int = 4) -> GroundedBatch:
    """Retrieve ``k`` passages per question and render the grounded prompt the assistant uses."""
    from medtune.rag.grounding import build_grounded_messages

    prompts, retrieved = [], []
    for question in questions:
        question = strip_control_strings(question)
        passages = retriever.retrieve(question, k)
        messages = build_grounded_messages(question, passages, system_prompt)
        if chat_template:
            prompts.append(render_messages(messages, style, tokenizer, generation_prompt=True))
        else:
            prompts.append("\n\n".join(m["content"] for m in messages) + "\nAnswer:")
        retrieved.append(passages)
    return GroundedBatch(prompts, retrieved)


def reference_leaked(reference: str, passages: list[Any]) -> bool:
    """True when a retrieved passage is a window of the reference answer (the test answer is in the index)."""
    ref = _normalised(reference)
    return any(len(text) >= 40 and (text in ref or ref in text)
               for text in (_normalised(str(getattr(p, "text", ""))) for p in passages))


def grounding_scores(answers: list[str], references: list[str], passages: list[list[Any]]) -> dict[str, list[float]]:
    """Per-example 0/1 signals: evidence_found, cites_source, invalid_citation, reference_in_index; and top score."""
    from medtune.rag.grounding import check_citations, has_evidence

    per: dict[str, list[float]] = {"evidence_found": [], "cites_source": [], "invalid_citation": [],
                                   "reference_in_index": [], "top_passage_score": []}
    for answer, reference, found in zip(answers, references, passages, strict=True):
        check = check_citations(answer, found)
        per["evidence_found"].append(float(has_evidence(found)))
        per["cites_source"].append(float(bool(check.valid)))
        per["invalid_citation"].append(float(bool(check.invalid)))
        per["reference_in_index"].append(float(reference_leaked(reference, found)))
        per["top_passage_score"].append(max((float(p.score) for p in found), default=0.0))
    return per
