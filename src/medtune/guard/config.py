"""The guard's settings (:class:`GuardConfig`), loaded from YAML; defaults live in ``default.yaml`` (package data).

Unknown keys are errors (a typo never silently disables a safety check): :func:`load_guard_config` turns them
into one :class:`~medtune.errors.UserError` line naming the file and the key.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medtune.config import describe_validation_error
from medtune.errors import UserError


class _Strict(BaseModel):
    """Base: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class DrugLimit(_Strict):
    """The maximum daily dose of one common over-the-counter drug."""

    names: list[str] = Field(min_length=1, description="Generic name first, then synonyms and brand names.")
    max_daily_mg: float = Field(gt=0, description="Usual adult maximum per 24 h in mg (prescription use).")
    otc_max_daily_mg: float | None = Field(
        None, gt=0, description="Lower limit for unsupervised (OTC) use, e.g. ibuprofen 1200 mg/day."
    )
    note: str = Field("", description="Shown with the warning, e.g. 'adults; 2 g with liver disease'.")


class ModeratorConfig(_Strict):
    """One optional model moderator (loaded with transformers from a hub id or a local folder)."""

    type: str = Field(description="llama_guard | prompt_guard")
    model: str = Field(description="Hub id or local folder, e.g. meta-llama/Llama-Guard-3-1B.")
    threshold: float = Field(0.5, ge=0, le=1, description="prompt_guard: malicious-probability threshold.")
    device: str = Field("auto", description="auto (CUDA when present) | cpu | cuda.")


class Templates(_Strict):
    """Canned replies. ``{kind}`` is the human-readable rule that fired; ``{resources}`` the crisis lines."""

    emergency: str = Field(description="Emergency referral, sent before any model call.")
    emergency_kinds: dict[str, str] = Field(
        default_factory=dict, description="Extra first line per emergency kind (stroke, suicidal ...)."
    )
    crisis_resources: str = Field(description="Crisis lines added to self-harm replies.")
    refuse: str = Field(description="Refusal for dosing meant for misuse or harming someone.")
    refuse_self_harm: str = Field(description="Refusal for self-harm dosing, with crisis resources.")
    defer: str = Field(description="Deferral for personal diagnosis requests: see a clinician.")
    injection_empty: str = Field(description="Reply when nothing remains after removing injection phrases.")
    injection_refused: str = Field(description="Reply when the classifier finds instructions aimed at the "
                                   "assistant that cannot be cut out (e.g. inside pasted text).")
    output_warnings: dict[str, str] = Field(description="Warning per output check that fires on an answer "
                                            "(stop_prescribed, claims_doctor, echoed_injection).")
    dose_warning: str = Field(description="Per dose found in an answer; {dose} is the expression.")
    max_dose_warning: str = Field(
        description="When an answer exceeds a maximum daily dose; {drug} {amount} {limit} {note}."
    )
    otc_dose_warning: str = Field(description="Above the OTC limit but within the prescription maximum.")
    unsupported_language: str = Field(description="Reply to a message in a language the guard cannot read, "
                                      "before any model call; {language} is its name.")
    emergency_line_first: str = Field(
        "If this is happening now, call your local emergency number (911 in the US, 112 in the EU, 999 in the UK) "
        "before reading on.", description="Put before an answer about emergencies (warning signs, first aid): "
        "the question is answered, the emergency line comes first.")
    emergency_line_by_language: dict[str, str] = Field(
        default_factory=dict, description="The emergency-number line in other languages (ISO 639-1 code -> "
        "text), put first in the unsupported-language reply.")


