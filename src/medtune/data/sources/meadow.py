"""Medical Meadow loader (medAlpaca): ``instruction``/``input``/``output`` records as a JSON list, JSONL or CSV.

The question is ``input`` (``instruction`` when ``input`` is empty; the instruction is a fixed preamble such as
"Answer this question truthfully"), the answer is ``output``.
"""

from __future__ import annotations

from pathlib import Path

from medtune.data.sources.base import LoadedSource, make_row, read_table, require_columns, sha256_of


def load_instruction_file(path: Path, source: str, fmt: str) -> LoadedSource:
    """Read an instruction/input/output file into rows labelled ``source``."""
    frame = read_table(path)
    require_columns(frame, path, {"question": "input", "answer": "output"},
                    "expected instruction/input/output records (Alpaca layout); use csv:/jsonl: with --map "
                    "for other layouts.")
    loaded = LoadedSource(path=str(path), format=fmt, sha256=sha256_of(path))
    has_instruction = "instruction" in frame.columns
    for index, record in enumerate(frame.to_dict("records")):
        question = record.get("input") or ""
        if not str(question).strip() and has_instruction:
            question = record.get("instruction") or ""
        loaded.rows.append(make_row(question=question, answer=record.get("output"), source=source,
                                    original_id=str(index)))
    return loaded


def load(path: Path, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load a Medical Meadow file (e.g. ``medical_meadow_small.json``, 5,942 records)."""
    return load_instruction_file(path, "meadow", "meadow")
