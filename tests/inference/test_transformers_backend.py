"""The transformers backend: streaming, greedy determinism, stop strings, beams, real SmolLM2."""

from __future__ import annotations

import pytest

from medtune.inference.base import GenerationSettings
from medtune.inference.registry import load_backend

QUESTION = [{"role": "user", "content": "What is asthma?"}]


def test_stream_equals_chat_and_is_deterministic_when_greedy(tiny_backend) -> None:
    settings = GenerationSettings(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
    pieces = list(tiny_backend.stream_chat(QUESTION, settings))
    assert len(pieces) >= 2  # really streamed, not one blob
    assert "".join(pieces) == tiny_backend.chat(QUESTION, settings)


def test_stop_string_cuts_the_answer(tiny_backend) -> None:
    settings = GenerationSettings(temperature=0, max_new_tokens=16, repetition_penalty=1.0)
    full = tiny_backend.chat(QUESTION, settings)
    stop = full.strip()[4:7]
    assert stop
    cut = tiny_backend.chat(QUESTION, GenerationSettings(temperature=0, max_new_tokens=16, repetition_penalty=1.0,
                                                         stop=[stop]))
    assert stop not in cut and full.startswith(cut)


def test_beams_and_sampling_run(tiny_backend) -> None:
    beams = tiny_backend.chat(QUESTION, GenerationSettings(temperature=0, num_beams=2, max_new_tokens=6))
    sampled = tiny_backend.chat(QUESTION, GenerationSettings(temperature=0.9, top_k=5, max_new_tokens=6))
    assert beams and sampled


def test_info_and_registry(tiny_model_dir) -> None:
    backend = load_backend("transformers", str(tiny_model_dir))
    info = backend.info()
    assert info.backend == "transformers" and info.context_window == 512
    assert 1_000_000 < info.parameters < 10_000_000
    assert backend.count_tokens(QUESTION) > backend.count_text_tokens("What is asthma?")


@pytest.mark.slow
def test_real_smollm2_answers_and_stops() -> None:
    backend = load_backend("transformers", "smollm2-135m-instruct")
    answer = backend.chat([{"role": "user", "content": "What is diabetes? Answer in one sentence."}],
                          GenerationSettings(temperature=0, max_new_tokens=12))
    assert "diabetes" in answer.lower() and "<|im_end|>" not in answer
