"""Fixtures for evaluation tests: a tiny random Llama (hidden 64, 2 layers) with the SmolLM2 tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _smollm2_tokenizer(shared_cache: Path) -> Any:
    """The SmolLM2 tokenizer: from the session's converted-model cache when present, else straight from the GGUF
    (much cheaper than converting the whole model)."""
    from transformers import AutoTokenizer

    from medtune.models import SMOLLM2_ALIAS, builtin_gguf_path, ensure_distinct_pad_token

    converted = shared_cache / SMOLLM2_ALIAS
    if (converted / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(converted))
    else:
        gguf = builtin_gguf_path(SMOLLM2_ALIAS)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ensure_distinct_pad_token(tokenizer)
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a tiny random LlamaForCausalLM plus the SmolLM2 tokenizer to a folder (a local HF model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _smollm2_tokenizer(tmp_path_factory.getbasetemp() / "shared_model_cache")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("eval_tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir: Path) -> tuple[Any, Any]:
    """The tiny model and its tokenizer, loaded once."""
    from medtune.models import load_causal_lm, load_tokenizer

    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


@pytest.fixture
def prepared_dir(tmp_path: Path) -> Path:
    """A minimal `medtune prepare`-like folder with a test.jsonl of three QA rows."""
    import json

    rows = [
        {"id": "q1", "question": "What is hypertension?", "answer": "High blood pressure in the arteries."},
        {"id": "q2", "question": "What causes influenza?", "answer": "Influenza viruses infect the airways."},
        {"id": "q3", "question": "How is anemia treated?", "answer": "Iron supplements for iron deficiency."},
    ]
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
