"""Generic ``csv`` and ``jsonl`` loaders with a column mapping (``--map question=Q,answer=A``).

Mappable roles: question, answer (required), focus_area, question_type, url, original_id, group, source.
Without a mapping, columns named ``question`` and ``answer`` are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.data.sources.base import ROW_FIELDS, LoadedSource, make_row, require_columns, sha256_of
from medtune.errors import UserError


def rows_from_records(records: list[dict[str, Any]], columns: dict[str, str], source: str,
                      where: str) -> list[dict[str, str]]:
    """Map records to rows with ``columns`` (role -> column name)."""
    rows = []
    for index, record in enumerate(records):
        values = {role: record.get(column) for role, column in columns.items()}
        values.setdefault("original_id", str(index))
        values["source"] = values.get("source") or source
        rows.append(make_row(**values))
    return rows


def check_mapping(columns: dict[str, str], where: str) -> dict[str, str]:
    """Validate a column mapping and add the default question/answer columns."""
    unknown = sorted(set(columns) - set(ROW_FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown mapping key(s) {', '.join(unknown)}; use {', '.join(ROW_FIELDS)}.")
    return {"question": "question", "answer": "answer", **columns}


def _load(path: Path, columns: dict[str, str] | None, fmt: str) -> LoadedSource:
    """Shared body of the csv and jsonl loaders."""
    from medtune.data.sources.base import read_json_records, read_table

    mapping = check_mapping(columns or {}, str(path))
    if fmt == "jsonl":
        frame = None
        records = read_json_records(path)
        present = set().union(*(r.keys() for r in records))
        for role, column in mapping.items():
            if column not in present:
                raise UserError(f"{path}: no field '{column}' for {role} (fields: {', '.join(sorted(present))}); "
                                "pass --map question=FIELD,answer=FIELD.")
    else:
        frame = read_table(path)
        require_columns(frame, path, mapping, "pass --map question=COLUMN,answer=COLUMN.")
        records = frame.to_dict("records")
    loaded = LoadedSource(path=str(path), format=fmt, sha256=sha256_of(path))
    loaded.rows = rows_from_records(records, mapping, path.stem, str(path))
    return loaded


def load_csv(path: Path, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load a CSV/TSV file with a column mapping."""
    return _load(path, columns, "csv")


def load_jsonl(path: Path, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load a JSON Lines (or JSON list) file with a column mapping."""
    return _load(path, columns, "jsonl")
