"""Write a prepared folder: DatasetDict, CSV + JSONL per split, rejected.jsonl, manifest.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from medtune.data.records import Rejected

COLUMNS = ("id", "question", "answer", "source", "focus_area", "question_type", "url", "original_id",
           "document_id", "group", "prompt", "completion")


def write_outputs(out_dir: Path, splits: dict[str, list[dict[str, Any]]], rejected: list[Rejected],
                  manifest: dict[str, Any]) -> None:
    """Write every output file of a prepared folder (overwriting an earlier one)."""
    import datasets
    from datasets import Dataset, DatasetDict

    datasets.disable_progress_bars()

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({c: row.get(c, "") for c in COLUMNS}, ensure_ascii=False) + "\n")
        with (out_dir / f"{name}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    with (out_dir / "rejected.jsonl").open("w", encoding="utf-8") as handle:
        for item in rejected:
            handle.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
    dataset = DatasetDict({
        name: Dataset.from_dict({c: [str(row.get(c, "")) for row in rows] for c in COLUMNS})
        for name, rows in splits.items()
    })
    dataset.save_to_disk(str(out_dir / "dataset"))
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
