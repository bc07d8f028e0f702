"""Index build on a real MedQuAD slice, hybrid retrieval, citations, no-evidence, no-op re-index, server mode, CLI."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.errors import UserError
from medtune.rag import open_retriever
from medtune.rag.builder import build_index, index_dir
from medtune.rag.grounding import (
    NO_EVIDENCE,
    NO_EVIDENCE_THRESHOLD,
    build_grounded_messages,
    check_citations,
    format_citations,
)
from medtune.rag.sources import IndexSource
from medtune.rag.store import VectorStore

pytestmark = pytest.mark.slow  # the session fixture embeds ~570 chunks with MiniLM on CPU

KNOWN = [  # question -> its MedQuAD document (all in the slice)
    ("What are the symptoms of ABCD syndrome ?", "2_GARD_QA/0000004"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_build_indexes_the_slice(index_home) -> None:
    manifest = index_home.manifest
    assert 400 <= manifest["pairs"] <= 700 and manifest["pairs"] == len(index_home.rows)
    assert manifest["chunks"] >= manifest["pairs"] and manifest["vectors"] == manifest["chunks"]
    assert manifest["embedded_this_run"] + manifest["vectors_from_cache"] == manifest["chunks"]
    assert manifest["embedded_this_run"] > 0.9 * manifest["chunks"] and not manifest["skipped"]
    folder = index_dir("medquad")
    assert (folder / "bm25").is_dir() and (folder / "qdrant").is_dir()
    first = json.loads((folder / "chunks.jsonl").open().readline())
    assert first["title"].count(" — ") >= 1 and first["url"].startswith("http") and first["source"]


def test_retrieval_returns_the_right_document(index_home) -> None:
    rows = index_home.rows
    known = KNOWN + [(rows[i]["question"], rows[i]["document_id"]) for i in (10, len(rows) // 2, len(rows) - 3)]
    retriever = open_retriever("medquad")
    for question, document in known:
        for mode in ("hybrid", "bm25", "dense"):
            passages = retriever.retrieve(question, 3, mode=mode)  # type: ignore[arg-type]
            assert len(passages) == 3
            assert document in [p.document_id for p in passages], (mode, question)
        assert passages[0].score >= NO_EVIDENCE_THRESHOLD
        assert all(0.0 <= p.score <= 1.0 for p in passages)


def test_citations_map_to_retrieved_passages(index_home) -> None:
    retriever = open_retriever("medquad")
    passages = retriever.retrieve("What are the symptoms of ABCD syndrome ?", 3)
    messages = build_grounded_messages("What are the symptoms of ABCD syndrome ?", passages)
    for number, passage in enumerate(passages, 1):
        assert f"[{number}] {passage.title}" in messages[1]["content"]
    sources = format_citations(passages).splitlines()
    assert sources[0] == "Sources:" and sources[1] == f"[1] {passages[0].title} — {passages[0].url}"
    check = check_citations("Hearing impairment and albinism [1]; see also [3] and [4].", passages)
    assert check.valid == [1, 3] and check.invalid == [4]
    assert [p.id for p in check.passages] == [passages[0].id, passages[2].id]


def test_off_topic_question_takes_the_no_evidence_path(index_home) -> None:
    retriever = open_retriever("medquad")
    for question in ("Who won the football world cup final in 1998?", "How do I bake sourdough bread at home?"):
        passages = retriever.retrieve(question, 4)
        assert passages and max(p.score for p in passages) < NO_EVIDENCE_THRESHOLD, question
        assert format_citations(passages) == NO_EVIDENCE
        assert "[1]" not in build_grounded_messages(question, passages)[1]["content"]


def test_reindexing_the_same_sources_is_a_noop_and_builds_resume(index_home) -> None:
    spec = IndexSource("medquad", index_home.source, f"medquad:{index_home.source}")
    started = time.perf_counter()
    again = build_index([spec], "medquad", max_words=index_home.max_words, progress=False)
    assert again["skipped"] and again["key"] == index_home.manifest["key"]
    assert time.perf_counter() - started < 20
    (index_dir("medquad") / "manifest.json").unlink()  # as if the build had been interrupted before the end
    resumed = build_index([spec], "medquad", max_words=index_home.max_words, progress=False)
    assert not resumed["skipped"] and resumed["embedded_this_run"] == 0
    assert resumed["vectors"] == resumed["chunks"] == index_home.manifest["chunks"]


def test_a_second_index_over_the_same_passages_takes_its_vectors_from_the_cache(index_home) -> None:
    spec = IndexSource("medquad", index_home.source, f"medquad:{index_home.source}")
    copy = build_index([spec], "medquad-copy", max_words=index_home.max_words, progress=False)
    assert copy["embedded_this_run"] == 0 and copy["vectors_from_cache"] == copy["chunks"] == copy["vectors"]
    chunk_ids = [json.loads(line)["id"] for line in (index_dir("medquad").joinpath("chunks.jsonl")).open()][:5]
    first = VectorStore("medquad", path=index_dir("medquad") / "qdrant").vectors(chunk_ids)
    second = VectorStore("medquad-copy", path=index_dir("medquad-copy") / "qdrant").vectors(chunk_ids)
    assert all(first[c] == pytest.approx(second[c], abs=1e-6) for c in chunk_ids)


def test_embedding_cache_embeds_only_new_texts(tmp_path: Path) -> None:
    from medtune.embeddings import embed, embed_cached

    cache = tmp_path / "cache.sqlite"
    texts = ["What causes gout?", "Gout is caused by uric acid crystals.", "What causes gout?"]
    vectors, embedded = embed_cached(texts, cache=cache)
    assert embedded == 2 and vectors.shape[0] == 3  # the repeated text is embedded once
    assert vectors[0] == pytest.approx(embed([texts[0]])[0], abs=1e-5)
    again, embedded_again = embed_cached([texts[1], "A new passage about asthma."], cache=cache)
    assert embedded_again == 1 and again[0] == pytest.approx(vectors[1], abs=1e-6)


def test_exclude_prepared_test_and_pairs(shared_data: Path, tmp_path: Path, slice_extractor) -> None:
    source = slice_extractor(shared_data, tmp_path / "src", {"6_NINDS_QA": 3})
    spec = IndexSource("medquad", source, f"medquad:{source}")
    from medtune.rag.sources import iter_rows

    rows = list(iter_rows(spec))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "test.jsonl").write_text(json.dumps({"id": "t", "question": "q", "answer": rows[0]["answer"]}) + "\n")
    manifest = build_index([spec], "small", exclude_prepared_test=prepared, exclude_pairs=[rows[1]["pair_id"]],
                           progress=False)
    assert manifest["dropped"]["excluded_test_answer"] >= 1 and manifest["dropped"]["excluded_pair"] == 1
    ids = {json.loads(line)["pair_id"] for line in (index_dir("small") / "chunks.jsonl").open()}
    assert rows[0]["pair_id"] not in ids and rows[1]["pair_id"] not in ids and rows[2]["pair_id"] in ids
    with pytest.raises(UserError, match="no test.jsonl"):
        build_index([spec], "small2", exclude_prepared_test=tmp_path)


def test_excluding_a_test_split_matches_answers_as_prepare_cleaned_them(tmp_path: Path) -> None:
    """A prepared test answer is the cleaned copy of a raw row (NFKC, HTML, whitespace): the index must still drop
    the raw row, or `prepare --grounded` finds the test answer in the index and refuses it."""
    import csv

    from medtune.data.cleaning import clean_text

    raw = ["Warfarin blocks vitamin K\u2011dependent clotting factors \u2026 made in the liver.",
           "<p>Take the tablet with food &amp; a full glass of water.</p>  It is absorbed well.",
           "Spacers help inhaled asthma medicine reach the lungs instead of the mouth."]
    source = tmp_path / "qa.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        writer.writerows([[f"Question number {i}?", answer] for i, answer in enumerate(raw)])
    cleaned = [clean_text(answer)[0] for answer in raw[:2]]
    assert cleaned[0] != raw[0] and cleaned[1] != raw[1]  # cleaning really changed both
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "test.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "question": "q", "answer": answer}) + "\n" for i, answer in enumerate(cleaned)))
    manifest = build_index([f"csv:{source}"], "cleaned", exclude_prepared_test=prepared, progress=False)
    assert manifest["dropped"]["excluded_test_answer"] == 2
    texts = [json.loads(line)["text"] for line in (index_dir("cleaned") / "chunks.jsonl").open()]
    assert texts == [raw[2]]


def test_server_mode_reports_an_unreachable_qdrant(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    store = VectorStore("medquad", url=url, timeout=2)
    assert store.collection == "medtune_medquad" and store.url == url
    with pytest.raises(UserError, match=f"Qdrant server {url}.*--qdrant-url"):
        store.ensure(384)
    source = tmp_path / "src"
    (source / "6_NINDS_QA").mkdir(parents=True)
    (source / "6_NINDS_QA" / "0000001.xml").write_text(
        '<Document id="0000001" source="NINDS" url="https://u"><Focus>X</Focus><QAPairs><QAPair pid="1">'
        '<Question qid="0000001-1" qtype="information">What is X ?</Question><Answer>X is a disorder.</Answer>'
        "</QAPair></QAPairs></Document>")
    result = CliRunner().invoke(get_app(), ["index", "build", f"medquad:{source}", "--qdrant-url", url])
    assert isinstance(result.exception, UserError) and f"Qdrant server {url}" in str(result.exception)


def test_cli_list_query_and_bad_source(index_home) -> None:
    runner = CliRunner()
    listed = runner.invoke(get_app(), ["index", "list"])
    assert listed.exit_code == 0 and "medquad" in listed.output
    queried = runner.invoke(get_app(), ["index", "query", "medquad", "What are the symptoms of ABCD syndrome ?",
                                        "-k", "2"])
    assert queried.exit_code == 0, queried.output
    assert "[1] ABCD syndrome" in queried.output and "Sources:" in queried.output
    bad = runner.invoke(get_app(), ["index", "build", "nosuchformat:/x"])
    assert isinstance(bad.exception, UserError) and "nosuchformat:/x" in str(bad.exception)
    missing = runner.invoke(get_app(), ["index", "query", "nosuchindex", "q"])
    assert isinstance(missing.exception, UserError) and "medtune index build" in str(missing.exception)
