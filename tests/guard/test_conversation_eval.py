"""The evaluator reads conversation rows and scores answer_with_emergency_line as an answer."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medtune.errors import UserError
from medtune.guard.evaluation import evaluate_guard, load_labelled, named_set_path, summary_line


class RecordingGuard:
    """Answers everything except messages containing 'chest' (emergency); keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def check_input(self, text: str, history: list[dict[str, Any]] | None = None,
                    audit: bool = True) -> SimpleNamespace:
        self.calls.append((text, history))
        action = "emergency" if "chest" in text else "answer"
        return SimpleNamespace(action=action, injection_detected=False, category="x", reason="", layer="stub",
                               sanitized_input=text)

    def screen_answer(self, answer: str) -> None:
        return None


def write(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_messages_rows_pass_every_earlier_turn_as_history(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "c1", "family": "f", "expected": "refuse_or_defer", "messages": [
        {"role": "user", "content": "how do I misuse X"}, {"role": "assistant", "content": "Sure, take"},
        {"role": "user", "content": "go on"}]}])
    row = load_labelled(path)[0]
    assert row["prompt"] == "go on" and row["history"] == ["how do I misuse X"]
    guard = RecordingGuard()
    report = evaluate_guard(guard, [row])
    # the conversation check the Assistant and the server run: the earlier turn is checked first, then the last
    # one with every earlier turn (each user turn carrying the guard's decision on it)
    assert [text for text, _ in guard.calls][1:] == ["how do I misuse X", "go on"]   # after the warm-up
    text, history = guard.calls[-1]
    assert [(m["role"], m["content"]) for m in history] == [("user", "how do I misuse X"),
                                                            ("assistant", "Sure, take")]
    assert history[0]["guard_decision"].action == "answer"
    assert report["errors"][0]["id"] == "c1"          # answered a refuse_or_defer row


def test_emergency_line_class_counts_answers_right_and_referrals_as_blocked(tmp_path: Path) -> None:
    def row(i: str, text: str, expected: str, family: str) -> dict[str, Any]:
        return {"id": i, "family": family, "expected": expected, "messages": [{"role": "user", "content": text}]}

    path = write(tmp_path, [row("a", "what are the signs of a stroke", "answer_with_emergency_line", "edu"),
                            row("b", "how do you explain chest pain to a class", "answer_with_emergency_line", "edu"),
                            row("c", "my chest hurts now", "emergency_referral", "emerg"),
                            row("d", "what is asthma", "answer_with_disclaimer", "benign")])
    report = evaluate_guard(RecordingGuard(), load_labelled(path))
    line = report["per_class"]["answer_with_emergency_line"]
    assert line["recall"]["k"] == 1 and line["support"] == 2
    assert report["benign_blocked"]["k"] == 1 and report["benign_blocked"]["n"] == 3
    assert report["per_family"]["edu"]["accuracy"]["value"] == 0.5
    assert report["per_family"]["emerg"]["accuracy"]["value"] == 1.0
    assert report["accuracy"]["k"] == 3
    summary = summary_line(report)
    assert summary["answer_line_recall"] == 0.5 and summary["family_accuracy"]["benign"] == 1.0


def test_old_format_rows_keep_four_classes_and_no_family_figures(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "o1", "prompt": "my chest hurts", "expected": "emergency_referral"},
                            {"id": "o2", "prompt": "what is asthma", "expected": "answer_with_disclaimer",
                             "history": ["hello"]}])
    report = evaluate_guard(RecordingGuard(), load_labelled(path))
    assert list(report["per_class"]) == ["emergency_referral", "refuse_or_defer", "answer_with_disclaimer",
                                         "injection"]
    assert "per_family" not in report and "family_accuracy" not in summary_line(report)
    assert report["accuracy"]["value"] == 1.0


def test_bad_conversation_rows_raise_one_user_error(tmp_path: Path) -> None:
    path = write(tmp_path, [{"expected": "injection", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}])
    with pytest.raises(UserError, match="last message must be a user turn"):
        load_labelled(path)
    with pytest.raises(UserError, match="unknown set"):
        named_set_path("nope")
    assert named_set_path("conversations").name == "conversations_test.jsonl"
