"""Lexical retrieval with bm25s (saved under ``indexes/<name>/bm25``)."""

from __future__ import annotations

from pathlib import Path

STOPWORDS = "en"
# Words that say what kind of answer a question wants, not what it is about. MedQuAD's question templates ("What
# are the symptoms of X?", "How many people are affected by X?") put them in every title, so a BM25 query that
# keeps them ranks other documents' "symptoms" answers above the topic; the dense encoder keeps the intent.
QUESTION_WORDS: tuple[str, ...] = (
    "symptom", "symptoms", "sign", "signs", "cause", "causes", "caused", "treatment", "treatments", "treat",
    "treated", "diagnose", "diagnosed", "diagnosis", "risk", "people", "affected", "many", "genetic", "changes",
    "related", "inherited", "outlook", "research", "clinical", "trials", "done", "prevent", "prevented",
    "complications", "stages", "information", "considerations", "susceptibility", "frequency", "exams", "tests",
    "know", "need", "get", "does", "who", "happen",
)


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

    def search(self, query: str, k: int, extra_stopwords: tuple[str, ...] = ()) -> list[tuple[int, float]]:
        """Top ``k`` documents as ``(position, bm25 score)``, best first; zero-score hits dropped.

        ``extra_stopwords`` are left out of the query (English stopwords always are).
        """
        import bm25s
        from bm25s.stopwords import STOPWORDS_EN

        stopwords: str | list[str] = [*STOPWORDS_EN, *extra_stopwords] if extra_stopwords else STOPWORDS
        tokens = bm25s.tokenize([query], stopwords=stopwords, show_progress=False)
        if extra_stopwords and (not tokens.vocab or not any(tokens.ids[0])):  # nothing but question words
            tokens = bm25s.tokenize([query], stopwords=STOPWORDS, show_progress=False)
        if not tokens.vocab or not any(tokens.ids[0]):
            return []
        n_docs = int(self.model.scores["num_docs"])  # type: ignore[attr-defined]
        docs, scores = self.model.retrieve(tokens, k=min(k, n_docs), show_progress=False)  # type: ignore[attr-defined]
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