class GuardConfig(_Strict):
    """Everything the medical guardrails use. Defaults: ``src/medtune/guard/default.yaml``."""

    system_prompt: str = Field(description="System prompt of every model call (the assistant's safety rules).")
    disclaimer: str = Field(description="Appended to every answer and canned reply.")
    temperature: float = Field(0.3, ge=0, le=2, description="Conservative decoding: sampling temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="Conservative decoding: nucleus sampling.")
    repetition_penalty: float = Field(1.1, ge=1, description="Conservative decoding: repetition penalty.")
    max_new_tokens: int = Field(256, ge=1, description="Conservative decoding: answer length limit.")
    check_emergency: bool = Field(True, description="Answer emergency red flags with a referral at once.")
    check_refusal: bool = Field(True, description="Refuse dosing meant for misuse, self-harm or harming others.")
    check_diagnosis: bool = Field(True, description="Defer personal diagnosis requests to a clinician.")
    check_injection: bool = Field(True, description="Remove prompt-injection phrases from user input.")
    check_doses: bool = Field(True, description="Flag dose expressions and maximum daily doses in answers.")
    check_output: bool = Field(True, description="Flag unsafe advice in answers (stop a prescription, claims "
                               "to be a doctor, echoed injected instructions).")
    check_language: bool = Field(True, description="Reply with emergency numbers, not an unchecked answer, to a "
                                 "message the checks cannot read (not in supported_languages).")
    supported_languages: list[str] = Field(["en"], min_length=1, description="ISO 639-1 codes the classifier "
                                           "and rules were written for.")
    classifier: bool = Field(True, description="Use the learned intent classifier (needs medtune[guard]).")
    classifier_path: str | None = Field(None, description="A classifier built by `medtune guard train` "
                                        "(default: the one shipped in the package).")
    conversation_turns: int = Field(3, ge=0, description="Earlier user turns checked for a red flag when the "
                                    "new message is a short follow-up.")
    moderators: list[ModeratorConfig] = Field(default_factory=list, description="Optional model moderators "
                                              "(Llama Guard 3, Llama Prompt Guard 2); GPU recommended.")
    extra_injection_phrases: list[str] = Field(
        default_factory=list, description="More regular expressions treated as injection phrases."
    )
    max_daily_doses: list[DrugLimit] = Field(default_factory=list, description="Maximum daily dose table.")
    templates: Templates
    audit_log: str | None = Field(None, description="Append every decision as one JSON line to this file.")
    audit_include_text: bool = Field(
        False, description="Also write the user text to the audit file (else only its SHA-256 and length)."
    )

    def generation_settings(self) -> Any:
        """The conservative decoding defaults as :class:`medtune.inference.base.GenerationSettings`."""
        from medtune.inference.base import GenerationSettings

        return GenerationSettings(temperature=self.temperature, top_p=self.top_p,
                                  repetition_penalty=self.repetition_penalty, max_new_tokens=self.max_new_tokens)


def _default_data() -> dict[str, Any]:
    """The parsed ``default.yaml`` shipped with the package."""
    text = resources.files("medtune.guard").joinpath("default.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``override`` wins; nested dicts merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(data: dict[str, Any], source: str) -> GuardConfig:
    """Validate merged settings; the first error becomes one UserError line naming ``source`` and the key."""
    for number, phrase in enumerate(data.get("extra_injection_phrases") or []):
        try:
            re.compile(str(phrase))
        except re.error as exc:
            raise UserError(f"{source}: guard key 'extra_injection_phrases.{number}': bad regular expression "
                            f"{phrase!r} ({exc}); escape special characters.") from None
    try:
        return GuardConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(
            source, exc, GuardConfig, what="guard key", no_match="remove it (see docs/guard.md for the keys).",
            fix="fix the value (see docs/guard.md).", missing="add it (see docs/guard.md).")) from None


def default_guard_config() -> GuardConfig:
    """The shipped defaults (``default.yaml``)."""
    return _validate(_default_data(), "medtune/guard/default.yaml")


def load_guard_config(path: str | Path) -> GuardConfig:
    """Load a guard YAML file; its keys override the defaults (nested sections merge key by key)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{file}: guard config file not found; pass an existing YAML file.")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{file}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax.") from None
    if not isinstance(data, dict):
        raise UserError(f"{file}: a guard config must be a YAML mapping of keys to values.")
    return _validate(_merge(_default_data(), data), str(file))
