"""Tokenize prompt/completion rows for supervised fine-tuning with the prompt masked out of the loss.

Each row becomes ``input_ids`` and ``labels`` (``-100`` on prompt tokens when completion-only loss is on). The
completion ends with the style's end-of-turn token, which always keeps a real label (known trap #1):
rows longer than ``max_seq_length`` are dropped and counted instead of being truncated, so no example
loses its stop token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medtune.errors import UserError

IGNORE_INDEX = -100


@dataclass
class TokenizeStats:
    """What happened to the rows of one split."""

    rows: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    label_tokens: int = 0


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Number of leading token ids ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(
    prompt: str, completion: str, tokenizer: Any, completion_only: bool = True
) -> dict[str, list[int]]:
    """Tokenize one example; prompt tokens get label ``-100`` when ``completion_only``.

    The text already carries its special tokens (:func:`medtune.prompts.render_example`), so no BOS
    is added here. The completion starts where the tokenized prompt and prompt+completion diverge.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    input_ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    start = common_prefix_length(prompt_ids, input_ids) if completion_only else 0
    labels = [IGNORE_INDEX] * start + input_ids[start:]
    return {"input_ids": input_ids, "labels": labels}


def tokenize_split(
    dataset: Any,
    tokenizer: Any,
    max_seq_length: int,
    completion_only: bool = True,
    end_token: str | None = None,
) -> tuple[Any, TokenizeStats]:
    """Tokenize a ``datasets.Dataset`` with ``prompt``/``completion`` columns into ``input_ids``/``labels``.

    Rows longer than ``max_seq_length`` are dropped (counted as ``too_long``); a row whose end-of-turn token
    (``end_token``) has no real label raises, since the model would never learn to stop.
    """
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise UserError(
            f"training data lacks the column(s) {', '.join(sorted(missing))}; "
            "prepare it with `medtune prepare` (rows need prompt and completion)."
        )
    end_id = tokenizer.convert_tokens_to_ids(end_token) if end_token else None
    stats = TokenizeStats(rows=len(dataset))
    rows: dict[str, list[Any]] = {"input_ids": [], "labels": []}
    for prompt, completion in zip(dataset["prompt"], dataset["completion"], strict=True):
        example = tokenize_pair(prompt, completion, tokenizer, completion_only)
        if len(example["input_ids"]) > max_seq_length:
            stats.dropped["too_long"] = stats.dropped.get("too_long", 0) + 1
            continue
        if end_id is not None and end_id not in example["labels"]:
            raise UserError(
                f"example {prompt[:60]!r}: its end-of-turn token {end_token} is not in the loss; "
                "check the prompt style / chat template of the prepared data."
            )
        rows["input_ids"].append(example["input_ids"])
        rows["labels"].append(example["labels"])
        stats.tokens += len(example["input_ids"])
        stats.label_tokens += sum(1 for label in example["labels"] if label != IGNORE_INDEX)
    stats.kept = len(rows["input_ids"])
    from datasets import Dataset

    return Dataset.from_dict(rows), stats


def rows_to_prompt_completion(
    rows: list[dict[str, str]], tokenizer: Any, style: str = "chat-template", system_prompt: str | None = None
) -> Any:
    """Render ``{question, answer}`` rows into a prompt/completion ``datasets.Dataset`` (tests, bench)."""
    from datasets import Dataset

    from medtune.prompts import render_example

    pairs = [render_example(r["question"], r["answer"], style, tokenizer, system_prompt) for r in rows]
    return Dataset.from_dict({"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]})
