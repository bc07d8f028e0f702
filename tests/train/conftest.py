"""Fixtures for training tests: a tiny random Llama (hidden 64, 2 layers) with the SmolLM2 tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

QUESTIONS = [
    ("What is hypertension?", "Hypertension is persistently high blood pressure in the arteries."),
    ("What causes influenza?", "Influenza is caused by influenza viruses that infect the airways."),
    (
        "How is anemia treated?",
        "Treatment depends on the cause, for example iron supplements for iron deficiency.",
    ),
    ("What are symptoms of asthma?", "Wheezing, shortness of breath, chest tightness and coughing."),
    ("Is diabetes inherited?", "Type 2 diabetes runs in families, but lifestyle also matters a lot."),
    ("What is a migraine?", "A migraine is a headache disorder with recurring moderate to severe headaches."),
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a tiny random LlamaForCausalLM plus the SmolLM2 tokenizer to a folder (a local HF model)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from medtune.models import SMOLLM2_ALIAS, builtin_gguf_path, ensure_distinct_pad_token

    # Read the SmolLM2 tokenizer straight from the GGUF (no model dequantization needed for a tokenizer).
    gguf = builtin_gguf_path(SMOLLM2_ALIAS)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ensure_distinct_pad_token(tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def qa_rows() -> list[dict[str, str]]:
    """Small in-memory question/answer rows."""
    return [{"question": q, "answer": a} for q, a in QUESTIONS]


def tiny_recipe(model_dir: Path, **train: Any) -> Any:
    """A recipe for the tiny model: LoRA r=4 on attention, a few steps."""
    from medtune.config import recipe_from_dict

    return recipe_from_dict(
        {
            "name": "tiny-test",
            "model": {"name": str(model_dir), "max_seq_length": 128},
            "lora": {"r": 4, "alpha": 8, "target_modules": "attention"},
            "train": {
                "batch_size": 2,
                "gradient_accumulation_steps": 1,
                "learning_rate": 1e-2,
                "logging_steps": 1,
                "gradient_checkpointing": False,
                **train,
            },
        }
    )


def splits_for(model_dir: Path, rows: list[dict[str, str]]) -> tuple[Any, Any]:
    """(train, validation) prompt/completion datasets rendered with the model's chat template."""
    from medtune.models import load_tokenizer
    from medtune.train.dataset import rows_to_prompt_completion

    tokenizer = load_tokenizer(str(model_dir))
    return rows_to_prompt_completion(rows, tokenizer), rows_to_prompt_completion(rows[:2], tokenizer)


def fake_run(recipe: Any, status: str, checkpoint_steps: tuple[int, ...] = (2,), **info: object) -> Any:
    """A run folder as `medtune train` leaves it (no weights), with complete checkpoints at ``checkpoint_steps``."""
    from transformers import TrainerState

    from medtune.runs import new_run_dir
    from medtune.train.trainer import _write_run_files, update_run_info

    run = new_run_dir(recipe.name)
    _write_run_files(run, recipe, tokenizer=None, prepared=None)
    update_run_info(run, {"status": status, **info})
    for step in checkpoint_steps:
        folder = run.root / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        TrainerState(global_step=step, num_input_tokens_seen=100 * step).save_to_json(str(folder / "trainer_state.json"))
    return run
