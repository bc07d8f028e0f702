"""Normalisation before every layer of the guard (issue 31): what a determined user does to hide a message.

* **default-ignorable code points** (zero-width space and joiners, soft hyphen, word joiner, variation selectors,
  bidi controls ...) are removed: Unicode's ``Default_Ignorable_Code_Point`` property through the ``regex`` package;
* **confusables** (Cyrillic or Greek look-alikes inside Latin words: "сhеst раin") are folded to the Latin letter
  they imitate, from Unicode's confusables data (``confusable_homoglyphs`` package). Only words that mix scripts,
  or words of a message written mostly in Latin letters, are folded, so Russian or Greek text stays itself (the
  language layer must still read it as Russian or Greek);
* **embedded base64 / hex** runs are decoded; a run whose decoding is mostly printable text is replaced by that
  text, so a request hidden in base64 is judged by what it asks for (and an injection hidden there is still an
  injection). The decoded text is normalised again, once.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import regex

_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
_WORD = regex.compile(r"[\p{L}\p{M}]+")
#: base64 (standard or URL-safe) runs: at least 16 characters (12 decoded bytes) and a digit, capital or padding
#: so that long ordinary words ("internationalisation") are not tried.
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
#: hex runs: at least 8 bytes, optionally separated by spaces, colons or "\x".
_HEX = re.compile(r"(?:\\x|0x)?(?:[0-9A-Fa-f]{2}(?:[\s:]|\\x)?){8,}")
#: A decoded run is text when this share of its characters is printable and it holds letters and a space.
PRINTABLE_SHARE = 0.9


@dataclass
class Normalised:
    """The normalised text and what was changed."""

    text: str
    notes: list[str] = field(default_factory=list)


@cache
def _latin_map() -> dict[str, str]:
    """Confusable character -> the ASCII letter it imitates (Unicode confusables, via confusable_homoglyphs)."""
    from confusable_homoglyphs.confusables import confusables_data

    out: dict[str, str] = {}
    for char, glyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        latin = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalpha()]
        if latin:
            out[char] = latin[0]
    return out


def _script(char: str) -> str:
    """'latin', 'other' (a letter of another script) or '' (not a letter)."""
    if not char.isalpha():
        return ""
    return "latin" if unicodedata.name(char, "").startswith("LATIN") else "other"


def fold_confusables(text: str) -> tuple[str, int]:
    """Fold look-alike letters to Latin in mixed-script words (and in every word of a mostly Latin message);
    returns the text and how many characters were folded."""
    mapping = _latin_map()
    letters = [_script(c) for c in text if c.isalpha()]
    latin_share = letters.count("latin") / len(letters) if letters else 1.0
    folded = 0

    def fold(match: regex.Match[str]) -> str:
        nonlocal folded
        word = match.group(0)
        scripts = {_script(c) for c in word} - {""}
        if "other" not in scripts:
            return word
        if "latin" not in scripts and latin_share < 0.5:
            return word   # a word of a message written in another script
        if not all(c in mapping or _script(c) == "latin" or not c.isalpha() for c in word):
            return word   # a real word of another script inside an English message
        out = "".join(mapping.get(c, c) if _script(c) == "other" else c for c in word)
        folded += sum(a != b for a, b in zip(word, out, strict=True))
        return out

    return _WORD.sub(fold, text), folded


def remove_ignorable(text: str) -> tuple[str, int]:
    """Remove default-ignorable code points; returns the text and how many were removed."""
    out, count = _IGNORABLE.subn("", text)
    return out, count


def _as_text(data: bytes) -> str | None:
    """``data`` as text when it decodes as UTF-8 and is mostly printable, with letters and a space."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
    if not decoded or printable / len(decoded) < PRINTABLE_SHARE:
        return None
    if not re.search(r"[^\W\d_]{2,}", decoded) or " " not in decoded.strip():
        return None
    return decoded


def _decode_base64(run: str) -> str | None:
    if not re.search(r"[A-Z0-9=+/_-]", run) or not re.search(r"[a-z]", run):
        return None
    body = run.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = _as_text(decoder(padded))
        except (binascii.Error, ValueError):
            continue
        if text is not None:
            return text
    return None


def _decode_hex(run: str) -> str | None:
    digits = re.sub(r"\\x|0x|[\s:]", "", run)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _as_text(bytes.fromhex(digits))
    except ValueError:
        return None


