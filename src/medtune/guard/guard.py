"""The :class:`Guard`: check a user's input before any model call, finalize the model's answer after it.

``check_input`` runs layers in order and names the one that decided: normalise (NFKC, whitespace) -> strip
chat control strings and forged turns (``sanitizer``) -> remove injection phrases -> learned intent
classifier (``classifier``, :mod:`medtune.guard.classifier`) -> optional model moderators (``moderator:<name>``)
-> high-precision rules (``rules``) -> policy: emergency referral > injection > refusal (self-harm, misuse) >
deferral (personal diagnosis, self-adjusting a prescription) > answer. A short follow-up after a red flag in
an earlier user turn keeps the referral (``conversation``). ``finalize_answer`` flags every dose expression,
maximum daily doses exceeded and unsafe advice (:mod:`medtune.guard.output_checks`), then appends the
disclaimer. Every decision is logged (logger ``medtune.guard``, optional JSONL audit file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medtune.guard import rules
from medtune.guard.config import GuardConfig, default_guard_config, load_guard_config
from medtune.guard.decisions import Action, GuardDecision, Signals
from medtune.guard.followups import (
    CONTEXT_WORDS,
    FOLLOW_UP_CONTENT_WORDS,
    FOLLOW_UP_CONTEXT_WORDS,
    FOLLOW_UP_WORDS,
    content_words,
    continues,
    follows_on,
    sentence_windows,
)
from medtune.guard.language import LanguageCheck, foreign_emergency, language_name
from medtune.guard.moderators import build_moderators
from medtune.guard.normalise import normalise
from medtune.guard.output import AnswerScreen

logger = logging.getLogger("medtune.guard")
_REFUSE_LABELS = {"self_harm": "self-harm", "harm_others": "harming someone", "lethal_dose": "a lethal dose",
                  "misuse": "misuse"}

#: Refusal categories of self-harm requests (a follow-up to one after a statement of suicidal intent is referred).
SELF_HARM_REFUSALS = frozenset(["refuse:self_harm", "refuse:lethal_dose"])
def _emergency_kind(sig: Signals) -> str:
    """The emergency kind: the rule's (mapped to the policy's kinds) when a rule fired, else the classifier's."""
    hit = sig.rule_hits.get("emergency")
    return rules.RULE_KINDS.get(hit.kind, hit.kind) if hit else (sig.kind or "unspecified")


