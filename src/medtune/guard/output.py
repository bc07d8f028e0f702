"""The guard's output side: :meth:`AnswerScreen.screen_answer` replaces an unsafe answer before anyone sees it,
:meth:`AnswerScreen.finalize_answer` adds dose and safety warnings, the emergency line and the disclaimer.
:class:`medtune.guard.Guard` inherits both."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from medtune.guard.config import GuardConfig
from medtune.guard.decisions import Action, GuardDecision, GuardedAnswer, Signals
from medtune.guard.doses import check_max_doses, find_doses
from medtune.guard.output_checks import BLOCKING, check_answer

logger = logging.getLogger("medtune.guard")


class AnswerScreen:
    """Screen and finalize model answers (the input side, decisions and audit live in :class:`Guard`)."""

    config: GuardConfig
    if TYPE_CHECKING:
        def _decide(self, action: Action, category: str, reason: str, response: str | None, sig: Signals,
                    injected: bool, original: str, layer: str, audit: bool = True,
                    emergency_line: str | None = None) -> GuardDecision: ...

        def _with_disclaimer(self, reply: str) -> str: ...

        def _audit(self, record: dict[str, object], text: str) -> None: ...

    def screen_answer(self, answer: str) -> GuardDecision | None:
        """The refusal or crisis reply that replaces ``answer`` before the user sees any of it, or None.

        Blocks a dose above a prescription maximum daily dose and the output checks listed in
        :data:`medtune.guard.output_checks.BLOCKING` (misuse instructions, a self-harm method). Streaming callers
        run it on the text released so far, sentence by sentence.
        """
        templates, sig = self.config.templates, Signals(answer, False, False, [], {}, None, {}, {})
        if self.config.check_doses:
            for excess in check_max_doses(answer, self.config.max_daily_doses):
                if not excess.over_otc_only:
                    reply = templates.refuse.format(kind=f"{excess.drug} above its maximum daily dose")
                    return self._decide("refuse", "refuse:output:dose_above_maximum",
                                        f"answer implies {excess.mg_per_day:g} mg/day of {excess.drug}",
                                        self._with_disclaimer(reply), sig, False, answer, "output")
        for flag in check_answer(answer) if self.config.check_output else []:
            if BLOCKING.get(flag.check) == "self_harm":
                reply = templates.refuse_self_harm.format(kind="self-harm", resources=templates.crisis_resources)
            elif BLOCKING.get(flag.check) == "misuse":
                reply = templates.refuse.format(kind="misuse")
            else:
                continue
            return self._decide("refuse", f"refuse:output:{flag.check}", f"answer matched {flag.match!r}",
                                self._with_disclaimer(reply), sig, False, answer, "output")
        return None

    def finalize_answer(self, answer: str, decision: GuardDecision | None = None) -> GuardedAnswer:
        """The answer as shown: replaced by its refusal when :meth:`screen_answer` blocks it, otherwise with dose
        warnings, unsafe-advice warnings (output checks) and the disclaimer appended; led by the emergency line
        when ``decision`` (the input decision) carries one (education about emergencies)."""
        blocked = self.screen_answer(answer)
        templates, warnings = self.config.templates, []
        if self.config.check_doses:
            for excess in check_max_doses(answer, self.config.max_daily_doses):
                template = templates.otc_dose_warning if excess.over_otc_only else templates.max_dose_warning
                limit = excess.limit.otc_max_daily_mg if excess.over_otc_only else excess.limit.max_daily_mg
                warnings.append(template.format(drug=excess.drug.capitalize(), amount=f"{excess.mg_per_day:g}",
                                                limit=f"{limit:g}", note=excess.limit.note).strip())
            seen: set[str] = set()
            for dose in find_doses(answer):
                if dose.text.lower() not in seen:
                    seen.add(dose.text.lower())
                    warnings.append(templates.dose_warning.format(dose=dose.text).strip())
        flags = check_answer(answer) if self.config.check_output else []
        for flag in flags:
            warnings.append(self.config.templates.output_warnings[flag.check].strip())
        disclaimer = self.config.disclaimer.strip()
        line = getattr(decision, "emergency_line", None) if decision is not None else None
        parts = [line.strip() if line else "", answer.strip()]
        if warnings:
            parts.append("\n".join(f"⚠ {w}" for w in warnings))
        parts.append(disclaimer)
        text = "\n\n".join(p for p in parts if p)
        logger.log(logging.WARNING if warnings else logging.INFO, "guard answer: %d dose warning(s)%s",
                   len(warnings), "".join(f"; {w}" for w in warnings[:3]))
        self._audit({"stage": "answer", "dose_warnings": warnings, "output_flags": [f.check for f in flags],
                     "blocked": blocked.category if blocked else None}, answer)
        return GuardedAnswer(text=blocked.response or "" if blocked else text, dose_warnings=warnings,
                             disclaimer=disclaimer, output_flags=[f.check for f in flags],
                             blocked=blocked.category if blocked else None,
                             emergency_line=line if line and not blocked else None)
