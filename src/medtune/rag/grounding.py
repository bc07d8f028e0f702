"""Grounded prompts with numbered sources, the citation list after an answer, and citation checking."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Cosine similarity (MiniLM) of the best passage under which retrieval counts as "nothing relevant found".
# Measured on MedQuAD: on-topic questions score 0.5-0.8, off-topic ones (sports, cooking) under 0.2.
NO_EVIDENCE_THRESHOLD = 0.35
_LOOK_ELSEWHERE = "Please check a trusted source such as MedlinePlus or ask a clinician."
NO_EVIDENCE = ("Sources: none — no passage in the medical index matched this question, so the answer above is "
               f"not backed by a source. {_LOOK_ELSEWHERE}")
# The answer grounded fine-tuning teaches when no passage holds the answer (medtune.data.grounded), and what
# says_not_covered recognises in generated answers.
NOT_COVERED = f"The sources do not cover this question, so I cannot answer it from them. {_LOOK_ELSEWHERE}"
# A cited passage supports a sentence when at least this share of the sentence's content words occur in it
# (support_score). Calibrated on the 28 hand-labelled (sentence, passage, supported?) pairs of
# tests/data/citation_support.jsonl (15 supported: verbatim and paraphrased; 13 not: same-topic claims the passage
# does not make, contradictions, true sentences citing the wrong passage): the accuracy-maximising cut lies between
# 0.600 (the highest-scoring unsupported sentence) and 0.615 (the lowest supported one above it); 0.61 labels 27 of
# 28 right (0.964; leave-one-out 0.929). All-word overlap (stopwords kept) reached 0.964 / 0.857 leave-one-out,
# MiniLM cosine of sentence and whole passage 0.679 / 0.393, so the metric uses content-word overlap.
SUPPORT_THRESHOLD = 0.61
GROUNDING_INSTRUCTIONS = ("Answer the question using only the numbered sources below. Cite every statement "
                          "with the number of its source in square brackets, like [1] or [2]. Do not cite a "
                          "number that is not listed. If the sources do not answer the question, say so.")
NO_EVIDENCE_INSTRUCTIONS = ("No relevant source was found for this question. Say that you could not find a source "
                            "for it, give at most general, cautious guidance, and do not cite any source.")
DEFAULT_SYSTEM_PROMPT = "You are a careful medical information assistant. You do not replace a clinician."
_CITATION = re.compile(r"\[(\s*\d+(?:\s*[,;–-]\s*\d+)*\s*)\]")
_LEADING_CITATIONS = re.compile(r"^(?:\s*\[(\s*\d+(?:\s*[,;–-]\s*\d+)*\s*)\])+")
_SENTENCE_PIECES = re.compile(r"((?<=[.!?])\s+|\n+)")  # the boundaries of evaluate.hallucination.split_sentences
_TRAILING = re.compile(r"(?:[.!?;:]+[\"'”’]*)?\s*$")  # final punctuation, then closing quotes
_NOT_COVERED = re.compile(
    r"\b(?:sources?|passages?|documents?|references?|information)\b[^.?!]{0,40}?\b(?:do(?:es)?|did|cannot|can't)"
    r"(?:n[o']t| not)?\s*(?:not\s+)?(?:cover|answer|address|mention|contain|include|say|discuss)"
    r"|\b(?:could|can)(?:not|n't| not) find (?:a|any) (?:relevant )?(?:source|information|passage)"
    r"|\bno (?:relevant )?(?:source|passage)s? (?:was |were )?(?:found|cover|covers|answer|answers|mention)"
    r"|\bnot (?:covered|answered|addressed|mentioned) (?:by|in) the (?:sources?|passages?)", re.IGNORECASE)


def _get(passage: Any, key: str, default: Any = "") -> Any:
    """Read a field of a Passage or of a dict."""
    return passage.get(key, default) if isinstance(passage, dict) else getattr(passage, key, default)


def has_evidence(passages: Sequence[Any], threshold: float = NO_EVIDENCE_THRESHOLD) -> bool:
    """True when the best passage scores at least ``threshold``."""
    return any(float(_get(p, "score", 0.0)) >= threshold for p in passages)


def abstains(passages: Sequence[Any], min_score: float | None) -> bool:
    """Sources-only mode: True when ``min_score`` is set and no passage reaches it; the answer is then
    :data:`NOT_COVERED`, without a model call (``--rag-min-score``, chosen by ``medtune index calibrate``)."""
    return min_score is not None and not has_evidence(passages, min_score)


PASSAGE_HEADERS = ("question", "topic")  # data.grounded.passage_header: the line above each numbered passage


def passage_heading(passage: Any, header: str = "question") -> str:
    """The line above a numbered passage in a grounded prompt: its title ("Focus — question", ``header="question"``)
    or only its focus area (``header="topic"``; the source name when it has none)."""
    if header == "topic":
        return str(_get(passage, "focus_area") or _get(passage, "source") or "source")
    if header not in PASSAGE_HEADERS:
        raise ValueError(f"passage header {header!r}: use one of {', '.join(PASSAGE_HEADERS)} "
                         "(data.grounded.passage_header).")
    return str(_get(passage, "title"))


def build_grounded_messages(question: str, passages: Sequence[Any], system_prompt: str | None = None,
                            threshold: float = NO_EVIDENCE_THRESHOLD, max_chars: int = 1200,
                            header: str = "question") -> list[dict[str, str]]:
    """System + user messages that put the passages in the prompt as numbered sources [1]..[n], each under
    :func:`passage_heading` (``header``: what the run was trained with, ``data.grounded.passage_header``).

    When no passage reaches ``threshold`` the model is told that nothing relevant was found instead.
    """
    system = system_prompt or DEFAULT_SYSTEM_PROMPT
    if not has_evidence(passages, threshold):
        return [{"role": "system", "content": f"{system}\n\n{NO_EVIDENCE_INSTRUCTIONS}"},
                {"role": "user", "content": question}]
    blocks = []
    for number, passage in enumerate(passages, 1):
        text = str(_get(passage, "text"))
        text = text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " …"
        blocks.append(f"[{number}] {passage_heading(passage, header)}\n{text}")
    user = "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": f"{system}\n\n{GROUNDING_INSTRUCTIONS}"}, {"role": "user", "content": user}]


def format_citations(passages: Sequence[Any], threshold: float = NO_EVIDENCE_THRESHOLD) -> str:
    """The list printed after an answer: ``Sources:`` then ``[n] title — url`` (or :data:`NO_EVIDENCE`)."""
    if not has_evidence(passages, threshold):
        return NO_EVIDENCE
    lines = ["Sources:"]
    for number, passage in enumerate(passages, 1):
        url = _get(passage, "url")
        lines.append(f"[{number}] {_get(passage, 'title')}" + (f" — {url}" if url else ""))
    return "\n".join(lines)


@dataclass
class CitationCheck:
    """What an answer cites: valid numbers map to passages, invalid ones point at nothing."""

    cited: list[int] = field(default_factory=list)
    valid: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    passages: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the answer cites something and every citation exists."""
        return bool(self.cited) and not self.invalid


