"""Optional model moderators, tested up to the model switch with fakes (no weights are downloaded)."""

from __future__ import annotations

import pytest

from medtune.guard.moderators import LlamaGuard, PromptGuard, build_moderators, parse_llama_guard


@pytest.mark.parametrize(("verdict", "classes"), [
    ("safe", []),
    ("\n\nunsafe\nS6", []),                 # specialized advice = all medical advice: ignored
    ("unsafe\nS11", ["self_harm"]),
    ("unsafe\nS1,S6", ["misuse"]),
    ("unsafe\nS2,S11", ["misuse", "self_harm"]),
])
def test_llama_guard_categories_are_mapped_for_a_medical_assistant(verdict: str, classes: list[str]) -> None:
    assert parse_llama_guard(verdict) == classes


class _Tensor:
    def __init__(self, values):
        self.values = values
        self.shape = (1, len(values))

    def to(self, device):
        return self

    def __getitem__(self, index):
        return self.values[index] if isinstance(index, slice) else self


class _FakeGuardTokenizer:
    def apply_chat_template(self, chat, return_tensors, return_dict):
        assert chat[0]["role"] == "user" and chat[0]["content"][0]["type"] == "text"
        return {"input_ids": _Tensor([1, 2, 3])}

    def decode(self, tokens, skip_special_tokens):
        return "\n\nunsafe\nS11"


class _FakeGuardModel:
    def generate(self, input_ids, max_new_tokens, do_sample):
        return [[1, 2, 3, 9, 9]]


def test_llama_guard_runs_through_its_chat_template() -> None:
    moderator = LlamaGuard("fake/llama-guard", device="cpu", loaded=(_FakeGuardTokenizer(), _FakeGuardModel()))
    assert moderator.flags("how many pills to end it") == ["self_harm"]


def test_prompt_guard_thresholds_the_malicious_probability() -> None:
    torch = pytest.importorskip("torch")

    class Tokenizer:
        def __call__(self, text, return_tensors, truncation, max_length):
            return {"input_ids": torch.tensor([[1, 2]])}

    class Model:
        def __init__(self, logits):
            self.logits = logits

        def __call__(self, **inputs):
            return type("Out", (), {"logits": torch.tensor([self.logits])})()

    assert PromptGuard("fake", 0.5, "cpu", loaded=(Tokenizer(), Model([0.0, 3.0]))).flags("x") == ["injection"]
    assert PromptGuard("fake", 0.5, "cpu", loaded=(Tokenizer(), Model([3.0, 0.0]))).flags("x") == []


def test_moderator_flags_reach_the_policy(monkeypatch) -> None:
    from medtune.guard import Guard

    class Fake:
        name = "fake"

        def flags(self, text):
            return ["self_harm"] if "tonight" in text else []

    guard = Guard()
    monkeypatch.setattr(guard, "moderators", [Fake()])
    decision = guard.check_input("what time is best to take vitamins tonight")
    assert decision.action == "refuse" and decision.layer == "moderator:fake"


def test_unknown_moderator_type_is_a_user_error() -> None:
    from medtune.errors import UserError
    from medtune.guard.config import ModeratorConfig

    with pytest.raises(UserError, match="unknown type"):
        build_moderators([ModeratorConfig(type="nope", model="x")])
