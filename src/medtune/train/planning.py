"""``medtune plan``: exact trainable LoRA parameters, an estimated memory budget and estimated training time,
without loading weights; ``--measure`` replaces the time estimate's assumptions with 20 measured steps.

The architecture comes from a ``config.json``: shipped copies for the study models (offline), or the
model's own folder. Parameters are counted exactly by building the model on the ``meta`` device and
wrapping it with PEFT's ``get_peft_model``. Memory is an estimate (each term in :func:`estimate_memory`),
so is time (the formula in :func:`estimate_time`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True)
class GpuClass:
    """A GPU users train on: peak dense 16-bit tensor-core TFLOPS (no sparsity) and memory in GB."""

    tflops: float
    memory_gb: float


#: Peak dense 16-bit tensor-core throughput from the vendor's datasheets (the "with sparsity" figures are twice these):
#: T4: 65 TFLOPS mixed-precision FP16/FP32 (NVIDIA T4 datasheet; no bf16, so training runs in fp16);
#: A10: 125 TFLOPS BF16/FP16 tensor (NVIDIA A10 datasheet, 250 with sparsity);
#: L4: 121 TFLOPS BF16/FP16 tensor (NVIDIA L4 datasheet lists 242 with sparsity);
#: A100: 312 TFLOPS BF16/FP16 tensor (NVIDIA A100 datasheet, 624 with sparsity; the 40 GB card, the 80 GB one is as fast);
#: H100 SXM: 989 TFLOPS BF16/FP16 tensor (NVIDIA H100 datasheet, 1,979 with sparsity; the PCIe card lists 756).
GPU_CLASSES: dict[str, GpuClass] = {
    "T4": GpuClass(65, 16), "A10": GpuClass(125, 24), "L4": GpuClass(121, 24), "A100": GpuClass(312, 40),
    "H100": GpuClass(989, 80),
}
#: ASSUMED model-FLOPs utilisation: the share of the peak a training step reaches. Not measured here (no GPU on
#: medtune's machines); `medtune plan --measure` replaces it with measured tokens/s. QLoRA (nf4) dequantizes every
#: base weight before its matmul and runs small LoRA matmuls beside it: 0.35; LLM.int8 matmuls are slower still: 0.20;
#: a 16-bit base: 0.45.
ASSUMED_MFU = {"nf4": 0.35, "int8": 0.20, "none": 0.45}
#: Optimizer steps ``--measure`` runs, and the first ones it leaves out of the rate (CUDA kernel selection, allocator).
MEASURE_STEPS = 20


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
    time: TimePlan | None = None

    @property
    def fits(self) -> bool | None:
        """True/False when a device size was given (keeping 5% headroom), else None."""
        return None if self.gpu_mem_gb is None else self.total <= 0.95 * self.gpu_mem_gb * GIB

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output)."""
        return {**asdict(self), "fits": self.fits}


@dataclass
class TimePlan:
    """Estimated training time of one recipe on each GPU class (all figures are estimates, see estimate_time)."""

    tokens_per_example: int
    tokens_per_example_source: str
    tokens_per_step: int
    steps: int | None
    steps_source: str
    frozen_params: int
    trainable_params: int
    flops_per_token: float
    flops_formula: str
    total_flops: float | None
    mfu: float
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)


def train_rows(recipe: Recipe) -> tuple[int | None, str]:
    """Training rows of ``recipe`` and where the figure comes from: the prepared folder's ``train.jsonl`` when
    ``data.prepared`` is set, else ``data.sample_size`` x the train fraction (an upper bound: a source may hold
    fewer rows), else unknown (None)."""
    if recipe.data.prepared:
        train = Path(recipe.data.prepared).expanduser() / "train.jsonl"
        if train.is_file():
            with train.open() as handle:
                return sum(1 for line in handle if line.strip()), str(train)
    if recipe.data.sample_size:
        rows = round(recipe.data.sample_size * recipe.data.split[0])
        return rows, f"data.sample_size {recipe.data.sample_size:,} x train fraction {recipe.data.split[0]:g}"
    return None, "unknown (no data.sample_size or prepared folder; pass --rows)"


def planned_steps(recipe: Recipe, rows: int | None) -> int | None:
    """Optimizer steps of one process: ``train.max_steps`` when set, else as the Trainer counts them,
    ``ceil(epochs * ceil(ceil(rows / batch_size) / gradient_accumulation_steps))``."""
    train = recipe.train
    if train.max_steps > 0:
        return train.max_steps
    if rows is None:
        return None
    per_epoch = math.ceil(math.ceil(rows / train.batch_size) / train.gradient_accumulation_steps)
    return math.ceil(train.epochs * per_epoch)


