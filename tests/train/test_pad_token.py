"""The pad token comes from the vocabulary (known trap #16): tokenizers built here with the real special-token layouts
of Llama-3, Llama-3.1 and Mistral v0.2 (a small byte-level BPE instead of their 128k/32k vocabularies) get one
without a resize, and a tiny Llama-3-shaped model trained on the CPU saves an adapter of LoRA weights only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.export.test_modelfile import LLAMA3_TEMPLATE, MISTRAL_TEMPLATE  # the real templates, written once
from tests.train.conftest import QUESTIONS, splits_for, tiny_recipe

from medtune.models import ADDED_PAD_TOKEN, ensure_distinct_pad_token


def reserved(numbers: range) -> list[str]:
    return [f"<|reserved_special_token_{i}|>" for i in numbers]


# The special tokens in id order after the regular vocabulary, as Meta's tokenizer.py lays them out (ids 128000-128255).
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", *reserved(range(0, 4)), "<|start_header_id|>",
                   "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>", *reserved(range(5, 251))]
LLAMA31_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", *reserved(range(0, 2)), "<|finetune_right_pad_id|>",
                    "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                    "<|eot_id|>", "<|python_tag|>", *reserved(range(3, 248))]
# Llama-3-style chat tokens and nothing unused: no pad candidate at all.
BARE_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def build_tokenizer(layout: str) -> Any:
    """A byte-level BPE (a few hundred tokens, trained on the test questions) with ``layout``'s special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    mistral = layout == "mistral"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<unk>", "<s>", "</s>"] if mistral else [])
    tok.train_from_iterator([f"{q} {a}" for q, a in QUESTIONS] * 3, trainer)
    if mistral:  # Mistral v0.2: <unk>=0, <s>=1, </s>=2, then the vocabulary
        assert [tok.token_to_id(t) for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
        tok.add_special_tokens(["<unk>", "<s>", "</s>"])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       chat_template=MISTRAL_TEMPLATE)
    specials = {"llama3": LLAMA3_SPECIALS, "llama31": LLAMA31_SPECIALS, "bare": BARE_SPECIALS}[layout]
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_TEMPLATE)


@pytest.mark.parametrize(("layout", "pad"), [
    ("llama3", "<|reserved_special_token_2|>"),
    ("llama31", "<|finetune_right_pad_id|>"),
    ("mistral", "<unk>"),
])
def test_study_tokenizers_get_a_pad_token_without_a_resize(layout: str, pad: str) -> None:
    tokenizer = build_tokenizer(layout)
    size, vocab = len(tokenizer), tokenizer.get_vocab()
    assert tokenizer.pad_token is None  # like the real ones: no pad token shipped
    assert ensure_distinct_pad_token(tokenizer) is False  # nothing added
    assert tokenizer.pad_token == pad and len(tokenizer) == size and tokenizer.get_vocab() == vocab
    assert tokenizer.pad_token_id == vocab[pad] != tokenizer.eos_token_id
    assert pad not in tokenizer.chat_template  # unused by the chat format


def test_llama3_pads_with_the_id_llama31_named_finetune_right_pad_id() -> None:
    llama3, llama31 = build_tokenizer("llama3"), build_tokenizer("llama31")
    ensure_distinct_pad_token(llama3)
    ensure_distinct_pad_token(llama31)
    # <|begin_of_text|> + 4: 128004 in the real tokenizers, the slot Llama-3.1 renamed <|finetune_right_pad_id|>
    assert llama3.pad_token_id - llama3.bos_token_id == 4 == llama31.pad_token_id - llama31.bos_token_id


def test_a_distinct_pad_token_is_kept_and_one_equal_to_eos_is_replaced() -> None:
    tokenizer = build_tokenizer("llama3")
    tokenizer.pad_token = "<|end_of_text|>"
    assert ensure_distinct_pad_token(tokenizer) is False and tokenizer.pad_token == "<|end_of_text|>"
    tokenizer.pad_token = tokenizer.eos_token  # pad == EOS would mask the EOS label (trap #1)
    ensure_distinct_pad_token(tokenizer)
    assert tokenizer.pad_token == "<|reserved_special_token_2|>"


def test_a_tokenizer_without_candidates_gets_an_added_token() -> None:
    tokenizer = build_tokenizer("bare")
    size = len(tokenizer)
    assert ensure_distinct_pad_token(tokenizer) is True
    assert tokenizer.pad_token == ADDED_PAD_TOKEN and len(tokenizer) == size + 1


def save_tiny_llama3(layout: str, out: Path) -> Path:
    """A tiny random Llama-3-shaped model (untied embeddings, GQA) with ``layout``'s tokenizer, saved to ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(layout)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False, rope_theta=500000.0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)  # without a pad token, as Meta ships it
    return out


def train_tiny(model_dir: Path) -> Any:
    from medtune.train.trainer import train_recipe

    rows = [{"question": q, "answer": a} for q, a in QUESTIONS]
    return train_recipe(tiny_recipe(model_dir, max_steps=2), splits=splits_for(model_dir, rows))


def test_tiny_llama3_adapter_holds_lora_weights_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from safetensors.torch import load_file

    from medtune.models import load_tokenizer

    model_dir = save_tiny_llama3("llama3", tmp_path / "llama3-tiny")
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    with caplog.at_level(logging.WARNING, logger="medtune.train.lora"):
        run = train_tiny(model_dir)
    assert not [r for r in caplog.records if "resizes the embeddings" in r.message]
    keys = list(load_file(run.adapter / "adapter_model.safetensors"))
    assert keys and all("lora_" in key for key in keys), [k for k in keys if "lora_" not in k]
    assert not json.loads((run.adapter / "adapter_config.json").read_text()).get("modules_to_save")
    # the adapter folder holds what PEFT writes, nothing of the Trainer's (tokenizer copy, pickled arguments)
    assert sorted(p.name for p in run.adapter.iterdir()) == ["README.md", "adapter_config.json",
                                                             "adapter_model.safetensors"]
    saved = load_tokenizer(str(run.tokenizer))
    assert saved.pad_token == "<|reserved_special_token_2|>" and len(saved) == vocab


def test_a_resize_is_said_loudly_with_its_cost_and_stores_the_embeddings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The control: the same model with a tokenizer that has no candidate, so the check above can fail."""
    from safetensors.torch import load_file

    model_dir = save_tiny_llama3("bare", tmp_path / "bare-tiny")
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    with caplog.at_level(logging.WARNING, logger="medtune.train.lora"):
        run = train_tiny(model_dir)
    (warning,) = [r.getMessage() for r in caplog.records if "resizes the embeddings" in r.getMessage()]
    cost = 2 * (vocab + 1) * 64 * 4  # embed_tokens + lm_head, fp32 on the CPU
    assert f"from {vocab} to {vocab + 1} rows" in warning and f"= {cost / 1e9:.2f} GB" in warning
    assert "2 x" in warning and ADDED_PAD_TOKEN in warning
    keys = list(load_file(run.adapter / "adapter_model.safetensors"))
    assert any("embed_tokens" in key for key in keys) and any("lm_head" in key for key in keys)
