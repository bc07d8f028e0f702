"""The counting and FLOP accounting of bench/train_throughput.py, on hand-made rows (nothing is trained)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.bench_scripts import load_bench

ROWS = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9, 10, 11, 12], "labels": [-100, -100, 10, 11, 12]}]


def test_padded_batches_count_rows_and_pad_positions(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    collator = load_bench("train_throughput").CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding="longest"))
    batch = collator([{**r, "attention_mask": [1] * len(r["input_ids"])} for r in ROWS])
    assert batch["labels"][0].tolist() == [-100, 6, 7, -100, -100]
    assert collator.lengths == [3, 5] and collator.positions == 10  # 2 of 10 positions are padding


def test_padding_free_batches_split_rows_at_position_zero() -> None:
    trl = pytest.importorskip("trl.trainer.sft_trainer")
    inner = trl.DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    collator = load_bench("train_throughput").CountingCollator(inner)
    batch = collator([dict(r) for r in ROWS])
    assert batch["input_ids"].shape == (1, 8) and "attention_mask" not in batch
    assert collator.lengths == [3, 5] and collator.positions == 8


def test_training_flops_count_matmuls_and_causal_attention() -> None:
    shape = {"base_matmul_params": 1000, "lora_params": 10, "layers": 2, "attention_width": 8}
    per_token = 4 * 1000 + 6 * 10
    attention = 6 * 2 * 8  # x l (l + 1): QK^T and AV over the causal triangle, forward and backward
    assert load_bench("train_throughput").training_flops([3, 5], shape) == per_token * 8 + attention * (3 * 4 + 5 * 6)
