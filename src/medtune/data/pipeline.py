"""``medtune prepare`` as a function: load sources -> clean -> sample -> split -> format -> export.

Invariant of the manifest: ``input_rows == kept + sum(rejected.values())`` (rows left out by sampling are
rejected with reason ``not_sampled``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medtune.config import DataConfig
from medtune.data.distill import distill_train_split, preference_pairs
from medtune.data.export import write_jsonl
from medtune.errors import UserError
from medtune.prompts import PROMPT_STYLES, render_example, training_system_prompt

log = logging.getLogger(__name__)
DEFAULT_MODEL = "smollm2-135m-instruct"


def _row_id(row: dict[str, Any]) -> str:
    """Stable id from provenance and content."""
    text = "\x1f".join(row[k] for k in ("source", "original_id", "question", "answer"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def format_rows(rows: list[dict[str, Any]], style: str, tokenizer: Any, system_prompt: str | None,
                progress: bool = True) -> None:
    """Add ``id``, ``prompt`` and ``completion`` to each row with :func:`medtune.prompts.render_example`."""
    from tqdm import tqdm

    for row in tqdm(rows, desc=f"formatting ({style})", unit=" rows", disable=None if progress else True,
                    leave=False):
        row["id"] = _row_id(row)
        row["prompt"], row["completion"] = render_example(row["question"], row["answer"], style, tokenizer,
                                                          system_prompt)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to write into a non-empty folder that is not an earlier prepare output."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder; choose another --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file() \
            and not (out_dir / "dataset").is_dir():
        raise UserError(f"{out_dir}: folder is not empty and not a prepared folder; choose an empty --out.")


def prepare(data: DataConfig, out_dir: Path, model_name: str | None = DEFAULT_MODEL, *, tokenizer: Any = None,
            progress: bool = True, warn: Any = None) -> dict[str, Any]:
    """Run the whole data pipeline and write the prepared folder; return the manifest.

    Args:
        data: the recipe's data section (sources, filters, sampling, split, prompt style).
        out_dir: the folder to write (see docs/ARCHITECTURE.md "Prepared data folder").
        model_name: model whose tokenizer renders ``chat-template`` prompts (unused by the literal styles).
        tokenizer: an already loaded tokenizer for ``model_name`` (skips loading it again).
        progress: show progress bars.
        warn: callable receiving warning lines (default: the logging module).
    """
    from medtune.data.cleaning import clean_rows
    from medtune.data.export import export_prepared
    from medtune.data.sampling import sample_rows
    from medtune.data.sources import load_source
    from medtune.data.splitting import split_rows

    warn = warn or log.warning
    out_dir = Path(out_dir).expanduser()
    if not data.sources:
        raise UserError("no data sources; pass --source KIND:PATH or set data.sources in the recipe.")
    if data.prompt_style not in PROMPT_STYLES:
        raise UserError(f"prompt_style '{data.prompt_style}' is unknown; choose one of: {', '.join(PROMPT_STYLES)}")
    if data.min_question_chars > data.max_question_chars or data.min_answer_chars > data.max_answer_chars:
        raise UserError("data: a min_*_chars is larger than its max_*_chars; fix the length filter.")
    _check_out_dir(out_dir)
    if data.distill.enabled and data.grounded.index:
        raise UserError("data.distill and data.grounded cannot be combined: grounded targets cite passages the "
                        "model's own answers do not; turn one of them off.")
    grounding = None
    if data.grounded.index:  # fails fast when the index is missing or keeps the test answers
        from medtune.data.grounded import GroundedBuilder

        grounding = GroundedBuilder(data.grounded, warn=warn)

    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    inputs = []
    for spec in data.sources:
        loaded = load_source(spec)
        for line in loaded.warnings[:5]:
            warn(line)
        if len(loaded.warnings) > 5:
            warn(f"{loaded.path}: {len(loaded.warnings) - 5} more files skipped (see rejected.jsonl)")
        inputs.append({"path": loaded.path, "format": loaded.format, "kind": spec.kind, "rows": loaded.input_rows,
                       "sha256": loaded.sha256})
        rows.extend(loaded.rows)
        rejected.extend(loaded.rejected)
    input_rows = len(rows) + len(rejected)

    cleaned = clean_rows(rows, data, progress=progress)
    rejected.extend(cleaned.rejected)
    selected, not_sampled = sample_rows(cleaned.kept, data.sample_size, data.balance, data.seed)
    rejected.extend({**{k: v for k, v in row.items() if k != "_qkey"}, "reason": "not_sampled"}
                    for row in not_sampled)
    if grounding is not None:
        grounding.remember_documents(selected)
    splits = split_rows(selected, data.split, data.seed)
    for split_rows_ in splits.values():
        for row in split_rows_:
            row.pop("_qkey", None)
    if data.prompt_style == "chat-template" and tokenizer is None:  # loaded late: bad inputs fail fast
        from medtune.models import load_tokenizer

        tokenizer = load_tokenizer(model_name or DEFAULT_MODEL)
    system_prompt = training_system_prompt(data.system_prompt)
    format_rows(selected, data.prompt_style, tokenizer, system_prompt, progress=progress)
    grounded = grounding.apply(splits, data.prompt_style, tokenizer, system_prompt, out_dir, data.seed,
                               progress=progress) if grounding is not None else None
    distilled = None
    if data.distill.enabled:
        splits["train"], dropped, records, distilled = distill_train_split(
            splits["train"], data.distill, model_name or DEFAULT_MODEL, style=data.prompt_style, tokenizer=tokenizer,
            system_prompt=system_prompt, seed=data.seed, progress=progress)
        rejected.extend(dropped)
        selected = [row for split in splits.values() for row in split]
        out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(out_dir / "distill.jsonl", records)
        write_jsonl(out_dir / "preferences.jsonl", preference_pairs(splits["train"]))
    else:
        for stale in ("distill.jsonl", "preferences.jsonl"):  # records of an earlier prepare into this folder
            (out_dir / stale).unlink(missing_ok=True)

    reasons = Counter(row["reason"] for row in rejected)
    manifest: dict[str, Any] = {
        "inputs": inputs,
        "input_rows": input_rows,
        "kept": len(selected),
        "rejected": dict(reasons.most_common()),
        "splits": {name: len(split) for name, split in splits.items()},
        "by_source": dict(Counter(row["source"] for row in selected).most_common()),
        "modified": dict(cleaned.modified.most_common()),
        "seed": data.seed,
        "filters": {
            "min_question_chars": data.min_question_chars, "max_question_chars": data.max_question_chars,
            "min_answer_chars": data.min_answer_chars, "max_answer_chars": data.max_answer_chars,
            "multi_answer_policy": data.multi_answer_policy, "question_types": data.question_types, "dedupe": ["exact", "normalized"],
            "unicode": "NFKC", "control_strings": "removed",
        },
        "sample_size": data.sample_size,
        "balance": data.balance,
        "split_fractions": list(data.split),
        "prompt_style": data.prompt_style,
        "system_prompt": system_prompt,
        "system_prompt_setting": data.system_prompt,
        "model": model_name if data.prompt_style == "chat-template" else None,
        **({"grounded": grounded} if grounded else {}),
        **({"distill": distilled} if distilled else {}),
        "output_dir": str(out_dir.resolve()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if manifest["input_rows"] != manifest["kept"] + sum(reasons.values()):  # pragma: no cover - a bug guard
        raise RuntimeError("row accounting is broken: input_rows != kept + rejected")
    export_prepared(out_dir, splits, rejected, manifest)
    return manifest
