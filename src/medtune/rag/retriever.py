"""Hybrid retrieval over a built index: BM25 + dense (Qdrant) fused by reciprocal rank.

Ranking uses the fused RRF score; the :attr:`Passage.score` reported to grounding is the cosine similarity of
the question and the passage (0..1, from the MiniLM encoder), an absolute relevance measure that makes the
no-evidence threshold meaningful across questions (RRF scores only say how the lists agreed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from medtune.errors import UserError
from medtune.rag import dense
from medtune.rag.bm25 import BM25Index
from medtune.rag.builder import index_dir, read_manifest
from medtune.rag.hybrid import reciprocal_rank_fusion
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


class Retriever:
    """Retrieve passages from ``MEDTUNE_HOME/indexes/<name>``."""

    def __init__(self, name: str, qdrant_url: str | None = None, mode: Mode = "hybrid",
                 candidates: int = 50, bm25_weight: float = 1.0) -> None:
        """Load the manifest, chunks and BM25 index, and open the vector store of index ``name``.

        ``bm25_weight`` weighs the BM25 list against the dense list (1.0) in the fusion.
        """
        manifest = read_manifest(name)
        if manifest is None:
            raise UserError(f"index {name!r} not found in {index_dir(name).parent}; build it with "
                            f"`medtune index build medquad:medquad/MedQuAD_xml.tar.gz --name {name}`.")
        if mode not in MODES:
            raise UserError(f"retrieval mode {mode!r}: use one of {', '.join(MODES)}.")
        folder = index_dir(name)
        self.name, self.manifest, self.mode, self.candidates = name, manifest, mode, candidates
        self.bm25_weight = bm25_weight
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

    def rank(self, question: str, k: int, mode: Mode | None = None,
             vector: Any = None) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """Ranked ``(chunk_id, ranking score)`` (top ``k``) and the cosines known from the dense search."""
        mode = mode or self.mode
        depth = max(self.candidates, k)
        lexical: list[str] = []
        cosines: dict[str, float] = {}
        if mode in ("hybrid", "bm25"):
            hits = self.bm25.search(question, depth)
            if mode == "bm25":
                return [(self.chunks[i]["id"], s) for i, s in hits[:k]], cosines
            lexical = [self.chunks[i]["id"] for i, _ in hits]
        vector = self._query_vector(question) if vector is None else vector
        semantic = self.store.search(vector, depth)
        cosines = dict(semantic)
        if mode == "dense":
            return semantic[:k], cosines
        fused = reciprocal_rank_fusion([lexical, [c for c, _ in semantic]], weights=[self.bm25_weight, 1.0])
        return fused[:k], cosines

    def retrieve(self, question: str, k: int = 4, mode: Mode | None = None) -> list[Passage]:
        """Top ``k`` passages for ``question``, best first, each scored by cosine similarity to it."""
        if not question.strip() or k <= 0:
            return []
        vector = self._query_vector(question)
        ranked, cosines = self.rank(question, k, mode, vector=vector)
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
