"""`medtune guard train`: family-grouped split, thresholds from validation, an artefact that loads, a card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.errors import UserError
from medtune.guard.classifier import IntentClassifier, segments
from medtune.guard.training import (
    choose_threshold,
    default_training_files,
    load_training_rows,
    split_by_family,
    train_classifier,
)


def test_shipped_training_data_is_large_varied_and_grouped() -> None:
    rows = load_training_rows(default_training_files())
    labels = {r["label"] for r in rows}
    assert len(rows) >= 1500 and labels == {"emergency", "self_harm", "misuse", "defer", "injection", "benign"}
    kinds = {r["kind"] for r in rows if r["label"] == "emergency"}
    assert len(kinds) == 9
    assert sum(r["hard_negative"] for r in rows) >= 300


def test_split_never_separates_a_family() -> None:
    rows = load_training_rows(default_training_files())
    train, val = split_by_family(rows)
    train_families = {rows[i]["family"] for i in train}
    assert not train_families & {rows[i]["family"] for i in val}
    assert 0.1 < len(val) / len(rows) < 0.3


def test_frozen_test_set_is_not_in_the_training_data() -> None:
    from medtune.guard.evaluation import frozen_test_path, load_labelled

    def norm(text: str) -> str:
        return " ".join(text.casefold().split())

    training = {norm(r["text"]) for r in load_training_rows(default_training_files())}
    assert not [r["prompt"] for r in load_labelled(frozen_test_path()) if norm(r["prompt"]) in training]


def test_threshold_keeps_the_target_recall() -> None:
    scores = [0.45, 0.4, 0.3, 0.2, 0.1]
    positive = [True, True, True, False, False]
    threshold = choose_threshold(scores, positive, 1.0)
    assert 0.2 < threshold <= 0.3
    assert 0.3 < choose_threshold(scores, positive, 0.6) <= 0.4
    assert choose_threshold([0.9, 0.8], [True, True], 1.0) == 0.5  # never above an even chance


def test_segments_split_long_stories() -> None:
    assert segments("short question?") == ["short question?"]
    story = "We were at the park. It was sunny. Then he fell off the slide and won't wake up. Help."
    parts = segments(story)
    assert parts[0] == story and "Then he fell off the slide and won't wake up." in parts


def test_bad_training_rows_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "label": "benign"}\n{"text": "x", "label": "scary"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl row 2"):
        load_training_rows([bad])
    missing_kind = tmp_path / "kind.jsonl"
    missing_kind.write_text('{"text": "chest pain now", "label": "emergency"}\n')
    with pytest.raises(UserError, match="kind"):
        load_training_rows([missing_kind])


@pytest.mark.slow
def test_train_a_small_classifier_end_to_end(tmp_path: Path) -> None:
    rows = load_training_rows(default_training_files())
    by_family: dict[str, list[dict]] = {}
    for row in rows:
        by_family.setdefault(row["family"], []).append(row)
    small = tmp_path / "small.jsonl"
    with small.open("w") as handle:
        for number, family in enumerate(sorted(by_family)):
            if number % 3 == 0:
                for row in by_family[family]:
                    handle.write(json.dumps({**row, "family": family}) + "\n")
    result = train_classifier([small], tmp_path / "out", seed=1, progress=lambda line: None)
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["rows"] > 300 and set(card["thresholds"]) == {"emergency", "refuse_or_defer", "injection"}
    assert (tmp_path / "out" / "CARD.md").read_text().count("|") > 20
    model = IntentClassifier.load(result["artefact"])
    scores = model.score("my dad is clutching his chest and sweating, he can barely talk")
    assert scores.probs["emergency"] > scores.probs["benign"]
    assert model.score("what vitamins are in spinach?").flagged == []


def test_thresholds_are_chosen_on_the_conversation_validation_sets(monkeypatch) -> None:  # noqa: ANN001
    """The whole guard runs on a validation set over the grid; the choice keeps the out-of-fold emergency recall,
    and a grid point that loses emergencies is never chosen however accurate it is otherwise."""
    from medtune.guard import thresholds
    from medtune.guard.classifier import IntentClassifier

    classifier = IntentClassifier.load()
    shipped = dict(classifier.thresholds)
    monkeypatch.setattr(thresholds, "EMERGENCY_GRID", (0.99, shipped["emergency"]))
    monkeypatch.setattr(thresholds, "REFUSE_GRID", (shipped["refuse_or_defer"],))
    result = thresholds.choose_on_conversations(classifier, ("conversations_val",), progress=lambda _: None)
    assert result["rows"] == 166 and len(result["trials"]) == 2
    high = next(t for t in result["trials"] if t["emergency"] == 0.99)
    assert high["emergency_recall"] < result["out_of_fold"]["emergency_recall"]   # the classifier's emergencies lost
    assert result["chosen"]["emergency"] != 0.99
    assert classifier.thresholds["emergency"] == result["chosen"]["emergency"]
