"""Loader counts of the real benchmark files, the MedMCQA 1-based mapping, the LiveQA tag variants, the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.errors import UserError
from medtune.evaluate.tasks import TASKS, get_task, parse_tasks
from medtune.evaluate.tasks.free_text_sets import parse_liveqa
from medtune.evaluate.tasks.multiple_choice_sets import medmcqa_gold_index


@pytest.mark.parametrize(("name", "count"), [("medqa", 1273), ("medmcqa", 4183), ("pubmedqa", 500),
                                             ("mmlu-medical", 1089), ("medicationqa", 690), ("liveqa", 104)])
def test_loader_counts(shared_data: Path, name: str, count: int) -> None:
    examples = TASKS[name].load(shared_data, {})
    assert len(examples) == count
    assert len({e.id for e in examples}) == count


def test_medmcqa_cop_is_one_based(shared_data: Path) -> None:
    first = TASKS["medmcqa"].load(shared_data, {})[0]
    # SOURCE.md sample: cop 1 -> opa "Impulse through myelinated fibers is slower ..."
    assert first.gold == 0
    assert first.choices[first.gold].startswith("Impulse through myelinated fibers is slower")
    assert [medmcqa_gold_index(c) for c in (1, 2, 3, 4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        medmcqa_gold_index(0)


def test_medqa_gold_matches_answer_text(shared_data: Path) -> None:
    first = TASKS["medqa"].load(shared_data, {})[0]
    assert first.choices[first.gold] == "Tell the attending that he cannot fail to disclose this mistake"


def test_pubmedqa_label_distribution(shared_data: Path) -> None:
    golds = [e.gold for e in TASKS["pubmedqa"].load(shared_data, {})]
    assert (golds.count(0), golds.count(1), golds.count(2)) == (276, 169, 55)
    first = TASKS["pubmedqa"].load(shared_data, {})[0]
    assert first.context.count("\n") >= 1 and TASKS["pubmedqa"].mc_prompt(first).startswith("Abstract: ")


def test_liveqa_accepts_both_reference_tags(tmp_path: Path) -> None:
    xml = tmp_path / "live.xml"
    xml.write_text("""<root><NLM-QUESTION qid="TQ1"><NIST-PARAPHRASE>What is A?</NIST-PARAPHRASE>
      <ReferenceAnswers><RefAnswer aid="1"><ANSWER> A is a letter. </ANSWER></RefAnswer></ReferenceAnswers>
      </NLM-QUESTION><NLM-QUESTION qid="TQ2"><NIST-PARAPHRASE>What is B?</NIST-PARAPHRASE><ReferenceAnswers>
      <ReferenceAnswer aid="2"><ANSWER>B too.</ANSWER></ReferenceAnswer></ReferenceAnswers></NLM-QUESTION></root>""")
    examples = parse_liveqa(xml)
    assert [(e.id, e.reference) for e in examples] == [("TQ1", "A is a letter."), ("TQ2", "B too.")]


def test_liveqa_real_file_has_167_references(shared_data: Path) -> None:
    examples = TASKS["liveqa"].load(shared_data, {})
    assert sum(len(e.meta["references"]) for e in examples) == 167


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(UserError, match="valid tasks: medquad-test.*mmlu-medical"):
        get_task("usmle")
    assert [t.name for t in parse_tasks("medqa, pubmedqa")] == ["medqa", "pubmedqa"]


def test_mc_prompt_format_and_shots(shared_data: Path) -> None:
    task = TASKS["mmlu-medical"]
    examples = task.load(shared_data, {})
    shots = task.shots_loader(shared_data)  # type: ignore[misc]
    assert len(shots) == 30
    prompt = task.mc_prompt(examples[0], shots[:2])
    assert prompt.count("Answer:") == 3 and prompt.endswith("\nAnswer:")
    assert "\nA. " in prompt and task.random_baseline == 0.25
    assert TASKS["pubmedqa"].random_baseline == pytest.approx(1 / 3)
    assert task.continuations(examples[0]) == [" A", " B", " C", " D"]
    assert TASKS["mmlu-medical-cloze"].continuations(examples[0])[0] == " " + examples[0].choices[0]


def test_validation_task_reads_the_validation_split_and_only_it_is_not_held_out(tmp_path: Path) -> None:
    import json

    from medtune.evaluate.tasks import is_held_out

    for split in ("train", "validation", "test"):
        rows = [{"id": f"{split}-{n}", "question": f"{split} question {n}?", "answer": f"{split} answer {n}."}
                for n in range(3)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = get_task("medquad-validation").load(tmp_path, {"data_dir": tmp_path})
    assert [e.id for e in examples] == ["validation-0", "validation-1", "validation-2"]
    assert get_task("medquad-test").load(tmp_path, {"data_dir": tmp_path})[0].id == "test-0"
    assert not is_held_out("medquad-validation") and not is_held_out("rubric:consumer-health-dev")
    assert not is_held_out("prepared-validation")
    for name in ("medquad-test", "prepared-test", "rubric:consumer-health", "medqa", "medmcqa", "pubmedqa", "mmlu-medical", "liveqa"):
        assert is_held_out(name), name
    from medtune.evaluate.rubric import resolve_rubric_path

    assert is_held_out(f"rubric:{resolve_rubric_path('consumer-health')}")  # the test set by its path


def test_medquad_tasks_score_the_medquad_rows_of_a_mixed_split(tmp_path: Path) -> None:
    import json

    rows = [{"id": f"{source}-{n}", "question": f"{source} question {n}?", "answer": f"{source} answer {n}.",
             "source": source} for source in ("medquad", "meadow") for n in range(2)]
    for split in ("validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    context = {"data_dir": tmp_path}
    for split in ("validation", "test"):
        assert [e.id for e in get_task(f"medquad-{split}").load(tmp_path, context)] == ["medquad-0", "medquad-1"]
        assert len(get_task(f"prepared-{split}").load(tmp_path, context)) == 4
    # a folder prepared from other data only: the task scores the whole split
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({**r, "source": "mine"}) + "\n" for r in rows))
    assert len(get_task("medquad-test").load(tmp_path, context)) == 4
