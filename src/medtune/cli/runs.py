"""``medtune runs``: table of training run folders."""

from __future__ import annotations

import typer

from medtune.cli._console import console


def _fmt(value: object, spec: str = ".4f") -> str:
    """Format a number or show a dash."""
    return format(value, spec) if isinstance(value, int | float) else "-"


def runs() -> None:
    """List run folders: name, base model, status, steps, final loss, val loss, time."""
    from rich.table import Table

    from medtune.paths import runs_dir
    from medtune.runs import list_runs

    found = list_runs() if runs_dir().is_dir() else []
    if not found:
        console.print(f"no runs in {runs_dir()}; start one with `medtune train RECIPE`.")
        return
    table = Table(title=f"Runs in {runs_dir()}")
    for column in ("name", "base", "status", "steps", "final loss", "val loss", "time"):
        table.add_column(column, overflow="fold")
    for run in found:
        info, summary = run.info(), run.summary_data()
        seconds = summary.get("seconds")
        table.add_row(
            run.root.name,
            str(info.get("base_model", "-")),
            str(info.get("status", "-")),
            str(summary.get("steps", info.get("steps", "-"))),
            _fmt(summary.get("final_loss")),
            _fmt(summary.get("final_val_loss")),
            f"{seconds / 60:.1f} min" if isinstance(seconds, int | float) else "-",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``runs`` command."""
    app.command("runs")(runs)