def estimate_time(recipe: Recipe, model_config: Any, trainable: int, total: int, memory_total: int | None = None, *,
                  rows: int | None = None, tokens_per_example: int | None = None) -> TimePlan:
    """Estimate training time on each of :data:`GPU_CLASSES` from FLOPs.

    * tokens per step = ``batch_size x gradient_accumulation_steps x tokens_per_example`` (x2 for DPO: chosen and
      rejected); ``tokens_per_example`` defaults to ``model.max_seq_length``, an UPPER BOUND (padding-free
      batches hold each example's own length, usually less).
    * FLOPs per token = ``(4 + 2c) x N_frozen + (6 + 2c) x N_lora``. ``N_frozen`` is the base's parameters in
      matmuls (all but the input embeddings, unless tied to the head). Full fine-tuning costs the usual 6N
      (forward 2N, gradients of activations 2N, of weights 2N); a frozen base skips its weight gradients: 4N.
      ``c`` = 1 with gradient checkpointing (the forward runs again in backward: +2N), else 0. Attention's
      ``n_ctx``-dependent FLOPs are left out (about 1% at 512 tokens for an 8B). DPO adds one reference forward
      (2 x N_frozen) per token, computed before training.
    * seconds = FLOPs per token x tokens / (peak dense 16-bit TFLOPS x :data:`ASSUMED_MFU`).
    """
    train = recipe.train
    sequences = 2 if train.objective == "dpo" else 1
    per_example = tokens_per_example or recipe.model.max_seq_length
    source = ("--tokens-per-example" if tokens_per_example else
              "model.max_seq_length (upper bound: padding-free batches hold the examples' own lengths)")
    tokens_per_step = train.batch_size * train.gradient_accumulation_steps * per_example * sequences
    if rows is None:
        rows, rows_source = train_rows(recipe)
    else:
        rows_source = "--rows"
    steps = planned_steps(recipe, rows)
    steps_source = ("train.max_steps" if train.max_steps > 0 else
                    f"{rows:,} train rows ({rows_source}) x {train.epochs:g} epoch(s) / (batch {train.batch_size} x "
                    f"accumulation {train.gradient_accumulation_steps})" if rows is not None else rows_source)
    embeddings = 0 if getattr(model_config, "tie_word_embeddings", False) else (
        model_config.vocab_size * model_config.hidden_size)
    frozen = total - trainable - embeddings
    recompute = 2 if train.gradient_checkpointing else 0
    flops_per_token = (4 + recompute) * frozen + (6 + recompute) * trainable
    formula = (f"({4 + recompute} x {frozen / 1e9:.3f}B frozen base + {6 + recompute} x {trainable / 1e6:.1f}M LoRA) "
               f"FLOPs/token; 4N = forward 2N + activation gradients 2N (no weight gradients for a frozen base)"
               f"{', +2N recomputed forward (gradient checkpointing)' if recompute else ''}")
    if train.objective == "dpo":
        flops_per_token += 2 * frozen  # the frozen reference's forward over every token (chosen and rejected)
        formula += "; DPO: + reference forward"
    total_flops = None if steps is None else flops_per_token * tokens_per_step * steps
    mfu = ASSUMED_MFU[recipe.model.quantization]
    gpus: dict[str, dict[str, Any]] = {}
    for name, gpu in GPU_CLASSES.items():
        tokens_per_s = gpu.tflops * 1e12 * mfu / flops_per_token
        gpus[name] = {"tflops": gpu.tflops, "memory_gb": gpu.memory_gb, "tokens_per_s": tokens_per_s,
                      "seconds_per_step": tokens_per_step / tokens_per_s,
                      "seconds": None if steps is None else steps * tokens_per_step / tokens_per_s,
                      "fits": None if memory_total is None else memory_total <= 0.95 * gpu.memory_gb * GIB}
    return TimePlan(tokens_per_example=per_example, tokens_per_example_source=source,
                    tokens_per_step=tokens_per_step, steps=steps, steps_source=steps_source, frozen_params=frozen,
                    trainable_params=trainable, flops_per_token=flops_per_token, flops_formula=formula,
                    total_flops=total_flops, mfu=mfu, gpus=gpus)


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


