"""Row cleaning: text normalisation, control-string sanitising, empty/length filters, de-duplication and the
one-question-several-answers policy. Every dropped row is returned with its ``reason``; nothing is lost silently.

Reasons: injection_control_strings, injection_content, empty_question, empty_answer, question_too_short,
question_too_long, answer_too_short, answer_too_long, duplicate_exact, duplicate_normalized, multi_answer.
Injection screening (``injection_policy: reject``, the default) drops rows whose raw text carries chat control
strings or whose text holds instructions aimed at an AI or claims of being a doctor (a poisoned answer is
never trained on); ``sanitize`` keeps them with control strings removed and counts them.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medtune.config import DataConfig
from medtune.errors import UserError
from medtune.prompts import has_control_strings, strip_control_strings

_BLOCK_TAGS = "p|br|div|li|ul|ol|tr|table|h[1-6]|hr|blockquote|pre|dd|dt|dl"
_INLINE_TAGS = "a|b|i|u|em|strong|span|font|sup|sub|img|td|th|tbody|thead|code|small|big|center|abbr|cite"
_BLOCK_RE = re.compile(rf"</?(?:{_BLOCK_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_INLINE_RE = re.compile(rf"</?(?:{_INLINE_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_ENTITY_RE = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")
_SPACES_RE = re.compile(r"[^\S\n]+")
_NEWLINES_RE = re.compile(r"\n{3,}")


@dataclass
class CleanResult:
    """Kept rows, dropped rows (each with ``reason``) and how many kept/dropped rows cleaning changed."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    modified: Counter[str] = field(default_factory=Counter)


def clean_text(text: str) -> tuple[str, set[str]]:
    """Normalise one text: NFKC, HTML entities/tags, chat control strings, whitespace.

    Returns:
        The cleaned text and the set of changes made (``unicode``, ``html``, ``control_strings``, ``whitespace``).
    """
    changes: set[str] = set()
    value = unicodedata.normalize("NFKC", text)
    if value != text:
        changes.add("unicode")
    if "&" in value and _ENTITY_RE.search(value):
        value = unicodedata.normalize("NFKC", html.unescape(value))
        changes.add("html")
    if "<" in value:
        stripped = _INLINE_RE.sub(" ", _BLOCK_RE.sub("\n", value))
        if stripped != value:
            value = stripped
            changes.add("html")
    if has_control_strings(value):
        value = "\n".join(strip_control_strings(line) for line in value.split("\n"))
        changes.add("control_strings")
    lines = [_SPACES_RE.sub(" ", line).strip() for line in value.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    spaced = _NEWLINES_RE.sub("\n\n", "\n".join(lines)).strip()
    if spaced != value:
        changes.add("whitespace")
    return spaced, changes


def normalized_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form of a text (for duplicate detection and grouping)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch if not unicodedata.category(ch).startswith(("P", "S")) else " " for ch in folded)
    return " ".join(kept.split())


def injection_reason(question: str, answer: str) -> str | None:
    """Why a row looks like an injection or a poisoned example, or None (raw texts, before cleaning)."""
    from medtune.guard.output_checks import check_answer
    from medtune.guard.rules import INJECTION_RE

    if has_control_strings(question) or has_control_strings(answer):
        return "injection_control_strings"
    if INJECTION_RE.search(question) or INJECTION_RE.search(answer):
        return "injection_content"
    if any(flag.check == "echoed_injection" for flag in check_answer(answer)):
        return "injection_content"
    return None


def _length_reason(row: dict[str, Any], cfg: DataConfig) -> str | None:
    """The length filter's reason to drop ``row``, or None."""
    if not row["question"]:
        return "empty_question"
    if not row["answer"]:
        return "empty_answer"
    q, a = len(row["question"]), len(row["answer"])
    if q < cfg.min_question_chars:
        return "question_too_short"
    if q > cfg.max_question_chars:
        return "question_too_long"
    if a < cfg.min_answer_chars:
        return "answer_too_short"
    if a > cfg.max_answer_chars:
        return "answer_too_long"
    return None


def _type_reason(row: dict[str, Any], wanted: set[str] | None, seen: set[str]) -> str | None:
    """``question_type_not_selected`` when ``wanted`` is set and the row's type is not in it (rows with no type
    pass); every type met goes into ``seen``."""
    kind = str(row.get("question_type") or "").strip().lower()
    if kind:
        seen.add(kind)
    if wanted is None or not kind or kind in wanted:
        return None
    return "question_type_not_selected"


def _reject(result: CleanResult, row: dict[str, Any], reason: str, **extra: Any) -> None:
    """Record a dropped row."""
    result.rejected.append({**row, "reason": reason, **extra})


def apply_multi_answer_policy(rows: list[dict[str, Any]], policy: str, result: CleanResult) -> list[dict[str, Any]]:
    """Resolve questions (normalised) with several different answers: keep ``first``, ``longest`` or ``keep_all``."""
    if policy == "keep_all":
        return rows
    by_question: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_question.setdefault(row["_qkey"], []).append(index)
    keep: set[int] = set()
    for indices in by_question.values():
        if policy == "longest":
            keep.add(max(indices, key=lambda i: (len(rows[i]["answer"]), -i)))
        else:
            keep.add(indices[0])
    kept = []
    for index, row in enumerate(rows):
        if index in keep:
            kept.append(row)
        else:
            _reject(result, row, "multi_answer", detail=f"policy {policy}")
    return kept


def clean_rows(rows: list[dict[str, Any]], cfg: DataConfig, progress: bool = True) -> CleanResult:
    """Clean, filter and de-duplicate ``rows`` (input order decides which duplicate is kept)."""
    from tqdm import tqdm

    result = CleanResult()
    wanted_types = {t.strip().lower() for t in cfg.question_types} if cfg.question_types else None
    seen_types: set[str] = set()
    seen_exact: set[tuple[str, str]] = set()
    seen_norm: set[tuple[str, str]] = set()
    survivors: list[dict[str, Any]] = []
    for raw in tqdm(rows, desc="cleaning", unit=" rows", disable=None if progress else True, leave=False):
        row = dict(raw)
        injection = injection_reason(str(row.get("question") or ""), str(row.get("answer") or ""))
        if injection and cfg.injection_policy == "reject":
            _reject(result, row, injection)
            continue
        if injection:
            result.modified["sanitized_injection"] += 1
        changed: set[str] = set()
        for name in ("question", "answer", "focus_area", "question_type"):
            row[name], changes = clean_text(row.get(name) or "")
            if name in ("question", "answer"):
                changed |= changes
        for change in changed:
            result.modified[change] += 1
        reason = _type_reason(row, wanted_types, seen_types) or _length_reason(row, cfg)
        if reason:
            _reject(result, row, reason)
            continue
        exact = (row["question"], row["answer"])
        if exact in seen_exact:
            _reject(result, row, "duplicate_exact")
            continue
        seen_exact.add(exact)
        row["_qkey"] = normalized_key(row["question"])
        norm = (row["_qkey"], normalized_key(row["answer"]))
        if norm in seen_norm:
            row.pop("_qkey")
            _reject(result, row, "duplicate_normalized")
            continue
        seen_norm.add(norm)
        survivors.append(row)
    if wanted_types is not None and (missing := wanted_types - seen_types):
        raise UserError(f"data.question_types: no row has the type(s) {sorted(missing)}; the types found are "
                        f"{sorted(seen_types) or 'none (these sources carry no question type)'}. Fix the list.")
    result.kept = apply_multi_answer_policy(survivors, cfg.multi_answer_policy, result)
    for row in result.rejected:
        row.pop("_qkey", None)
    return result
