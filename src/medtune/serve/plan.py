"""Which engine configuration ``medtune serve`` runs: a pure function of the model's size and the GPU found.

Weights, per parameter (the sizes the choice compares):

* fp16/bf16 (vLLM's unquantized model, llama.cpp's f16 GGUF): 2 bytes.
* bitsandbytes 4-bit (vLLM ``--quantization bitsandbytes``): 0.55 bytes for the quantized linear layers (nf4's 4 bits
  + absmax and block overhead), 2 bytes for the token embeddings and LM head, which stay 16-bit.
* q4_k_m GGUF (llama.cpp): 4.85 bits (llama.cpp's measured average over a whole model; embeddings included).

The weights must fit :func:`weights_budget_gib`: ``GPU_MEMORY_UTILIZATION`` of the card's total memory (vLLM's
default ``--gpu-memory-utilization``, passed explicitly), less ``KV_HEADROOM`` of that for the KV cache,
activations and CUDA graphs. With vLLM: the fp16 base + the LoRA adapter (``--enable-lora``) when it fits, else the
4-bit bitsandbytes base + the adapter, else the q4_k_m GGUF on llama.cpp. Without vLLM: the f16 GGUF when it fits,
else q4_k_m (layers beyond the budget stay on the CPU). Without a GPU: the model's GGUF on the CPU, as before.
``--engine`` overrides the engine; the configuration is still chosen to fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medtune.devices import BITSANDBYTES_FIX
from medtune.errors import UserError

GIB = 1024**3
#: Bytes per parameter of each weight format the choice compares.
FP16_BYTES = 2.0
BNB_4BIT_BYTES = 0.55
Q4_K_M_BYTES = 4.85 / 8
#: vLLM's ``--gpu-memory-utilization`` (its default), passed explicitly: the share of the card vLLM may take.
GPU_MEMORY_UTILIZATION = 0.90
#: Share of that memory kept for the KV cache, activations and CUDA graphs (the weights get the rest).
KV_HEADROOM = 0.20
#: The values vLLM accepts for ``--max-lora-rank``.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
ENGINES = ("auto", "llamacpp", "vllm")


@dataclass(frozen=True)
class ServingPlan:
    """The engine configuration ``medtune serve`` runs, and why.

    ``weights``: ``fp16`` or ``bnb-4bit`` (vLLM); ``f16`` or ``q4_k_m`` (the GGUF llama.cpp serves); ``gguf`` for the
    model's own GGUF as before this choice existed (its export, else a new export at serve's default quant: the CPU
    path, and a GPU whose model size is unknown). ``lora``: vLLM serves the base with the adapter (``--enable-lora``)
    instead of a merged copy. ``n_gpu_layers``: llama.cpp's, None for the device default (all with CUDA).
    """

    engine: str
    weights: str
    lora: bool
    reason: str
    max_lora_rank: int | None = None
    n_gpu_layers: int | None = None


def weights_budget_gib(gpu_total_gib: float) -> float:
    """GiB the weights may take on a card of ``gpu_total_gib``: utilization share, less the KV-cache headroom."""
    return gpu_total_gib * GPU_MEMORY_UTILIZATION * (1 - KV_HEADROOM)


def fp16_gib(params_b: float) -> float:
    """GiB of ``params_b`` billion parameters at 2 bytes each."""
    return params_b * 1e9 * FP16_BYTES / GIB


def bnb_4bit_gib(params_b: float, unquantized_b: float = 0.0) -> float:
    """GiB in bitsandbytes 4-bit: 0.55 bytes/param, except ``unquantized_b`` billion (embeddings, LM head) at 2."""
    return ((params_b - unquantized_b) * BNB_4BIT_BYTES + unquantized_b * FP16_BYTES) * 1e9 / GIB


def q4_k_m_gib(params_b: float) -> float:
    """GiB of a q4_k_m GGUF (4.85 bits/param)."""
    return params_b * 1e9 * Q4_K_M_BYTES / GIB


def vllm_lora_rank(rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank`` (None above 512)."""
    return next((choice for choice in VLLM_LORA_RANKS if choice >= rank), None)


