"""`medtune eval --rag`: grounded prompts from the real index, citation and leak signals, compare with/without."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.config import EvalConfig
from medtune.evaluate.grounded import citation_audit, grounded_prompts, grounding_scores, reference_leaked
from medtune.rag import open_retriever
from medtune.rag.retriever import Passage

FAST = EvalConfig(max_new_tokens=6, batch_size=8)


def _passage(text: str, score: float = 0.8) -> Passage:
    return Passage(id="p#0", title="T — q", url="https://example.org", source="GARD", focus_area="T", text=text,
                   score=score)


def test_grounding_scores_flag_citations_and_leaks() -> None:
    reference = "Alpha thalassemia is a blood disorder that reduces the production of hemoglobin in the body."
    found = [_passage("Alpha thalassemia is a blood disorder that reduces the production of hemoglobin"),
             _passage("Something unrelated about knee surgery and recovery after the operation.")]
    per = grounding_scores(["It reduces hemoglobin [1].", "Unsupported claim [7].", "No citation at all."],
                           [reference, "other", "other"], [found, found, [_passage("x" * 50, score=0.1)]])
    assert per["cites_source"] == [1.0, 0.0, 0.0]
    assert per["invalid_citation"] == [0.0, 1.0, 0.0]
    assert per["reference_in_index"] == [1.0, 0.0, 0.0]
    assert per["evidence_found"] == [1.0, 1.0, 0.0]
    assert per["top_passage_score"] == pytest.approx([0.8, 0.8, 0.1])
    assert not reference_leaked(reference, [_passage("short")])  # tiny windows never count as a leak


def test_without_references_the_signals_skip_only_the_leak_check() -> None:
    from medtune.rag.grounding import NOT_COVERED

    found = [_passage("Alpha thalassemia is a blood disorder that reduces the production of hemoglobin")]
    per = grounding_scores(["It reduces hemoglobin production [1].", NOT_COVERED, "No citation."], None,
                           [found, found, found])
    assert "reference_in_index" not in per  # rubric questions have no reference answer to leak
    assert per["says_not_covered"] == [0.0, 1.0, 0.0]
    assert per["cites_source"] == [1.0, 0.0, 0.0]
    assert per["citation_precision"] == [1.0, 0.0, 0.0]


def test_the_citation_audit_gives_each_cited_sentence_its_verdict() -> None:
    found = [_passage("Alpha thalassemia is a blood disorder that reduces the production of hemoglobin"),
             _passage("Something unrelated about knee surgery and recovery after the operation.")]
    audit = citation_audit("It reduces hemoglobin production [1]. Knee surgery cures it [1]. Made up [7].", found)
    assert audit["passages"] == ["p#0", "p#0"]
    verdicts = [(c["sentence"], c["number"], c["supported"]) for c in audit["citations"]]
    assert verdicts == [("It reduces hemoglobin production.", 1, True), ("Knee surgery cures it.", 1, False),
                        ("Made up.", 7, False)]
    assert audit["citations"][0]["support"] == 1.0 and audit["citations"][2]["support"] == 0.0
    per = grounding_scores(["It reduces hemoglobin production [1]. Knee surgery cures it [1]. Made up [7]."],
                           ["ref"], [found])
    assert per["citation_precision"] == [pytest.approx(1 / 3)]  # the metric counts the same verdicts


def _tiny_model(folder: Path) -> Path:
    """A tiny random Llama with the SmolLM2 tokenizer (the evaluation tests' model)."""
    import torch
    from tests.evaluate.conftest import _smollm2_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _smollm2_tokenizer(folder / "cache")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


def _prepared_from(rows: list[dict[str, Any]], folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text("".join(
        json.dumps({"id": r["pair_id"], "question": r["question"], "answer": r["answer"]}) + "\n" for r in rows))
    return folder


@pytest.mark.slow
def test_eval_with_retrieval_grounds_prompts_and_reports_the_leak(index_home, tmp_path: Path) -> None:
    rows = [r for r in index_home.rows if r["document_id"] == "2_GARD_QA/0000004"][:3]
    retriever = open_retriever("medquad")
    model = _tiny_model(tmp_path)
    from medtune.models import load_tokenizer

    batch = grounded_prompts([r["question"] for r in rows], retriever, load_tokenizer(str(model)), k=3)
    assert all("Sources:" in p and "[1] " in p and "Cite every statement" in p for p in batch.prompts)
    assert all(any(p.document_id == "2_GARD_QA/0000004" for p in found) for found in batch.passages)
    topic = grounded_prompts([r["question"] for r in rows], retriever, load_tokenizer(str(model)), k=3, header="topic")
    for prompt, found in zip(topic.prompts, topic.passages, strict=True):
        assert all(f"[{n}] {p.focus_area}\n" in prompt and p.title not in prompt for n, p in enumerate(found, 1))

    prepared = _prepared_from(rows, tmp_path / "prepared")
    runner = CliRunner()
    for name, extra in (("plain", []), ("rag", ["--rag", "medquad", "--rag-k", "3"])):
        result = runner.invoke(get_app(), ["eval", str(model), "--tasks", "medquad-test", "--data", str(prepared),
                                           "--max-new-tokens", "4", "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    with_rag = json.loads((tmp_path / "rag" / "results.json").read_text())
    without = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert with_rag["rag"] == "medquad" and with_rag["rag_k"] == 3 and without["rag"] is None
    task = with_rag["tasks"]["medquad-test"]
    assert task["passage_header"] == "question" and "passage_header" not in without["tasks"]["medquad-test"]
    # the test answers are in this index: every question finds its own reference, and the report says so
    assert task["metrics"]["reference_in_index"] == 1.0 and task["metrics"]["evidence_found"] == 1.0
    assert any("open-book test" in note and "--rag-hide-own-document" in note for note in task["notes"])
    assert "evidence_found" not in without["tasks"]["medquad-test"]["metrics"]
    assert "retrieval medquad (k=3)" in (tmp_path / "rag" / "report.md").read_text()
    assert all(len(sample["passages"]) == 3 and isinstance(sample["citations"], list)
               and isinstance(sample["reattributed"], list) for sample in task["samples"])
    # the served (repaired) precision is reported beside the model's own, never below it
    metrics = task["metrics"]
    assert metrics["citation_precision_reattributed"] >= metrics["citation_precision"]
    assert metrics["citation_reattributed"] == sum(bool(s["reattributed"]) for s in task["samples"]) / task["n"]

    result = runner.invoke(get_app(), ["compare", str(tmp_path / "plain"), str(tmp_path / "rag"),
                                       "--out", str(tmp_path / "cmp"), "--resamples", "100"])
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    metrics = {d["metric"] for d in comparison["differences"]}
    assert {"rougeL", "reference_unsupported_rate"} <= metrics
    assert "[rag: medquad]" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_hiding_the_own_document_retrieves_none_of_it(index_home, tmp_path: Path) -> None:
    from medtune.evaluate.grounded import own_documents
    from medtune.models import load_tokenizer

    rows = [r for r in index_home.rows if r["document_id"] == "2_GARD_QA/0000004"][:2]
    # a prepared test row carries the loader's original_id (FOLDER/DOC-PAIR); the index's pair id repeats the folder
    metas = [{"original_id": r["pair_id"].split("/", 1)[1], "group": "g1234"} for r in rows]
    assert all("2_GARD_QA/0000004" in own_documents(m) for m in metas)
    retriever = open_retriever("medquad")
    model = _tiny_model(tmp_path)
    questions = [r["question"] for r in rows]
    shown = grounded_prompts(questions, retriever, load_tokenizer(str(model)), k=3)
    assert all(any(p.document_id == "2_GARD_QA/0000004" for p in found) for found in shown.passages)
    hidden = grounded_prompts(questions, retriever, load_tokenizer(str(model)), k=3,
                              exclude_documents=[own_documents(m) for m in metas])
    assert all(len(found) == 3 and all(p.document_id != "2_GARD_QA/0000004" for p in found)
               for found in hidden.passages)

    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(
        {"id": r["pair_id"], "question": r["question"], "answer": r["answer"], **m}) + "\n"
        for r, m in zip(rows, metas, strict=True)))
    runner = CliRunner()
    base = ["eval", str(model), "--tasks", "medquad-test", "--data", str(folder), "--max-new-tokens", "4"]
    refused = runner.invoke(get_app(), [*base, "--rag-hide-own-document"])
    assert refused.exit_code != 0 and "needs --rag" in str(refused.exception)
    result = runner.invoke(get_app(), [*base, "--rag", "medquad", "--rag-k", "3", "--rag-hide-own-document",
                                       "--out", str(tmp_path / "hidden")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "hidden" / "results.json").read_text())
    assert report["rag_hide_own_document"] is True
    # the index holds these test answers, yet none is retrieved once their document is hidden
    assert report["tasks"]["medquad-test"]["metrics"]["reference_in_index"] == 0.0


@pytest.mark.slow
def test_a_rubric_task_with_retrieval_reports_citations_and_not_covered(index_home, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.rag import grounding
    from medtune.rag.grounding import says_not_covered

    model = _tiny_model(tmp_path)
    # a model folder that was trained on topic-headed grounded prompts is served (and scored) with them
    (model / "data_manifest.json").write_text(json.dumps({"grounded": {"passage_header": "topic"}}))
    headers: list[str] = []
    build = grounding.build_grounded_messages
    monkeypatch.setattr(grounding, "build_grounded_messages",
                        lambda *args, **kwargs: headers.append(kwargs.get("header", "question")) or build(*args, **kwargs))
    result = CliRunner().invoke(get_app(), ["eval", str(model), "--tasks", "rubric:consumer-health-dev", "--limit",
                                            "3", "--max-new-tokens", "4", "--rag", "medquad", "--rag-k", "2",
                                            "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    task = json.loads((tmp_path / "r" / "results.json").read_text())["tasks"]["rubric:consumer-health-dev"]
    metrics = task["metrics"]
    assert {"rubric_score", "cites_source", "citation_precision", "says_not_covered", "evidence_found"} <= set(metrics)
    assert "reference_in_index" not in metrics and task["passage_header"] == "topic" and headers == ["topic"] * 3
    assert metrics["says_not_covered"] == sum(says_not_covered(s["answer"]) for s in task["samples"]) / 3
    assert all(len(sample["passages"]) == 2 and isinstance(sample["citations"], list) for sample in task["samples"])
    assert "says_not_covered" in result.output  # the printed table shows it
