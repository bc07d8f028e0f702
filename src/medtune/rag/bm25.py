"""Lexical retrieval with bm25s (saved under ``indexes/<name>/bm25``)."""

from __future__ import annotations

from pathlib import Path

STOPWORDS = "en"


class BM25Index:
    """A bm25s index whose document order is the order of ``chunks.jsonl``."""

    def __init__(self, model: object) -> None:
        """Wrap a fitted ``bm25s.BM25``."""
        self.model = model

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        """Tokenise (lower-case, English stopwords) and index ``texts``."""
        import bm25s

        model = bm25s.BM25()
        model.index(bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False), show_progress=False)
        return cls(model)

    def save(self, folder: Path) -> None:
        """Save to ``folder``."""
        self.model.save(str(folder), show_progress=False)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        """Load an index saved by :meth:`save`."""
        import bm25s

        return cls(bm25s.BM25.load(str(folder), show_progress=False, verbosity=0))

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top ``k`` documents as ``(position, bm25 score)``, best first; zero-score hits dropped."""
        import bm25s

        tokens = bm25s.tokenize([query], stopwords=STOPWORDS, show_progress=False)
        if not tokens.vocab or not any(tokens.ids[0]):
            return []
        n_docs = int(self.model.scores["num_docs"])  # type: ignore[attr-defined]
        docs, scores = self.model.retrieve(tokens, k=min(k, n_docs), show_progress=False)  # type: ignore[attr-defined]
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
