"""Messages the guard cannot read (not English) get the emergency numbers, never an unchecked answer; English
messages are never mistaken for another language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.guard import Guard
from medtune.guard.config import default_guard_config
from medtune.guard.language import LanguageCheck, language_name

DATA = Path(__file__).resolve().parents[2] / "src" / "medtune" / "guard" / "data"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_no_message_in_another_language_is_answered_unchecked(guard: Guard) -> None:
    rows = _rows("other_languages.jsonl")
    assert len({r["language"] for r in rows}) >= 20 and sum(r["label"] == "emergency" for r in rows) >= 30
    for row in rows:
        decision = guard.check_input(row["prompt"])
        assert decision.action != "answer", row
        assert "112" in (decision.response or ""), row   # the emergency numbers, in every non-answer here
        if decision.layer == "language":
            assert decision.category.startswith("defer:language:")


@pytest.mark.parametrize("name", ["frozen_test.jsonl", "train_emergency.jsonl", "train_extra.jsonl",
                                  "train_imperative.jsonl"])
def test_english_prompts_are_never_read_as_another_language(name: str) -> None:
    check = LanguageCheck(["en"])
    texts = [r.get("prompt") or r["text"] for r in _rows(name)]
    assert len(texts) >= 90
    flagged = [text for text in texts if check.unsupported_language(text)]
    assert flagged == []


def test_short_english_questions_that_fool_both_detectors_stay_english() -> None:
    check = LanguageCheck(["en"])
    for text in ("explain hypothyroidism", "how do i stop snoring", "does hand sanitizer kill norovirus",
                 "How does benzoyl peroxide work on acne?", "Can you overdose on vitamin D?"):
        assert check.unsupported_language(text) is None, text
    assert check.unsupported_language("meine Mutter hat Brustschmerzen und ist bewusstlos") == "de"
    assert check.unsupported_language("我朋友吃了很多安眠药，叫不醒") == "zh"


def test_reply_leads_with_the_line_in_the_message_language_then_english(guard: Guard) -> None:
    decision = guard.check_input("mi madre tiene gripe y fiebre desde ayer, qué hago")
    assert decision.layer == "language" and decision.category == "defer:language:es"
    text = decision.response or ""
    assert text.index("número de emergencias") < text.index("call your local emergency number")
    assert "Spanish" in text and text.rstrip().endswith(default_guard_config().disclaimer.strip()[-40:])
    assert language_name("sv") == "Swedish" and language_name("xx") == "xx"


def test_an_emergency_in_a_known_language_is_referred_led_by_its_line(guard: Guard) -> None:
    """Issue 31: the emergency vocabulary of the languages whose emergency line the guard has."""
    decision = guard.check_input("mi madre se desmayó y no respira bien, qué hago")
    assert decision.action == "emergency" and decision.layer == "rules"
    text = decision.response or ""
    assert text.index("número de emergencias") < text.index("Call your local emergency number")


def test_language_check_can_be_switched_off() -> None:
    config = default_guard_config().model_copy(update={"check_language": False})
    decision = Guard(config).check_input("¿cuánto tiempo dura la gripe? necesito saberlo")
    assert decision.layer != "language"


def test_a_supported_language_is_not_deferred() -> None:
    config = default_guard_config().model_copy(update={"supported_languages": ["en", "es"]})
    decision = Guard(config).check_input("¿cuánto tiempo dura la gripe? necesito saberlo")
    assert decision.layer != "language"


def test_real_consumer_searches_are_never_read_as_another_language(shared_data: Path) -> None:
    """HealthSearchQA: short Latinate questions ("Is Rett syndrome fatal?") that both detectors misread."""
    path = shared_data / "healthsearchqa" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    check = LanguageCheck(["en"])
    questions = {json.loads(line)["question"] for line in path.open(encoding="utf-8") if line.strip()}
    assert len(questions) > 3000
    assert [q for q in questions if check.unsupported_language(q)] == []
