"""The answer-positions loss head (medtune.train.answer_loss) against TRL's own SFTTrainer loss on the same batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tests.train.conftest import splits_for, tiny_recipe

from medtune.train.answer_loss import AnswerHeadSFTTrainer, answer_positions
from medtune.train.dataset import IGNORE_INDEX, tokenize_split


def test_answer_positions_are_the_columns_that_predict_a_kept_label() -> None:
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6, IGNORE_INDEX],
                           [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 9]])
    assert answer_positions(labels).tolist() == [1, 2, 3]  # position t predicts token t + 1


@pytest.mark.parametrize("padding_free", [True, False], ids=["padding-free", "padded"])
def test_same_loss_and_gradients_as_trl(tiny_model_dir: Path, qa_rows: list[dict[str, str]],
                                        padding_free: bool) -> None:
    from trl import SFTTrainer

    from medtune.train.trainer import build_sft_config, load_model_for_training

    recipe = tiny_recipe(tiny_model_dir, max_steps=1, padding_free=padding_free)
    model, tokenizer = load_model_for_training(recipe)
    train_raw, _ = splits_for(tiny_model_dir, qa_rows * 2)
    data, stats = tokenize_split(train_raw, tokenizer, 128)
    args = build_sft_config(recipe, tiny_model_dir.parent / "ckpt-loss", max_steps=1, has_eval=False, cuda=False)
    results: dict[str, Any] = {}
    for name, trainer_class in (("trl", SFTTrainer), ("medtune", AnswerHeadSFTTrainer)):
        trainer = trainer_class(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))
        answer_tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(answer_tokens))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[name] = (float(loss.detach()), grads, answer_tokens)
    (trl_loss, trl_grads, trl_tokens), (our_loss, our_grads, our_tokens) = results["trl"], results["medtune"]
    assert our_tokens == trl_tokens > 0 and our_loss > 1.0
    assert our_loss == pytest.approx(trl_loss, rel=1e-5)
    assert set(our_grads) == set(trl_grads) and our_grads  # the LoRA weights, all of them
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, trl_grads[name], atol=1e-6, rtol=1e-4, msg=name)
