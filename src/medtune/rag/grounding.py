"""Grounded prompts with numbered sources, the citation list after an answer, and citation checking."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Cosine similarity (MiniLM) of the best passage under which retrieval counts as "nothing relevant found".
# Measured on MedQuAD: on-topic questions score 0.5-0.8, off-topic ones (sports, cooking) under 0.2.
NO_EVIDENCE_THRESHOLD = 0.35
NO_EVIDENCE = ("Sources: none — no passage in the medical index matched this question, so the answer above is "
               "not backed by a source. Please check a trusted source such as MedlinePlus or ask a clinician.")
GROUNDING_INSTRUCTIONS = ("Answer the question using only the numbered sources below. Cite every statement "
                          "with the number of its source in square brackets, like [1] or [2]. Do not cite a "
                          "number that is not listed. If the sources do not answer the question, say so.")
NO_EVIDENCE_INSTRUCTIONS = ("No relevant source was found for this question. Say that you could not find a source "
                            "for it, give at most general, cautious guidance, and do not cite any source.")
DEFAULT_SYSTEM_PROMPT = "You are a careful medical information assistant. You do not replace a clinician."
_CITATION = re.compile(r"\[(\s*\d+(?:\s*[,;–-]\s*\d+)*\s*)\]")


def _get(passage: Any, key: str, default: Any = "") -> Any:
    """Read a field of a Passage or of a dict."""
    return passage.get(key, default) if isinstance(passage, dict) else getattr(passage, key, default)


def has_evidence(passages: Sequence[Any], threshold: float = NO_EVIDENCE_THRESHOLD) -> bool:
    """True when the best passage scores at least ``threshold``."""
    return any(float(_get(p, "score", 0.0)) >= threshold for p in passages)


def build_grounded_messages(question: str, passages: Sequence[Any], system_prompt: str | None = None,
                            threshold: float = NO_EVIDENCE_THRESHOLD,
                            max_chars: int = 1200) -> list[dict[str, str]]:
    """System + user messages that put the passages in the prompt as numbered sources [1]..[n].

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
        blocks.append(f"[{number}] {_get(passage, 'title')}\n{text}")
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