def plan_recipe(recipe: Recipe, gpu_mem_gb: float | None = None, *, rows: int | None = None,
                tokens_per_example: int | None = None) -> MemoryPlan:
    """Count parameters exactly, estimate memory and time for ``recipe`` (no weights are loaded)."""
    trust = recipe.model.trust_remote_code
    model_config = load_model_config(recipe.model.name, recipe.model.gguf_file, trust_remote_code=trust)
    trainable, total = count_parameters(model_config, recipe.lora, trust_remote_code=trust)
    plan = estimate_memory(recipe, model_config, trainable, total, gpu_mem_gb)
    plan.time = estimate_time(recipe, model_config, trainable, total, plan.total, rows=rows,
                              tokens_per_example=tokens_per_example)
    return plan


@dataclass
class Measurement:
    """``--measure``: real training steps of the recipe on this machine."""

    device: str
    steps: int
    warmup_steps: int
    tokens_per_s: float
    seconds_per_step: float
    tokens_per_step: float
    peak_memory_bytes: int | None
    projected_seconds: float | None


def rate_from_metrics(records: list[dict[str, Any]], warmup_steps: int) -> tuple[float, float, float]:
    """``(tokens/s, seconds/step, tokens/step)`` over the train records after ``warmup_steps`` (one record per step,
    as metrics.jsonl holds them: cumulative ``tokens`` and the interval's ``tokens_per_s``)."""
    train = sorted((r for r in records if r.get("type") == "train"), key=lambda r: r["step"])
    start = next((r for r in train if r["step"] == warmup_steps), None)
    timed = [r for r in train if r["step"] > warmup_steps and r.get("tokens_per_s")]
    if start is None or not timed:
        raise ValueError(f"no timed train steps after step {warmup_steps} in the metrics")
    previous = [start, *timed[:-1]]
    seconds = sum((r["tokens"] - p["tokens"]) / r["tokens_per_s"] for r, p in zip(timed, previous, strict=True))
    tokens = timed[-1]["tokens"] - start["tokens"]
    steps = timed[-1]["step"] - warmup_steps
    return tokens / seconds, seconds / steps, tokens / steps


def measure_training(recipe: Recipe, steps: int = MEASURE_STEPS, *, projected_steps: int | None = None,
                     splits: tuple[Any, Any | None] | None = None) -> Measurement:
    """Train ``steps`` real optimizer steps of ``recipe`` (no evaluation, no checkpoints) and measure the rate after
    the first quarter of them; the measurement's run folder is removed afterwards.

    On a CUDA GPU any recipe runs; without one, a recipe with ``quantization: none`` runs on the CPU (useful for
    the small CPU recipes: it measures this machine), and a quantized one is refused.

    Raises:
        UserError: for a CUDA-only recipe without a CUDA GPU.
    """
    import shutil

    import torch

    from medtune.errors import UserError
    from medtune.runs import RunDir
    from medtune.train.trainer import ensure_prepared, load_splits, train_recipe

    cuda = torch.cuda.is_available()
    if not cuda and recipe.model.quantization != "none":
        raise UserError(f"--measure: recipe {recipe.name} trains an {recipe.model.quantization} base, which needs a "
                        f"CUDA GPU (none here); run it on the GPU machine, or use the estimates.")
    warmup = max(1, steps // 4)
    measured = recipe.model_copy(update={"train": recipe.train.model_copy(update={
        "run_name": f"{recipe.train.run_name or recipe.name}-plan-measure", "logging_steps": 1,
        "save_steps": 10 * steps, "eval_steps": None})})
    if splits is None and recipe.train.objective == "sft":
        splits = (load_splits(ensure_prepared(recipe))[0], None)  # no validation split: nothing but training
    run: RunDir = train_recipe(measured, max_steps=steps, splits=splits)
    try:
        from medtune.train.summary import read_metrics

        tokens_per_s, seconds_per_step, tokens_per_step = rate_from_metrics(read_metrics(run.metrics), warmup)
        peak = run.summary_data().get("peak_memory_bytes")
    finally:
        shutil.rmtree(run.root, ignore_errors=True)
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    return Measurement(device=device, steps=steps, warmup_steps=warmup, tokens_per_s=tokens_per_s,
                       seconds_per_step=seconds_per_step, tokens_per_step=tokens_per_step,
                       peak_memory_bytes=peak or None,
                       projected_seconds=None if projected_steps is None else projected_steps * seconds_per_step)
