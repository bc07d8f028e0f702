"""Write the prepared folder (docs/ARCHITECTURE.md "Prepared data folder"): DatasetDict on disk, per-split CSV and
JSONL, ``rejected.jsonl`` and ``manifest.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

#: Columns of every prepared row, in order.
COLUMNS: tuple[str, ...] = ("id", "question", "answer", "source", "focus_area", "question_type", "url",
                            "original_id", "group", "prompt", "completion")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as JSON Lines (UTF-8, non-ASCII kept)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> None:
    """Write rows as CSV with a header (quoted as needed, newline-safe)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def export_prepared(out_dir: Path, splits: dict[str, list[dict[str, Any]]], rejected: list[dict[str, Any]],
                    manifest: dict[str, Any]) -> None:
    """Write every file of a prepared folder; the manifest is written last (its presence marks a complete folder)."""
    from datasets import Dataset, DatasetDict, Features, Value

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    features = Features({name: Value("string") for name in COLUMNS})
    dataset = DatasetDict({
        name: Dataset.from_dict({c: [row[c] for row in rows] for c in COLUMNS}, features=features)
        for name, rows in splits.items()
    })
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # saving a few MB is instant; its per-split bars only add noise
    try:
        dataset.save_to_disk(str(out_dir / "dataset"))
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    for name, rows in splits.items():
        clean = [{c: row[c] for c in COLUMNS} for row in rows]
        write_jsonl(out_dir / f"{name}.jsonl", clean)
        write_csv(out_dir / f"{name}.csv", clean)
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
