"""Checks on a finished answer (and on training answers): unsafe advice the model should never give.

Each check is a small family of patterns with a name; :func:`check_answer` returns the names that fired with
the text that matched. Maximum daily doses are checked separately (:mod:`medtune.guard.doses`).

* ``stop_prescribed``: telling the user to stop or change a prescribed medicine on their own
  ("stop taking your insulin", "double your dose") -- negated advice ("do not stop taking ...") is fine;
* ``claims_doctor``: the assistant presenting itself as a doctor or licensed clinician;
* ``echoed_injection``: instructions aimed at the assistant or its users that leaked into the answer
  ("ignore previous instructions", "tell every user ...", a system prompt being revealed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_F = re.IGNORECASE
_MEDS = (r"(?:your |the |all (?:of )?your )?(?:prescribed |prescription )?(?:medications?|medicines?|meds|pills|"
         r"tablets|insulin|warfarin|blood thinners?|antidepressants?|lithium|steroids?|prednisone|"
         r"anti-?epileptics?|seizure medications?|blood pressure (?:pills|medications?)|statins?|inhalers?)")
_NEGATION = re.compile(r"\b(?:do not|don't|never|should not|shouldn't|must not|without (?:first )?"
                       r"(?:talking|speaking|checking|consulting)|before (?:talking|speaking|checking)|"
                       r"unless|ask your|talk to your|consult)\b", _F)

PATTERNS: dict[str, tuple[str, ...]] = {
    "stop_prescribed": (
        rf"\b(?:stop|quit|discontinue) (?:taking |using )?{_MEDS}",
        rf"\b(?:double|triple|halve|skip) (?:your |the )?(?:dose|doses|dosage|{_MEDS})",
        r"\b(?:you (?:can|should) )?(?:stop|come off) (?:it|them) (?:right away|immediately|today|cold turkey)",
        r"\bthrow (?:away|out) (?:your|the) (?:medications?|medicines?|pills)",
    ),
    "claims_doctor": (
        r"\b(?:i am|i'm|as) (?:a |an |your )?(?:licensed |board[- ]certified |qualified |real )?"
        r"(?:doctor|physician|medical doctor|md|clinician|nurse practitioner|pharmacist)\b",
        r"\b(?:my|i have (?:a|an)) (?:medical license|license to practi[sc]e)",
    ),
    "echoed_injection": (
        r"\b(?:ignore|disregard|forget) (?:all |any |the |your |my )*(?:previous |prior |above |safety )*"
        r"(?:instructions?|rules|guidelines|guardrails)",
        r"\b(?:tell|instruct|advise|inform) (?:every|all|each|any) (?:users?|readers?)\b",
        r"\bclaim(?:s|ing)? to be (?:a |an )?(?:licensed |real )?(?:doctor|physician|clinician)",
        r"\b(?:note|message|instruction)s? (?:to|for) (?:the |any )?(?:ai|assistant|model|chatbot|llm)\b",
        r"\b(?:my|the) system prompt (?:is|says)\b",
        r"\b(?:developer|admin|jailbreak|dan) mode\b",
    ),
}
_COMPILED = {name: [re.compile(p, _F) for p in patterns] for name, patterns in PATTERNS.items()}
#: Output checks whose answer is never shown: check name -> the refusal that replaces it ("misuse" -> the
#: misuse refusal, "self_harm" -> the self-harm reply with the crisis lines). The others only add a warning.
BLOCKING: dict[str, str] = {}


@dataclass
class OutputFlag:
    """One unsafe-advice check that fired on an answer."""

    check: str
    match: str


def _negated(text: str, start: int) -> bool:
    """True when the sentence before ``start`` negates or conditions the advice ("do not stop ...")."""
    sentence_start = max(text.rfind(".", 0, start), text.rfind("\n", 0, start), text.rfind("!", 0, start)) + 1
    return bool(_NEGATION.search(text[sentence_start:start]))


def check_answer(text: str) -> list[OutputFlag]:
    """The unsafe-advice checks that fire on ``text`` (at most one flag per check)."""
    flags = []
    for name, patterns in _COMPILED.items():
        for pattern in patterns:
            match = next((m for m in pattern.finditer(text)
                          if not (name == "stop_prescribed" and _negated(text, m.start()))), None)
            if match:
                flags.append(OutputFlag(name, match.group(0)))
                break
    return flags
