"""The device policy shared by train, eval, ask, chat, the UI, merge, export and serve.

* **Device**: CUDA when present, the CPU otherwise. A model whose weights fit the GPU (with room left for
  activations and the KV cache) is placed whole on it (``device_map={"": index}``); a larger one gets
  ``device_map="auto"`` and accelerate spreads it over the GPUs and CPU RAM (known trap #11: a model loaded
  without a device map stays on the CPU even when CUDA exists).
* **Precision** (``auto``): bf16 on GPUs with native bf16 (compute capability >= 8.0), fp16 on older GPUs (T4,
  7.5; ``torch.cuda.is_bf16_supported()`` alone says yes there, through emulation), fp32 on the CPU. An
  explicit ``bfloat16`` becomes fp16 on a GPU without bf16 (known trap #7).
* **Quantization** (bitsandbytes nf4/int8) needs CUDA. Asked for explicitly (training) without CUDA it is a
  :class:`~medtune.errors.UserError`; a QLoRA run loaded for eval or chat on a CPU falls back to its
  unquantized base, with a note saying so.

Every function reads ``torch.cuda`` when called, so tests can monkeypatch it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from medtune.errors import UserError

#: Share of the GPU's free memory the weights may take when a model is placed whole on one GPU.
FIT_FRACTION = 0.8
#: Bits per quantized weight of a linear layer (nf4: 4 bits + double-quantized absmax per 64 weights).
QUANT_BITS = {"nf4": 4 + 8 / 64 + 32 / (64 * 256), "int8": 8 + 32 / 4096}
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Placement:
    """Where and in which precision a model is loaded."""

    device: str  # "cuda" or "cpu"
    dtype: str  # "bfloat16", "float16" or "float32"
    quantization: str  # "none", "nf4" or "int8": what is actually loaded
    device_map: str | dict[str, int] | None
    note: str | None = None  # why the placement differs from what was asked for


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def local_gpu() -> int:
    """The GPU of this process: ``LOCAL_RANK`` under torchrun / accelerate launch, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def bf16_supported() -> bool:
    """True on GPUs with native bf16 (compute capability >= 8.0); False on a T4 and on the CPU."""
    import torch

    return cuda_available() and bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_dtype(requested: str = "auto") -> str:
    """The dtype name to load in: ``auto`` -> bf16/fp16 on CUDA (per :func:`bf16_supported`), fp32 on the CPU.

    An explicit dtype is kept, except ``bfloat16`` on a GPU without native bf16, which becomes ``float16``.
    """
    if requested not in ("auto", *_BYTES):
        raise UserError(f"dtype {requested}: choose auto, bfloat16, float16 or float32")
    if not cuda_available():
        return "float32" if requested == "auto" else requested
    if requested in ("auto", "bfloat16"):
        return "bfloat16" if bf16_supported() else "float16"
    return requested


def half_dtype() -> str:
    """The 16-bit dtype of this machine: fp16 on a GPU without native bf16, else bf16."""
    return "float16" if cuda_available() and not bf16_supported() else "bfloat16"


def torch_dtype(name: str) -> Any:
    """``torch.bfloat16`` for ``"bfloat16"`` and so on."""
    import torch

    return getattr(torch, name)


def require_cuda_for(quantization: str) -> None:
    """Refuse bitsandbytes quantization without CUDA, with the fix in the message."""
    if quantization != "none" and not cuda_available():
        raise UserError(
            f"model.quantization: {quantization} needs a CUDA GPU (bitsandbytes); "
            "this machine has none. Set `quantization: none` in the recipe to train in full precision."
        )


#: How to install bitsandbytes (the ``gpu`` extra).
BITSANDBYTES_FIX = "pip install 'medtune[gpu]' (or rerun `bash scripts/install.sh` on this CUDA machine)"


