"""The guard's learned intent classifier: MiniLM sentence embeddings + word/character n-grams (TF-IDF) feeding
scikit-learn logistic-regression heads.

The embedding carries the meaning of a message in words never seen in training; the n-grams carry the small
words a sentence embedding blurs ("now", "just", "my", "can't wake", "ago") that separate an emergency from a
question about one. Validation figures of each alone and of both are in the model card. One head predicts the intent class of a message (:data:`CLASSES`), a second one the kind of an emergency
(:data:`EMERGENCY_KINDS`). A message is scored whole and sentence by sentence, and each risk class keeps its
highest probability, so a red flag buried in the middle of a long story still counts. Per-class thresholds
come from a validation split (:mod:`medtune.guard.training`) and are stored in the artefact.

The shipped artefact is ``medtune/guard/model/intent.joblib`` with its model card ``CARD.md``/``card.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.errors import UserError

#: Intent classes, in the order the policy gives them precedence (emergency first, benign last).
CLASSES: tuple[str, ...] = ("emergency", "self_harm", "misuse", "defer", "injection", "benign")
#: The policy's decision groups: one threshold each, on the summed probability of their classes (self-harm,
#: misuse and deferral all keep the message from the model; which one it is only picks the reply).
GROUPS: dict[str, tuple[str, ...]] = {"emergency": ("emergency",), "refuse_or_defer": ("self_harm", "misuse", "defer"),
                                      "injection": ("injection",)}
EMERGENCY_KINDS: tuple[str, ...] = (
    "cardiac", "stroke", "breathing_anaphylaxis", "poisoning_overdose", "suicidal", "bleeding_trauma",
    "sepsis_meningitis", "obstetric", "seizure",
)
ARTEFACT = "intent.joblib"
#: Tokens of a message the encoder reads (the n-grams read all of it); 64 keeps a check fast on 2 CPU cores.
SEQ_LENGTH = 64
MAX_SEGMENTS = 8
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class IntentScores:
    """Class probabilities of one message (risk classes: max over the whole text and its sentences)."""

    probs: dict[str, float]
    kind: str | None = None
    kind_prob: float = 0.0
    segments: int = 1
    flagged: list[str] = field(default_factory=list)   # risk classes at or above their threshold


def segments(text: str, max_segments: int = MAX_SEGMENTS) -> list[str]:
    """The whole text, then its sentences (at most ``max_segments`` in all) when there are several."""
    parts = [p.strip() for p in _SENTENCES.split(text) if len(p.strip()) > 3]
    if len(parts) <= 1 or max_segments <= 1:
        return [text]
    return [text, *parts[: max_segments - 1]]


def group_probability(probs: dict[str, float], group: str) -> float:
    """The summed probability of a decision group's classes."""
    return sum(probs.get(name, 0.0) for name in GROUPS[group])


