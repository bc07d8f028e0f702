"""`train.objective: dpo` on a tiny random Llama: pairs file checks, and DPO moving the policy towards the chosen side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.train.conftest import QUESTIONS, tiny_recipe

from medtune.errors import UserError
from medtune.train.preference import PREFERENCES, preference_dataset, read_pairs
from medtune.train.trainer import train_recipe


def _prepared_with_pairs(model_dir: Path, folder: Path) -> Path:
    """A prepared folder (splits rendered with the tiny model's template) plus preferences.jsonl: each question's
    answer is chosen over a looping, advice-free one."""
    from medtune.data.export import export_prepared
    from medtune.models import load_tokenizer
    from medtune.prompts import render_example

    tokenizer = load_tokenizer(str(model_dir))
    rows, pairs = [], []
    for number, (question, answer) in enumerate(QUESTIONS):
        prompt, completion = render_example(question, answer, "chat-template", tokenizer, None)
        _, bad = render_example(question, "I do not know. I do not know. I do not know.", "chat-template",
                                tokenizer, None)
        rows.append({"id": str(number), "question": question, "answer": answer, "source": "test", "focus_area": "",
                     "question_type": "", "url": "", "original_id": "", "group": str(number), "prompt": prompt,
                     "completion": completion})
        pairs.append({"id": str(number), "prompt": prompt, "chosen": completion, "rejected": bad,
                      "rejected_failure": "repetitive"})
    export_prepared(folder, {"train": rows, "validation": rows[:2], "test": rows[:1]}, [],
                    {"prompt_style": "chat-template", "system_prompt": None})
    (folder / PREFERENCES).write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    return folder


def test_dpo_trains_the_adapter_towards_the_chosen_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    prepared = _prepared_with_pairs(tiny_model_dir, tmp_path / "prepared")
    recipe = tiny_recipe(tiny_model_dir, objective="dpo", max_steps=6, dpo_beta=0.5, learning_rate=2e-2)
    recipe.data.prepared = str(prepared)
    run = train_recipe(recipe)
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    margins = [r["rewards/margins"] for r in records if "rewards/margins" in r]
    assert len(margins) >= 5, records
    assert margins[-1] > 0.0 and margins[-1] > margins[0]  # the chosen side gained log-probability over the rejected
    summary = run.summary_data()
    assert run.info()["status"] == "completed" and summary["steps"] == 6
    assert summary["train_rows"] == summary["train_kept"] == len(QUESTIONS) and summary["answer_tokens"] > 0
    assert (run.adapter / "adapter_model.safetensors").is_file()


def test_pairs_longer_than_the_context_are_dropped_and_counted(tiny_model_dir: Path, tmp_path: Path) -> None:
    from medtune.models import load_tokenizer

    prepared = _prepared_with_pairs(tiny_model_dir, tmp_path / "prepared")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    dataset, stats = preference_dataset(prepared, tokenizer, 128, "<|im_end|>")
    assert stats.kept == len(dataset) == len(QUESTIONS) and all(c.endswith("<|im_end|>") for c in dataset["chosen"])
    with pytest.raises(UserError, match="no preference pair to train on"):
        preference_dataset(prepared, tokenizer, 8, "<|im_end|>")


def test_a_missing_or_broken_pairs_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.distill"):
        read_pairs(tmp_path / PREFERENCES)
    path = tmp_path / PREFERENCES
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", "chosen": "c"}\n')
    with pytest.raises(UserError, match=r"line 2: no text under rejected"):
        read_pairs(path)
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\nnot json\n')
    with pytest.raises(UserError, match=r"line 2: not JSON"):
        read_pairs(path)


def test_a_distilled_folder_without_pairs_is_prepared_again_for_dpo(tiny_model_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import medtune.data.pipeline
    from medtune.train.trainer import ensure_prepared, prepared_dir_for

    calls: list[Path] = []

    def fake_prepare(data: object, out: Path, model: str) -> dict[str, object]:
        calls.append(out)
        (out / PREFERENCES).write_text("")
        return {}

    monkeypatch.setattr(medtune.data.pipeline, "prepare", fake_prepare)
    recipe = tiny_recipe(tiny_model_dir, objective="dpo")
    recipe.data.sources = [{"kind": "medquad", "path": "medquad"}]
    recipe.data.distill.enabled = True
    out = prepared_dir_for(recipe)
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")  # prepared before pairs were written
    sft = recipe.model_copy(update={"train": recipe.train.model_copy(update={"objective": "sft"})})
    assert ensure_prepared(sft) == out and calls == []  # SFT needs no pairs: the folder is reused
    assert ensure_prepared(recipe) == out and calls == [out]
    assert ensure_prepared(recipe) == out and calls == [out]  # now it has them