def choose_serving(params_b: float | None, gpu_total_gib: float | None, *, vllm: bool, is_adapter: bool,
                   lora_rank: int | None = None, lora_problem: str | None = None, unquantized_b: float = 0.0,
                   bitsandbytes: bool = True, llamacpp_gpu: bool = True, n_layers: int | None = None,
                   engine: str = "auto") -> ServingPlan:
    """Choose the engine configuration for a model of ``params_b`` billion parameters on a GPU of
    ``gpu_total_gib`` GiB (None: no CUDA GPU).

    Args:
        params_b: parameters of the (base) model in billions; None when they cannot be read from its config.
        gpu_total_gib: total memory of the GPU; None without one.
        vllm: vLLM is installed.
        is_adapter: the model is a run/adapter folder (LoRA on a base model).
        lora_rank: the adapter's rank (largest, with a rank pattern).
        lora_problem: why vLLM cannot serve this adapter as LoRA (DoRA, saved embeddings), None when it can.
        unquantized_b: billions of parameters bitsandbytes keeps 16-bit (token embeddings and LM head).
        bitsandbytes: bitsandbytes imports (vLLM's in-flight 4-bit quantization needs it).
        llamacpp_gpu: llama.cpp is built with GPU offload (a CPU build ignores ``--n_gpu_layers``).
        n_layers: the model's decoder layers (for a partial llama.cpp offload).
        engine: ``auto``, or ``llamacpp``/``vllm`` given with ``--engine``.

    Raises:
        UserError: for an unknown engine; ``--engine vllm`` without vLLM and a GPU, or for a model that fits neither
            in fp16 nor (bitsandbytes missing, or too large) in 4-bit.
    """
    if engine not in ENGINES:
        raise UserError(f"--engine {engine}: choose auto, llamacpp or vllm")
    forced = "chosen by --engine: " if engine != "auto" else ""
    if engine == "vllm" and not (vllm and gpu_total_gib is not None):
        raise UserError("--engine vllm needs vLLM and a CUDA GPU; use --engine llamacpp.")
    if gpu_total_gib is None:
        return ServingPlan("llamacpp", "gguf", False, f"{forced}llama.cpp on the CPU (no CUDA GPU) with the model's "
                           "GGUF (its export, else a new one)")
    gpu = f"this {gpu_total_gib:.1f} GiB GPU"
    if params_b is None:
        if engine == "vllm" or (engine == "auto" and vllm):
            lora = is_adapter and lora_problem is None
            return ServingPlan("vllm", "fp16", lora, f"{forced}vLLM, 16-bit {_what(is_adapter, lora)} on {gpu}: "
                               "the model's size could not be read from its config, so it is assumed to fit",
                               vllm_lora_rank(lora_rank or 16) if lora else None)
        return ServingPlan("llamacpp", "gguf", False, f"{forced}llama.cpp with the model's GGUF on {gpu}: its size "
                           "could not be read from its config")
    budget = weights_budget_gib(gpu_total_gib)
    room = (f"{budget:.1f} GiB for weights on {gpu} ({GPU_MEMORY_UTILIZATION:.0%} of it, less {KV_HEADROOM:.0%} of "
            "that for the KV cache)")
    fp16, bnb, q4 = fp16_gib(params_b), bnb_4bit_gib(params_b, unquantized_b), q4_k_m_gib(params_b)
    size = f"{params_b:.2f}B parameters"
    if engine == "vllm" or (engine == "auto" and vllm):
        lora = is_adapter and lora_problem is None and lora_rank is not None and vllm_lora_rank(lora_rank) is not None
        why_merged = _why_merged(is_adapter, lora_problem, lora_rank)
        rank = vllm_lora_rank(lora_rank) if lora and lora_rank is not None else None
        if fp16 <= budget:
            return ServingPlan("vllm", "fp16", lora, f"{forced}vLLM, fp16 {_what(is_adapter, lora)}: {size} need "
                               f"{fp16:.2f} GiB at 2 bytes/param, within {room}{why_merged}", rank)
        too_big = f"{size} need {fp16:.2f} GiB in fp16 (2 bytes/param), more than {room}"
        if bitsandbytes and bnb <= budget:
            return ServingPlan("vllm", "bnb-4bit", lora, f"{forced}vLLM, 4-bit bitsandbytes {_what(is_adapter, lora)}: "
                               f"{too_big}; 4-bit needs {bnb:.2f} GiB ({BNB_4BIT_BYTES} bytes/param, embeddings and "
                               f"LM head 16-bit){why_merged}", rank)
        if engine == "vllm":
            why = (f"4-bit bitsandbytes ({bnb:.2f} GiB) does not fit either" if bitsandbytes else
                   f"bitsandbytes, which vLLM's 4-bit needs, is not installed ({BITSANDBYTES_FIX})")
            raise UserError(f"--engine vllm: {too_big}, and {why}; leave out --engine to serve a q4_k_m GGUF on "
                            "llama.cpp instead.")
        no_bnb = (f"4-bit bitsandbytes ({bnb:.2f} GiB) does not fit either" if bitsandbytes else
                  f"bitsandbytes, which vLLM's 4-bit needs, is not installed ({BITSANDBYTES_FIX})")
        return _gguf_plan("q4_k_m", q4, budget, n_layers, f"llama.cpp instead of vLLM, {{what}}: {too_big}; {no_bnb}")
    if not llamacpp_gpu:
        return ServingPlan("llamacpp", "gguf", False, f"{forced}llama.cpp with the model's GGUF on the CPU: this "
                           "llama.cpp is a CPU build and ignores --n_gpu_layers (`medtune doctor` shows how to rebuild "
                           "it with CUDA)")
    if fp16 <= budget:
        return ServingPlan("llamacpp", "f16", False, f"{forced}llama.cpp, f16 GGUF, all layers on the GPU: {size} need "
                           f"{fp16:.2f} GiB at 2 bytes/param, within {room}", n_gpu_layers=-1)
    return _gguf_plan("q4_k_m", q4, budget, n_layers, f"{forced}llama.cpp, {{what}}: {size} need {fp16:.2f} GiB in "
                      f"f16 (2 bytes/param), more than {room}")


