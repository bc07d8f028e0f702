"""Hybrid retrieval over a built index: BM25 + dense (Qdrant) fused by reciprocal rank.

Ranking uses the fused RRF score; the :attr:`Passage.score` reported to grounding is the cosine similarity of
the question and the passage (0..1, from the MiniLM encoder), an absolute relevance measure that makes the
no-evidence threshold meaningful across questions (RRF scores only say how the lists agreed).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from medtune import embeddings as dense
from medtune.errors import UserError
from medtune.rag.bm25 import QUESTION_WORDS, BM25Index
from medtune.rag.builder import index_dir, require_manifest
from medtune.rag.hybrid import RRF_K, reciprocal_rank_fusion
from medtune.rag.store import VectorStore

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[str, ...] = ("hybrid", "bm25", "dense")


@dataclass
class Passage:
    """One retrieved passage, as shown to the model and cited to the user."""

    id: str
    title: str
    url: str
    source: str
    focus_area: str
    text: str
    score: float                 # cosine(question, passage) in [0, 1]
    document_id: str = ""
    rank_score: float = 0.0      # fused (or single-list) ranking score
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON, AssistantReply.citations)."""
        return asdict(self)


@dataclass(frozen=True)
class FusionSettings:
    """How the BM25 and dense lists become one ranking (tuned by ``bench/retrieval.py --tune``).

    ``bm25_weight`` weighs the BM25 list against the dense list (1.0) in reciprocal rank fusion with constant
    ``rrf_k``; ``clean_query`` drops question-type words (symptoms, causes, treatment...) from the BM25 query
    only, so BM25 matches the topic while the dense encoder keeps the intent; ``per_document`` caps how many
    chunks of one document the final list holds (0: no cap), leaving room for other sources.
    """

    bm25_weight: float = 1.0
    rrf_k: int = RRF_K
    clean_query: bool = True
    per_document: int = 2


