"""The one optimizer policy of a recipe, shared by ``medtune plan`` (memory estimate) and ``medtune train``."""

from __future__ import annotations

from medtune.errors import UserError


def resolve_optimizer(name: str, quantization: str, *, cuda: bool | None = None) -> str:
    """Return the HF Trainer ``optim`` name a recipe trains with.

    ``auto`` is ``adamw_8bit`` for a quantized base (nf4/int8, which already needs CUDA and bitsandbytes) and
    ``adamw_torch`` otherwise (LoRA's optimizer states are small, and bitsandbytes may not be installed).
    Any other name is kept. With ``cuda=False`` (training here, without a GPU) 8-bit and paged optimizers
    are refused with the fix; ``cuda=None`` (planning for some device) checks nothing.

    Raises:
        UserError: an 8-bit/paged optimizer on a machine without CUDA.
    """
    if name == "auto":
        return "adamw_8bit" if quantization != "none" else "adamw_torch"
    if cuda is False and needs_bitsandbytes(name):
        raise UserError(
            f"train.optimizer: {name} needs a CUDA GPU (bitsandbytes); "
            "set `optimizer: auto` or `adamw_torch` in the recipe."
        )
    return name


def needs_bitsandbytes(name: str) -> bool:
    """True for bitsandbytes optimizers (8-bit states and/or paged), which need CUDA."""
    return "8bit" in name or name.startswith("paged_")
