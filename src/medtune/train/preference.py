"""``train.objective: dpo``: direct preference optimisation (TRL's DPOTrainer) on a prepared folder's pairs.

``medtune prepare`` with ``data.distill`` writes ``OUT/preferences.jsonl``: per distilled train question, the
chosen answer (the consensus sample that passed every check) against the failing sample furthest from the
consensus (truncated, looping or, with ``require_care_advice``, without care advice). The LoRA adapter is the
policy; the base model with the adapter switched off is the reference, so no second copy of the model is loaded,
and its log-probabilities are computed once before training. ``train.dpo_sft_weight`` adds the negative
log-likelihood of the chosen answer (TRL ``loss_type=["sigmoid", "sft"]``, as in RPO, Pang et al. 2024), which
keeps the chosen answers' content while the preference term pushes away from the rejected ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.config import Recipe
from medtune.errors import UserError
from medtune.train.dataset import IGNORE_INDEX, TokenizeStats, tokenize_pair

#: The pairs file ``medtune prepare`` writes next to the splits (:func:`medtune.data.distill.preference_pairs`).
PREFERENCES = "preferences.jsonl"
PAIR_KEYS = ("prompt", "chosen", "rejected")


def _through_end_token(text: str, end_token: str | None) -> str:
    """``text`` up to and including its last end-of-turn token (TRL appends the EOS to text not ending in it)."""
    if end_token and end_token in text:
        return text[: text.rindex(end_token) + len(end_token)]
    return text


def read_pairs(path: Path) -> list[dict[str, str]]:
    """The pairs of a preferences.jsonl; a bad line is one error naming the file, the line and the missing key."""
    if not path.is_file():
        raise UserError(f"train.objective dpo: {path} not found; the pairs come from `medtune prepare` with "
                        "data.distill enabled (prepare the data again with it) or set train.objective: sft.")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}, line {number}: not JSON ({error.msg}); re-run `medtune prepare`.") from None
        missing = [key for key in PAIR_KEYS if not isinstance(row, dict) or not isinstance(row.get(key), str)]
        if missing:
            raise UserError(f"{path}, line {number}: no text under {', '.join(missing)}; each line needs prompt, "
                            "chosen and rejected (re-run `medtune prepare`).")
        pairs.append({key: row[key] for key in PAIR_KEYS})
    return pairs


def preference_dataset(prepared: Path | None, tokenizer: Any, max_seq_length: int,
                       end_token: str | None) -> tuple[Any, TokenizeStats]:
    """The prepared folder's pairs as a prompt/chosen/rejected ``datasets.Dataset``; pairs whose prompt plus longer
    answer exceed ``max_seq_length`` tokens are dropped and counted (``too_long``), as SFT drops its rows."""
    from datasets import Dataset

    if prepared is None:
        raise UserError("train.objective dpo needs a prepared folder with preferences.jsonl (splits passed in "
                        "directly have no pairs).")
    pairs = read_pairs(prepared / PREFERENCES)
    stats = TokenizeStats(rows=len(pairs))
    kept: dict[str, list[str]] = {key: [] for key in PAIR_KEYS}
    for pair in pairs:
        chosen, rejected = (_through_end_token(pair[key], end_token) for key in ("chosen", "rejected"))
        sides = [tokenize_pair(pair["prompt"], answer, tokenizer) for answer in (chosen, rejected)]
        if max(len(side["input_ids"]) for side in sides) > max_seq_length:
            stats.dropped["too_long"] = stats.dropped.get("too_long", 0) + 1
            continue
        for key, value in zip(PAIR_KEYS, (pair["prompt"], chosen, rejected), strict=True):
            kept[key].append(value)
        stats.tokens += sum(len(side["input_ids"]) for side in sides)
        stats.label_tokens += sum(label != IGNORE_INDEX for side in sides for label in side["labels"])
    stats.kept = len(kept["prompt"])
    if not stats.kept:
        raise UserError(f"{prepared / PREFERENCES}: no preference pair to train on ({stats.rows} pairs, "
                        f"{stats.dropped.get('too_long', 0)} longer than model.max_seq_length={max_seq_length}); "
                        "distil more questions (data.distill.limit) or raise the limit.")
    return Dataset.from_dict(kept), stats


def build_dpo_config(recipe: Recipe, out_dir: Path, *, cuda: bool) -> Any:
    """Translate the recipe into TRL's ``DPOConfig`` (no evaluation: validation rows have no rejected answers)."""
    from trl import DPOConfig

    from medtune.train.trainer import shared_training_args

    train = recipe.train
    weighted = train.dpo_sft_weight > 0
    return DPOConfig(
        **shared_training_args(recipe, out_dir, max_steps=None, has_eval=False, cuda=cuda),
        beta=train.dpo_beta,
        loss_type=["sigmoid", "sft"] if weighted else ["sigmoid"],
        loss_weights=[1.0, train.dpo_sft_weight] if weighted else None,
        max_length=recipe.model.max_seq_length,
        precompute_ref_log_probs=True,
    )


def build_dpo_trainer(recipe: Recipe, out_dir: Path, model: Any, tokenizer: Any, prepared: Path | None,
                      end_token: str | None, callbacks: list[Any], cuda: bool) -> tuple[Any, TokenizeStats]:
    """A ``DPOTrainer`` over the prepared pairs and the stats of what was kept."""
    from trl import DPOTrainer

    dataset, stats = preference_dataset(prepared, tokenizer, recipe.model.max_seq_length, end_token)
    trainer = DPOTrainer(model=model, args=build_dpo_config(recipe, out_dir, cuda=cuda), train_dataset=dataset,
                         processing_class=tokenizer, callbacks=callbacks)
    return trainer, stats
