"""Fixtures: a tiny random Llama saved as a model folder with the SmolLM2 tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-64 Llama with the SmolLM2 tokenizer (ChatML template), saved to a folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medtune.models import load_tokenizer

    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path):
    """A transformers backend on the tiny model (loaded once per session)."""
    from medtune.inference.transformers_backend import TransformersBackend

    return TransformersBackend(str(tiny_model_dir))


def make_lora_run(root: Path, base_model: str, *, quantization: str = "none", dtype: str = "float32",
                  std: float = 0.05, prepared_dir: Path | None = None) -> Path:
    """A run folder as `medtune train` leaves it (adapter/ with non-zero LoRA B, run.json, recipe.yaml),
    without training: ``quantization`` is what run.json says the base was trained in."""
    import json

    import torch
    import yaml
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from medtune.models import resolve_model_path

    base = AutoModelForCausalLM.from_pretrained(str(resolve_model_path(base_model)), dtype=torch.float32)
    torch.manual_seed(1)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=std)
    lora.save_pretrained(root / "adapter")
    (root / "run.json").write_text(json.dumps({
        "base_model": base_model, "quantization": quantization, "prompt_style": "chat-template",
        "prepared_dir": str(prepared_dir) if prepared_dir else None, "status": "completed"}))
    (root / "recipe.yaml").write_text(yaml.safe_dump({"name": root.name, "model": {"dtype": dtype}}))
    return root
