"""The pad token comes from the vocabulary (known trap #16): tokenizers built here with the real special-token layouts
of Llama-3, Llama-3.1 and Mistral v0.2 (a small byte-level BPE instead of their 128k/32k vocabularies) get one
without a resize, and a tiny Llama-3-shaped model trained on the CPU saves an adapter of LoRA weights only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.train.conftest import QUESTIONS, splits_for, tiny_recipe

from medtune import tiny_models
from medtune.models import ADDED_PAD_TOKEN, ensure_distinct_pad_token

TEXTS = [f"{q} {a}" for q, a in QUESTIONS] * 3


def build_tokenizer(layout: str) -> Any:
    """A small BPE trained on the test questions with ``layout``'s real special tokens (medtune.tiny_models)."""
    return tiny_models.build_tokenizer(layout, texts=TEXTS)


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
    """A tiny random Llama-3-shaped model with ``layout``'s tokenizer, saved to ``out`` (medtune.tiny_models)."""
    return tiny_models.save_tiny_llama3(out, layout, texts=TEXTS)


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