def _numbers(group: str) -> list[int]:
    """Numbers of one bracket: "1", "1, 2", "1-3"."""
    numbers: list[int] = []
    for part in re.split(r"[,;]", group):
        bounds = [int(x) for x in re.split(r"[–-]", part) if x.strip()]
        if len(bounds) == 2 and 0 < bounds[1] - bounds[0] < 20:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return numbers


def check_citations(answer: str, passages: Sequence[Any]) -> CitationCheck:
    """Find ``[n]`` citations in ``answer``; flag those that point at no retrieved passage."""
    cited: list[int] = []
    for match in _CITATION.finditer(answer):
        for number in _numbers(match.group(1)):
            if number not in cited:
                cited.append(number)
    valid = [n for n in cited if 1 <= n <= len(passages)]
    return CitationCheck(cited=cited, valid=valid, invalid=[n for n in cited if n not in valid],
                         passages=[passages[n - 1] for n in valid])


def citation_warning(check: CitationCheck) -> str | None:
    """One line for the reader when an answer's citations cannot be trusted; ``None`` when every cited number exists.

    Flags numbers that point at no listed source (the model invented a source) and answers that cite nothing.
    """
    if check.invalid:
        numbers = ", ".join(f"[{n}]" for n in check.invalid)
        return (f"Citation check: {numbers} is not one of the sources listed below; treat the statement citing it "
                "as unsupported.")
    if not check.cited:
        return "Citation check: the answer cites none of the sources listed below; compare it with them before relying on it."
    return None


