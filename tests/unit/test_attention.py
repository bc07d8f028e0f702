"""Packed-row attention (medtune.attention) and the training attention policy that uses it."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from medtune.attention import PACKED_ATTENTION, packed_attention, register_packed_attention, sequence_bounds


@pytest.fixture(scope="module")
def tiny_llama() -> Any:
    """A 2-layer random Llama with grouped-query attention (4 query heads, 2 key/value heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


def _packed(lengths: list[int]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Random sequences of ``lengths`` and their packed-row inputs (as TRL's padding-free collator lays them out)."""
    generator = torch.Generator().manual_seed(sum(lengths))
    sequences = [torch.randint(3, 300, (n,), generator=generator) for n in lengths]
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return sequences, {"input_ids": torch.cat(sequences)[None],
                       "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
                       "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds}


def test_sequence_bounds_from_boundaries_or_restarting_positions() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert sequence_bounds(torch.tensor([0, 3, 5, 9]), None, 9) == [0, 3, 5, 9]
    assert sequence_bounds(None, positions, 9) == [0, 3, 5, 9]
    assert sequence_bounds(None, None, 9) == [0, 9]
    assert sequence_bounds(None, torch.arange(4, 13)[None], 9) == [0, 9]  # no restart: one sequence


@pytest.mark.parametrize("with_boundaries", [True, False], ids=["cu_seq_lens", "position_ids-only"])
def test_packed_row_equals_each_sequence_alone(tiny_llama: Any, with_boundaries: bool) -> None:
    lengths = [7, 19, 4, 12]
    sequences, inputs = _packed(lengths)
    if not with_boundaries:
        inputs = {k: v for k, v in inputs.items() if not k.startswith("cu_seq_lens")}
    with torch.no_grad():
        alone = torch.cat([tiny_llama(input_ids=s[None], use_cache=False).logits[0] for s in sequences])
        with packed_attention(tiny_llama):
            assert tiny_llama.config._attn_implementation == PACKED_ATTENTION
            together = tiny_llama(**inputs, use_cache=False).logits[0]
    assert tiny_llama.config._attn_implementation != PACKED_ATTENTION  # switched back
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    # the control: plain sdpa without the boundaries lets later sequences see earlier ones
    with torch.no_grad():
        leaky = tiny_llama(input_ids=inputs["input_ids"], use_cache=False).logits[0]
    assert not torch.allclose(leaky[lengths[0]:], alone[lengths[0]:], atol=1e-3)


def test_packed_row_gradients_equal_separate_sequences(tiny_llama: Any) -> None:
    sequences, inputs = _packed([9, 15, 6])
    tiny_llama.train()
    try:
        tiny_llama.zero_grad()
        for sequence in sequences:  # the reference: each sequence on its own, summed token losses
            out = tiny_llama(input_ids=sequence[None], labels=sequence[None], use_cache=False)
            (out.loss * (len(sequence) - 1)).backward()
        reference = {n: p.grad.clone() for n, p in tiny_llama.named_parameters()}
        tiny_llama.zero_grad()
        labels = torch.cat([torch.cat([s[1:], torch.tensor([-100])]) for s in sequences])[None]
        with packed_attention(tiny_llama):
            logits = tiny_llama(**inputs, use_cache=False).logits[0]
            loss = torch.nn.functional.cross_entropy(logits, labels[0], ignore_index=-100, reduction="sum")
            loss.backward()
        for name, parameter in tiny_llama.named_parameters():
            torch.testing.assert_close(parameter.grad, reference[name], atol=1e-4, rtol=1e-3, msg=name)
    finally:
        tiny_llama.eval()
        tiny_llama.zero_grad()


def test_padded_batches_and_cached_decoding_are_refused(tiny_llama: Any) -> None:
    from medtune.attention import packed_sdpa

    q = torch.randn(1, 4, 5, 16)
    kv = torch.randn(1, 2, 5, 16)
    with pytest.raises(ValueError, match="padding mask"):
        packed_sdpa(tiny_llama.model.layers[0].self_attn, q, kv, kv, torch.ones(1, 1, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="KV cache"):
        packed_sdpa(tiny_llama.model.layers[0].self_attn, q[:, :, :1], kv, kv, None)


def test_training_attention_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.config import recipe_from_dict
    from medtune.train.batching import batching, training_attention

    def recipe(model: dict[str, Any] | None = None, train: dict[str, Any] | None = None) -> Any:
        return recipe_from_dict({"name": "t", "model": {"name": "smollm2-135m-instruct", **(model or {})},
                                 "data": {"sources": [{"kind": "medquad", "path": "x"}]}, "train": train or {}})

    padding_free = recipe()
    assert batching(padding_free) == "padding-free"
    assert training_attention(padding_free, cuda=False) == register_packed_attention()
    assert training_attention(recipe({"attn_implementation": "eager"}), cuda=False) == "eager"  # the recipe wins
    padded = recipe(train={"padding_free": False})
    assert batching(padded) == "padded" and training_attention(padded, cuda=False) is None
    packed = recipe(train={"packing": True})
    assert batching(packed) == "packed" and training_attention(packed, cuda=False) == PACKED_ATTENTION
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a))
    assert training_attention(padding_free, cuda=True) == "flash_attention_2"
    assert training_attention(padding_free, cuda=False) == PACKED_ATTENTION  # flash-attention is CUDA-only
