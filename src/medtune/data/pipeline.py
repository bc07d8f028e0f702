"""``prepare``: sources -> clean -> sample -> grouped split -> format -> export (with a manifest that adds up)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from rich.progress import track

from medtune.config import DataConfig
from medtune.data.clean import clean_records, dedupe_key
from medtune.data.export import write_outputs
from medtune.data.records import QARecord, Rejected
from medtune.data.sources import load_source
from medtune.data.split import grouped_split, sample_balanced
from medtune.prompts import render_example

log = logging.getLogger("medtune.data")
DEFAULT_MODEL = "smollm2-135m-instruct"


def file_sha256(path: Path) -> str:
    """sha256 of a file (or of the sorted file list + sizes of a folder)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                digest.update(f"{file.relative_to(path)}:{file.stat().st_size}".encode())
    elif path.is_file():
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _format_rows(records: list[QARecord], groups: dict[int, str], data: DataConfig, model_name: str | None
                 ) -> list[dict[str, Any]]:
    """Render prompt/completion for every record with the model's template or a literal style."""
    tokenizer = None
    if data.prompt_style == "chat-template":
        from medtune.models import load_tokenizer

        tokenizer = load_tokenizer(model_name or DEFAULT_MODEL)
    rows = []
    for index, record in enumerate(track(records, description="formatting prompts", transient=True)):
        prompt, completion = render_example(record.question, record.answer, data.prompt_style, tokenizer,
                                            data.system_prompt)
        row = record.to_dict()
        row.pop("origin")
        key = f"{record.source}|{record.original_id}|{record.question}|{record.answer}"
        row.update(id=hashlib.sha1(key.encode()).hexdigest()[:16], group=groups[index], prompt=prompt,
                   completion=completion)
        rows.append(row)
    return rows


def prepare(data: DataConfig, out_dir: Path, model_name: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline for ``data`` into ``out_dir`` and return the manifest."""
    from medtune.errors import UserError

    if not data.sources:
        raise UserError("prepare: no sources; pass --source KIND:PATH or a recipe whose data.sources is set.")
    records: list[QARecord] = []
    rejected: list[Rejected] = []
    inputs = []
    for spec in data.sources:
        loaded = load_source(spec.kind, spec.path, spec.columns, spec.name)
        for warning in loaded.warnings:
            log.warning(warning)
        records.extend(loaded.records)
        rejected.extend(loaded.rejected)
        for file in loaded.files:
            inputs.append({"path": str(file), "format": spec.kind, "rows": loaded.input_rows,
                           "sha256": file_sha256(file)})
    input_rows = len(records) + len(rejected)
    cleaned = clean_records(records, data)
    rejected.extend(cleaned.rejected)
    sampled, not_sampled = sample_balanced(cleaned.kept, data.sample_size, data.balance, data.seed)
    rejected.extend(Rejected("not_sampled", r.origin, r.to_dict()) for r in not_sampled)
    assignment = grouped_split(sampled, data.split, data.seed)
    group_keys = {i: hashlib.sha1(dedupe_key(r.question).encode()).hexdigest()[:12] for i, r in enumerate(sampled)}
    rows = _format_rows(sampled, group_keys, data, model_name)
    splits = {name: [rows[i] for i in indices] for name, indices in assignment.items()}
    manifest = {
        "inputs": inputs,
        "input_rows": input_rows,
        "kept": len(rows),
        "rejected": dict(sorted(Counter(r.reason for r in rejected).items())),
        "splits": {name: len(split) for name, split in splits.items()},
        "by_source": dict(sorted(Counter(r["source"] for r in rows).items())),
        "control_strings_removed": cleaned.control_strings_removed,
        "seed": data.seed,
        "sample_size": data.sample_size,
        "balance": data.balance,
        "filters": {"min_question_chars": data.min_question_chars, "max_question_chars": data.max_question_chars,
                    "min_answer_chars": data.min_answer_chars, "max_answer_chars": data.max_answer_chars,
                    "multi_answer_policy": data.multi_answer_policy, "split": list(data.split)},
        "prompt_style": data.prompt_style,
        "system_prompt": data.system_prompt,
        "model": (model_name or DEFAULT_MODEL) if data.prompt_style == "chat-template" else None,
        "output_dir": str(out_dir.resolve()),
    }
    assert manifest["input_rows"] == manifest["kept"] + sum(manifest["rejected"].values()), "rows lost"
    write_outputs(out_dir, splits, rejected, manifest)
    return manifest