def _what(is_adapter: bool, lora: bool) -> str:
    """``base + LoRA adapter``, ``merged model`` or ``model``."""
    return "base + LoRA adapter (--enable-lora)" if lora else "merged model" if is_adapter else "model"


def _why_merged(is_adapter: bool, lora_problem: str | None, lora_rank: int | None) -> str:
    """Why an adapter is merged instead of served as LoRA (empty when it is served as LoRA)."""
    if not is_adapter:
        return ""
    if lora_problem is not None:
        return f"; merged, as vLLM cannot serve this adapter as LoRA: {lora_problem}"
    if lora_rank is None or vllm_lora_rank(lora_rank) is None:
        return f"; merged, as vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]} (this adapter: {lora_rank})"
    return ""


def _gguf_plan(quant: str, gib: float, budget: float, n_layers: int | None, template: str) -> ServingPlan:
    """A llama.cpp plan for a ``quant`` GGUF of ``gib``: all layers on the GPU when it fits, else the share of the
    layers that fits (all requested when the layer count is unknown)."""
    if gib <= budget:
        what = f"{quant} GGUF ({gib:.2f} GiB at {Q4_K_M_BYTES * 8:.2f} bits/param), all layers on the GPU"
        return ServingPlan("llamacpp", quant, False, template.format(what=what), n_gpu_layers=-1)
    if n_layers:
        layers = max(0, math.floor(n_layers * budget / gib))
        what = (f"{quant} GGUF ({gib:.2f} GiB at {Q4_K_M_BYTES * 8:.2f} bits/param) does not fit either: {layers} of "
                f"{n_layers} layers on the GPU, the rest on the CPU")
        return ServingPlan("llamacpp", quant, False, template.format(what=what), n_gpu_layers=layers)
    what = (f"{quant} GGUF ({gib:.2f} GiB at {Q4_K_M_BYTES * 8:.2f} bits/param) does not fit either (layer count "
            "unknown: all layers asked for; expect llama.cpp to run out of GPU memory)")
    return ServingPlan("llamacpp", quant, False, template.format(what=what), n_gpu_layers=-1)


def choose_for_gguf(file_gib: float, gpu_total_gib: float, *, llamacpp_gpu: bool = True,
                    engine: str = "auto") -> ServingPlan:
    """The plan for a GGUF file named directly (a ``.gguf`` path or a built-in alias) on a GPU: served as is, all
    layers on the GPU; the reason says when its ``file_gib`` exceeds :func:`weights_budget_gib`."""
    forced = "chosen by --engine: " if engine != "auto" else ""
    if not llamacpp_gpu:
        return ServingPlan("llamacpp", "gguf", False, f"{forced}llama.cpp with the GGUF given, on the CPU: this "
                           "llama.cpp is a CPU build and ignores --n_gpu_layers (`medtune doctor` shows how to rebuild "
                           "it with CUDA)")
    budget = weights_budget_gib(gpu_total_gib)
    room = f"{budget:.1f} GiB for weights on this {gpu_total_gib:.1f} GiB GPU"
    if file_gib <= budget:
        return ServingPlan("llamacpp", "gguf", False, f"{forced}llama.cpp with the GGUF given ({file_gib:.2f} GiB), "
                           f"all layers on the GPU: within {room}")
    return ServingPlan("llamacpp", "gguf", False, f"{forced}llama.cpp with the GGUF given ({file_gib:.2f} GiB), all "
                       f"layers asked on the GPU: more than {room}, expect it to run out of GPU memory (serve the run "
                       "instead, which picks a q4_k_m GGUF that fits, or `medtune export RUN --quant q4_k_m`)")
