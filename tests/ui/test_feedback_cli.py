"""The feedback store and `medtune feedback` (table and CSV export), `medtune ui` argument checks."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.errors import UserError
from medtune.ui.feedback import FeedbackRecord, FeedbackStore, feedback_db_path

runner = CliRunner()


def _record(message_id: str, rating: int, question: str = "What is asthma?") -> FeedbackRecord:
    return FeedbackRecord(message_id=message_id, rating=rating, question=question, answer="A lung disease.",
                          model="smollm2 (transformers)", backend="transformers",
                          settings={"temperature": 0.3, "max_new_tokens": 48}, seconds=1.25)


def test_store_upserts_and_lists_newest_first(isolated_home: Path) -> None:
    store = FeedbackStore()
    assert store.path == isolated_home / "feedback.sqlite3"
    store.save(_record("a", 1))
    store.save(_record("b", 0, "Is flu contagious?"))
    store.save(_record("a", 0))  # re-rating updates
    records = store.records()
    assert [(r.message_id, r.rating) for r in records] == [("b", 0), ("a", 0)]
    assert records[1].settings == {"temperature": 0.3, "max_new_tokens": 48}
    store.remove("b")
    assert [r.message_id for r in store.records()] == ["a"]
    with pytest.raises(UserError, match="rating"):
        store.save(_record("c", 5))


def test_feedback_command_table_and_csv(isolated_home: Path, tmp_path: Path) -> None:
    result = runner.invoke(get_app(), ["feedback"])
    assert result.exit_code == 0 and "no feedback yet" in result.output
    store = FeedbackStore()
    store.save(_record("a", 1))
    store.save(_record("b", 0, "Is flu contagious?"))
    result = runner.invoke(get_app(), ["feedback"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Is flu contagious?" in result.output and "1 👍 / 1 👎" in result.output
    out = tmp_path / "fb.csv"
    result = runner.invoke(get_app(), ["feedback", "--export", str(out)])
    assert result.exit_code == 0 and "wrote 2 rating(s)" in result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["question"] for r in rows] == ["What is asthma?", "Is flu contagious?"]
    assert rows[0]["rating"] == "1" and '"max_new_tokens": 48' in rows[0]["settings"]


def test_corrupt_database_is_a_user_error(isolated_home: Path) -> None:
    feedback_db_path().write_bytes(b"this is not sqlite" * 100)
    result = runner.invoke(get_app(), ["feedback"])
    assert result.exit_code == 2 or isinstance(result.exception, UserError)


def test_ui_rejects_unknown_backend() -> None:
    result = runner.invoke(get_app(), ["ui", "--backend", "nope"])
    assert isinstance(result.exception, UserError) and "nope" in str(result.exception)
