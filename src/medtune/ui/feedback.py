"""Thumbs-up/down feedback on answers, kept in SQLite at ``MEDTUNE_HOME/feedback.sqlite3``.

Each row stores the question, the answer, the model and backend, the generation settings (JSON), the
rating (1 = thumbs up, 0 = thumbs down), the response time and when it was given. Rating the same
answer again (same ``message_id``) updates its row instead of adding a new one.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.paths import medtune_home

FEEDBACK_FILE = "feedback.sqlite3"
COLUMNS = ["id", "created", "message_id", "rating", "question", "answer", "model", "backend", "settings",
           "seconds"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    rating INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    settings TEXT NOT NULL,
    seconds REAL
)
"""


@dataclass
class FeedbackRecord:
    """One rated answer."""

    message_id: str
    rating: int
    question: str
    answer: str
    model: str
    backend: str
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    created: str = ""
    id: int | None = None


def feedback_db_path() -> Path:
    """Return the feedback database path under the medtune home."""
    return medtune_home() / FEEDBACK_FILE


class FeedbackStore:
    """A small SQLite table of rated answers."""

    def __init__(self, path: Path | None = None) -> None:
        """Open (and create when missing) the database at ``path`` (default :func:`feedback_db_path`)."""
        self.path = Path(path) if path is not None else feedback_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """Open a connection, commit on success and always close it."""
        try:
            db = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as error:
            raise UserError(f"{self.path}: cannot open the feedback database ({error}); "
                            "check the file or set MEDTUNE_HOME to a writable folder.") from None
        try:
            with db:
                yield db
        except sqlite3.DatabaseError as error:
            raise UserError(f"{self.path}: not a readable feedback database ({error}); "
                            "move the file away and try again.") from None
        finally:
            db.close()

    def save(self, record: FeedbackRecord) -> None:
        """Insert the rating, or update it when this answer (``message_id``) was rated before."""
        if record.rating not in (0, 1):
            raise UserError(f"feedback rating {record.rating!r}: must be 1 (thumbs up) or 0 (thumbs down).")
        created = record.created or time.strftime("%Y-%m-%dT%H:%M:%S")
        with self._connect() as db:
            db.execute(
                "INSERT INTO feedback (created, message_id, rating, question, answer, model, backend, settings,"
                " seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(message_id) DO UPDATE SET"
                " rating = excluded.rating, created = excluded.created",
                (created, record.message_id, record.rating, record.question, record.answer, record.model,
                 record.backend, json.dumps(record.settings, sort_keys=True), record.seconds),
            )

    def remove(self, message_id: str) -> None:
        """Delete the rating of one answer (the user cleared the thumbs)."""
        with self._connect() as db:
            db.execute("DELETE FROM feedback WHERE message_id = ?", (message_id,))

    def records(self, limit: int | None = None) -> list[FeedbackRecord]:
        """Return the ratings, newest first (at most ``limit``)."""
        query = "SELECT " + ", ".join(COLUMNS) + " FROM feedback ORDER BY id DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            query += " LIMIT ?"
            params = (limit,)
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        out = []
        for row in rows:
            values = dict(zip(COLUMNS, row, strict=True))
            values["settings"] = json.loads(values["settings"] or "{}")
            out.append(FeedbackRecord(**values))
        return out

    def export_csv(self, out: Path) -> int:
        """Write every rating to ``out`` as CSV (settings as JSON text); return the number of rows."""
        records = self.records()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for record in reversed(records):
                row = asdict(record)
                row["settings"] = json.dumps(row["settings"], sort_keys=True)
                writer.writerow(row)
        return len(records)
