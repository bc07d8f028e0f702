"""``medtune compare``: evaluation results side by side with paired bootstrap 95% CIs on each difference."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def compare_command(
    results: list[str] = typer.Argument(..., help="results.json files or folders containing one; the first is the "
                                        "baseline."),
    out: Path | None = typer.Option(None, "--out", help="Folder for comparison.md/.html/.json "
                                    "(default MEDTUNE_HOME/comparisons/<time>)."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples."),
) -> None:
    """Compare evaluations: per task and metric, the difference to the first result with a paired 95% CI."""
    import time

    from rich.table import Table

    from medtune.evaluate.compare import load_results, write_comparison
    from medtune.paths import medtune_home

    loaded = [load_results(r) for r in results]
    target = out or medtune_home() / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    diffs = write_comparison(loaded, target, resamples)
    table = Table(title=f"vs {loaded[0]['label']}")
    for column in ("task", "metric", "model", "n", "baseline", "other", "diff [95% CI]"):
        table.add_column(column)
    for d in diffs:
        table.add_row(d.task, d.metric, Path(d.model).name, str(d.n), f"{d.baseline:.4f}", f"{d.other:.4f}",
                      f"{d.diff:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] {d.verdict}")
    console.print(table)
    console.print(f"written: {target}/comparison.md, comparison.html, comparison.json")


def register(app: typer.Typer) -> None:
    """Add ``medtune compare``."""
    app.command("compare")(compare_command)
