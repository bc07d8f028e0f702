"""Serve-time citation repair (`reattribute_citations`): hand-worked cases, the hand-labelled validation moves, the
eval metric beside the model's own precision, and the assistant's note."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.rag.fakes import FixedRetriever, ScriptedBackend

from medtune.evaluate.grounded import citation_audit, grounding_scores
from medtune.rag.grounding import cited_sentences, reattribute_citations, reattribution_note
from medtune.rag.retriever import Passage

LABELS = Path(__file__).resolve().parents[1] / "data" / "citation_reattribution.jsonl"
ANEMIA = "Alpha thalassemia is a blood disorder that reduces the production of hemoglobin."
KNEE = "Knee replacement surgery replaces the damaged joint with metal and plastic parts."


def _passage(text: str, number: int = 0, score: float = 0.8) -> Passage:
    return Passage(id=f"p#{number}", title=f"Title {number}", url="", source="GARD", focus_area="T", text=text,
                   score=score)


FOUND = [_passage(ANEMIA, 1), _passage(KNEE, 2)]


@pytest.mark.parametrize(("answer", "served", "moved"), [
    # wrong numbers on copied text are swapped to the passage that states each sentence
    ("Knee replacement replaces the damaged joint [1]. Alpha thalassemia reduces hemoglobin [2].",
     "Knee replacement replaces the damaged joint [2]. Alpha thalassemia reduces hemoglobin [1].", [(1, 2), (2, 1)]),
    # right numbers and sentences no passage states are left as written
    ("Alpha thalassemia reduces hemoglobin [1]. It is cured by a new gene therapy [2].",
     "Alpha thalassemia reduces hemoglobin [1]. It is cured by a new gene therapy [2].", []),
    # a number that is not listed moves to the supporting passage
    ("Knee surgery uses metal and plastic parts [7].", "Knee surgery uses metal and plastic parts [2].", [(7, 2)]),
    # a wrong extra number in one bracket, or in a second bracket, is dropped instead of repeated
    ("Alpha thalassemia reduces hemoglobin [1, 2].", "Alpha thalassemia reduces hemoglobin [1].", [(2, 1)]),
    ("Alpha thalassemia reduces hemoglobin [1] [2].", "Alpha thalassemia reduces hemoglobin [1].", [(2, 1)]),
    # a citation opening the next sentence belongs to the sentence before it
    ("Knee replacement uses metal and plastic parts. [1] Hemoglobin production falls in alpha thalassemia [1].",
     "Knee replacement uses metal and plastic parts. [2] Hemoglobin production falls in alpha thalassemia [1].",
     [(1, 2)]),
    # newlines and list markers survive
    ("- Knee surgery replaces the damaged joint [1]\n- Thalassemia is a blood disorder [1]",
     "- Knee surgery replaces the damaged joint [2]\n- Thalassemia is a blood disorder [1]", [(1, 2)]),
])
def test_reattribute_citations_renumbers_only_unsupported_citations(answer: str, served: str,
                                                                    moved: list[tuple[int, int]]) -> None:
    repaired = reattribute_citations(answer, FOUND)
    assert repaired.text == served
    assert [(old, new) for _, old, new in repaired.moved] == moved
    # only bracket contents change, never the words
    strip = re.compile(r"\s*\[[\d,\s]+\]")
    assert strip.sub("", repaired.text) == strip.sub("", answer)


def test_reattribute_citations_without_passages_or_citations_changes_nothing() -> None:
    assert reattribute_citations("Knee surgery replaces the joint [1].", []).text == "Knee surgery replaces the joint [1]."
    assert reattribute_citations("Knee surgery replaces the joint.", FOUND).moved == []


def test_sentence_units_keep_the_cited_sentences_of_the_metric() -> None:
    answer = "Alpha thalassemia reduces hemoglobin. [1] It is a blood disorder [1, 2].\n\nSources: [1]"
    assert cited_sentences(answer) == [("Alpha thalassemia reduces hemoglobin.", [1]),
                                       ("It is a blood disorder.", [1, 2]), ("Sources:", [1])]


def test_hand_labelled_validation_moves_land_on_a_supporting_passage() -> None:
    """30 seeded moves from the grounded run's validation answers, labelled by reading both passages."""
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 30 and all(r["note"] and r["sentence"] for r in rows)
    moved_to_cited_second = 0
    for row in rows:
        passages = [_passage(row["cited_passage"], 1), _passage(row["moved_to_passage"], 2)]
        repaired = reattribute_citations(f"{row['sentence']} [1]", passages)
        moved_to_cited_second += repaired.text.endswith("[2]")
    assert moved_to_cited_second == len(rows)  # the code still makes every labelled move
    assert sum(r["moved_to_supports"] for r in rows) >= 29  # and the labels say the new passage states the sentence
    assert sum(r["cited_supports"] for r in rows) <= 3  # the moves mostly fix citations that were wrong


def test_eval_reports_the_served_precision_beside_the_models_own() -> None:
    answers = [
        "Knee replacement replaces the damaged joint [1]. Alpha thalassemia reduces hemoglobin [1].",  # 1 of 2 -> 2/2
        "Alpha thalassemia reduces hemoglobin [1]. It is cured by a new gene therapy [2].",  # 1 of 2, unchanged
        "Alpha thalassemia reduces hemoglobin.",  # cites nothing: 0 both ways
    ]
    per = grounding_scores(answers, ["ref"] * 3, [FOUND] * 3)
    assert per["citation_precision"] == pytest.approx([0.5, 0.5, 0.0])
    assert per["citation_precision_reattributed"] == pytest.approx([1.0, 0.5, 0.0])
    assert per["citation_reattributed"] == [1.0, 0.0, 0.0]
    audit = citation_audit(answers[0], FOUND)
    assert audit["reattributed"] == [{"sentence": "Knee replacement replaces the damaged joint.", "cited": 1,
                                      "served": 2}]


def test_the_assistant_serves_repaired_citations_with_a_note_and_can_keep_the_models() -> None:
    from medtune.cli._assistant import after_stream
    from medtune.inference.assistant import Assistant, history_turns

    wrong = "Knee replacement replaces the damaged joint [1]."
    reply = Assistant(ScriptedBackend(wrong), guard=None, retriever=FixedRetriever(FOUND)).ask("What is knee replacement?")
    assert reply.raw_answer == wrong and reply.answer == "Knee replacement replaces the damaged joint [2]."
    assert reply.citation_note == reattribution_note(reply.reattributed) and "[1] -> [2]" in reply.citation_note
    assert reply.text.startswith(reply.answer) and reply.citation_note in reply.text and reply.cited == [2]
    assert after_stream(reply).startswith("\n\n" + reply.answer)  # the streamed text changed: shown again
    assert history_turns(reply)[1]["content"] == reply.answer

    kept = Assistant(ScriptedBackend(wrong), guard=None, retriever=FixedRetriever(FOUND), repair_citations=False).ask("Q?")
    assert kept.answer == wrong and kept.citation_note is None and kept.cited == [1]
    assert after_stream(kept).startswith("\n\nSources:")  # only the rest of the reply follows the stream
    right = Assistant(ScriptedBackend("Knee surgery replaces the damaged joint [2]."), guard=None,
                      retriever=FixedRetriever(FOUND)).ask("Q?")
    assert right.reattributed == [] and "Citation check" not in right.text
