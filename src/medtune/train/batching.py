"""How training batches are laid out and which attention reads them: the training side of the device policy.

``train_recipe`` records both in run.json (``batching``, ``attention``); the loss head is chosen in
:mod:`medtune.train.answer_loss`.
"""

from __future__ import annotations

from medtune.attention import packed_rows_attention
from medtune.config import Recipe


def batching(recipe: Recipe) -> str:
    """How training batches are laid out: ``packed`` (BFD rows of max_seq_length), ``padding-free`` (each batch's
    examples end to end in one row) or ``padded`` (DPO's chosen/rejected batches)."""
    if recipe.train.objective == "dpo":
        return "padded"
    return "packed" if recipe.train.packing else "padding-free" if recipe.train.padding_free else "padded"


def training_attention(recipe: Recipe, cuda: bool) -> str | None:
    """The attention implementation to train with: the recipe's ``model.attn_implementation`` when set; for rows
    without padding, the device's variable-length attention (:func:`medtune.attention.packed_rows_attention`:
    flash-attention 2 on CUDA when installed, else per-sequence SDPA); padded batches keep transformers' default."""
    if recipe.model.attn_implementation:
        return recipe.model.attn_implementation
    if batching(recipe) == "padded":
        return None
    return packed_rows_attention(cuda)
