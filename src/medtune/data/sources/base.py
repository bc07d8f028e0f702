"""Shared pieces of the source loaders: the row layout, :class:`LoadedSource`, file reading with clear errors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.errors import UserError

#: Provenance + content columns every loader fills (missing values are empty strings).
ROW_FIELDS: tuple[str, ...] = (
    "question", "answer", "source", "focus_area", "question_type", "url", "original_id", "group",
)


@dataclass
class LoadedSource:
    """What a loader returns: the rows it read, the rows it had to drop (with ``reason``) and provenance."""

    path: str
    format: str
    rows: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    sha256: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def input_rows(self) -> int:
        """Rows read from the input, kept or not (a skipped unreadable file counts as one row)."""
        return len(self.rows) + len(self.rejected)


def make_row(**values: Any) -> dict[str, str]:
    """Build a row with every column of :data:`ROW_FIELDS`; ``None``/NaN become empty strings."""
    row: dict[str, str] = {}
    for name in ROW_FIELDS:
        value = values.get(name)
        if value is None or (isinstance(value, float) and value != value):  # NaN from pandas
            value = ""
        row[name] = str(value)
    return row


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of every file of a folder (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def decode_utf8(data: bytes, where: str) -> str:
    """Decode bytes as UTF-8 (BOM allowed) or raise a :class:`UserError` naming the byte offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{where}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                        f"{error.start}); re-save the file as UTF-8.") from None


def read_text(path: Path) -> str:
    """Read a UTF-8 text file; empty files and other encodings are :class:`UserError`."""
    data = path.read_bytes()
    if not data.strip():
        raise UserError(f"{path}: the file is empty; point --source at a file with QA rows.")
    return decode_utf8(data, str(path))


def read_json_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSON list of objects, or JSON Lines (one object per line), with line numbers in errors."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: line {error.lineno}: malformed JSON ({error.msg}); fix the file.") from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UserError(f"{path}: line {number}: malformed JSON line ({error.msg}); fix or remove "
                                "the line.") from None
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"{path}: record {index + 1} is a {type(record).__name__}, not an object; "
                            "expected a list of {{...}} objects.")
    if not records:
        raise UserError(f"{path}: no records found; the file holds an empty list.")
    return records


def read_table(path: Path) -> Any:
    """Read CSV/TSV, JSON/JSONL, parquet or xlsx into a pandas DataFrame of strings, with clear errors."""
    import pandas as pd

    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in {".json", ".jsonl"}:
        return pd.DataFrame(read_json_records(path))
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for bad files
            raise UserError(f"{path}: not a readable parquet file ({error.__class__.__name__}); re-export it.") \
                from None
    elif suffix in {".xlsx", ".xls"}:
        try:
            frame = pd.read_excel(path, engine="openpyxl", dtype=str, keep_default_na=False)
        except Exception as error:  # zipfile.BadZipFile, KeyError from openpyxl ...
            raise UserError(f"{path}: not a readable xlsx workbook ({error.__class__.__name__}); re-save it "
                            "from a spreadsheet program.") from None
    else:
        text = read_text(path)
        import io

        try:
            frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str,
                                keep_default_na=False)
        except pd.errors.ParserError as error:
            raise UserError(f"{path}: malformed CSV ({str(error).strip()}); fix the quoting/columns of that row.") \
                from None
    if len(frame) == 0:
        raise UserError(f"{path}: has a header ({', '.join(map(str, frame.columns))}) but no data rows; "
                        "add rows or choose another file.")
    return frame


def require_columns(frame: Any, path: Path, needed: dict[str, str], hint: str) -> None:
    """Raise :class:`UserError` when a column the mapping names is absent from ``frame``."""
    present = [str(c) for c in frame.columns]
    for role, column in needed.items():
        if column not in present:
            raise UserError(f"{path}: no column '{column}' for {role} (columns: {', '.join(present)}); {hint}")
