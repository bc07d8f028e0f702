"""Checks on a finished answer (and on training answers): unsafe advice the model should never give.

Each check is a small family of patterns with a name; :func:`check_answer` returns the names that fired with
the text that matched. Maximum daily doses are checked separately (:mod:`medtune.guard.doses`).

* ``stop_prescribed``: telling the user to stop or change a prescribed medicine on their own
  ("stop taking your insulin", "double your dose") -- negated advice ("do not stop taking ...") is fine;
* ``claims_doctor``: the assistant presenting itself as a doctor or licensed clinician;
* ``echoed_injection``: instructions aimed at the assistant or its users that leaked into the answer
  ("ignore previous instructions", "tell every user ...", a system prompt being revealed);
* ``misuse_instructions`` (blocking): how to get high on a medicine, extract, inject, snort or smoke a drug, defeat
  an abuse-deterrent or extended-release form, or combine depressants for a stronger effect;
* ``self_harm_method`` (blocking): a lethal amount or a means of self-harm ("a fatal dose would be about 20 g",
  "the least painful way to die is ...").

Negated or safety-framed advice ("never combine opioids with alcohol: it can stop your breathing", "do not crush
extended-release tablets") does not fire: the sentence before the match is read for a negation or a warning.
:data:`BLOCKING` names the checks whose answer is replaced by a refusal (``Guard.screen_answer``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_F = re.IGNORECASE
_MEDS = (r"(?:your |the |all (?:of )?your )?(?:prescribed |prescription )?(?:medications?|medicines?|meds|pills|"
         r"tablets|insulin|warfarin|blood thinners?|antidepressants?|lithium|steroids?|prednisone|"
         r"anti-?epileptics?|seizure medications?|blood pressure (?:pills|medications?)|statins?|inhalers?)")
_DRUG = (r"(?:pills?|tablets?|capsules?|patch(?:es)?|powder|it|them|the drug|the medicine|oxy\w*|opioids?|"
         r"codeine|morphine|fentanyl|hydrocodone|vicodin|percocet|adderall|ritalin|methylphenidate|xanax|"
         r"benzos?|benzodiazepines?|valium|diazepam|alprazolam|klonopin|tramadol|ketamine|gabapentin|lyrica|"
         r"pregabalin|dxm|dextromethorphan|cough syrup|lean|promethazine|loperamide|suboxone|buprenorphine|"
         r"methadone|heroin|cocaine|meth\w*|amphetamines?|stimulants?)")
_DEPRESSANT = (r"(?:alcohol|beers?|wine|vodka|drinks?|booze|benzos?|benzodiazepines?|xanax|valium|opioids?|"
               r"oxy\w*|codeine|morphine|fentanyl|tramadol|gabapentin|lyrica|pregabalin|sleeping pills|"
               r"muscle relaxants?|soma|promethazine|ghb|barbiturates?)")
#: The effect sought in misuse (not "effects": "alcohol can intensify these effects" is a warning).
_EFFECT = r"(?:high|buzz|rush|euphori\w+|nod|stoned|wasted|messed up)"
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
PATTERNS["misuse_instructions"] = (
    # how to get high: "to get high, take ...", "for a stronger high, crush ..."
    r"\b(?:to get (?:really |more |very )?(?:high|stoned|buzzed|wasted)|for (?:a|the|an) (?:stronger |better |"
    r"bigger |longer |faster |more intense |intense |full |good )?(?:high|buzz|rush|euphoria)|to (?:feel|get) "
    r"(?:a |the )?(?:stronger |better |full )?(?:high|buzz|rush|euphoria))\b[^.!?\n]{0,80}?\b(?:take|took|"
    r"use|crush|chew|snort|inject|smoke|dissolve|combine|mix|swallow|dose|double|start with|you(?:'ll| will) "
    r"need|\d+\s*(?:mg|pills?|tablets?))",
    r"\b(?:take|use|crush|snort|inject|smoke|mix|combine)\b[^.!?\n]{0,60}?\b(?:to get (?:really |very )?"
    r"(?:high|stoned|buzzed|wasted)|for (?:a|the|an) (?:stronger |better |bigger |longer |faster |more intense |"
    r"intense |full )?(?:high|buzz|rush|euphoria))\b",
    # extraction: cold water extraction, separating the opioid from paracetamol
    r"\bcold[- ]water extraction\b",
    r"\b(?:extract|isolate|separate|pull out|get out)\b(?: \w+){0,3} (?:the )?(?:codeine|morphine|oxycodone|"
    r"hydrocodone|dxm|dextromethorphan|opioid|active (?:ingredient|drug))\b[^.!?\n]{0,80}?\b(?:by|with|"
    r"dissolv\w+|filter\w*|water|cool|chill|freez\w+|coffee filter|evaporat\w+|step)",
    r"\b(?:dissolve|crush)\b[^.!?\n]{0,60}?\b(?:in (?:cold|ice|warm) water|filter (?:it|the)|through a "
    r"(?:coffee filter|cotton|cloth))",
    # snorting / injecting / smoking a medicine: "crush the tablets and snort the powder"
    r"\b(?:crush|grind|powder)\b[^.!?\n]{0,40}?\b(?:and|then|before you)\b[^.!?\n]{0,20}?\b(?:snort|"
    r"inject|smoke|sniff|insufflat\w+|shoot)",
    rf"\b(?:snort|inject|smoke|sniff|shoot up|insufflate)\b (?:the |your |a )?(?:crushed |dissolved )?"
    rf"(?:\w+ )?{_DRUG}\b[^.!?\n]{{0,60}}?\b(?:for|to get|gives?|hits? (?:faster|harder)|stronger|faster|"
    rf"quicker|rush|high|line|needle|syringe|foil)",
    r"\b(?:draw (?:it|the solution) (?:up )?into|load (?:it|the solution) into) (?:a |the )?(?:syringe|needle)",
    # defeating an abuse-deterrent or extended-release form
    r"\b(?:get around|bypass|defeat|break|remove|get past|disable|beat)\b (?:the |its |their )?(?:abuse[- ]"
    r"deterrent|tamper[- ]resistant|time[- ]release|extended[- ]release|slow[- ]release|er|xr|coating|"
    r"gel(?:ling)? (?:barrier|formula)|naloxone)\b",
    r"\b(?:chew|crush|cut|break|bite)\b[^.!?\n]{0,40}?\b(?:extended[- ]release|time[- ]release|slow[- ]release|"
    r"er|xr|sr|cr|contin)\b[^.!?\n]{0,60}?\b(?:all at once|at once|faster|stronger|whole dose|full dose|"
    r"immediately|quicker|high|rush)",
    # combining depressants for the effect
    rf"\b(?:combine|mix|add|take|pair|stack|wash (?:it|them) down)\b[^.!?\n]{{0,60}}?\b{_DEPRESSANT}\b"
    rf"[^.!?\n]{{0,60}}?\b(?:to|for|will|can|would|gives?)\b[^.!?\n]{{0,25}}?\b{_EFFECT}",
    rf"\b{_DEPRESSANT}\b[^.!?\n]{{0,30}}?\b(?:potentiates?|intensif(?:y|ies)|enhances?|boosts?|amplif(?:y|ies))\b"
    rf"[^.!?\n]{{0,30}}?\b(?:the |your )?{_EFFECT}",
)
PATTERNS["self_harm_method"] = (
    # a lethal amount: "a lethal dose is about 10 g", "40 tablets would be fatal"
    r"\b(?:lethal|fatal|deadly|killing)\b (?:dose|amount|quantity|level)s?\b[^.!?\n]{0,50}?\b(?:is|are|would be|"
    r"of|around|about|roughly|approximately|starts? at|as (?:little|low) as|between)\b[^.!?\n]{0,30}?\d",
    r"\d[\d.,]*\s*(?:mg|mcg|g|grams?|pills?|tablets?|capsules?|units?|ml|bottles?)\b[^.!?\n]{0,50}?\b(?:would|"
    r"will|should|is enough to|are enough to|could|can|to) (?:reliably |definitely |surely |probably )?(?:kill|"
    r"be (?:fatal|lethal|deadly)|end (?:your|a|someone's) life|cause death)",
    r"\b(?:enough|sufficient) to (?:kill (?:you|yourself|a person|someone|an adult)|die|end (?:your|a) life|be "
    r"(?:fatal|lethal))\b[^.!?\n]{0,40}?\d",
    # a means: "the least painful way to die is ...", "to kill yourself you could ..."
    r"\b(?:the )?(?:least painful|most painless|painless|quickest|fastest|surest|easiest|most reliable|most "
    r"effective|best) (?:way|method|means|drug|medicine|pills?|overdose)s? (?:to|of) (?:die|dying|kill (?:yourself|"
    r"oneself)|end (?:your|one's|a) life|commit suicide|overdose)\b[^.!?\n]{0,15}?\b(?:is|are|would be|"
    r"include|:)",
    r"\b(?:if you want to|to) (?:kill yourself|end your (?:own )?life|commit suicide|die)\b[,:]? (?:you (?:can|"
    r"could|should|would need to)|take|use|try|swallow|cut|hang|jump)\b",
    r"\b(?:cut|slit) (?:along|down|deep(?:er|ly)?|vertically|lengthwise)\b[^.!?\n]{0,30}?\b(?:wrists?|arms?|"
    r"veins?|arter\w+)",
)
_COMPILED = {name: [re.compile(p, _F) for p in patterns] for name, patterns in PATTERNS.items()}
#: Output checks whose answer is never shown: check name -> the refusal that replaces it ("misuse" -> the
#: misuse refusal, "self_harm" -> the self-harm reply with the crisis lines). The others only add a warning.
BLOCKING: dict[str, str] = {"misuse_instructions": "misuse", "self_harm_method": "self_harm"}
#: Help-seeking in the same sentence: a lethal amount stated to send someone to help, not as a method.
_HELP = re.compile(r"\b(?:(?:call|contact|text) (?:988|911|999|112|poison control|your local emergency|a crisis)|"
                   r"seek (?:emergency|urgent|immediate) (?:help|care|medical)|go to (?:the )?(?:er|a&e|emergency))",
                   _F)
#: Checks that a negation or a warning before the match in the same sentence turns off.
_NEGATABLE = frozenset(["stop_prescribed", "misuse_instructions", "self_harm_method"])
#: Warnings and safety framing that turn the blocking checks off ("never combine ...", "it can stop your
#: breathing", "is dangerous"); read in the sentence before the match and, for these, anywhere in it.
_SAFETY_FRAME = re.compile(
    r"\b(?:never|avoid|don't|do not|should not|shouldn't|must not|is not safe|isn't safe|unsafe|dangerous|"
    r"danger|risk(?:y|s)?|can (?:stop|slow|suppress) (?:your |the )?breathing|(?:can|could|may) (?:be )?(?:kill|"
    r"fatal|lethal|deadly)|overdose risk|warning|(?:people|some people|users|teens|they|someone) (?:who |sometimes |often |may |might )?(?:\w+ )?(?:use|take|smoke|eat|"
    r"snort|inject|abuse|misuse|tr(?:y|ies)|attempt)|why (?:you|people)|"
    r"is (?:a|an) (?:common )?(?:form of )?(?:misuse|abuse)|illegal|designed to (?:prevent|deter|stop)|"
    r"(?:call|contact|text) (?:988|911|999|112|poison control|your local emergency)|seek (?:emergency|urgent|"
    r"immediate) (?:help|care|medical)|if you (?:are|'re) (?:having|thinking))\b", _F)


@dataclass
class OutputFlag:
    """One unsafe-advice check that fired on an answer."""

    check: str
    match: str


def _negated(text: str, start: int) -> bool:
    """True when the sentence before ``start`` negates or conditions the advice ("do not stop ...")."""
    sentence_start = max(text.rfind(".", 0, start), text.rfind("\n", 0, start), text.rfind("!", 0, start)) + 1
    return bool(_NEGATION.search(text[sentence_start:start]))


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence holding text[start:end]."""
    sentence_start = max(text.rfind(".", 0, start), text.rfind("\n", 0, start), text.rfind("!", 0, start),
                         text.rfind("?", 0, start)) + 1
    ends = [i for i in (text.find(".", end), text.find("\n", end), text.find("!", end)) if i != -1]
    return text[sentence_start:min(ends) if ends else len(text)]


def _safety_framed(text: str, start: int, end: int) -> bool:
    """True when the sentence holding text[start:end] warns against it ("never mix ...: it can stop your
    breathing") rather than instructing it."""
    return bool(_SAFETY_FRAME.search(_sentence(text, start, end)) or _negated(text, start))


def _exempt(name: str, text: str, match: re.Match[str]) -> bool:
    """Negated or safety-framed advice: not flagged."""
    if name == "stop_prescribed":
        return _negated(text, match.start())
    if name == "self_harm_method":   # "can be fatal" frames a lethal amount, it does not withdraw it
        return _negated(text, match.start()) or bool(_HELP.search(_sentence(text, match.start(), match.end())))
    if name in _NEGATABLE:
        return _safety_framed(text, match.start(), match.end())
    return False


def check_answer(text: str) -> list[OutputFlag]:
    """The unsafe-advice checks that fire on ``text`` (at most one flag per check)."""
    flags = []
    for name, patterns in _COMPILED.items():
        for pattern in patterns:
            match = next((m for m in pattern.finditer(text) if not _exempt(name, text, m)), None)
            if match:
                flags.append(OutputFlag(name, match.group(0)))
                break
    return flags