class Retriever:
    """Retrieve passages from ``MEDTUNE_HOME/indexes/<name>``."""

    def __init__(self, name: str, qdrant_url: str | None = None, mode: Mode = "hybrid",
                 candidates: int = 50, fusion: FusionSettings | None = None) -> None:
        """Load the manifest, chunks and BM25 index, and open the vector store of index ``name``."""
        manifest = require_manifest(name)
        if mode not in MODES:
            raise UserError(f"retrieval mode {mode!r}: use one of {', '.join(MODES)}.")
        folder = index_dir(name)
        self.name, self.manifest, self.mode, self.candidates = name, manifest, mode, candidates
        self.fusion = fusion or FusionSettings()
        self.encoder = manifest["settings"]["encoder"]
        with (folder / "chunks.jsonl").open(encoding="utf-8") as handle:
            self.chunks: list[dict[str, Any]] = [json.loads(line) for line in handle]
        self.by_id = {c["id"]: c for c in self.chunks}
        self.bm25 = BM25Index.load(folder / "bm25")
        url = qdrant_url or manifest["settings"].get("qdrant_url")
        self.store = VectorStore(name, path=None if url else folder / "qdrant", url=url)

    @classmethod
    def open(cls, name: str = "medquad", qdrant_url: str | None = None, **options: Any) -> Retriever:
        """Same as the constructor (the API behind :func:`medtune.rag.open_retriever`)."""
        return cls(name, qdrant_url=qdrant_url, **options)

    def _query_vector(self, question: str) -> Any:
        """Embedding of the question."""
        return dense.embed([question], self.encoder)[0]

    def lexical(self, question: str, depth: int, clean_query: bool | None = None) -> list[tuple[str, float]]:
        """BM25 ranking ``(chunk_id, score)``; with ``clean_query`` question-type words are left out."""
        clean = self.fusion.clean_query if clean_query is None else clean_query
        hits = self.bm25.search(question, depth, extra_stopwords=QUESTION_WORDS if clean else ())
        return [(self.chunks[i]["id"], s) for i, s in hits]

    def semantic(self, vector: Any, depth: int) -> list[tuple[str, float]]:
        """Dense ranking ``(chunk_id, cosine)``."""
        return list(self.store.search(vector, depth))

    def fuse(self, lexical: list[str], semantic: list[str], k: int,
             fusion: FusionSettings | None = None) -> list[tuple[str, float]]:
        """Reciprocal-rank-fuse the two id lists and keep ``k`` (at most ``per_document`` per document)."""
        fusion = fusion or self.fusion
        fused = reciprocal_rank_fusion([lexical, semantic], k=fusion.rrf_k, weights=[fusion.bm25_weight, 1.0])
        return self.cap_per_document(fused, k, fusion.per_document)

    def cap_per_document(self, ranked: list[tuple[str, float]], k: int, per_document: int) -> list[tuple[str, float]]:
        """First ``k`` of ``ranked`` with at most ``per_document`` chunks of any one document (0: no cap)."""
        if per_document <= 0:
            return ranked[:k]
        kept: list[tuple[str, float]] = []
        per_document_kept: Counter[str] = Counter()
        for chunk_id, score in ranked:
            document = self.by_id[chunk_id]["document_id"]
            if per_document_kept[document] < per_document:
                kept.append((chunk_id, score))
                per_document_kept[document] += 1
                if len(kept) == k:
                    break
        return kept

    def rank(self, question: str, k: int, mode: Mode | None = None, vector: Any = None,
             exclude_documents: Collection[str] = ()) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """Ranked ``(chunk_id, ranking score)`` (top ``k``) and the cosines known from the dense search;
        chunks of ``exclude_documents`` (document ids) are left out before ranking."""
        mode = mode or self.mode
        depth = max(self.candidates, k * 4)

        def allowed(hits: list[tuple[str, float]]) -> list[tuple[str, float]]:
            return [h for h in hits if self.by_id[h[0]]["document_id"] not in exclude_documents]

        if mode == "bm25":
            return self.cap_per_document(allowed(self.lexical(question, depth)), k, self.fusion.per_document), {}
        vector = self._query_vector(question) if vector is None else vector
        semantic = allowed(self.semantic(vector, depth))
        cosines = dict(semantic)
        if mode == "dense":
            return self.cap_per_document(semantic, k, self.fusion.per_document), cosines
        lexical = [c for c, _ in allowed(self.lexical(question, depth))]
        return self.fuse(lexical, [c for c, _ in semantic], k), cosines

    def retrieve(self, question: str, k: int = 4, mode: Mode | None = None, vector: Any = None,
                 exclude_documents: Collection[str] = ()) -> list[Passage]:
        """Top ``k`` passages for ``question``, best first, each scored by cosine similarity to it.

        ``vector``: the question's embedding when the caller embedded many questions in one batch.
        ``exclude_documents``: document ids whose chunks are never returned (e.g. the question's own MedQuAD
        document, to test what a model says when the sources do not cover the question).
        """
        if not question.strip() or k <= 0:
            return []
        vector = self._query_vector(question) if vector is None else vector
        ranked, cosines = self.rank(question, k, mode, vector=vector, exclude_documents=exclude_documents)
        return self.passages(ranked, vector, cosines)

    def passages(self, ranked: list[tuple[str, float]], vector: Any,
                 cosines: dict[str, float] | None = None) -> list[Passage]:
        """``Passage`` objects for ranked ``(chunk_id, ranking score)``, scored by cosine with the question
        ``vector`` (``cosines`` known from the dense search are reused; the others come from the stored vectors)."""
        cosines = dict(cosines or {})
        missing = [c for c, _ in ranked if c not in cosines]
        if missing:
            import numpy as np

            for chunk_id, stored in self.store.vectors(missing).items():
                cosines[chunk_id] = float(np.dot(np.asarray(stored), vector))
        passages = []
        for chunk_id, rank_score in ranked:
            chunk = self.by_id[chunk_id]
            passages.append(Passage(id=chunk_id, title=chunk["title"], url=chunk["url"], source=chunk["source"],
                                    focus_area=chunk["focus_area"], text=chunk["text"],
                                    score=max(0.0, min(1.0, cosines.get(chunk_id, 0.0))),
                                    document_id=chunk["document_id"], rank_score=rank_score))
        return passages
