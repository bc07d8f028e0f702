"""The repetition penalty's scope: the answer so far (default) or, as transformers does by default, the prompt too."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.config import EvalConfig
from medtune.errors import UserError
from medtune.inference.base import GenerationSettings, repetition_penalty_kwargs


def _penalised(kwargs: dict, input_ids: list[int], vocab: int = 20) -> list[float]:
    import torch

    scores = torch.full((1, vocab), 2.0)
    processed = kwargs["logits_processor"][0](torch.tensor([input_ids]), scores)
    return processed[0].tolist()


def test_answer_scope_penalises_generated_tokens_only() -> None:
    kwargs = repetition_penalty_kwargs(1.5, "answer", prompt_length=3)
    assert kwargs["repetition_penalty"] == 1.0  # no second, prompt-counting processor from generate()
    scores = _penalised(kwargs, [10, 11, 2, 13])  # prompt 10, 11, end-of-turn 2; generated 13
    assert scores[10] == scores[11] == scores[2] == 2.0
    assert scores[13] == pytest.approx(2.0 / 1.5)
    assert repetition_penalty_kwargs(1.5, "prompt+answer", 3) == {"repetition_penalty": 1.5}
    assert repetition_penalty_kwargs(1.0, "answer", 3) == {"repetition_penalty": 1.0}
    with pytest.raises(ValueError, match="repetition scope"):
        repetition_penalty_kwargs(1.5, "prompt", 3)


def test_eval_generation_ignores_each_batchs_prompt(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.evaluate.generation import generate_answers

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    seen: list[tuple[int, int]] = []
    generate = model.generate

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        processor = kwargs["logits_processor"][0]
        seen.append((processor.prompt_ignore_length, int(kwargs["input_ids"].shape[1])))
        return generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    prompts = ["What is asthma?", "What are the early symptoms of type 2 diabetes in adults?", "Is gout curable?"]
    settings = EvalConfig(repetition_penalty=1.3, max_new_tokens=4, batch_size=2)
    answers = generate_answers(model, tokenizer, prompts, settings, stop_ids=[tokenizer.eos_token_id])
    assert len(answers) == 3 and all(a.new_tokens <= 4 for a in answers)
    assert len(seen) == 2 and all(ignored == width for ignored, width in seen)  # the whole padded prompt, per batch
    assert seen[0][1] != seen[1][1]


def test_chat_backend_uses_the_same_scope() -> None:
    from types import SimpleNamespace

    from medtune.inference.transformers_backend import generate_kwargs

    tokenizer = SimpleNamespace(pad_token_id=0)
    kwargs = generate_kwargs(GenerationSettings(repetition_penalty=1.2), tokenizer, prompt_length=9)
    assert kwargs["logits_processor"][0].prompt_ignore_length == 9 and kwargs["repetition_penalty"] == 1.0
    legacy = generate_kwargs(GenerationSettings(repetition_penalty=1.2, repetition_scope="prompt+answer"), tokenizer, 9)
    assert legacy["repetition_penalty"] == 1.2 and "logits_processor" not in legacy


def test_vllm_refuses_a_penalty_that_would_count_the_prompt() -> None:
    from medtune.evaluate.vllm_engine import sampling_kwargs

    with pytest.raises(UserError, match="--repetition-scope prompt\\+answer"):
        sampling_kwargs(EvalConfig(repetition_penalty=1.1), [])
    assert sampling_kwargs(EvalConfig(repetition_penalty=1.1, repetition_scope="prompt+answer"), [])[
        "repetition_penalty"] == 1.1
