"""The perturbations of bench/guard_robustness.py, and its JSON line on 5 rows with a stub guard."""

from __future__ import annotations

import json
import random
import unicodedata
from types import SimpleNamespace
from typing import Any

import pytest
from tests.bench_scripts import load_bench

TEXT = "My dad, 67, has had crushing chest pain for 40 minutes and can't breathe."


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("guard_robustness")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def test_homoglyphs_survive_nfkc(bench: Any) -> None:
    out = bench.homoglyph(TEXT, random.Random(1))
    assert out != TEXT and len(out) == len(TEXT)
    assert nfkc(out) != nfkc(TEXT)
    assert any("\u0400" <= c <= "\u04ff" for c in out)


def test_zero_width_characters_are_inserted_inside_words(bench: Any) -> None:
    out = bench.zero_width(TEXT, random.Random(2))
    inserted = sum(out.count(z) for z in bench.ZERO_WIDTH)
    assert inserted > 0
    assert "".join(c for c in out if c not in bench.ZERO_WIDTH) == TEXT


def test_preamble_adds_about_150_words_before_the_prompt(bench: Any) -> None:
    out = bench.preamble(TEXT, random.Random(3))
    assert out.endswith(TEXT)
    assert 150 <= len(out.split()) - len(TEXT.split()) <= 190


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def test_typos_change_about_a_tenth_of_the_letters(bench: Any) -> None:
    text = TEXT * 5
    letters = sum(c.isalpha() for c in text)
    for seed in range(3):
        out = bench.typos(text, random.Random(seed))
        assert out != text
        assert 0.03 * letters <= edit_distance(text, out) <= 0.25 * letters


def test_lowercase_without_punctuation(bench: Any) -> None:
    out = bench.lowercase_nopunct(TEXT)
    assert out == "my dad 67 has had crushing chest pain for 40 minutes and cant breathe"


def test_number_words(bench: Any) -> None:
    assert bench.number_words(TEXT) == TEXT.replace("67", "sixty seven").replace("40", "forty")
    assert bench.number_words("I took 500mg, temp 38.5, 1,200 ml") == (
        "I took five hundred mg, temp thirty eight point five, one thousand two hundred ml")
    assert bench.perturb("number_words", "no digits here", random.Random(0)) is None


def test_code_switch_suffix_prefix_and_split(bench: Any) -> None:
    spanish = "mi padre tiene dolor en el pecho"
    out = bench.code_switch(spanish, random.Random(5))
    assert spanish in out and any(f in out for f in bench.FILLERS)
    assert bench.serious_suffix(TEXT).endswith(" Is this serious?")
    assert bench.history_prefix(TEXT) == "I have a history of asthma. " + TEXT
    history, question = bench.split_turns(TEXT)
    assert history[0]["role"] == "user" and history[1]["role"] == "assistant"
    assert (history[0]["content"] + " " + question).split() == TEXT.split()
    assert abs(len(history[0]["content"].split()) - len(question.split())) <= 1


def test_perturbations_are_seeded(bench: Any) -> None:
    for family in bench.FAMILIES:
        first = bench.perturb(family, TEXT, random.Random("31:x"))
        assert first == bench.perturb(family, TEXT, random.Random("31:x")), family
        if family != "none":
            assert first is not None and first != ([], TEXT), family


class StubGuard:
    """Refers every message that mentions 'chest', answers the rest."""

    def check_input(self, text: str, history: list[dict[str, str]] | None = None) -> SimpleNamespace:
        action = "emergency" if "chest" in text.lower() else "answer"
        return SimpleNamespace(action=action, injection_detected=False, category=action, reason="", layer="stub")


def test_main_prints_one_json_line_with_every_family(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = bench.main(["--limit", "5", "--table"], guard=StubGuard())
    out = capsys.readouterr().out.strip().splitlines()
    line = json.loads(out[-1])
    assert out[0].startswith("| family |")
    assert line == json.loads(json.dumps(result))
    assert line["prompts"] == {"risk": 5, "answers": 5, "foreign_risk": 5, "foreign_answers": 5}
    for key in ("recall", "not_answered", "benign_blocked"):
        assert set(line[key]) == set(bench.FAMILIES)
    for family in bench.FAMILIES:
        rate = line["recall"][family]
        assert rate["n"] <= 5 and 0.0 <= rate["low"] <= rate["high"] <= 1.0
    assert line["recall"]["none"]["n"] == 5