def flagged_classes(probs: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """For each group whose probability reaches its threshold, its most probable class."""
    out = []
    for group, members in GROUPS.items():
        if group_probability(probs, group) >= thresholds.get(group, 1.01):
            out.append(max(members, key=lambda name: probs.get(name, 0.0)))
    return out


def _require_sklearn() -> None:
    """Fail with one clear line when the classifier's dependencies are missing."""
    try:
        import joblib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise UserError("the guard classifier needs scikit-learn and sentence-transformers: "
                        "pip install 'medtune[guard]' (or set `classifier: false` in the guard config).") from None


class IntentClassifier:
    """Embeddings + trained heads + validation-chosen thresholds; :meth:`score` one message."""

    def __init__(self, head: Any, kind_head: Any, thresholds: dict[str, float], encoder: str,
                 card: dict[str, Any] | None = None, vectorizer: Any = None, embedding_weight: float = 1.0,
                 max_segments: int = 1, seq_length: int = SEQ_LENGTH) -> None:
        """Wrap fitted heads (``predict_proba``), the fitted n-gram vectorizer (None: embeddings only), the
        weight of the embedding columns, thresholds per risk class and the encoder name."""
        self.head = head
        self.kind_head = kind_head
        self.vectorizer = vectorizer
        self.embedding_weight = embedding_weight
        self.max_segments = max_segments
        self.seq_length = seq_length
        self.thresholds = dict(thresholds)
        self.encoder = encoder
        self.card = card or {}
        self.classes = [str(c) for c in head.classes_] if head is not None else []
        self._cache: dict[str, IntentScores] = {}

    # ------------------------------------------------------------------------------------------ persistence
    @classmethod
    def load(cls, path: str | Path | None = None) -> IntentClassifier:
        """Load an artefact (default: the one shipped in the package)."""
        _require_sklearn()
        import joblib

        if path is None:
            with resources.as_file(resources.files("medtune.guard").joinpath("model", ARTEFACT)) as file:
                if not file.is_file():
                    raise UserError("the shipped guard classifier is missing; run "
                                    "`medtune guard train` or set `classifier: false` in the guard config.")
                data = joblib.load(file)
        else:
            file = Path(path).expanduser()
            file = file / ARTEFACT if file.is_dir() else file
            if not file.is_file():
                raise UserError(f"{file}: guard classifier not found; build one with `medtune guard train`.")
            data = joblib.load(file)
        return cls(data["head"], data["kind_head"], data["thresholds"], data["encoder"], data.get("card"),
                   data.get("vectorizer"), data.get("embedding_weight", 1.0), data.get("max_segments", 1),
                   data.get("seq_length", SEQ_LENGTH))

    def save(self, folder: str | Path) -> Path:
        """Write the artefact (``intent.joblib``) into ``folder`` and return its path."""
        import joblib

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        file = out / ARTEFACT
        joblib.dump({"head": self.head, "kind_head": self.kind_head, "thresholds": self.thresholds,
                     "encoder": self.encoder, "card": self.card, "vectorizer": self.vectorizer,
                     "embedding_weight": self.embedding_weight, "max_segments": self.max_segments,
                     "seq_length": self.seq_length}, file, compress=3)
        return file

    # ------------------------------------------------------------------------------------------------ scoring
    def embed(self, texts: list[str]) -> Any:
        """L2-normalised sentence embeddings of ``texts``."""
        from medtune.embeddings import embed

        return embed(texts, self.encoder, max_seq_length=self.seq_length)

    def features(self, texts: list[str], embeddings: Any) -> Any:
        """The head's input: n-gram TF-IDF columns (when a vectorizer is fitted) + weighted embedding columns."""
        if self.vectorizer is None:
            return embeddings
        from scipy import sparse

        return sparse.hstack([self.vectorizer.transform(texts),
                              sparse.csr_matrix(embeddings * self.embedding_weight)]).tocsr()

    def score(self, text: str) -> IntentScores:
        """Score one message (cached per text); with ``max_segments`` > 1 risk classes take the max over the
        text and its sentences."""
        cached = self._cache.get(text)
        if cached is None:
            cached = self.score_many([text])[0]
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[text] = cached
        else:
            cached.flagged = flagged_classes(cached.probs, self.thresholds)   # the thresholds may have changed
        return cached

    def score_many(self, texts: list[str]) -> list[IntentScores]:
        """Score several messages with one batched embedding call."""
        return self.score_parts([segments(text or " ", self.max_segments) for text in texts])

    def score_parts(self, parts: list[list[str]], vectors: Any = None) -> list[IntentScores]:
        """Score messages given as their segments (``vectors``: their embeddings, flattened, if known)."""
        spans, start = [], 0
        for segs in parts:
            spans.append((start, start + len(segs)))
            start += len(segs)
        flat = [s for segs in parts for s in segs]
        if vectors is None:
            vectors = self.embed(flat)
        features = self.features(flat, vectors)
        probs = self.head.predict_proba(features)
        kinds = self.kind_head.predict_proba(features) if self.kind_head is not None else None
        results = []
        for start, end in spans:
            block = probs[start:end]
            merged = {name: float(block[:, i].max() if name != "benign" else block[0, i])
                      for i, name in enumerate(self.classes)}
            kind, kind_prob = None, 0.0
            if kinds is not None:
                emergency = self.classes.index("emergency")
                best_row = start + int(block[:, emergency].argmax())
                column = int(kinds[best_row].argmax())
                kind, kind_prob = str(self.kind_head.classes_[column]), float(kinds[best_row, column])
            flagged = flagged_classes(merged, self.thresholds)
            results.append(IntentScores(merged, kind, kind_prob, end - start, flagged))
        return results


@lru_cache(maxsize=4)
def load_classifier(path: str | None = None) -> IntentClassifier:
    """Load (once per process) the classifier at ``path`` or the shipped one."""
    return IntentClassifier.load(path)
