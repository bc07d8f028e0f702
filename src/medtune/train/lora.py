"""Build the PEFT ``LoraConfig`` from a recipe's ``lora`` section."""

from __future__ import annotations

from typing import Any

from medtune.config import LoraConfig as LoraSection

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