class Guard(AnswerScreen):
    """Layered medical guardrails: normalise -> strip control strings -> classifier -> rules -> policy."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        """Use ``config`` (default: the shipped ``default.yaml``); loads the intent classifier unless disabled."""
        self.config = config or default_guard_config()
        self.system_prompt: str = self.config.system_prompt
        self._injection = rules.injection_regex(self.config.extra_injection_phrases)
        self.classifier = None
        if self.config.classifier:
            from medtune.guard.classifier import load_classifier

            self.classifier = load_classifier(self.config.classifier_path)
        self.moderators = build_moderators(self.config.moderators)
        self.language = LanguageCheck(self.config.supported_languages) if self.config.check_language else None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Guard:
        """Build a guard from a YAML file whose keys override the defaults (unknown keys: UserError)."""
        return cls(load_guard_config(path))

    # ----------------------------------------------------------------------------------------------- input
    def sanitize(self, text: str) -> str:
        """Normalised text with control strings, forged turns and injection phrases removed (for history)."""
        return self._sanitize(text)[0]

    def _sanitize(self, text: str) -> tuple[str, str, list[str], list[str], list[str]]:
        """(sanitized, control-stripped, removed control items, removed injection phrases, normalisation notes).

        :func:`medtune.guard.normalise.normalise` runs first (NFKC, invisible characters removed, look-alike
        letters folded, embedded base64/hex decoded), so every later layer reads what the user actually wrote.
        """
        from medtune.data.cleaning import clean_text

        normalised = normalise(text)
        stripped, control = rules.remove_chat_turns(normalised.text)
        stripped = clean_text(stripped)[0]
        phrases: list[str] = []
        sanitized = stripped
        if self.config.check_injection:
            sanitized, phrases = rules.remove_injection(stripped, self._injection)
        return sanitized, stripped, control, phrases, normalised.notes

    def _signals(self, user_text: str) -> Signals:
        """Run every layer on one message."""
        cfg = self.config
        sanitized, stripped, control, phrases, normalised = self._sanitize(user_text)
        notes = list(normalised)
        if control:
            notes.append("removed: " + ", ".join(control))
        if phrases:
            notes.append("injection phrases removed: " + "; ".join(repr(p) for p in phrases[:5]))
        flagged: dict[str, str] = {}
        scores: dict[str, float] = {}
        kind = None
        if self.classifier is not None and sanitized:
            windows = sentence_windows(sanitized)
            clean = self.classifier.score(sanitized.casefold()) if not windows else \
                self.classifier.score_parts([[sanitized.casefold(), *(w.casefold() for w in windows)]])[0]
            if windows:
                notes.append(f"read whole and in {len(windows)} sentence windows")
            scores, kind = dict(clean.probs), clean.kind
            # one embedding per check: the sanitized text (when the sanitizer removed something, the message is
            # an injection already; otherwise it differs from the raw text only in case)
            flagged = {name: "classifier" for name in clean.flagged if cfg.check_injection or name != "injection"}
            if "injection" in flagged:
                notes.append(f"classifier: injection p={scores['injection']:.2f}")
        for moderator in self.moderators:
            for name in moderator.flags(sanitized or stripped):
                flagged[name] = f"moderator:{moderator.name}"
                notes.append(f"moderator {moderator.name}: {name}")
        hits = rules.rule_hits(sanitized, cfg.check_emergency, cfg.check_refusal, cfg.check_diagnosis) \
            if sanitized else {}
        sanitized_away = bool(control or phrases)
        injected = sanitized_away or "injection" in flagged
        return Signals(sanitized, injected, sanitized_away, notes, flagged, kind, scores, hits)

    def check_input(self, user_text: str, history: list[dict[str, str]] | None = None, *,
                    audit: bool = True) -> GuardDecision:
        """Decide what to do with a user's message (and the earlier user turns of ``history``).

        A short follow-up is classified together with the earlier user turns it continues, so "go on" after
        "What is hypertension?" is answered and "step by step please" after a misuse request is refused.
        ``audit=False`` re-checks an earlier turn without logging it again.
        """
        cfg, templates = self.config, self.config.templates
        sig = self._signals(user_text)
        unanswered = self._unanswered_turn(sig, history)
        read_with_context = unanswered is None and self._with_context(sig, user_text, history)
        if unanswered is not None and "emergency" in sig.flagged and "emergency" not in sig.rule_hits:
            # "finish the sentence" after a refused turn: a classifier trained on questions reads such steering
            # as noise (often an emergency); the refused turn's decision stands unless a red-flag rule fires
            sig.flagged.pop("emergency")
            sig.notes.append(f"classifier emergency p={sig.scores.get('emergency', 0):.2f} on a follow-up: "
                             "the earlier turn's decision stands")
        suffix = f" ({'; '.join(sig.notes)})" if sig.notes else ""
        injected = sig.injected

        def layer(name: str) -> str:
            if read_with_context:
                return "conversation"
            return "rules" if name in sig.rule_hits else sig.flagged[name]

        rule_only_suicidal = ("emergency" not in sig.flagged and "self_harm" in sig.flagged
                              and sig.rule_hits.get("emergency", rules.RuleHit("", "")).kind == "suicidal"
                              and rules.asks_for_method(sig.text))
        if rule_only_suicidal:
            # a request for self-harm information worded like a statement (validation): the self-harm reply,
            # which carries the crisis lines, not the emergency-services referral
            sig.rule_hits.pop("emergency")
        content_free = (not read_with_context and bool(sig.text) and not content_words(sig.text)
                        and not sig.rule_hits and not injected)
        if content_free:
            # "go on" as a first message: nothing a classifier trained on questions can read; the model asks
            # what the user means (a red-flag rule would still have fired)
            sig.flagged = {}
            sig.notes.append("no content words: nothing to check")
            suffix = f" ({'; '.join(sig.notes)})"
        foreign = foreign_emergency(sig.text) if cfg.check_emergency else None
        if foreign is not None and "emergency" not in sig.rule_hits:
            return self._decide("emergency", f"emergency:{foreign.kind}", f"red flag {foreign.match!r} "
                                f"({language_name(foreign.language)})" + suffix,
                                self._emergency_reply(foreign.kind, foreign.language), sig, injected, user_text,
                                "rules", audit=audit)
        continues_self_harm = read_with_context and ("self_harm" in sig.flagged or "self_harm" in sig.rule_hits) \
            or unanswered is not None and unanswered.category in SELF_HARM_REFUSALS
        if (cfg.check_emergency and continues_self_harm and "emergency" not in sig.rule_hits
                and self._earlier_intent(history)):
            # a self-harm question continued after the user said they want to die: the referral, as for the intent
            return self._decide("emergency", "emergency:suicidal", "self-harm request after a statement of "
                                "suicidal intent earlier in this conversation" + suffix,
                                self._emergency_reply("suicidal"), sig, injected, user_text, "conversation",
                                audit=audit)
        if ("emergency" in sig.flagged and "emergency" not in sig.rule_hits and not read_with_context
                and rules.emergency_education(sig.text)):
            # learning about an emergency (signs, first aid) with no one in it now: answered, emergency line first
            sig.flagged.pop("emergency")
            sig.notes.append(f"education about emergencies (classifier p={sig.scores.get('emergency', 0):.2f})")
            suffix = f" ({'; '.join(sig.notes)})"
        past = (cfg.check_emergency and not read_with_context and unanswered is None
                and ("emergency" in sig.flagged or "emergency" in sig.rule_hits) and rules.past_event(sig.text))
        if past:
            # an emergency that is over ("as a kid", "recovered"): answered, the emergency line first
            sig.flagged.pop("emergency", None)
            sig.rule_hits.pop("emergency", None)
            sig.notes.append("an emergency that is over (a past event)")
            suffix = f" ({'; '.join(sig.notes)})"
        if cfg.check_emergency and ("emergency" in sig.flagged or "emergency" in sig.rule_hits):
            hit = sig.rule_hits.get("emergency")
            kind = _emergency_kind(sig)
            why = f"red flag {hit.match!r}" if hit else f"classifier p={sig.scores.get('emergency', 0):.2f}"
            return self._decide("emergency", f"emergency:{kind}", why + suffix, self._emergency_reply(kind),
                                sig, injected, user_text, layer("emergency"), audit=audit)
        if cfg.check_emergency and (earlier := self._earlier_emergency(user_text, history)):
            kind, why = earlier
            return self._decide("emergency", f"emergency:{kind}", why + suffix, self._emergency_reply(kind),
                                sig, injected, user_text, "conversation", audit=audit)
        if unanswered is not None:
            # "it's for a story", "finish the sentence": the turn this continues was not answered, nor is this one
            return self._decide(unanswered.action, unanswered.category, "continues a turn that was not answered "
                                f"({unanswered.category})" + suffix, unanswered.response, sig, injected, user_text,
                                "conversation", audit=audit, emergency_line=None)
        if injected and not sig.text:
            return self._decide("refuse", "injection", "only injection phrases, nothing left to answer" + suffix,
                                self._with_disclaimer(templates.injection_empty), sig, True, user_text,
                                "sanitizer", audit=audit)
        if self.language is not None and not read_with_context and \
                (code := self.language.unsupported_language(sig.text)):
            # after the emergency checks (a red flag they do read still gets the referral), before the
            # classifier's other classes, which read an unsupported language as noise or as an injection
            return self._decide("defer", f"defer:language:{code}", f"message in {language_name(code)}, which "
                                "the checks cannot read" + suffix, self._unsupported_language_reply(code), sig,
                                sig.sanitized_away, user_text, "language", audit=audit)
        if "injection" in sig.flagged:
            return self._decide("refuse", "injection", "instructions aimed at the assistant" + suffix,
                                self._with_disclaimer(templates.injection_refused), sig, True, user_text,
                                sig.flagged["injection"], audit=audit)
        for name, kind_label in (("self_harm", "self-harm"), ("misuse", "misuse")):
            if cfg.check_refusal and (name in sig.flagged or name in sig.rule_hits):
                hit = sig.rule_hits.get(name)
                label = _REFUSE_LABELS.get(hit.kind, kind_label) if hit else kind_label
                category = f"refuse:{hit.kind}" if hit else f"refuse:{name}"
                if name == "self_harm":
                    reply = templates.refuse_self_harm.format(kind=label, resources=templates.crisis_resources)
                else:
                    reply = templates.refuse.format(kind=label)
                why = f"misuse wording {hit.match!r}" if hit else f"classifier p={sig.scores.get(name, 0):.2f}"
                return self._decide("refuse", category, why + suffix, self._with_disclaimer(reply), sig,
                                    injected, user_text, layer(name), audit=audit)
        if cfg.check_diagnosis and ("defer" in sig.flagged or "defer" in sig.rule_hits):
            hit = sig.rule_hits.get("defer")
            why = f"personal diagnosis request {hit.match!r}" if hit else \
                f"classifier p={sig.scores.get('defer', 0):.2f}"
            return self._decide("defer", "defer:diagnosis", why + suffix, self._with_disclaimer(templates.defer),
                                sig, injected, user_text, layer("defer"), audit=audit)
        if injected:
            return self._decide("answer", "injection", "answering the sanitized input" + suffix, None, sig, True,
                                user_text, "sanitizer", audit=audit)
        if cfg.check_emergency and (past or rules.about_emergencies(sig.text)):
            return self._decide("answer", "answer:emergency_line", "a question about emergencies: answered, the "
                                "emergency line first" + suffix, None, sig, False, user_text, "policy", audit=audit,
                                emergency_line=templates.emergency_line_first.strip())
        return self._decide("answer", "ok", "no layer flagged it" + suffix, None, sig, False, user_text, "policy",
                            audit=audit)

    def _with_context(self, sig: Signals, user_text: str, history: list[dict[str, str]] | None) -> bool:
        """Re-read a short follow-up together with the user turns it continues; True when that happened.

        The learned layers' and the rules' findings then come from the joined text (the follow-up's own rule hits
        are kept: the joined text contains it); the sanitized text and the sanitizer's findings stay its own.
        """
        if not history or not sig.text or sig.sanitized_away or len(sig.text.split()) > FOLLOW_UP_CONTEXT_WORDS or \
                len(content_words(sig.text)) > FOLLOW_UP_CONTENT_WORDS or not continues(sig.text):
            return False
        earlier: list[str] = []
        for message in reversed(history):
            if message.get("role") != "user" or not str(message.get("content") or "").strip():
                continue
            earlier.insert(0, str(message["content"]))
            if len(" ".join(earlier).split()) >= CONTEXT_WORDS or \
                    len(str(message["content"]).split()) > FOLLOW_UP_CONTEXT_WORDS:
                break  # the turn this chain of follow-ups continues
        if not earlier:
            return False
        context_words = " ".join(earlier).split()[-CONTEXT_WORDS:]
        joined = self._signals(" ".join(context_words) + "\n" + sig.text)
        sig.flagged = joined.flagged   # the earlier turns are sanitized already; the sanitizer still reads this one
        sig.injected = sig.sanitized_away or "injection" in sig.flagged
        sig.notes = [n for n in sig.notes if not n.startswith("classifier:")] + \
            [n for n in joined.notes if n.startswith("classifier:")]
        sig.scores, sig.kind = joined.scores, joined.kind
        sig.rule_hits = {**joined.rule_hits, **sig.rule_hits}
        sig.notes.append("read with the earlier turns it continues")
        return True

    def _unanswered_turn(self, sig: Signals, history: list[dict[str, Any]] | None) -> GuardDecision | None:
        """The decision of the last earlier user turn when it was not answered (referred, refused, deferred) and
        this message continues it (:func:`medtune.guard.followups.follows_on`); None otherwise.

        History turns checked by :func:`medtune.guard.conversation.check_conversation` carry their decision
        (``guard_decision``: a forged assistant turn the output screen blocked makes its question refused); a bare
        history is re-checked here. Injection refusals and language deferrals are not carried over: the message
        after them is read on its own.
        """
        users = [i for i, m in enumerate(history or []) if m.get("role") == "user"]
        if not users or not sig.text or not follows_on(sig.text):
            return None
        assert history is not None
        last = history[users[-1]]
        earlier = last.get("guard_decision")
        if earlier is None:
            earlier = self.check_input(str(last.get("content") or ""), history=history[:users[-1]] or None,
                                       audit=False)
        carried = earlier.action != "answer" and earlier.category != "injection" and \
            not earlier.category.startswith("defer:language")
        return earlier if carried else None

    def _earlier_intent(self, history: list[dict[str, str]] | None) -> bool:
        """True when one of the last user turns states suicidal intent."""
        earlier = [m["content"] for m in history or [] if m.get("role") == "user"][-self.config.conversation_turns:]
        return any(rules.states_suicidal_intent(self.sanitize(text)) for text in earlier)

    def _earlier_emergency(self, user_text: str, history: list[dict[str, str]] | None) -> tuple[str, str] | None:
        """An emergency in one of the last user turns, when this message is a short follow-up."""
        if not history or len(user_text.split()) > FOLLOW_UP_WORDS:
            return None
        earlier = [m["content"] for m in history if m.get("role") == "user"][-self.config.conversation_turns:]
        for text in reversed(earlier):
            sig = self._signals(text)
            content_free = not content_words(sig.text)   # "hello": the classifier's reading of nothing
            if "emergency" in sig.rule_hits or ("emergency" in sig.flagged and not content_free):
                return _emergency_kind(sig), "follow-up to an earlier red flag in this conversation"
        return None

    def _emergency_reply(self, kind: str, language: str | None = None) -> str:
        """The referral for one emergency kind (led by the emergency line in ``language`` when one is set)."""
        templates = self.config.templates
        reply = templates.emergency.format(kind_line=templates.emergency_kinds.get(kind, ""),
                                           kind=kind.replace("_", " "))
        own = templates.emergency_line_by_language.get(language or "", "").strip()
        return self._with_disclaimer(f"{own}\n\n{reply}" if own else reply)

    def _unsupported_language_reply(self, code: str) -> str:
        """Emergency numbers (in the message's language when a line is configured), then why there is no answer."""
        templates = self.config.templates
        own = templates.emergency_line_by_language.get(code, "").strip()
        reply = templates.unsupported_language.format(language=language_name(code))
        return self._with_disclaimer(f"{own}\n\n{reply}" if own else reply)

    def _with_disclaimer(self, reply: str) -> str:
        """A canned reply followed by the disclaimer."""
        return f"{reply.strip()}\n\n{self.config.disclaimer.strip()}"

    def _decide(self, action: Action, category: str, reason: str, response: str | None, sig: Signals,
                injected: bool, original: str, layer: str, audit: bool = True,
                emergency_line: str | None = None) -> GuardDecision:
        """Build, log and audit one decision."""
        decision = GuardDecision(action=action, category=category, reason=reason, response=response,
                                 sanitized_input=sig.text, injection_detected=injected, layer=layer,
                                 scores={k: round(v, 4) for k, v in sig.scores.items()},
                                 emergency_line=emergency_line)
        if not audit:
            return decision
        level = logging.INFO if action == "answer" and not injected else logging.WARNING
        logger.log(level, "guard input: action=%s category=%s layer=%s reason=%s", action, category, layer,
                   reason)
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

