"""Cleaning: text normalisation, control-string removal, empty/length filters, duplicates, multi-answer policy.

Every dropped row becomes a :class:`Rejected` with its reason; nothing is lost silently.
"""

from __future__ import annotations

import html
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from medtune.config import DataConfig
from medtune.data.records import QARecord, Rejected
from medtune.prompts import has_control_strings, strip_control_strings

_TAG_RE = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_SPACES_RE = re.compile(r"[ \t\u00a0]+")
_NEWLINES_RE = re.compile(r"\s*\n\s*(?:\n\s*)+")
_PUNCT_TABLE = str.maketrans({c: " " for c in string.punctuation})


def normalize_text(text: str) -> str:
    """NFKC, HTML entities and tags removed, spaces collapsed, at most one blank line in a row."""
    text = unicodedata.normalize("NFKC", html.unescape(text or ""))
    text = _TAG_RE.sub(" ", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = _SPACES_RE.sub(" ", text)
    text = _NEWLINES_RE.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.strip().split("\n"))


def dedupe_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for duplicates and split groups."""
    return " ".join(text.lower().translate(_PUNCT_TABLE).split())


@dataclass
class CleanReport:
    """What cleaning kept and dropped."""

    kept: list[QARecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    control_strings_removed: int = 0

    def counts(self) -> Counter[str]:
        """Rejected rows per reason."""
        return Counter(r.reason for r in self.rejected)


def _length_reason(record: QARecord, cfg: DataConfig) -> str | None:
    """Return why a record fails the length filter, or None."""
    if not record.question:
        return "empty_question"
    if not record.answer:
        return "empty_answer"
    q, a = len(record.question), len(record.answer)
    if q < cfg.min_question_chars:
        return "question_too_short"
    if q > cfg.max_question_chars:
        return "question_too_long"
    if a < cfg.min_answer_chars:
        return "answer_too_short"
    if a > cfg.max_answer_chars:
        return "answer_too_long"
    return None


def _reject(record: QARecord, reason: str) -> Rejected:
    return Rejected(reason, record.origin, record.to_dict())


def clean_records(records: list[QARecord], cfg: DataConfig) -> CleanReport:
    """Normalise, filter, dedupe and apply the multi-answer policy, in that order."""
    report = CleanReport()
    survivors: list[QARecord] = []
    for record in records:
        for name in ("question", "answer"):
            value = normalize_text(getattr(record, name))
            if has_control_strings(value):
                value = strip_control_strings(value)
                report.control_strings_removed += 1
            setattr(record, name, value)
        reason = _length_reason(record, cfg)
        if reason:
            report.rejected.append(_reject(record, reason))
        else:
            survivors.append(record)
    seen_exact: set[tuple[str, str]] = set()
    seen_normal: set[tuple[str, str]] = set()
    unique: list[QARecord] = []
    for record in survivors:
        exact = (record.question, record.answer)
        normal = (dedupe_key(record.question), dedupe_key(record.answer))
        if exact in seen_exact:
            report.rejected.append(_reject(record, "duplicate_exact"))
        elif normal in seen_normal:
            report.rejected.append(_reject(record, "duplicate_normalized"))
        else:
            seen_exact.add(exact)
            seen_normal.add(normal)
            unique.append(record)
    report.kept = _apply_multi_answer_policy(unique, cfg.multi_answer_policy, report)
    return report


def _apply_multi_answer_policy(records: list[QARecord], policy: str, report: CleanReport) -> list[QARecord]:
    """Keep one answer per normalised question (``first`` / ``longest``) or all (``keep_all``)."""
    if policy == "keep_all":
        return records
    by_question: dict[str, list[QARecord]] = {}
    for record in records:
        by_question.setdefault(dedupe_key(record.question), []).append(record)
    kept_ids: set[int] = set()
    for group in by_question.values():
        winner = max(group, key=lambda r: len(r.answer)) if policy == "longest" else group[0]
        kept_ids.add(id(winner))
    kept = []
    for record in records:
        if id(record) in kept_ids:
            kept.append(record)
        else:
            report.rejected.append(_reject(record, "multiple_answers"))
    return kept
