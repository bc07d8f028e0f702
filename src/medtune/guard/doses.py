"""Dose expressions in answers ("take 4000 mg", "2 tablets every 4 hours", "0.5 mg/kg") and the daily maximum.

Each dose expression is flagged; when a dose sits in the same sentence as a drug from the maximum-daily-dose
table, the implied amount per day (strength x count x times per day) is compared with the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medtune.guard.config import DrugLimit

_F = re.IGNORECASE
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10, "eleven": 11, "twelve": 12, "half a": 0.5, "half": 0.5, "a single": 1, "single": 1}
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + ")"
_RANGE = rf"{_NUM}(?:\s*(?:-|–|to|or)\s*{_NUM})?"
_MASS = r"mg|milligrams?|mcg|micrograms?|µg|μg|ug|g|grams?|gm"
_COUNT = r"tablets?|tabs?|capsules?|caps|pills?|caplets?|gelcaps?|softgels?|lozenges?|puffs?|sprays?|drops?|patch(?:es)?"
_UNIT = (rf"{_MASS}|ml|millilit(?:er|re)s?|cc|iu|international units?|units?|{_COUNT}|"
         r"teaspoons?|tsp|tablespoons?|tbsp|mmol|meq")
_PER_KG = r"(?:\s*(?:/|per)\s*kg)"
_FREQ = (r"(?:\s*(?:,\s*)?(?:every|q)\s*" + _RANGE + r"\s*(?:-\s*)?(?:hours?|hrs?|h)\b|\s*(?:up to\s*)?" + _RANGE +
         r"\s*(?:times?|x)\s*(?:(?:a|per|each)\s*day|daily)|\s*(?:once|twice|thrice)\s*(?:a\s*day|daily)|"
         r"\s*\b(?:qd|od|bid|b\.i\.d\.|tid|t\.i\.d\.|qid|q\.i\.d\.)\b|"
         r"\s*(?:/|per|a)\s*day|\s*daily|\s*at bedtime)")
DOSE_RE = re.compile(
    rf"(?<![\w.])(?P<amount>{_RANGE})\s*(?P<unit>{_UNIT})\b(?!\s*/\s*(?:dl|l)\b)(?P<perkg>{_PER_KG})?"
    rf"(?:\s+(?:of\s+)?(?:\w+\s+)?(?:{_COUNT}))?(?:\s+(?:of\s+)?(?P<strength>{_NUM})\s*(?P<sunit>{_MASS})\b)?"
    rf"(?P<freq>{_FREQ})?", _F)


@dataclass
class DoseMention:
    """One dose expression in a text."""

    text: str
    start: int
    mg: float | None          # mg per single dose when known (mass units, or count x strength)
    per_day: float | None     # administrations per day when stated (1 for "per day"/"daily")
    per_kg: bool


def _number(token: str) -> float:
    """Parse '4,000', '0.5', 'two' into a float."""
    token = token.strip().lower()
    return float(_WORDS[token]) if token in _WORDS else float(token.replace(",", ""))


def _upper(text: str) -> float:
    """Upper bound of a number or range ('1-2' -> 2)."""
    parts = re.split(r"\s*(?:-|–|\bto\b|\bor\b)\s*", text.strip())
    return max(_number(p) for p in parts if p)


def _to_mg(value: float, unit: str) -> float | None:
    """Convert a mass to mg (None for non-mass units)."""
    unit = unit.lower()
    if unit in ("mg", "milligram", "milligrams"):
        return value
    if unit in ("g", "gram", "grams", "gm"):
        return value * 1000
    if unit in ("mcg", "microgram", "micrograms", "µg", "μg", "ug"):
        return value / 1000
    return None


def _per_day(freq: str) -> float | None:
    """Administrations per day implied by a frequency phrase."""
    freq = freq.lower().strip(" ,")
    if not freq:
        return None
    if match := re.search(rf"(?:every|q)\s*({_RANGE})", freq, _F):
        hours = min(_number(p) for p in re.split(r"\s*(?:-|–|\bto\b|\bor\b)\s*", match.group(1)) if p)
        return 24 / hours if hours > 0 else None
    if match := re.search(rf"({_RANGE})\s*(?:times?|x)\b", freq, _F):
        return _upper(match.group(1))
    abbreviations = {"qd": 1, "od": 1, "bid": 2, "tid": 3, "qid": 4}
    if (short := freq.replace(".", "").strip()) in abbreviations:
        return abbreviations[short]
    if "twice" in freq:
        return 2
    if "thrice" in freq:
        return 3
    return 1


def find_doses(text: str) -> list[DoseMention]:
    """Every dose expression in ``text`` with its mg amount and daily frequency when they can be worked out."""
    mentions: list[DoseMention] = []
    for match in DOSE_RE.finditer(text):
        amount = _upper(match.group("amount"))
        mg = _to_mg(amount, match.group("unit"))
        if mg is None and match.group("strength"):
            strength = _to_mg(_number(match.group("strength")), match.group("sunit"))
            mg = amount * strength if strength is not None else None
        mentions.append(DoseMention(text=match.group(0).strip(" ,"), start=match.start(), mg=mg,
                                    per_day=_per_day(match.group("freq") or ""), per_kg=bool(match.group("perkg"))))
    return mentions


@dataclass
class DoseExcess:
    """A drug whose implied daily amount in an answer is above a limit."""

    drug: str
    mg_per_day: float
    limit: DrugLimit
    over_otc_only: bool       # above the OTC limit but within the prescription maximum


def _sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) pairs."""
    return [(m.start(), m.group(0)) for m in re.finditer(r"[^.!?\n]+(?:\.\d[^.!?\n]*)*[.!?\n]?", text)]


