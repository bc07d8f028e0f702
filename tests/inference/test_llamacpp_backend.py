"""The llama.cpp backend on the SmolLM2 GGUF."""

from __future__ import annotations

import pytest

from medtune.errors import UserError
from medtune.inference.base import GenerationSettings
from medtune.inference.llamacpp_backend import find_gguf
from medtune.inference.registry import load_backend

pytest.importorskip("llama_cpp")
GREEDY = GenerationSettings(temperature=0, max_new_tokens=16, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def llamacpp():
    return load_backend("llamacpp", "smollm2-135m-instruct", n_ctx=1024)


def test_streams_a_relevant_greedy_answer(llamacpp) -> None:
    messages = [{"role": "user", "content": "What is hypertension?"}]
    pieces = list(llamacpp.stream_chat(messages, GREEDY))
    text = "".join(pieces)
    assert len(pieces) > 3 and "<|im_end|>" not in text
    assert any(word in text.lower() for word in ("blood", "pressure", "hypertension"))
    assert text == llamacpp.chat(messages, GREEDY)


def test_counts_tokens_with_the_gguf_template(llamacpp) -> None:
    short = llamacpp.count_tokens([{"role": "user", "content": "Hi"}])
    longer = llamacpp.count_tokens([{"role": "user", "content": "Hi " * 50}])
    assert longer - short >= 45
    assert llamacpp.info().context_window == 1024


def test_find_gguf_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="medtune export"):
        find_gguf(str(tmp_path))
