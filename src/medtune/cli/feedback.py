"""``medtune feedback``: the thumbs-up/down ratings given in the UI (table, or CSV export)."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def _short(text: str, width: int) -> str:
    """One line of at most ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def feedback(
    export: Path | None = typer.Option(None, "--export", help="Write every rating to this CSV file."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Rows to show in the table (newest first)."),
) -> None:
    """Show the answers rated in `medtune ui` (newest first) with the model and settings used."""
    from rich.table import Table

    from medtune.ui.feedback import FeedbackStore, feedback_db_path

    path = feedback_db_path()
    if not path.is_file():
        console.print(f"no feedback yet ({path} does not exist); rate answers in `medtune ui`.")
        return
    store = FeedbackStore(path)
    if export is not None:
        count = store.export_csv(export)
        console.print(f"wrote {count} rating(s) to {export}")
        return
    records = store.records(limit=limit)
    if not records:
        console.print(f"no feedback yet in {path}; rate answers in `medtune ui`.")
        return
    every = store.records()
    ups, total = sum(r.rating for r in every), len(every)
    table = Table(title=f"Feedback in {path}  ({ups} 👍 / {total - ups} 👎)")
    for column in ("time", "rating", "question", "answer", "model", "settings", "seconds"):
        table.add_column(column, overflow="fold")
    for r in records:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(r.settings.items()))
        table.add_row(r.created, "👍" if r.rating else "👎", _short(r.question, 60), _short(r.answer, 80), r.model,
                      settings, f"{r.seconds:.2f}" if r.seconds is not None else "-")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``feedback`` command."""
    app.command("feedback")(feedback)
