"""Variable-length attention for packed rows, and which attention a padding-free batch should use per device.

A *packed* row holds several sequences end to end (TRL's padding-free batches in training, medtune's multiple-choice
scorer): no pad tokens, ``position_ids`` restarting at 0 for each sequence, and, from TRL's collator or the scorer,
``cu_seq_lens_q`` with the boundaries. On CUDA, flash-attention's varlen kernel handles such rows. transformers'
``sdpa`` does not: it turns the boundaries into a block-diagonal mask over the whole row, so every token attends
over the full packed length (and the kernel cannot use its causal fast path). :func:`packed_sdpa` fills that gap:
registered with transformers' attention interface (the library's extension point for custom attention), it runs
``scaled_dot_product_attention`` with ``is_causal=True`` on each sequence of the row alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the name :func:`packed_sdpa` is registered under in transformers' attention interface.
PACKED_ATTENTION = "medtune_packed_sdpa"


def sequence_bounds(cu_seq_lens_q: Any, position_ids: Any, length: int) -> list[int]:
    """Start offsets of the packed sequences plus the row length: from ``cu_seq_lens_q`` when given, else from where
    ``position_ids`` (one row) restarts at 0, else one sequence."""
    if cu_seq_lens_q is not None:
        return [int(b) for b in cu_seq_lens_q.tolist()]
    if position_ids is not None and position_ids.shape[0] == 1:
        starts = (position_ids[0] == 0).nonzero().flatten().tolist()
        return [int(s) for s in starts] + [length] if starts and starts[0] == 0 else [0, length]
    return [0, length]


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                scaling: float | None = None, cu_seq_lens_q: Any = None, **kwargs: Any) -> tuple[Any, None]:
    """Causal attention over each sequence of a packed row alone (transformers' attention-function signature).

    ``query``/``key``/``value`` are ``(batch, heads, tokens, dim)``. A batch of one row is split at its sequence
    boundaries (:func:`sequence_bounds`); a wider batch must be unpadded rows. Each piece goes through
    ``scaled_dot_product_attention`` with ``is_causal=True``: no padding, no attention across sequences. Padded
    batches (an attention mask) are refused: they belong to ``sdpa``.
    """
    import torch

    if attention_mask is not None:
        raise ValueError(f"{PACKED_ATTENTION} takes packed or unpadded rows, not a padding mask; use sdpa for "
                         "padded batches")
    length = query.shape[2]
    if key.shape[2] != length:
        raise ValueError(f"{PACKED_ATTENTION} scores whole rows; decoding with a KV cache needs sdpa")
    bounds = sequence_bounds(cu_seq_lens_q, kwargs.get("position_ids"), length) if query.shape[0] == 1 \
        else [0, length]
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    drop = dropout if module.training else 0.0
    outputs = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], dropout_p=drop, is_causal=True,
        scale=scaling, enable_gqa=gqa) for start, end in zip(bounds[:-1], bounds[1:], strict=False)]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def register_packed_attention() -> str:
    """Register :func:`packed_sdpa` with transformers (idempotent) and return its name.

    Its mask function is transformers' own flash-attention one, which builds no 4-D mask (None for unpadded rows).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa)
    AttentionMaskInterface.register(PACKED_ATTENTION, flash_attention_mask)
    return PACKED_ATTENTION


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_packed_rows(model: Any, longest: int) -> bool:
    """Whether ``model`` can take packed rows: a transformers model on the attention interface, without a sliding
    window shorter than ``longest`` tokens."""
    from transformers import PreTrainedModel

    base = base_model(model)
    if not isinstance(base, PreTrainedModel) or not getattr(base, "_supports_attention_backend", False):
        return False
    window = getattr(base.config, "sliding_window", None)
    return not window or window >= longest


def packed_rows_attention(cuda: bool) -> str:
    """The attention implementation for padding-free batches on this device: flash-attention 2 on CUDA when
    ``flash_attn`` is installed (its varlen kernel), else :func:`packed_sdpa` (registered here)."""
    if cuda:
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return register_packed_attention()


@contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """Switch ``model`` to :func:`packed_sdpa` for the duration, then back to what it had."""
    name = register_packed_attention()
    base = base_model(model)
    before = base.config._attn_implementation
    base.set_attn_implementation(name)
    try:
        yield
    finally:
        base.set_attn_implementation(before)
