"""QA rows -> retrieval chunks that keep their provenance (source organisation, focus area, URL, title)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from medtune.data.cleaning import clean_text, normalized_key

DEFAULT_MAX_WORDS = 160
DEFAULT_OVERLAP = 30


@dataclass
class Chunk:
    """One indexed passage: a window of an answer plus where it came from."""

    id: str            # "<pair_id>#<n>", stable across builds
    document_id: str   # MedQuAD document ("2_GARD_QA/0000004"); the unit recall@k is measured on
    pair_id: str       # question id of the QA pair the answer belongs to
    title: str         # "Focus — question"
    url: str
    source: str        # organisation (GARD, NIDDK, ...) or dataset name
    focus_area: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (Qdrant payload, chunks.jsonl row)."""
        return asdict(self)

    def embedding_text(self) -> str:
        """What the dense encoder sees: the title gives context to a window cut from the middle of an answer."""
        return f"{self.title}\n{self.text}"


def answer_key(answer: str) -> str:
    """sha1 of an answer as ``medtune prepare`` would clean it, case-, punctuation- and whitespace-insensitive.

    A raw source row and its cleaned, prepared copy get the same key (cleaning's NFKC, HTML and whitespace changes
    included), so ``index build --exclude-prepared-test`` and ``prepare --grounded``'s leak check agree.
    """
    return hashlib.sha1(normalized_key(clean_text(answer)[0]).encode()).hexdigest()


def split_words(text: str, max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """Split ``text`` into windows of at most ``max_words`` words overlapping by ``overlap`` words."""
    if overlap >= max_words:
        raise ValueError("overlap must be smaller than max_words")
    words = re.sub(r"\s+", " ", text).strip().split(" ")
    if not words or words == [""]:
        return []
    if len(words) <= max_words:
        return [" ".join(words)]
    step = max_words - overlap
    windows = []
    for start in range(0, len(words), step):
        windows.append(" ".join(words[start:start + max_words]))
        if start + max_words >= len(words):
            break
    return windows


def make_title(focus_area: str, question: str) -> str:
    """The passage title shown in citations: "Focus — question" (just the question without a focus)."""
    question = " ".join(question.split())
    return f"{focus_area} — {question}" if focus_area else question


def chunk_rows(rows: Iterable[dict[str, Any]], max_words: int = DEFAULT_MAX_WORDS,
               overlap: int = DEFAULT_OVERLAP) -> Iterator[Chunk]:
    """Chunk QA rows (keys ``pair_id, document_id, question, answer, source, focus_area, url``)."""
    for row in rows:
        for n, window in enumerate(split_words(row["answer"], max_words, overlap)):
            yield Chunk(id=f"{row['pair_id']}#{n}", document_id=str(row["document_id"]), pair_id=str(row["pair_id"]),
                        title=make_title(row.get("focus_area") or "", row["question"]), url=row.get("url") or "",
                        source=row.get("source") or "", focus_area=row.get("focus_area") or "", text=window)