def decode_embedded(text: str) -> tuple[str, list[str]]:
    """Replace embedded base64 and hex runs that decode to text by that text; returns (text, kinds decoded)."""
    kinds: list[str] = []

    def sub(pattern: re.Pattern[str], decode, kind: str, source: str) -> str:   # noqa: ANN001
        def replace(match: re.Match[str]) -> str:
            decoded = decode(match.group(0).strip())
            if decoded is None:
                return match.group(0)
            kinds.append(kind)
            trailing = match.group(0)[len(match.group(0).rstrip()):]
            return f" {decoded.strip()}{trailing or ' '}"
        return pattern.sub(replace, source)

    out = sub(_HEX, _decode_hex, "hex", text)
    out = sub(_BASE64, _decode_base64, "base64", out)
    return (re.sub(r"[ \t]{2,}", " ", out).strip(), kinds) if kinds else (text, kinds)


#: A word written with digits for letters ("0v3rd0s3", "h1gh"): letters and at least one of these digits.
_LEET_WORD = re.compile(r"(?<![\w.])(?=[\w@$]*[A-Za-z])(?=[\w@$]*[013457@$])[A-Za-z013457@$]{2,}(?![\w.])")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
#: Codes and amounts that mix digits and letters legitimately (b12, h1n1, 5ml, 3rd): they do not make a message
#: leetspeak; in a leetspeak message only amounts (_AMOUNT) keep their digits.
_NOT_LEET = re.compile(r"^\d+[a-z]{1,4}$|^[a-z]{1,3}\d{1,3}$|^[a-z]\d[a-z]\d$", re.IGNORECASE)
_AMOUNT = re.compile(r"^\d+(?:mg|mcg|ug|ml|g|kg|lbs?|iu|hrs?|h|am|pm|st|nd|rd|th|x|yo|mins?)$", re.IGNORECASE)
#: Leetspeak is undone only in a message with at least this many such words (one "b12" is not a code).
LEET_MIN_WORDS = 2
#: Letters spelled out one by one ("o v e r d o s e"): at least four single letters in a row.
_SPACED = re.compile(r"(?<![\w])(?:[A-Za-z] ){3,}[A-Za-z](?![\w])")


def undo_leetspeak(text: str) -> tuple[str, int]:
    """Digits written for letters turned back into letters ("h0w m4ny x4n4x" -> "how many xanax"), when the
    message has at least LEET_MIN_WORDS such words; amounts and codes (5ml, b12, h1n1) are left alone."""
    if sum(not _NOT_LEET.match(m.group(0)) for m in _LEET_WORD.finditer(text)) < LEET_MIN_WORDS:
        return text, 0
    words = [m for m in _LEET_WORD.finditer(text) if not _AMOUNT.match(m.group(0))]
    out, last = [], 0
    for match in words:
        out += [text[last:match.start()], match.group(0).translate(_LEET)]
        last = match.end()
    return "".join([*out, text[last:]]), len(words)


def join_spaced_letters(text: str) -> tuple[str, int]:
    """Letters spelled out with spaces joined and split into words ("l e t h a l d o s e" -> "lethal dose") by
    ``wordninja``'s English word-frequency segmenter."""
    import wordninja

    runs = 0

    def join(match: re.Match[str]) -> str:
        nonlocal runs
        runs += 1
        return " ".join(wordninja.split(match.group(0).replace(" ", "")))

    return _SPACED.sub(join, text), runs


#: The character-level steps, in order, each with the note it leaves when it changed something.
_STEPS: tuple[tuple[Callable[[str], tuple[str, int]], str], ...] = (
    (remove_ignorable, "removed {} invisible character(s)"),
    (fold_confusables, "folded {} look-alike character(s)"),
    (undo_leetspeak, "read {} word(s) written with digits for letters"),
    (join_spaced_letters, "joined {} spelled-out word(s)"),
)


def normalise(text: str, *, decode: bool = True) -> Normalised:
    """NFKC, default-ignorable code points removed, confusables folded, leetspeak undone, spelled-out letters
    joined, embedded base64/hex decoded."""
    notes: list[str] = []
    out = unicodedata.normalize("NFKC", text)
    for step, note in _STEPS:
        out, count = step(out)
        if count:
            notes.append(note.format(count))
    if decode:
        out, kinds = decode_embedded(out)
        if kinds:
            notes.append("decoded " + ", ".join(sorted(set(kinds))))
            inner = normalise(out, decode=False)
            out, notes = inner.text, notes + inner.notes
    return Normalised(out, notes)
