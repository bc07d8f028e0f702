"""``medtune plan``: exact trainable LoRA parameters and an estimated memory budget, without loading weights.

The architecture comes from a ``config.json``: shipped copies for the study models (offline), or the
model's own folder. Parameters are counted exactly by building the model on the ``meta`` device and
wrapping it with PEFT's ``get_peft_model``. Memory is an estimate (each term in :func:`estimate_memory`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medtune.config import LoraConfig as LoraSection
from medtune.config import Recipe
from medtune.train.lora import peft_lora_config, target_modules
from medtune.train.optimizer import resolve_optimizer

CONFIG_DIR = Path(__file__).parent / "model_configs"
GIB = 1024**3
#: Bits per weight of the frozen base (nf4: 4 bits + double-quantized absmax per 64 weights).
WEIGHT_BITS = {"nf4": 4 + 8 / 64 + 32 / (64 * 256), "int8": 8 + 32 / 4096}
#: CUDA context, allocator fragmentation and kernels' workspace (a flat allowance).
OVERHEAD_BYTES = int(0.75 * GIB)


def shipped_config_path(name: str) -> Path | None:
    """Return the shipped config.json for a hub id such as ``meta-llama/Meta-Llama-3-8B-Instruct``."""
    path = CONFIG_DIR / f"{name.replace('/', '--')}.json"
    return path if path.is_file() else None


def load_model_config(name: str, gguf_file: str | None = None, *, trust_remote_code: bool = False) -> Any:
    """Return the config of ``name`` without loading weights (shipped copy, local folder or alias)."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    shipped = shipped_config_path(name)
    if shipped is not None:
        raw = json.loads(shipped.read_text())
        return CONFIG_MAPPING[raw.pop("model_type")](**raw)
    from medtune.models import resolve_model_path

    return AutoConfig.from_pretrained(str(resolve_model_path(name, gguf_file)), trust_remote_code=trust_remote_code)


def count_parameters(model_config: Any, lora: LoraSection, *, trust_remote_code: bool = False) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameters of the LoRA-wrapped model built on the meta device."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", FutureWarning)
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
        peft_model = get_peft_model(model, peft_lora_config(lora))
    trainable, total = peft_model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def linear_shapes(model_config: Any) -> dict[str, tuple[int, int]]:
    """Return ``{module: (in_features, out_features)}`` of a Llama/Mistral decoder layer's projections."""
    hidden, inter = model_config.hidden_size, model_config.intermediate_size
    heads, kv_heads = model_config.num_attention_heads, model_config.num_key_value_heads
    head_dim = getattr(model_config, "head_dim", None) or hidden // heads
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


def lora_parameters_by_formula(model_config: Any, lora: LoraSection) -> int:
    """LoRA parameters by hand: ``layers * sum(r * (in + out))`` (+ ``out`` per module for DoRA)."""
    shapes = linear_shapes(model_config)
    per_layer = 0
    for module in target_modules(lora):
        fan_in, fan_out = shapes[module]
        per_layer += lora.r * (fan_in + fan_out) + (fan_out if lora.use_dora else 0)
    return model_config.num_hidden_layers * per_layer


@dataclass
class MemoryPlan:
    """Estimated peak training memory (bytes) of one recipe on one device."""

    model: str
    total_params: int
    trainable_params: int
    quantization: str
    weights: int
    adapters_and_grads: int
    optimizer: int
    optimizer_kind: str
    activations: int
    gradient_checkpointing: bool
    overhead: int
    total: int
    batch_size: int
    seq_length: int
    gpu_mem_gb: float | None = None

    @property
    def fits(self) -> bool | None:
        """True/False when a device size was given (keeping 5% headroom), else None."""
        return None if self.gpu_mem_gb is None else self.total <= 0.95 * self.gpu_mem_gb * GIB

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output)."""
        return {**asdict(self), "fits": self.fits}


def estimate_memory(
    recipe: Recipe, model_config: Any, trainable: int, total: int, gpu_mem_gb: float | None = None
) -> MemoryPlan:
    """Estimate peak training memory.

    Terms:
      * weights: decoder linear layers at the quantization's bits per weight; embeddings, head, norms
        stay at 16-bit (bitsandbytes keeps them unquantized); 4 bytes/param in float32.
      * adapters_and_grads: trainable parameters in fp32 plus their fp32 gradients (8 bytes each).
      * optimizer: the recipe's optimizer as ``medtune train`` resolves it (``resolve_optimizer``); AdamW
        keeps two moments: 8 bytes/param at 32-bit, 2 bytes/param with 8-bit states.
      * activations: per token and layer, tensors saved for backward (~16 hidden + 3 intermediate values);
        with gradient checkpointing only each layer's input is kept plus one layer recomputed at a time.
        Logits in fp32 (and their gradient) are added: 8 bytes * vocab per token. With
        ``train.objective: dpo`` a micro-batch of ``batch_size`` pairs is ``2 * batch_size`` sequences (chosen and
        rejected); the reference log-probabilities are computed before training, so they add nothing at the peak.
    """
    quant = recipe.model.quantization
    dtype = recipe.model.dtype
    half = 4 if dtype == "float32" else 2
    shapes = linear_shapes(model_config)
    layers = model_config.num_hidden_layers
    linear = layers * sum(i * o for i, o in shapes.values())
    other = total - trainable - linear
    weight_bits = WEIGHT_BITS.get(quant, half * 8)
    weights = int(linear * weight_bits / 8 + other * half)
    adapters = trainable * 8
    optim = resolve_optimizer(recipe.train.optimizer, quant)  # the same policy as `medtune train`
    eight_bit = "8bit" in optim
    optimizer_kind = f"{optim}: {'8' if eight_bit else '32'}-bit states"
    optimizer = trainable * (2 if eight_bit else 8)
    sequences = recipe.train.batch_size * (2 if recipe.train.objective == "dpo" else 1)
    tokens = sequences * recipe.model.max_seq_length
    hidden, inter = model_config.hidden_size, model_config.intermediate_size
    per_layer_token = half * (16 * hidden + 3 * inter)
    checkpointing = recipe.train.gradient_checkpointing
    if checkpointing:
        activations = tokens * (layers * half * hidden + per_layer_token)
    else:
        activations = tokens * layers * per_layer_token
    activations += tokens * model_config.vocab_size * 8
    total_bytes = weights + adapters + optimizer + activations + OVERHEAD_BYTES
    return MemoryPlan(
        model=recipe.model.name,
        total_params=total,
        trainable_params=trainable,
        quantization=quant,
        weights=weights,
        adapters_and_grads=adapters,
        optimizer=optimizer,
        optimizer_kind=optimizer_kind,
        activations=int(activations),
        gradient_checkpointing=checkpointing,
        overhead=OVERHEAD_BYTES,
        total=int(total_bytes),
        batch_size=recipe.train.batch_size,
        seq_length=recipe.model.max_seq_length,
        gpu_mem_gb=gpu_mem_gb,
    )


def plan_recipe(recipe: Recipe, gpu_mem_gb: float | None = None) -> MemoryPlan:
    """Count parameters exactly and estimate memory for ``recipe`` (no weights are loaded)."""
    trust = recipe.model.trust_remote_code
    model_config = load_model_config(recipe.model.name, recipe.model.gguf_file, trust_remote_code=trust)
    trainable, total = count_parameters(model_config, recipe.lora, trust_remote_code=trust)
    return estimate_memory(recipe, model_config, trainable, total, gpu_mem_gb)
