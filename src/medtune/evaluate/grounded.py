"""Retrieval-augmented evaluation (``medtune eval --rag NAME``): grounded prompts and citation/leak signals.

Each free-text question is answered from the top-k passages of a :class:`~medtune.rag.retriever.Retriever`, with
the same grounded prompt as ``medtune ask --rag`` (:func:`medtune.rag.grounding.build_grounded_messages`). Per
example it records whether evidence was found, whether the answer cites a retrieved source, whether it cites a
number that was never retrieved, and whether the reference answer itself sits in the index (a leak that makes
the scores meaningless: build the index with ``--exclude-prepared-test``).

Citations are checked past "the number exists": ``citation_precision`` is the share of an answer's cited
(sentence, passage) pairs whose passage supports the sentence (:func:`medtune.rag.grounding.support_score`, the
share of the sentence's content words found in the passage, at least
:data:`~medtune.rag.grounding.SUPPORT_THRESHOLD` = 0.61). The threshold was calibrated on 28 hand-labelled
(sentence, passage, supported?) pairs, ``tests/data/citation_support.jsonl`` (:func:`calibrate_threshold`): 27 of 28
right (0.964), 0.929 leave-one-out; embedding cosine of sentence and whole passage (MiniLM) separated them worse
(0.679). A citation of a number that was not retrieved supports nothing; an answer that cites nothing scores 0, so
the mean is never above ``cites_source``. ``says_not_covered`` marks answers stating that the sources do not cover
the question (:func:`medtune.rag.grounding.says_not_covered`): the wanted answer when the question's own passage is
not in the index.

``citation_precision_reattributed`` is the same precision for the answer a user is served: after
:func:`medtune.rag.grounding.reattribute_citations` renumbers each citation whose passage does not support its
sentence to the shown passage that does. It uses the metric's own support test, so it is reported beside the model's
``citation_precision``, never instead of it; ``citation_reattributed`` is the share of answers it changed. Its moves
were checked by hand on 30 seeded validation moves (``tests/data/citation_reattribution.jsonl``: 30 of 30 land on a
passage that states the sentence).
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


def own_documents(meta: dict[str, Any]) -> set[str]:
    """Index document ids a test example belongs to: its MedQuAD document (``original_id`` ``FOLDER/DOC-PAIR`` ->
    ``FOLDER/DOC``, the ids ``medtune index build`` gives MedQuAD chunks) and, for an index built from a prepared
    folder, its split group."""
    from medtune.data.sources.medquad import document_of

    documents = set()
    if meta.get("original_id") and "-" in str(meta["original_id"]):
        documents.add(document_of(str(meta["original_id"])))
    if meta.get("group"):
        documents.add(str(meta["group"]).removeprefix("medquad:"))
    return documents


def grounded_prompts(questions: list[str], retriever: Any, tokenizer: Any, *, style: str = "chat-template",
                     system_prompt: str | None = None, chat_template: bool = True, k: int = 4,
                     exclude_documents: list[set[str]] | None = None, header: str = "question") -> GroundedBatch:
    """Retrieve ``k`` passages per question and render the grounded prompt the assistant uses
    (``exclude_documents[i]``: document ids never retrieved for question i; ``header``: the run's passage header,
    :func:`medtune.prompts.served_passage_header`)."""
    from medtune.rag.grounding import build_grounded_messages

    prompts, retrieved = [], []
    for number, question in enumerate(questions):
        question = strip_control_strings(question)
        hidden = exclude_documents[number] if exclude_documents else set()
        passages = retriever.retrieve(question, k, exclude_documents=hidden)
        messages = build_grounded_messages(question, passages, system_prompt, header=header)
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


def grounding_scores(answers: list[str], references: list[str] | None,
                     passages: list[list[Any]]) -> dict[str, list[float]]:
    """Per-example signals: evidence_found, cites_source, invalid_citation, reference_in_index (only with
    ``references``; rubric tasks have none), says_not_covered, citation_reattributed (0/1), citation_precision and
    citation_precision_reattributed (0..1, 0 when nothing is cited) and the top passage score."""
    from medtune.rag.grounding import check_citations, has_evidence, reattribute_citations, says_not_covered

    per: dict[str, list[float]] = {"evidence_found": [], "cites_source": [], "invalid_citation": [],
                                   "citation_precision": [], "citation_precision_reattributed": [],
                                   "citation_reattributed": [], "says_not_covered": [], "reference_in_index": [],
                                   "top_passage_score": []}
    if references is None:
        del per["reference_in_index"]
    paired: list[str | None] = list(references) if references else [None] * len(answers)
    for answer, reference, found in zip(answers, paired, passages, strict=True):
        check = check_citations(answer, found)
        served = reattribute_citations(answer, found)
        per["evidence_found"].append(float(has_evidence(found)))
        per["cites_source"].append(float(bool(check.valid)))
        per["invalid_citation"].append(float(bool(check.invalid)))
        per["citation_precision"].append(citation_precision(answer, found))
        per["citation_precision_reattributed"].append(citation_precision(served.text, found))
        per["citation_reattributed"].append(float(bool(served.moved)))
        per["says_not_covered"].append(float(says_not_covered(answer)))
        if reference is not None:
            per["reference_in_index"].append(float(reference_leaked(reference, found)))
        per["top_passage_score"].append(max((float(p.score) for p in found), default=0.0))
    return per


def citation_precision(answer: str, passages: list[Any]) -> float:
    """Share of the answer's cited (sentence, passage) pairs whose passage supports the sentence (0 citing nothing)."""
    from medtune.rag.grounding import citation_support

    pairs = citation_support(answer, passages)
    return sum(pair.supported for pair in pairs) / len(pairs) if pairs else 0.0


def add_citation_audits(samples: list[dict[str, Any]], answers: list[str], passages: list[list[Any]]) -> None:
    """Add each sample's :func:`citation_audit` to it in place (the results.json samples of a ``--rag`` task)."""
    for sample, answer, found in zip(samples, answers, passages, strict=True):
        sample.update(citation_audit(answer, found))


def citation_audit(answer: str, passages: list[Any]) -> dict[str, Any]:
    """What a reader needs to check one grounded answer by hand: the ids of the passages it was shown (numbered from
    1 in this order), every cited sentence with its passage number, support score and verdict, and the citations
    the serve-time repair renumbers (``reattributed``: sentence, cited number, served number)."""
    from medtune.rag.grounding import citation_support, reattribute_citations

    return {"passages": [str(getattr(p, "id", "")) for p in passages],
            "citations": [pair._asdict() for pair in citation_support(answer, passages)],
            "reattributed": [{"sentence": sentence, "cited": old, "served": new}
                             for sentence, old, new in reattribute_citations(answer, passages).moved]}


def calibrate_threshold(scores: list[float], labels: list[bool]) -> tuple[float, float]:
    """The cut on ``scores`` that labels ``labels`` best (``score >= cut`` = supported) and its accuracy.

    Candidates are midpoints between neighbouring distinct scores (ties: the lowest); used to choose
    :data:`medtune.rag.grounding.SUPPORT_THRESHOLD` from ``tests/data/citation_support.jsonl``.
    """
    if not scores or len(scores) != len(labels):
        raise ValueError("calibrate_threshold needs as many labels as scores (at least one)")
    values = sorted(set(scores))
    cuts = [values[0]] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + [values[-1] + 1e-9]
    best = max(cuts, key=lambda cut: (sum((s >= cut) == y for s, y in zip(scores, labels, strict=True)), -cut))
    return best, sum((s >= best) == y for s, y in zip(scores, labels, strict=True)) / len(labels)
