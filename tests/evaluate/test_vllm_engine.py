"""``--engine vllm``: tested up to the switch here (no GPU); the real path is a gpu-marked test."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.config import EvalConfig
from medtune.errors import UserError
from medtune.evaluate.vllm_engine import engine_paths, require_vllm, sampling_kwargs


def test_engine_refused_without_vllm_or_cuda(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path,
                                             tmp_path: Path) -> None:
    from medtune.evaluate.runner import evaluate_model

    monkeypatch.setattr("medtune.serve.engine.vllm_available", lambda: False)
    with pytest.raises(UserError, match="--engine vllm needs the vllm package and a CUDA GPU"):
        require_vllm()
    with pytest.raises(UserError, match="--engine vllm"):
        evaluate_model(str(tiny_model_dir), ["rubric:consumer-health-dev"], limit=1, out_dir=tmp_path,
                       settings=EvalConfig(engine="vllm"))


def test_sampling_settings_follow_the_eval_config() -> None:
    greedy = sampling_kwargs(EvalConfig(max_new_tokens=77, top_p=0.5), [2, 7])
    assert greedy == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 77, "repetition_penalty": 1.0,
                      "stop_token_ids": [2, 7], "skip_special_tokens": True}
    sampled = sampling_kwargs(EvalConfig(temperature=0.7, top_p=0.9, repetition_penalty=1.1,
                                         repetition_scope="prompt+answer"), [])
    assert sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9 and sampled["repetition_penalty"] == 1.1


def test_engine_paths_split_run_folders_into_base_and_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert engine_paths(str(tiny_model_dir)) == (str(tiny_model_dir), None)


@pytest.mark.gpu
def test_vllm_generates_for_a_small_model(tiny_model_dir: Path) -> None:
    from medtune.evaluate.vllm_engine import VLLMGenerator

    generator = VLLMGenerator(str(tiny_model_dir))
    out = generator.generate(["Question: what is asthma?\nAnswer:"], EvalConfig(max_new_tokens=8), [])
    assert len(out) == 1 and 0 < out[0].new_tokens <= 8