def says_not_covered(answer: str) -> bool:
    """True when an answer states that the sources do not cover the question (:data:`NOT_COVERED` and the usual
    wordings: "the sources do not mention ...", "I could not find a source ...", "no relevant source was found")."""
    return bool(_NOT_COVERED.search(answer))


def _content_words(text: str) -> set[str]:
    """Lower-cased words without BM25's English stopwords, a plural ``s`` dropped (``genes`` = ``gene``)."""
    from bm25s.stopwords import STOPWORDS_EN

    from medtune.evaluate.metrics import words

    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in words(text) if w not in STOPWORDS_EN}


def support_score(sentence: str, passage_text: str) -> float:
    """Share of the content words of ``sentence`` (citations removed) that occur in ``passage_text`` (0 when none)."""
    own = _content_words(_CITATION.sub(" ", sentence))
    return len(own & _content_words(passage_text)) / len(own) if own else 0.0


class _CitedUnit(NamedTuple):
    """One sentence of an answer: its text without citations, the numbers it cites and where their brackets are."""

    text: str
    numbers: list[int]
    spans: list[tuple[int, int]]  # (start, end) in the answer of every ``[n]`` group that belongs to the sentence


def _cited_units(answer: str) -> list[_CitedUnit]:
    """The sentences of ``answer`` (the pieces of :func:`medtune.evaluate.hallucination.split_sentences`) with
    their citations; a citation that opens a sentence belongs to the sentence before it."""
    from medtune.evaluate.metrics import words

    units: list[_CitedUnit] = []
    boundaries = list(_SENTENCE_PIECES.finditer(answer))
    starts = [0] + [m.end() for m in boundaries]
    ends = [m.start() for m in boundaries] + [len(answer)]
    for start, end in zip(starts, ends, strict=True):
        sentence = answer[start:end]
        if not sentence or not words(sentence):
            continue
        leading = _LEADING_CITATIONS.match(sentence)
        if leading and units:
            previous = units[-1]
            previous.numbers.extend(n for n in _cited_numbers(leading.group(0)) if n not in previous.numbers)
            previous.spans.extend((start + m.start(), start + m.end()) for m in _CITATION.finditer(leading.group(0)))
            start, sentence = start + leading.end(), sentence[leading.end():]
        text = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(_CITATION.sub(" ", sentence).split()))
        units.append(_CitedUnit(text, _cited_numbers(sentence),
                                [(start + m.start(), start + m.end()) for m in _CITATION.finditer(sentence)]))
    return [unit for unit in units if unit.text.strip(" .!?")]


def cited_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """Each sentence of ``answer`` with its citations removed, and the numbers it cites (in order, no repeats).

    A citation that opens a sentence ("... hemoglobin. [1] It ...") belongs to the sentence before it.
    """
    return [(unit.text, unit.numbers) for unit in _cited_units(answer)]


def _cited_numbers(text: str) -> list[int]:
    """The numbers of every ``[n]`` group in ``text``, in order, without repeats."""
    cited: list[int] = []
    for match in _CITATION.finditer(text):
        cited.extend(n for n in _numbers(match.group(1)) if n not in cited)
    return cited


class CitedPair(NamedTuple):
    """One cited (sentence, passage number) pair of an answer and how well that passage supports the sentence."""

    sentence: str
    number: int
    support: float  # support_score; 0 when the number is not a listed passage
    supported: bool


