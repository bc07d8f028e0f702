"""recall@k of retrieval on held-out questions.

Definition: a question is a hit at k when one of the first k retrieved chunks comes from the same MedQuAD
document (document id, e.g. ``2_GARD_QA/0000004``) as the question. The question's own answer is excluded from
the index, so a hit means another answer of the same document (same focus: disease, drug, gene) was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def recall_at_k(retrieved: Sequence[Sequence[str]], gold: Sequence[str], ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of questions whose gold document is among the first k retrieved document ids, for each k."""
    if len(retrieved) != len(gold):
        raise ValueError("one retrieved list per gold id")
    if not gold:
        return {k: 0.0 for k in ks}
    return {k: sum(g in list(r)[:k] for r, g in zip(retrieved, gold, strict=True)) / len(gold) for k in ks}


def evaluate_recall(retriever: Any, questions: Sequence[tuple[str, str]], ks: Sequence[int] = (1, 5, 10),
                    mode: str = "hybrid", progress: bool = False) -> dict[int, float]:
    """recall@k of ``retriever`` (a :class:`~medtune.rag.retriever.Retriever`) on ``(question, document_id)``."""
    from tqdm.auto import tqdm

    depth = max(ks)
    retrieved = []
    for question, _ in tqdm(questions, desc=f"recall {mode}", disable=not progress):
        ranked, _ = retriever.rank(question, depth, mode)
        retrieved.append([retriever.by_id[c]["document_id"] for c, _ in ranked])
    return recall_at_k(retrieved, [g for _, g in questions], ks)
