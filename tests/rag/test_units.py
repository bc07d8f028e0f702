"""Fast tests: chunking, reciprocal rank fusion, grounding prompts, citation checks, recall@k, sources."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from tests.rag.fakes import FixedRetriever, ScriptedBackend

from medtune.errors import UserError
from medtune.rag.chunking import chunk_rows, make_title, split_words
from medtune.rag.grounding import (
    GROUNDING_INSTRUCTIONS,
    NO_EVIDENCE,
    NO_EVIDENCE_INSTRUCTIONS,
    build_grounded_messages,
    check_citations,
    citation_warning,
    format_citations,
)
from medtune.rag.hybrid import reciprocal_rank_fusion
from medtune.rag.recall import recall_at_k
from medtune.rag.retriever import Passage
from medtune.rag.sources import parse_source, prepared_split_rows


def _passage(n: int, score: float = 0.7) -> Passage:
    return Passage(id=f"p{n}", title=f"Focus {n} — What is focus {n} ?", url=f"https://example.org/{n}",
                   source="GARD", focus_area=f"Focus {n}", text=f"Passage number {n} text.", score=score)


def test_split_words_windows_overlap_and_cover_the_text() -> None:
    words = [f"w{i}" for i in range(25)]
    windows = split_words(" ".join(words), max_words=10, overlap=3)
    assert [w.split()[0] for w in windows] == ["w0", "w7", "w14", "w21"]
    assert windows[-1].split()[-1] == "w24"
    assert all(len(w.split()) <= 10 for w in windows)
    assert split_words("short  answer\n here", 10, 3) == ["short answer here"]
    assert split_words("   ", 10, 3) == []


def test_chunk_rows_keep_provenance_and_stable_ids() -> None:
    row = {"pair_id": "2_GARD_QA/0000004-1", "document_id": "2_GARD_QA/0000004", "question": "What is X ?",
           "answer": " ".join(["word"] * 250), "source": "GARD", "focus_area": "X", "url": "https://u"}
    chunks = list(chunk_rows([row], max_words=160, overlap=30))
    assert [c.id for c in chunks] == ["2_GARD_QA/0000004-1#0", "2_GARD_QA/0000004-1#1"]
    assert {c.title for c in chunks} == {"X — What is X ?"} and chunks[0].source == "GARD"
    assert chunks[0].url == "https://u" and chunks[1].document_id == "2_GARD_QA/0000004"
    assert make_title("", "What  is  X ?") == "What is X ?"


def test_reciprocal_rank_fusion_prefers_agreement_and_is_normalised() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"]])
    ids = [d for d, _ in fused]
    assert set(ids[:2]) == {"a", "b"} and ids[2:] == ["c", "d"]
    assert reciprocal_rank_fusion([["x"], ["x"]])[0] == ("x", 1.0)
    assert all(0 < s <= 1 for _, s in fused)


def test_grounded_messages_number_the_sources_and_ask_for_citations() -> None:
    passages = [_passage(1), _passage(2)]
    messages = build_grounded_messages("What is focus 1?", passages, system_prompt="Be careful.")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("Be careful.") and GROUNDING_INSTRUCTIONS in messages[0]["content"]
    user = messages[1]["content"]
    assert "[1] Focus 1 — What is focus 1 ?\nPassage number 1 text." in user
    assert "[2] Focus 2" in user and user.endswith("Question: What is focus 1?")
    citations = format_citations(passages)
    assert citations.splitlines() == ["Sources:", "[1] Focus 1 — What is focus 1 ? — https://example.org/1",
                                      "[2] Focus 2 — What is focus 2 ? — https://example.org/2"]


def test_topic_headers_show_the_focus_not_the_question() -> None:
    no_focus = replace(_passage(2), focus_area="")
    user = build_grounded_messages("What is focus 1?", [_passage(1), no_focus], header="topic")[1]["content"]
    assert "[1] Focus 1\nPassage number 1 text." in user and "What is focus 1 ?" not in user
    assert f"[2] {no_focus.source}\n" in user  # the source name stands in for a missing focus
    # the list printed after the answer still names each passage's question for the reader
    assert "[1] Focus 1 — What is focus 1 ?" in format_citations([_passage(1)])
    with pytest.raises(ValueError, match="passage header 'title'"):
        build_grounded_messages("What is focus 1?", [_passage(1)], header="title")


def test_no_evidence_when_best_score_is_under_threshold() -> None:
    weak = [_passage(1, 0.1), _passage(2, 0.2)]
    messages = build_grounded_messages("Who won the cup?", weak)
    assert NO_EVIDENCE_INSTRUCTIONS in messages[0]["content"] and "[1]" not in messages[1]["content"]
    assert format_citations(weak) == NO_EVIDENCE
    assert format_citations([]) == NO_EVIDENCE
    assert format_citations(weak, threshold=0.15).startswith("Sources:\n[1]")


def test_check_citations_maps_numbers_and_flags_missing_sources() -> None:
    passages = [_passage(1), _passage(2), _passage(3)]
    check = check_citations("Rare [1]. Inherited [2, 3] and [1]. Treated [7]; see [2-3] and [0].", passages)
    assert check.cited == [1, 2, 3, 7, 0]
    assert check.valid == [1, 2, 3] and check.invalid == [7, 0] and not check.ok
    assert [p.id for p in check.passages] == ["p1", "p2", "p3"]
    assert check_citations("Rare [2].", passages).ok
    assert not check_citations("No citation at all.", passages).ok


def test_citation_warning_names_invented_sources_and_uncited_answers() -> None:
    passages = [_passage(1), _passage(2)]
    assert citation_warning(check_citations("Rare [1]. Inherited [2].", passages)) is None
    invented = citation_warning(check_citations("Rare [1]. Treated with X [7].", passages))
    assert invented is not None and "[7]" in invented and "[1]" not in invented
    uncited = citation_warning(check_citations("Rare and inherited.", passages))
    assert uncited is not None and "cites none" in uncited


@pytest.mark.parametrize(("answer", "valid", "invalid", "warned"), [
    ("Focus 1 is rare [1] and inherited [2].", [1, 2], [], False),
    ("Focus 1 is rare [1] and treated with X [5].", [1], [5], True),
    ("Focus 1 is rare.", [], [], True),
])
def test_assistant_checks_the_citations_of_every_grounded_answer(answer: str, valid: list[int], invalid: list[int],
                                                                 warned: bool) -> None:
    from medtune.inference.assistant import Assistant

    assistant = Assistant(ScriptedBackend(answer), guard=None, retriever=FixedRetriever([_passage(1), _passage(2)]))
    reply = assistant.ask("What is focus 1?")
    assert reply.raw_answer == answer
    assert (reply.cited, reply.invalid_citations, reply.citation_warning is not None) == (valid, invalid, warned)
    answer_part, _, sources = reply.text.rpartition("\n\nSources:")
    assert sources.strip().startswith("[1] Focus 1") and "[2] Focus 2" in sources
    assert (reply.citation_warning in answer_part) if warned else ("Citation check" not in reply.text)


def test_no_evidence_answers_are_not_citation_checked() -> None:
    from medtune.inference.assistant import Assistant

    weak = [_passage(1, score=0.1)]
    reply = Assistant(ScriptedBackend("I found no source."), guard=None, retriever=FixedRetriever(weak)).ask("Q?")
    assert reply.citation_warning is None and reply.text.endswith(NO_EVIDENCE)


def test_sources_only_mode_says_not_covered_without_calling_the_model() -> None:
    from medtune.inference.assistant import Assistant
    from medtune.rag.grounding import NOT_COVERED

    class SilentBackend(ScriptedBackend):
        def stream_chat(self, messages, settings):
            raise AssertionError("the model must not be called under the sources-only threshold")

    passages = [_passage(1, score=0.55), _passage(2, score=0.5)]
    reply = Assistant(SilentBackend("unused"), guard=None, retriever=FixedRetriever(passages),
                      rag_min_score=0.6).ask("Q?")
    assert reply.raw_answer == NOT_COVERED and reply.text.endswith(NO_EVIDENCE) and reply.tokens == 0
    answered = Assistant(ScriptedBackend("Focus 1 is rare [1]."), guard=None, retriever=FixedRetriever(passages),
                         rag_min_score=0.55).ask("Q?")
    assert answered.raw_answer == "Focus 1 is rare [1]." and answered.cited == [1]


def test_recall_at_k() -> None:
    retrieved = [["d1", "d2"], ["d3", "d1", "d2"], ["d9"]]
    assert recall_at_k(retrieved, ["d1", "d2", "d1"], (1, 2, 3)) == {1: 1 / 3, 2: 1 / 3, 3: 2 / 3}
    with pytest.raises(ValueError):
        recall_at_k(retrieved, ["d1"])


def test_source_specs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown source"):
        parse_source(str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        parse_source("medquad:no/such/file.tar.gz")
    prepared = tmp_path / "prep"
    prepared.mkdir()
    (prepared / "manifest.json").write_text("{}")
    row = {"id": "r1", "question": "What is X ?", "answer": "X is rare.", "source": "GARD", "focus_area": "X",
           "url": "https://u", "original_id": "0000004-1", "group": "medquad:2_GARD_QA/0000004"}
    (prepared / "test.jsonl").write_text(json.dumps(row) + "\n" + '{"question": "q"}\n')
    assert parse_source(str(prepared)).kind == "prepared"
    rows = prepared_split_rows(prepared, "test")
    first = next(rows)
    assert first["document_id"] == "2_GARD_QA/0000004" and first["pair_id"] == "2_GARD_QA/0000004-1"
    with pytest.raises(UserError, match="test.jsonl:2"):
        next(rows)


def test_own_documents_name_the_index_document_of_a_medquad_row(shared_data: Path) -> None:
    import itertools

    from medtune.data.sources.medquad import _xml_members, parse_document
    from medtune.evaluate.grounded import own_documents
    from medtune.rag.sources import _normalise

    members = itertools.islice(_xml_members(shared_data / "medquad" / "MedQuAD_xml.tar.gz"), 6)
    rows = [row for name, data in members for row in parse_document(data, name)]
    assert rows
    for row in rows:
        assert _normalise(row, "medquad", 0)["document_id"] in own_documents({"original_id": row["original_id"]})
    assert own_documents({}) == set()


@pytest.mark.parametrize(("manifest", "message"), [
    ('{"grounded": {"passage_header": "title"}}', "grounded.passage_header is 'title'; it must be one of question, topic"),
    ('{"grounded": ', "not valid JSON"),
])
def test_a_broken_run_manifest_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], manifest: str,
                                                  message: str) -> None:
    import sys

    from medtune.cli import main

    (tmp_path / "data_manifest.json").write_text(manifest)
    monkeypatch.setattr(sys, "argv", ["medtune", "eval", str(tmp_path), "--tasks", "rubric:consumer-health-dev",
                                      "--limit", "1", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert str(tmp_path / "data_manifest.json") in " ".join(err.split()) and message in " ".join(err.split())
