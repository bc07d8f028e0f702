"""MedicationQA loader (MedInfo 2019): the upstream xlsx (read with pandas + openpyxl) or a CSV with its columns
``Question, Focus (Drug), Question Type, Answer, Section Title, URL``."""

from __future__ import annotations

from pathlib import Path

from medtune.data.sources.base import LoadedSource, make_row, read_table, require_columns, sha256_of


def load(path: Path, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load MedicationQA (690 rows upstream)."""
    frame = read_table(path)
    require_columns(frame, path, {"question": "Question", "answer": "Answer"},
                    "expected MedInfo2019-QA-Medications.xlsx columns (Question, Focus (Drug), Question Type, "
                    "Answer, URL).")
    loaded = LoadedSource(path=str(path), format="medicationqa", sha256=sha256_of(path))
    for index, record in enumerate(frame.to_dict("records")):
        loaded.rows.append(make_row(
            question=record.get("Question"), answer=record.get("Answer"), source="medicationqa",
            focus_area=record.get("Focus (Drug)"), question_type=record.get("Question Type"),
            url=record.get("URL"), original_id=f"row{index + 2}",  # spreadsheet row (header is row 1)
        ))
    return loaded
