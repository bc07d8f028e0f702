"""medtune's default multiple-choice prompts are lm-evaluation-harness's own, character for character.

The reference is the *installed* lm-eval: its preprocess functions (medqa_4options, medmcqa, pubmedqa) and its MMLU
YAML templates rendered with lm-eval's own jinja helper, fed the rows :mod:`lmeval_bridge` writes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from medtune.evaluate.multiple_choice import sample_examples
from medtune.evaluate.tasks import TASKS
from medtune.evaluate.tasks.lmeval_bridge import to_lmeval_doc, write_lmeval_docs

lm_eval = pytest.importorskip("lm_eval")
TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"


def _preprocess(folder: str, module: str):  # type: ignore[no-untyped-def]
    """Import one of lm-eval's task preprocess modules from its file."""
    spec = importlib.util.spec_from_file_location(module, TASKS_DIR / folder / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(loaded)  # type: ignore[union-attr]
    return loaded


def _yaml(path: Path) -> dict:  # type: ignore[type-arg]
    """Read an lm-eval YAML, ignoring its ``!function`` tags."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506


@pytest.mark.parametrize(("task", "folder", "module"), [("medqa", "medqa", "preprocess_medqa"),
                                                         ("medmcqa", "medmcqa", "utils_medmcqa"),
                                                         ("pubmedqa", "pubmedqa", "preprocess_pubmedqa")])
def test_prompts_equal_lm_eval_preprocess(shared_data: Path, task: str, folder: str, module: str) -> None:
    lm_task = TASKS[task]
    reference = _preprocess(folder, module)
    for example in sample_examples(lm_task.load(shared_data, {}), 25, 7, task):
        doc = to_lmeval_doc(task, example)
        assert lm_task.mc_prompt(example) == reference.doc_to_text(doc)
        choices = _yaml(next((TASKS_DIR / folder).glob(f"{folder}*.yaml")))["doc_to_choice"]
        assert lm_task.continuations(example) == [" " + c for c in choices]
    # the target lm-eval scores is the one medtune scores
    if task == "medqa":
        assert reference.doc_to_target(doc) == example.gold


def test_mmlu_prompt_equals_lm_eval_template(shared_data: Path) -> None:
    from lm_eval.utils import apply_template

    template = _yaml(TASKS_DIR / "mmlu" / "default" / "_default_template_yaml")
    task = TASKS["mmlu-medical"]
    examples = sample_examples(task.load(shared_data, {}), 30, 7, "mmlu-medical")
    assert len({e.meta["subject"] for e in examples}) >= 4
    for example in examples:
        subject_yaml = _yaml(TASKS_DIR / "mmlu" / "default" / f"mmlu_{example.meta['subject']}.yaml")
        expected = subject_yaml["description"] + apply_template(template["doc_to_text"], to_lmeval_doc("mmlu-medical",
                                                                                                    example))
        assert task.mc_prompt(example) == expected
        assert task.continuations(example) == [" A", " B", " C", " D"]


def test_mmlu_shots_are_the_first_dev_items_of_the_same_subject(shared_data: Path) -> None:
    task = TASKS["mmlu-medical"]
    pool = task.shots_loader(shared_data)  # type: ignore[misc]
    example = next(e for e in task.load(shared_data, {}) if e.meta["subject"] == "college_medicine")
    shots = task.select_shots(pool, 2, example)
    assert [s.id for s in shots] == ["mmlu-college_medicine-dev-0", "mmlu-college_medicine-dev-1"]
    prompt = task.mc_prompt(example, shots)
    # lm-eval: description once, then each shot "<text> <letter>\n\n", then the question
    assert prompt.startswith("The following are multiple choice questions (with answers) about college medicine.\n\n")
    assert prompt.count("The following are") == 1 and prompt.count("\nAnswer:") == 3
    assert f"Answer: {'ABCD'[shots[0].gold]}\n\n" in prompt


def test_cloze_variants_score_option_text(shared_data: Path) -> None:
    example = TASKS["medqa-cloze"].load(shared_data, {})[0]
    prompt = TASKS["medqa-cloze"].mc_prompt(example)
    assert prompt.endswith("\nAnswer:") and "\nA. " not in prompt
    assert TASKS["medqa-cloze"].continuations(example) == [" " + c for c in example.choices]


def test_bridge_writes_one_file_per_mmlu_subject(shared_data: Path, tmp_path: Path) -> None:
    examples = sample_examples(TASKS["mmlu-medical"].load(shared_data, {}), 40, 3, "mmlu-medical")
    paths = write_lmeval_docs("mmlu-medical", examples, tmp_path)
    assert set(paths) == {f"mmlu_{e.meta['subject']}" for e in examples}
    assert sum(len(p.read_text().splitlines()) for p in paths.values()) == 40
    with pytest.raises(ValueError, match="no lm-eval twin"):
        to_lmeval_doc("liveqa", examples[0])