def citation_support(answer: str, passages: Sequence[Any], threshold: float = SUPPORT_THRESHOLD) -> list[CitedPair]:
    """Every cited (sentence, number) pair of ``answer`` and whether that passage supports the sentence
    (:func:`support_score` >= ``threshold``); a number that is not a listed passage supports nothing."""
    pairs = []
    for text, numbers in cited_sentences(answer):
        for number in numbers:
            listed = 1 <= number <= len(passages)
            score = support_score(text, str(_get(passages[number - 1], "text"))) if listed else 0.0
            pairs.append(CitedPair(text, number, round(score, 4), listed and score >= threshold))
    return pairs


def cite_sentences(text: str, choose: Callable[[str], int | None]) -> tuple[str, int, int]:
    """Append ``[n]`` to each statement of ``text`` (before its final punctuation) where ``choose(sentence)`` gives a
    number; questions and sentences without a word are left as they are. Returns the text, the statements and
    how many of them were cited."""
    pieces = _SENTENCE_PIECES.split(text)
    statements = cited = 0
    for index in range(0, len(pieces), 2):
        sentence = pieces[index]
        if not re.search(r"\w", sentence) or sentence.rstrip().endswith("?"):
            continue
        statements += 1
        number = choose(sentence)
        if number is None:
            continue
        cited += 1
        tail = _TRAILING.search(sentence)
        cut = tail.start() if tail else len(sentence)  # always a match (it may be empty)
        pieces[index] = f"{sentence[:cut].rstrip()} [{number}]{sentence[cut:]}"
    return "".join(pieces), statements, cited


class Reattribution(NamedTuple):
    """An answer after :func:`reattribute_citations` and each citation it renumbered."""

    text: str
    moved: list[tuple[str, int, int]]  # (sentence, number the model cited, number now cited)


def reattribute_citations(answer: str, passages: Sequence[Any],
                          threshold: float = SUPPORT_THRESHOLD) -> Reattribution:
    """Serve-time citation repair: a citation whose passage does not support its sentence (:func:`support_score`
    under ``threshold``, or a number that is not listed) is renumbered to the shown passage that supports the
    sentence best, when that one reaches ``threshold``; a citation no shown passage supports is left as the model
    wrote it. Only the numbers inside brackets change (a repeat within one sentence is dropped), never the words.

    This uses the citation-precision metric's own support test, so an evaluation reports the model's precision and
    the repaired precision apart (``citation_precision`` and ``citation_precision_reattributed``).
    """
    texts = [str(_get(p, "text")) for p in passages]
    edits: list[tuple[int, int, str]] = []
    moved: list[tuple[str, int, int]] = []
    for unit in _cited_units(answer):
        if not unit.numbers or not texts:
            continue
        scores = [support_score(unit.text, text) for text in texts]
        best = max(range(len(texts)), key=lambda i: scores[i]) + 1
        if scores[best - 1] < threshold:  # no shown passage states the sentence: leave its citations
            continue
        mapping = {n: best for n in unit.numbers if not (1 <= n <= len(texts) and scores[n - 1] >= threshold)}
        if not mapping:
            continue
        moved.extend((unit.text, old, new) for old, new in mapping.items() if old != new)
        seen: list[int] = []
        for start, end in unit.spans:
            group = _CITATION.match(answer, start, end)
            numbers = [mapping.get(n, n) for n in _numbers(group.group(1))] if group else []
            fresh = [n for n in dict.fromkeys(numbers) if n not in seen]
            seen.extend(fresh)
            if fresh:
                edits.append((start, end, "[" + ", ".join(map(str, fresh)) + "]"))
            else:  # the whole bracket now repeats a number already cited: drop it with the space before it
                while start > 0 and answer[start - 1] in " \t":
                    start -= 1
                edits.append((start, end, ""))
    text = answer
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return Reattribution(text, moved)


def reattribution_note(moved: Sequence[tuple[str, int, int]]) -> str | None:
    """One line for the reader naming the citation numbers :func:`reattribute_citations` changed (None: none)."""
    if not moved:
        return None
    changes = ", ".join(dict.fromkeys(f"[{old}] -> [{new}]" for _, old, new in moved))
    return (f"Citation check: {len(moved)} citation(s) pointed at a source that does not state the sentence and "
            f"now point at the listed source that does ({changes}).")
