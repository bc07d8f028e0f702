"""History trimming and stop-string cutting."""

from __future__ import annotations

import pytest

from medtune.errors import UserError
from medtune.inference.history import trim_history
from medtune.inference.streaming import cut_at_stop


def _words(messages) -> int:
    return sum(len(m["content"].split()) for m in messages)


def _conversation(turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "sys prompt"}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"question {i} " * 5},
                     {"role": "assistant", "content": f"answer {i} " * 5}]
    return messages + [{"role": "user", "content": "final question"}]


def test_trim_keeps_system_and_question_and_drops_oldest_first() -> None:
    messages = _conversation(4)  # 2 + 4 * 20 + 2 words
    trimmed = trim_history(messages, _words, budget=45)
    assert trimmed[0]["role"] == "system" and trimmed[-1]["content"] == "final question"
    assert _words(trimmed) <= 45
    assert trimmed[1]["role"] == "user"  # never starts with an assistant turn
    assert "question 2" in trimmed[1]["content"] and all("question 1" not in m["content"] for m in trimmed)


def test_trim_returns_everything_when_it_fits() -> None:
    messages = _conversation(2)
    assert trim_history(messages, _words, budget=1000) == messages


def test_trim_raises_when_question_alone_is_too_long() -> None:
    with pytest.raises(UserError, match="max-new-tokens"):
        trim_history(_conversation(1), _words, budget=3)


def test_trim_with_real_tokenizer(tiny_backend) -> None:
    messages = _conversation(6)
    full = tiny_backend.count_tokens(messages)
    trimmed = trim_history(messages, tiny_backend.count_tokens, budget=full // 2)
    assert tiny_backend.count_tokens(trimmed) <= full // 2 < full
    assert trimmed[-1] == messages[-1]


def test_cut_at_stop_across_pieces() -> None:
    pieces = ["Hello wo", "rld<|im", "_end|> ignored", " more"]
    assert "".join(cut_at_stop(pieces, ["<|im_end|>"])) == "Hello world"
    assert "".join(cut_at_stop(["abc", "def"], ["zz"])) == "abcdef"
    assert "".join(cut_at_stop(["abc"], [])) == "abc"