def bitsandbytes_problem() -> str | None:
    """None when bitsandbytes imports, else why not (one line)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "is not installed"
    except Exception as error:  # bitsandbytes raises RuntimeError etc. when its CUDA libraries do not load
        return f"fails to import ({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    return None


def require_bitsandbytes(what: str) -> None:
    """Refuse ``what`` (a recipe key and value) when bitsandbytes cannot be imported, naming the install command."""
    problem = bitsandbytes_problem()
    if problem is not None:
        raise UserError(f"{what} needs bitsandbytes, which {problem} here; install it: {BITSANDBYTES_FIX}")


def resolve_quantization(requested: str, *, strict: bool) -> tuple[str, str | None]:
    """Return ``(quantization to load, note)``.

    Without CUDA a ``strict`` request raises (:func:`require_cuda_for`); otherwise (a run loaded in the
    quantization it was trained in) it falls back to ``none`` and the note says so.
    """
    if requested == "none" or cuda_available():
        return requested, None
    if strict:
        require_cuda_for(requested)
    return "none", (f"this run was trained on a {requested} (bitsandbytes) base, which needs CUDA; there is "
                    "no GPU here, so the base is loaded unquantized: outputs can differ slightly from the "
                    "quantized model the adapter was trained with")


def weight_bytes(config: Any, dtype: str, quantization: str = "none", trust_remote_code: bool = False) -> int:
    """Bytes of a model's weights: linear layers at the quantization's bits, the rest at ``dtype``.

    The model is built on the ``meta`` device from ``config`` (no memory is allocated).
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    bits = QUANT_BITS.get(quantization)
    plain = _BYTES[dtype] * 8
    head = model.get_output_embeddings()
    total = 0.0
    for module in model.modules():
        quantized = bits is not None and isinstance(module, torch.nn.Linear) and module is not head
        for param in module.parameters(recurse=False):
            total += param.numel() * (bits if quantized else plain) / 8
    return int(total)


def device_map_for(weights: int | None, quantization: str = "none") -> str | dict[str, int] | None:
    """The ``device_map`` for a model with ``weights`` bytes (None: size unknown).

    None on the CPU, and for unquantized models in a multi-process launch (the Trainer/accelerate places
    them); ``{"": gpu}`` when the weights fit :data:`FIT_FRACTION` of the GPU's free memory (or the size is
    unknown, or a quantized model is trained in several processes); ``"auto"`` otherwise.
    """
    if not cuda_available():
        return None
    import torch

    gpu = local_gpu()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return {"": gpu} if quantization != "none" else None
    free, _total = torch.cuda.mem_get_info(gpu)
    if weights is None or weights <= FIT_FRACTION * free:
        return {"": gpu}
    return "auto"


def plan_placement(dtype: str = "auto", quantization: str = "none", *, strict: bool = True,
                   config: Any = None, trust_remote_code: bool = False) -> Placement:
    """Decide device, dtype, quantization and device map for loading a model.

    Args:
        dtype: ``auto`` or an explicit dtype name (see :func:`resolve_dtype`).
        quantization: ``none``, ``nf4`` or ``int8``.
        strict: an explicit quantization request (True) raises without CUDA; False falls back with a note.
        config: the model's transformers config; on CUDA it sizes the weights for :func:`device_map_for`.
        trust_remote_code: the model's own code may be run (to build it from ``config``).
    """
    quant, note = resolve_quantization(quantization, strict=strict)
    resolved = resolve_dtype(dtype)
    if dtype == "bfloat16" and resolved == "float16":
        note = "this GPU has no native bf16 (compute capability < 8.0): using float16"
    if not cuda_available():
        return Placement("cpu", resolved, quant, None, note)
    weights = weight_bytes(config, resolved, quant, trust_remote_code) if config is not None else None
    return Placement("cuda", resolved, quant, device_map_for(weights, quant), note)


def llama_gpu_layers() -> int:
    """``n_gpu_layers`` for llama.cpp: all layers (-1) when CUDA is present, none otherwise.

    A CPU build of llama.cpp ignores the setting.
    """
    return -1 if cuda_available() else 0
