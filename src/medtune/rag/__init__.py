"""Retrieval-augmented answers with citations: index MedQuAD-style QA sources, retrieve, ground, cite.

Entry points: :func:`open_retriever` (used by ask/chat/eval/ui), :func:`medtune.rag.builder.build_index`,
:mod:`medtune.rag.grounding`. Heavy libraries (bm25s, qdrant-client, sentence-transformers) load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtune.rag.retriever import Passage, Retriever

__all__ = ["Passage", "Retriever", "open_retriever"]


def open_retriever(name: str = "medquad", qdrant_url: str | None = None, **options: Any) -> Retriever:
    """Open the index ``MEDTUNE_HOME/indexes/<name>`` built by ``medtune index build`` as a hybrid retriever."""
    from medtune.rag.retriever import Retriever

    return Retriever.open(name, qdrant_url=qdrant_url, **options)


def __getattr__(attr: str) -> Any:
    """Lazy access to :class:`Passage` and :class:`Retriever`."""
    if attr in ("Passage", "Retriever"):
        from medtune.rag import retriever

        return getattr(retriever, attr)
    raise AttributeError(attr)
