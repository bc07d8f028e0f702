"""The common row every source loader produces, and what a loader returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class QARecord:
    """One question/answer pair with its provenance."""

    question: str
    answer: str
    source: str
    focus_area: str = ""
    question_type: str = ""
    url: str = ""
    original_id: str = ""
    document_id: str = ""
    origin: str = ""  # file (and row/line) the pair came from

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a plain dict."""
        return asdict(self)


@dataclass
class Rejected:
    """A dropped row (or unreadable file) and why."""

    reason: str
    origin: str
    row: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the rejection as one JSON-able dict (row fields + reason + origin)."""
        return {**self.row, "reason": self.reason, "origin": self.origin}


@dataclass
class LoadResult:
    """What a source loader read: records, rows it dropped at read time, and input-file facts."""

    records: list[QARecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def input_rows(self) -> int:
        """Rows read (kept at read time + dropped at read time)."""
        return len(self.records) + len(self.rejected)
