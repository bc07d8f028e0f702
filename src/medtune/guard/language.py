"""Which language a message is in, so the guard knows when it cannot read it.

The guard's classifier and rules learned English: a Spanish or German emergency reads to them as an ordinary
question (or as an injection), so it would be answered as one. :class:`LanguageCheck` finds messages that are
clearly not in a supported language, and the guard answers those with a notice that leads with the emergency
numbers instead of answering unchecked.

Two independent detectors must agree that the message is not supported (short English questions fool either one
alone: "does hand sanitizer kill norovirus"): langdetect (a port of Google's language-detection, naive Bayes over
character n-grams, seeded so it is deterministic) and Lingua (n-gram models of 75 languages, low-accuracy mode:
~0.5 s to load, ~100 MB, instead of ~9 s and ~1 GB). When English is supported the message must also hold no
English function word ("how", "what", "you" ...; words other languages share, such as "de", "no" or "is", do not
count unless they open the message: "Is Rett syndrome fatal?"). Lingua runs only when langdetect already says
"not supported", so an English message costs at most one langdetect call. Both load on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

from medtune.errors import UserError

#: Messages with fewer letters than this are too short to tell a language from (e.g. "ok?", "2 mg").
MIN_LETTERS = 8
#: Latin-script messages with fewer words than this are too short too ("explain hypothyroidism" reads as Latin).
MIN_LATIN_WORDS = 3
#: scikit-learn's English stop words that are also everyday words of other Latin-script languages ("de", "no",
#: "me", "un", "in", "is", "was", "also" ...): they are no evidence that a message is English.
_SHARED_FUNCTION_WORDS = frozenset([
    "a", "also", "am", "an", "are", "as", "co", "con", "de", "do", "due", "eg", "etc", "has", "he", "i", "ie", "in",
    "inc", "is", "ltd", "me", "mine", "no", "nor", "on", "or", "per", "re", "six", "so", "ten", "top", "un", "via",
    "was", "will",
])
#: Words that open an English question. Some are shared words above ("is", "are", "do", "has" ...), but as the
#: first word of a message they mark English ("Is Rett syndrome fatal?", which both detectors read as Italian).
_ENGLISH_OPENERS = frozenset([
    "are", "can", "could", "did", "do", "does", "has", "have", "how", "is", "should", "what", "when", "where",
    "which", "who", "why", "would",
])


@dataclass(frozen=True)
class LanguageVerdict:
    """The languages the two detectors read (ISO 639-1 codes; None when a detector saw no language)."""

    langdetect: str | None
    lingua: str | None


@cache
def _english_function_words() -> frozenset[str]:
    """English stop words (scikit-learn's list) that other Latin-script languages do not use as everyday words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) - _SHARED_FUNCTION_WORDS


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code ("es" -> "Spanish"); the code itself when Lingua does not know it."""
    try:
        from lingua import IsoCode639_1, Language

        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code)).name.title()
    except (ImportError, ValueError):
        return code


class LanguageCheck:
    """Tell whether a message is in one of ``supported`` languages (ISO 639-1 codes, e.g. ``["en"]``)."""

    def __init__(self, supported: list[str]) -> None:
        self.supported = {code.lower() for code in supported}

    @cached_property
    def _langdetect(self):  # noqa: ANN202 - the langdetect module
        try:
            import langdetect
        except ImportError as exc:  # pragma: no cover - part of medtune[guard]
            raise UserError("the guard's language check needs langdetect: pip install 'medtune[guard]', "
                            "or set check_language: false in the guard config.") from exc
        langdetect.DetectorFactory.seed = 0
        return langdetect

    @cached_property
    def _lingua(self):  # noqa: ANN202 - a lingua.LanguageDetector
        try:
            from lingua import LanguageDetectorBuilder
        except ImportError as exc:  # pragma: no cover - part of medtune[guard]
            raise UserError("the guard's language check needs lingua-language-detector: pip install "
                            "'medtune[guard]', or set check_language: false in the guard config.") from exc
        return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()

    def read(self, text: str) -> LanguageVerdict:
        """Both detectors' readings of ``text`` (Lingua only when langdetect reads an unsupported language)."""
        if len(re.findall(r"\w", text)) - len(re.findall(r"[\d_]", text)) < MIN_LETTERS:
            return LanguageVerdict(None, None)
        try:
            first = self._langdetect.detect(text)
        except self._langdetect.LangDetectException:   # no letters it knows
            first = None
        if first is None or first.split("-")[0] in self.supported:
            return LanguageVerdict(first, None)
        found = self._lingua.detect_language_of(text)
        return LanguageVerdict(first, found.iso_code_639_1.name.lower() if found else None)

    def unsupported_language(self, text: str) -> str | None:
        """The language of ``text`` when both detectors agree it is not a supported one, else None."""
        words = re.findall(r"\w+(?:'\w+)?", text.casefold())
        latin_only = not re.search(r"[^\W\d_\u0000-\u024f]", text)
        if latin_only and len(words) < MIN_LATIN_WORDS:
            return None
        if "en" in self.supported and (words[0] in _ENGLISH_OPENERS
                                       or any(word in _english_function_words() for word in words)):
            return None
        # read() asks Lingua only after langdetect found an unsupported language, so a Lingua reading means both
        # detectors ran; Lingua's is the one reported (the more accurate of the two on short texts)
        lingua = self.read(text).lingua
        return None if lingua is None or lingua in self.supported else lingua
