"""The PEFT LoRA adapter: its ``LoraConfig`` from a recipe's ``lora`` section, how a run saves it, and what a resized
vocabulary adds to it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medtune.config import LoraConfig as LoraSection
from medtune.models import ADDED_PAD_TOKEN

log = logging.getLogger(__name__)

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]
TARGET_PRESETS: dict[str, list[str]] = {
    "attention": ATTENTION_MODULES,
    "all-linear": ATTENTION_MODULES + MLP_MODULES,
}


def target_modules(section: LoraSection) -> list[str]:
    """Resolve a preset name (attention, all-linear) or an explicit list to module names."""
    targets = section.target_modules
    return list(TARGET_PRESETS[targets]) if isinstance(targets, str) else list(targets)


def peft_lora_config(section: LoraSection) -> Any:
    """Return a ``peft.LoraConfig`` (causal LM task) for the recipe's LoRA section."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=target_modules(section),
        use_rslora=section.use_rslora,
        use_dora=section.use_dora,
        bias=section.bias,
        task_type=TaskType.CAUSAL_LM,
    )


def lora_scale(section: LoraSection) -> float:
    """The adapter scaling factor: alpha / r, or alpha / sqrt(r) with RSLoRA."""
    return section.alpha / (section.r**0.5 if section.use_rslora else section.r)


def warn_vocabulary_resize(model: Any, rows: int, vocab: int, name: str) -> int:
    """Say loudly that the embeddings grow from ``rows`` to ``vocab`` rows, and what it costs; return the bytes.

    Only a tokenizer with no unused special token to pad with gets here (:func:`medtune.models.ensure_distinct_pad_token`).
    PEFT then saves the resized input embeddings and LM head with the adapter (2 x vocab x hidden x bytes; one
    matrix when they are tied), and the vocabulary no longer matches the base's for GGUF, Ollama and vLLM LoRA serving.
    """
    weight = model.get_input_embeddings().weight
    matrices = 1 if getattr(model.config, "tie_word_embeddings", False) else 2
    cost = matrices * vocab * weight.shape[1] * weight.element_size()
    log.warning(
        "%s: its tokenizer has no unused special token to pad with, so medtune added %s and resizes the embeddings "
        "from %d to %d rows: the adapter also stores embed_tokens%s (%d x %d x %d x %d bytes = %.2f GB beside the "
        "LoRA weights), and the vocabulary no longer matches the base model's for GGUF, Ollama and vLLM LoRA serving. "
        "Give the tokenizer a pad token (tokenizer_config.json: pad_token) to avoid it.",
        name, ADDED_PAD_TOKEN, rows, vocab, "" if matrices == 1 else " and lm_head", matrices, vocab,
        weight.shape[1], weight.element_size(), cost / 1e9,
    )
    return cost


#: What ``Trainer.save_model`` writes beside the model that the run folder keeps elsewhere (``tokenizer/``) or not at all.
_NOT_ADAPTER_FILES = ("training_args.bin",)


def save_adapter(trainer: Any, adapter_dir: Path, tokenizer_dir: Path, tokenizer: Any) -> None:
    """Save the trained adapter into ``adapter_dir`` and the tokenizer into ``tokenizer_dir``: call it in every process.

    ``Trainer.save_model`` is the path that gathers the weights under FSDP and DeepSpeed (known trap #17;
    ``model.save_pretrained`` on rank 0 saves its own shard, or hangs) and writes on the main process only. Under FSDP
    the state dict type is switched to ``FULL_STATE_DICT`` first, as PEFT's FSDP guide does: with the configs'
    ``SHARDED_STATE_DICT`` the Trainer would save nothing. PEFT keeps LoRA weights only unless the vocabulary was
    resized. The Trainer's copies of the tokenizer and its pickled arguments are removed: the run keeps the tokenizer
    in ``tokenizer_dir``, so ``adapter_dir`` holds exactly what ``model.save_pretrained`` writes.
    """
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(adapter_dir))
    if trainer.is_world_process_zero():
        written = tokenizer.save_pretrained(str(tokenizer_dir))
        for name in {*(Path(f).name for f in written), *_NOT_ADAPTER_FILES}:
            (adapter_dir / name).unlink(missing_ok=True)
