"""A hallucination *proxy* against one reference answer: ``reference_unsupported_rate``.

For each sentence of an answer we look for its best match among the reference's sentences, by embedding cosine
when an embedder is given, else by token overlap (share of the answer sentence's words found in the reference
sentence). A sentence whose best match is under the threshold counts as unsupported. The rate is the share of
unsupported sentences in the answer; an answer with no sentence at all counts as fully unsupported (1.0), so an
empty reply can never score best. It flags content the reference does not back; it is not a fact checker (a correct
statement absent from the reference also counts), hence the name.
"""

from __future__ import annotations

import re
from typing import Any

from medtune.evaluate.metrics import words

EMBEDDING_THRESHOLD = 0.5
OVERLAP_THRESHOLD = 0.5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (on . ! ? followed by space, and on newlines); drop ones without a word."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and words(s)]


def overlap_support(sentence: str, reference_sentence: str) -> float:
    """Share of the (unique) words of ``sentence`` that occur in ``reference_sentence``."""
    own = set(words(sentence))
    return len(own & set(words(reference_sentence))) / len(own) if own else 0.0


def reference_unsupported_rate(answer: str, reference: str, embedder: Any = None,
                               threshold: float | None = None) -> float:
    """Share of answer sentences whose best match in the reference is under ``threshold`` (1.0 for no sentences)."""
    return reference_unsupported_rates([answer], [reference], embedder, threshold)[0]


def reference_unsupported_rates(answers: list[str], references: list[str], embedder: Any = None,
                                threshold: float | None = None) -> list[float]:
    """Batched :func:`reference_unsupported_rate` (one embedding call for all sentences)."""
    answer_sents = [split_sentences(a) for a in answers]
    ref_sents = [split_sentences(r) or [r] for r in references]
    if embedder is None:
        limit = OVERLAP_THRESHOLD if threshold is None else threshold
        best = [[max(overlap_support(s, r) for r in refs) for s in sents]
                for sents, refs in zip(answer_sents, ref_sents, strict=True)]
    else:
        limit = EMBEDDING_THRESHOLD if threshold is None else threshold
        flat_a = [s for sents in answer_sents for s in sents]
        flat_r = [s for refs in ref_sents for s in refs]
        if not flat_a:
            return [1.0 for _ in answers]
        emb_a = embedder.encode(flat_a, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        emb_r = embedder.encode(flat_r, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        best, ia, ir = [], 0, 0
        for sents, refs in zip(answer_sents, ref_sents, strict=True):
            block = emb_a[ia:ia + len(sents)] @ emb_r[ir:ir + len(refs)].T
            best.append([float(x) for x in block.max(dim=1).values] if len(sents) else [])
            ia, ir = ia + len(sents), ir + len(refs)
    return [sum(b < limit for b in row) / len(row) if row else 1.0 for row in best]
