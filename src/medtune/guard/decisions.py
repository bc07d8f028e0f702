"""What the guard decides: :class:`GuardDecision` for a message, :class:`GuardedAnswer` for an answer, and the
findings of its layers on one message (:class:`Signals`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medtune.guard import rules

Action = Literal["answer", "emergency", "refuse", "defer"]


@dataclass
class GuardDecision:
    """Result of :meth:`Guard.check_input`."""

    action: Action
    category: str             # "ok", "emergency:<kind>", "refuse:<kind>", "defer:<kind>", "injection",
    #                           "defer:language:<ISO 639-1 code>" (a message the checks cannot read)
    reason: str
    response: str | None      # the canned reply for emergency/refuse/defer (None for answer)
    sanitized_input: str      # normalised; control strings and injection phrases removed
    injection_detected: bool
    layer: str = "policy"     # sanitizer | classifier | rules | conversation | language | moderator:<name> | policy
    scores: dict[str, float] = field(default_factory=dict)   # classifier probabilities (risk classes: max)
    emergency_line: str | None = None   # answers about emergencies: shown before the answer ("answer:emergency_line")


@dataclass
class GuardedAnswer:
    """Result of :meth:`Guard.finalize_answer`."""

    text: str                 # answer + dose/safety warning(s) + disclaimer
    dose_warnings: list[str] = field(default_factory=list)
    disclaimer: str = ""
    output_flags: list[str] = field(default_factory=list)   # unsafe-advice checks that fired (names)
    blocked: str | None = None   # the category when the answer was replaced by a refusal (screen_answer)
    emergency_line: str | None = None   # the line put before the answer (education about emergencies)


@dataclass
class Signals:
    """What the layers found in one message."""

    text: str
    injected: bool            # by the sanitizer or the classifier
    sanitized_away: bool      # the sanitizer removed control strings or injection phrases
    notes: list[str]
    flagged: dict[str, str]   # intent class -> the learned layer that flagged it (classifier, moderator:<name>)
    kind: str | None
    scores: dict[str, float]
    rule_hits: dict[str, rules.RuleHit]