def _tail_frequency(tail: str) -> float | None:
    """Administrations per day stated later in the clause after a dose (before any other dose)."""
    match = re.search(_FREQ, tail, _F)
    return _per_day(match.group(0)) if match else None


def _paren_strength(dose: DoseMention, tail: str) -> float | None:
    """mg per dose for "2 tablets (500 mg)": count times the strength in brackets right after the count."""
    count = re.match(rf"\s*({_RANGE})", dose.text, _F)
    strength = re.match(rf"\s*\(\s*({_NUM})\s*({_MASS})\b", tail, _F)
    if not count or not strength:
        return None
    per_unit = _to_mg(_number(strength.group(1)), strength.group(2))
    return _upper(count.group(1)) * per_unit if per_unit is not None else None


def check_max_doses(text: str, limits: list[DrugLimit]) -> list[DoseExcess]:
    """Drugs whose dose in ``text`` (per sentence: the largest daily amount stated) exceeds the table."""
    worst: dict[str, tuple[float, DrugLimit]] = {}
    for _, sentence in _sentences(text):
        low = sentence.lower()
        for limit in limits:
            if not any(re.search(rf"\b{re.escape(name.lower())}\b", low) for name in limit.names):
                continue
            doses = find_doses(sentence)
            skip: set[int] = set()
            for index, dose in enumerate(doses):
                if dose.per_kg or index in skip:
                    continue
                end = dose.start + len(dose.text)
                mg, following = dose.mg, index + 1
                if mg is None and (mg := _paren_strength(dose, sentence[end:])) is not None:
                    skip.add(index + 1)  # "2 tablets (500 mg)": the bracketed strength is not a separate dose
                    following = index + 2
                if mg is None:
                    continue
                if following - 1 > index and following - 1 < len(doses):
                    end = doses[following - 1].start + len(doses[following - 1].text)
                stop = doses[following].start if following < len(doses) else len(sentence)
                # "1000 mg of acetaminophen every 4 hours": the frequency may follow the drug name
                per_day = dose.per_day or _tail_frequency(sentence[end:stop])
                daily = mg * (per_day or 1)
                if daily > worst.get(limit.names[0], (0.0, limit))[0]:
                    worst[limit.names[0]] = (daily, limit)
    out: list[DoseExcess] = []
    for drug, (daily, limit) in worst.items():
        if daily > limit.max_daily_mg:
            out.append(DoseExcess(drug, daily, limit, over_otc_only=False))
        elif limit.otc_max_daily_mg is not None and daily > limit.otc_max_daily_mg:
            out.append(DoseExcess(drug, daily, limit, over_otc_only=True))
    return out
