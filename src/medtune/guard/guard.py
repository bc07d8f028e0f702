"""The :class:`Guard`: check a user's input before any model call, finalize the model's answer after it.

``check_input`` order: strip chat control strings -> remove injection phrases -> emergency red flags
(answered at once with a referral) -> misuse/self-harm/harm-others dosing (refuse) -> personal diagnosis
(defer) -> answer. ``finalize_answer`` flags every dose expression, checks the maximum daily dose table and
appends the disclaimer. Every decision is logged (logger ``medtune.guard``, optional JSONL audit file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from medtune.guard import rules
from medtune.guard.config import GuardConfig, default_guard_config, load_guard_config
from medtune.guard.doses import check_max_doses, find_doses

logger = logging.getLogger("medtune.guard")

Action = Literal["answer", "emergency", "refuse", "defer"]


@dataclass
class GuardDecision:
    """Result of :meth:`Guard.check_input`."""

    action: Action
    category: str             # "ok", "emergency:<kind>", "refuse:<kind>", "defer:<kind>", "injection"
    reason: str
    response: str | None      # the canned reply for emergency/refuse/defer (None for answer)
    sanitized_input: str      # control strings and injection phrases removed
    injection_detected: bool


@dataclass
class GuardedAnswer:
    """Result of :meth:`Guard.finalize_answer`."""

    text: str                 # answer + dose warning(s) + disclaimer
    dose_warnings: list[str] = field(default_factory=list)
    disclaimer: str = ""


class Guard:
    """Medical guardrails: emergency referral, refusal/deferral templates, injection removal, dose checks."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        """Use ``config`` (default: the shipped ``default.yaml``)."""
        self.config = config or default_guard_config()
        self.system_prompt: str = self.config.system_prompt
        self._injection = rules.injection_regex(self.config.extra_injection_phrases)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Guard:
        """Build a guard from a YAML file whose keys override the defaults (unknown keys: UserError)."""
        return cls(load_guard_config(path))

    # ----------------------------------------------------------------------------------------------- input
    def check_input(self, user_text: str) -> GuardDecision:
        """Decide what to do with a user's message before any model call."""
        cfg, templates = self.config, self.config.templates
        text, control = rules.remove_chat_turns(user_text)
        phrases: list[str] = []
        if cfg.check_injection:
            text, phrases = rules.remove_injection(text, self._injection)
        injected = bool(phrases or control)
        notes = []
        if control:
            notes.append("removed: " + ", ".join(control))
        if phrases:
            notes.append("injection phrases removed: " + "; ".join(repr(p) for p in phrases[:5]))
        suffix = f" ({'; '.join(notes)})" if notes else ""

        if injected and not text:
            return self._decide("refuse", "injection", "only injection phrases, nothing left to answer" + suffix,
                                self._with_disclaimer(templates.injection_empty), text, True, user_text)
        if cfg.check_emergency and (hit := rules.find_emergency(text)):
            kind_line = templates.emergency_kinds.get(hit.kind, "")
            reply = templates.emergency.format(kind_line=kind_line, kind=hit.kind.replace("_", " "))
            return self._decide("emergency", f"emergency:{hit.kind}", f"red flag {hit.match!r}{suffix}",
                                self._with_disclaimer(reply), text, injected, user_text)
        if cfg.check_refusal and (hit := rules.find_refusal(text)):
            label = {"self_harm": "self-harm", "harm_others": "harming someone", "lethal_dose": "a lethal dose",
                     "misuse": "misuse"}[hit.kind]
            if hit.kind in ("self_harm", "lethal_dose"):
                reply = templates.refuse_self_harm.format(kind=label, resources=templates.crisis_resources)
            else:
                reply = templates.refuse.format(kind=label)
            return self._decide("refuse", f"refuse:{hit.kind}", f"misuse wording {hit.match!r}{suffix}",
                                self._with_disclaimer(reply), text, injected, user_text)
        if cfg.check_diagnosis and (hit := rules.find_diagnosis_request(text)):
            return self._decide("defer", f"defer:{hit.kind}", f"personal diagnosis request {hit.match!r}{suffix}",
                                self._with_disclaimer(templates.defer), text, injected, user_text)
        if injected:
            return self._decide("answer", "injection", "answering the sanitized input" + suffix, None, text, True,
                                user_text)
        return self._decide("answer", "ok", "no rule fired" + suffix, None, text, False, user_text)

    def _with_disclaimer(self, reply: str) -> str:
        """A canned reply followed by the disclaimer."""
        return f"{reply.strip()}\n\n{self.config.disclaimer.strip()}"

    def _decide(self, action: Action, category: str, reason: str, response: str | None, sanitized: str,
                injected: bool, original: str) -> GuardDecision:
        """Build, log and audit one decision."""
        decision = GuardDecision(action=action, category=category, reason=reason, response=response,
                                 sanitized_input=sanitized, injection_detected=injected)
        level = logging.INFO if action == "answer" and not injected else logging.WARNING
        logger.log(level, "guard input: action=%s category=%s reason=%s", action, category, reason)
        record = {k: v for k, v in asdict(decision).items() if k not in ("response", "sanitized_input")}
        self._audit({"stage": "input", **record}, original)
        return decision

    def _audit(self, record: dict[str, object], text: str) -> None:
        """Append one JSON line to the audit file, when configured."""
        if not self.config.audit_log:
            return
        entry: dict[str, object] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record,
                                    "text_sha256": hashlib.sha256(text.encode()).hexdigest(), "text_chars": len(text)}
        if self.config.audit_include_text:
            entry["text"] = text
        path = Path(self.config.audit_log).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    # ---------------------------------------------------------------------------------------------- output
    def finalize_answer(self, answer: str) -> GuardedAnswer:
        """Append dose warnings (each dose; any maximum daily dose exceeded) and the disclaimer to ``answer``."""
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
        disclaimer = self.config.disclaimer.strip()
        parts = [answer.strip()]
        if warnings:
            parts.append("\n".join(f"⚠ {w}" for w in warnings))
        parts.append(disclaimer)
        text = "\n\n".join(p for p in parts if p)
        logger.log(logging.WARNING if warnings else logging.INFO, "guard answer: %d dose warning(s)%s",
                   len(warnings), "".join(f"; {w}" for w in warnings[:3]))
        self._audit({"stage": "answer", "dose_warnings": warnings}, answer)
        return GuardedAnswer(text=text, dose_warnings=warnings, disclaimer=disclaimer)
