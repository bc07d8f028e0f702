"""Tokenization and masking: the answer carries the loss, the end-of-turn token is always a real label."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.train.conftest import splits_for, tiny_recipe

from medtune.models import load_tokenizer
from medtune.prompts import end_of_turn_token
from medtune.train.dataset import IGNORE_INDEX, rows_to_prompt_completion, tokenize_split


def test_final_end_of_turn_label_is_real(tiny_model_dir: Path, qa_rows: list[dict[str, str]]) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    end = end_of_turn_token(tokenizer)
    end_id = tokenizer.convert_tokens_to_ids(end)
    data, stats = tokenize_split(rows_to_prompt_completion(qa_rows, tokenizer), tokenizer, 256, end_token=end)
    assert stats.kept == len(qa_rows)
    for example in data:
        ids, labels = example["input_ids"], example["labels"]
        last_end = max(i for i, t in enumerate(ids) if t == end_id)
        assert labels[last_end] == end_id
        first_label = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
        assert "assistant" in tokenizer.decode(ids[:first_label])  # the prompt (with header) is masked
        assert all(lab == IGNORE_INDEX for lab in labels[:first_label])
        assert labels[first_label:] == ids[first_label:]


def test_too_long_rows_are_dropped_and_counted(tiny_model_dir: Path, qa_rows: list[dict[str, str]]) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = [*qa_rows, {"question": "Long?", "answer": "word " * 400}]
    data, stats = tokenize_split(rows_to_prompt_completion(rows, tokenizer), tokenizer, 128)
    assert stats.kept == len(qa_rows) and stats.dropped == {"too_long": 1} and len(data) == len(qa_rows)


@pytest.mark.parametrize("packing", [False, True], ids=["padding-free", "bfd-packing"])
def test_every_packed_batch_has_real_labels(
    tiny_model_dir: Path, qa_rows: list[dict[str, str]], packing: bool
) -> None:
    from trl import SFTTrainer

    from medtune.train.trainer import build_sft_config, load_model_for_training

    recipe = tiny_recipe(tiny_model_dir, max_steps=2, packing=packing)
    model, tokenizer = load_model_for_training(recipe)
    train_raw, _ = splits_for(tiny_model_dir, qa_rows * 3)
    end_id = tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer))
    data, _ = tokenize_split(train_raw, tokenizer, 128)
    args = build_sft_config(recipe, tiny_model_dir.parent / "ckpt", max_steps=2, has_eval=False, cuda=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    batches = list(trainer.get_train_dataloader())
    assert batches
    for batch in batches:
        assert "position_ids" in batch and "attention_mask" not in batch  # one flat row, no pad tokens
        assert batch["input_ids"].shape[0] == 1
        if not packing:  # padding-free keeps the micro-batch: batch_size examples per step
            assert int((batch["position_ids"] == 0).sum()) == recipe.train.batch_size
        labels = batch["labels"]
        assert (labels != IGNORE_INDEX).any()
        assert (labels == end_id).sum() == (batch["position_ids"] == 0).sum()  # one stop label per example


def test_packed_sequences_do_not_attend_to_each_other(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    a, b = torch.arange(5, 15)[None], torch.arange(100, 108)[None]
    packed = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(10), torch.arange(8)])[None]
    with torch.no_grad():
        alone = model(input_ids=b, use_cache=False).logits
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[:, 10:]
        leaky = model(input_ids=packed, position_ids=positions, use_cache=True).logits[:, 10:]
    # Without a KV cache (training), position_ids restarting at 0 yield a block-diagonal mask.
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(leaky, alone, atol=1e-3)  # hence training must run with use_cache=False
