"""Grounded fine-tuning data (`medtune prepare --grounded INDEX`) and the citation-precision metric."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medtune.config import DataConfig, SourceSpec, recipe_from_dict
from medtune.errors import UserError
from medtune.evaluate.grounded import calibrate_threshold, grounding_scores
from medtune.rag.grounding import (
    GROUNDING_INSTRUCTIONS,
    NOT_COVERED,
    SUPPORT_THRESHOLD,
    build_grounded_messages,
    check_citations,
    cite_sentences,
    says_not_covered,
    support_score,
)
from medtune.rag.retriever import Passage

CALIBRATION = Path(__file__).resolve().parents[1] / "data" / "citation_support.jsonl"
SYSTEM = "You are a test assistant for medical questions."
SLICE = {"3_GHR_QA": 6, "2_GARD_QA": 30}  # ~190 answered pairs, ~230 chunks: the embedding time is the budget


def _passage(text: str, score: float = 0.8) -> Passage:
    return Passage(id="p#0", title="T — q", url="", source="GARD", focus_area="T", text=text, score=score)


# --- citation precision and the not-covered check (no index) ---------------------------------------------------

def test_citation_precision_counts_supported_pairs() -> None:
    anemia = _passage("Alpha thalassemia is a blood disorder that reduces the production of hemoglobin.")
    knee = _passage("Knee replacement surgery replaces the damaged joint with metal and plastic parts.")
    found = [anemia, knee]
    answers = [
        "Alpha thalassemia reduces the production of hemoglobin [1]. It is a blood disorder [1].",  # 2 of 2
        "Alpha thalassemia reduces the production of hemoglobin [1]. It is cured by a new kind of gene therapy [2].",  # 1 of 2
        "Alpha thalassemia is a blood disorder that reduces hemoglobin production [1, 2].",  # [1] yes, [2] no
        "Alpha thalassemia reduces the production of hemoglobin [7].",  # not a listed source: supports nothing
        "Alpha thalassemia reduces the production of hemoglobin.",  # cites nothing: 0
        "Alpha thalassemia reduces the production of hemoglobin. [1] Knee parts are metal and plastic. [2]",  # leading
        NOT_COVERED,
    ]
    per = grounding_scores(answers, ["ref"] * len(answers), [found] * len(answers))
    assert per["citation_precision"] == pytest.approx([1.0, 0.5, 0.5, 0.0, 0.0, 1.0, 0.0])
    assert per["cites_source"] == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert per["says_not_covered"] == [0.0] * 6 + [1.0]
    assert len({len(v) for v in per.values()}) == 1


@pytest.mark.parametrize(("answer", "expected"), [
    (NOT_COVERED, True),
    ("The provided sources do not mention whether this condition is inherited.", True),
    ("I could not find a source that answers this.", True),
    ("No relevant source was found for this question.", True),
    ("This is not covered by the sources listed.", True),
    ("Vitiligo is not contagious [1].", False),
    ("The sources say it is inherited in an autosomal recessive pattern [2].", False),
])
def test_says_not_covered(answer: str, expected: bool) -> None:
    assert says_not_covered(answer) is expected


def test_support_threshold_is_calibrated_on_the_labelled_pairs() -> None:
    rows = [json.loads(line) for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 20 and {True, False} == {r["supported"] for r in rows}
    assert all(r["sentence"] and r["passage"] and r["note"] for r in rows)
    scores = [support_score(r["sentence"], r["passage"]) for r in rows]
    labels = [bool(r["supported"]) for r in rows]
    cut, accuracy = calibrate_threshold(scores, labels)
    shipped = sum((s >= SUPPORT_THRESHOLD) == y for s, y in zip(scores, labels, strict=True)) / len(rows)
    assert abs(cut - SUPPORT_THRESHOLD) < 0.01 and shipped == accuracy >= 0.9  # 27 of 28 at 0.61
    assert calibrate_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == (pytest.approx(0.5), 1.0)


def test_cite_sentences_places_citations_before_the_final_punctuation() -> None:
    text, statements, cited = cite_sentences(
        "What is X? X is a rare disease (1 in 10). It is inherited. Unsupported claim!\n- Being male",
        lambda sentence: None if "Unsupported" in sentence else 2)
    assert text == "What is X? X is a rare disease (1 in 10) [2]. It is inherited [2]. Unsupported claim!\n" \
                   "- Being male [2]"
    assert (statements, cited) == (4, 3)
    assert cite_sentences('Or (rarely) not. It may be called "familial AAA."', lambda _: 1)[0] == \
        'Or (rarely) not [1]. It may be called "familial AAA [1]."'


def test_grounded_settings_in_a_recipe() -> None:
    recipe = recipe_from_dict({"name": "g", "data": {"grounded": {"index": "medquad-grounded", "k": 3}}})
    assert recipe.data.grounded.k == 3 and recipe.data.grounded.no_answer_share == 0.15
    assert "grounded" in recipe.data.model_dump() and "grounded" not in DataConfig().model_dump()  # hashes unchanged
    assert {"no_answer_passages", "passage_header"}.isdisjoint(recipe.data.model_dump()["grounded"])  # nor here
    topic = recipe_from_dict({"name": "g", "data": {"grounded": {"index": "i", "passage_header": "topic"}}})
    assert topic.data.model_dump()["grounded"]["passage_header"] == "topic"
    other = recipe_from_dict({"name": "g", "data": {"grounded": {"index": "i", "no_answer_passages": "other_question"}}})
    assert other.data.model_dump()["grounded"]["no_answer_passages"] == "other_question"
    with pytest.raises(UserError, match="no_answer_passages"):
        recipe_from_dict({"name": "g", "data": {"grounded": {"index": "i", "no_answer_passages": "random"}}})
    with pytest.raises(UserError, match=r"data\.grounded\.indx'; did you mean 'index'"):
        recipe_from_dict({"name": "g", "data": {"grounded": {"indx": "x"}}})


# --- prepare --grounded on a real MedQuAD slice ------------------------------------------------------------------

@dataclass
class Grounded:
    """A prepared slice (plain), an index excluding its test split, and the grounded prepare of the same data."""

    home: Path
    source: Path
    plain: Path
    out: Path
    tokenizer: Any

    def data(self, **extra: Any) -> DataConfig:
        return DataConfig(sources=[SourceSpec(kind="medquad", path=str(self.source))], split=(0.6, 0.2, 0.2),
                          system_prompt=SYSTEM, seed=3, **extra)


def _rows(folder: Path, split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _document(row: dict[str, Any]) -> str:
    """MedQuAD document of a prepared row (question ids are ``<document>-<n>``)."""
    return str(row["original_id"]).rsplit("-", 1)[0]


@pytest.fixture(scope="module")
def grounded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, slice_extractor: Any) -> Grounded:
    from tests.evaluate.conftest import _smollm2_tokenizer

    from medtune.data.pipeline import prepare
    from medtune.rag.builder import build_index

    base = tmp_path_factory.mktemp("grounded_sft")
    source = slice_extractor(shared_data, base / "src", SLICE)
    tokenizer = _smollm2_tokenizer(tmp_path_factory.getbasetemp() / "shared_model_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDTUNE_HOME", str(base / "home"))
    try:
        setup = Grounded(base / "home", source, base / "plain", base / "grounded", tokenizer)
        prepare(setup.data(), setup.plain, tokenizer=tokenizer, progress=False)
        build_index([f"medquad:{source}"], "slice", exclude_prepared_test=setup.plain, progress=False)
        prepare(setup.data(grounded={"index": "slice", "k": 3, "no_answer_share": 0.25}), setup.out,
                tokenizer=tokenizer, progress=False)
    finally:
        patch.undo()
    return setup


@pytest.fixture
def grounded_home(grounded: Grounded, monkeypatch: pytest.MonkeyPatch) -> Grounded:
    monkeypatch.setenv("MEDTUNE_HOME", str(grounded.home))
    return grounded


@pytest.mark.slow
def test_grounded_prompts_are_the_served_format_with_cited_targets(grounded_home: Grounded) -> None:
    from medtune.prompts import render_messages
    from medtune.rag import open_retriever

    chunks = open_retriever("slice").by_id
    manifest = json.loads((grounded_home.out / "manifest.json").read_text())
    info = manifest["grounded"]
    assert info["index"] == "slice" and info["k"] == 3 and info["test_answers_in_index"] == 0
    # an answer that is also a test answer (GHR repeats its inheritance texts verbatim) was left out of the index:
    # its rows become no-answer examples
    assert info["own_passage_missing"] <= 3 and info["cited_statements"] >= 0.9 * info["statements"] > 0
    records = {r["id"]: r for r in map(json.loads, (grounded_home.out / "grounded.jsonl").open())}
    seen = {"with": 0, "without": 0}
    for split in ("train", "validation"):
        rows = _rows(grounded_home.out, split)
        wanted = round(0.25 * len(rows))
        assert wanted <= sum(records[r["id"]]["no_answer"] for r in rows) <= wanted + info["own_passage_missing"]
        for row in rows:
            record = records[row["id"]]
            passages = [{**chunks[c], "score": float(record["evidence"])} for c in record["passages"]]
            assert 1 <= len(passages) <= 3 and (record["evidence"] or record["no_answer"])
            # exactly what ask --rag / eval --rag render: the served function, the run's system prompt, the template
            messages = build_grounded_messages(row["question"], passages, SYSTEM)
            assert row["prompt"] == render_messages(messages, "chat-template", grounded_home.tokenizer)
            assert not record["evidence"] or ("Sources:\n\n[1] " in row["prompt"]
                                              and GROUNDING_INSTRUCTIONS in row["prompt"])
            target = row["completion"].removesuffix("<|im_end|>\n")
            answer_words = " ".join(row["answer"].lower().split())
            own = [n for n, p in enumerate(passages, 1) if " ".join(p["text"].lower().split()) in answer_words]
            if record["no_answer"]:
                seen["without"] += 1
                assert target == NOT_COVERED and record["own"] == [] and own == []
                assert all(p["document_id"] != _document(row) for p in passages)
            else:
                seen["with"] += 1
                assert record["own"] == own and own  # the own passage (a window of the answer) is there
                check = check_citations(target, passages)
                assert check.valid and not check.invalid and set(check.valid) <= set(own)
    assert seen["with"] > 20 and seen["without"] > 5


@pytest.mark.slow
def test_other_question_no_answer_examples_show_another_questions_passages(grounded_home: Grounded,
                                                                           tmp_path: Path) -> None:
    from medtune.data.pipeline import prepare
    from medtune.rag import open_retriever

    chunks = open_retriever("slice").by_id
    out = tmp_path / "other"
    prepare(grounded_home.data(grounded={"index": "slice", "k": 3, "no_answer_share": 0.25,
                                         "no_answer_passages": "other_question"}),
            out, tokenizer=grounded_home.tokenizer, progress=False)
    assert json.loads((out / "manifest.json").read_text())["grounded"]["no_answer_passages"] == "other_question"
    same_topic = {r["id"]: r for r in map(json.loads, (grounded_home.out / "grounded.jsonl").open())}
    other = {r["id"]: r for r in map(json.loads, (out / "grounded.jsonl").open())}
    assert same_topic.keys() == other.keys()
    changed = 0
    for split in ("train", "validation"):
        for row in _rows(out, split):
            before, after = same_topic[row["id"]], other[row["id"]]
            assert before["no_answer"] == after["no_answer"]  # the same rows, seeded
            if not after["no_answer"]:
                assert after["passages"] == before["passages"]  # with-answer examples are untouched
                continue
            assert row["completion"].startswith(NOT_COVERED) and after["evidence"]
            assert all(chunks[c]["document_id"] != _document(row) for c in after["passages"])
            changed += set(after["passages"]) != set(before["passages"])
    no_answer = sum(r["no_answer"] for r in other.values())
    assert no_answer > 5 and changed >= 0.8 * no_answer  # off-topic passages, not the question's own neighbours


@pytest.mark.slow
def test_topic_headers_hide_each_passages_question_in_training_and_in_serving(grounded_home: Grounded,
                                                                             tmp_path: Path) -> None:
    from tests.rag.fakes import ScriptedBackend

    from medtune.data.pipeline import prepare
    from medtune.inference.assistant import Assistant
    from medtune.prompts import render_messages, served_passage_header
    from medtune.rag import open_retriever

    chunks = open_retriever("slice").by_id
    out = tmp_path / "topic"
    prepare(grounded_home.data(grounded={"index": "slice", "k": 3, "no_answer_share": 0.25, "passage_header": "topic"}),
            out, tokenizer=grounded_home.tokenizer, progress=False)
    run = tmp_path / "run"  # a run folder keeps a copy of the prepared manifest; serving reads the header from it
    run.mkdir()
    shutil.copy(out / "manifest.json", run / "data_manifest.json")
    assert served_passage_header(run) == "topic" and served_passage_header(grounded_home.out) == "question"
    assistant = Assistant(ScriptedBackend("x"), None, system_prompt=SYSTEM, passage_header=served_passage_header(run))
    records = {r["id"]: r for r in map(json.loads, (out / "grounded.jsonl").open())}
    checked = 0
    for row in _rows(out, "train"):
        record = records[row["id"]]
        if not record["evidence"]:
            continue
        passages = [Passage(id=c, title=chunks[c]["title"], url=chunks[c]["url"], source=chunks[c]["source"],
                            focus_area=chunks[c]["focus_area"], text=chunks[c]["text"], score=1.0)
                    for c in record["passages"]]
        for number, passage in enumerate(passages, 1):
            assert f"[{number}] {passage.focus_area or passage.source}\n" in row["prompt"]
            assert passage.title not in row["prompt"]  # the question a passage answers is not shown
        served = render_messages(assistant.build_messages(row["question"], [], passages), "chat-template",
                                 grounded_home.tokenizer)
        assert served == row["prompt"]  # ask --rag renders what the run trained on
        checked += 1
    assert checked > 20


@pytest.mark.slow
def test_no_test_document_in_any_grounded_prompt(grounded_home: Grounded) -> None:
    from medtune.rag import open_retriever

    chunks = open_retriever("slice").by_id
    test = _rows(grounded_home.out, "test")
    assert [r["id"] for r in test] == [r["id"] for r in _rows(grounded_home.plain, "test")]  # the same split
    documents = {_document(r) for r in test}
    answers = [" ".join(r["answer"].split())[:200] for r in test]
    records = [json.loads(line) for line in (grounded_home.out / "grounded.jsonl").open()]
    assert {r["split"] for r in records} == {"train", "validation"}  # test rows keep their plain prompts
    for record in records:
        assert not documents & {chunks[c]["document_id"] for c in record["passages"]}
    for split in ("train", "validation"):
        for row in _rows(grounded_home.out, split):
            assert not any(answer in " ".join(row["prompt"].split()) for answer in answers)
    assert all("Sources:" not in r["prompt"] for r in test)


@pytest.mark.slow
def test_an_index_keeping_test_answers_is_refused(grounded_home: Grounded, tmp_path: Path) -> None:
    from medtune.cli import get_app
    from medtune.data.pipeline import prepare
    from medtune.rag.builder import index_dir

    manifest = json.loads((index_dir("slice") / "manifest.json").read_text())
    manifest["settings"]["exclude_prepared_test"] = None
    index_dir("open").mkdir()
    (index_dir("open") / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(get_app(), ["prepare", "-s", f"medquad:{grounded_home.source}", "--out",
                                            str(tmp_path / "x"), "--grounded", "open", "--prompt-style",
                                            "llama3-header"])
    assert isinstance(result.exception, UserError), result.output
    assert "built without --exclude-prepared-test" in str(result.exception)
    assert not (tmp_path / "x").exists()  # refused before reading the sources
    # an index that excludes another split's test answers (another seed) still holds some of this one's
    with pytest.raises(UserError, match=r"holds \d+ of the \d+ test answers"):
        prepare(grounded_home.data(grounded={"index": "slice"}).model_copy(update={"seed": 11}), tmp_path / "y",
                tokenizer=grounded_home.tokenizer, progress=False)
    shutil.rmtree(index_dir("open"))


def test_a_reused_question_id_is_not_taken_for_the_same_answer() -> None:
    from medtune.data.grounded import GroundedBuilder

    # MedQuAD CancerGov documents reuse one question id ("0000013_3-2") for several sub-diseases' answers
    test_answer = ("Signs and symptoms of juvenile myelomonocytic leukemia include fever, weight loss, and feeling "
                   "very tired. Check with your doctor if you have any of the following: fever for no known reason.")
    other_answer = ("Tests that examine the blood and bone marrow are used to detect (find) and diagnose "
                    "myelodysplastic/myeloproliferative neoplasms. The following tests may be used.")
    assert not GroundedBuilder._same_answer(test_answer, other_answer)
    cleaned = test_answer.replace(" - ", " ").replace(",", " ,").upper()  # what cleaning may change
    assert GroundedBuilder._same_answer(test_answer, cleaned)
    assert not GroundedBuilder._same_answer("", test_answer)
