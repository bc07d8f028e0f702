"""``medtune data stats OUT``: tables in the terminal and PNG figures of a prepared folder."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console

data_app = typer.Typer(help="Inspect prepared datasets.", no_args_is_help=True)


@data_app.command("stats")
def stats(
    prepared: Path = typer.Argument(..., help="A `medtune prepare` output folder."),
    model: str | None = typer.Option(None, help="Tokenizer for token lengths (default: the manifest's model)."),
    top: int = typer.Option(10, help="Rows per distribution table."),
) -> None:
    """Distributions by source, focus area and question type; length histograms in characters and tokens."""
    import statistics

    from rich.table import Table

    from medtune.data.prepared import read_manifest
    from medtune.data.stats import compute_stats, write_figures

    manifest = read_manifest(prepared)
    tokenizer = None
    name = model or manifest.get("model") or "smollm2-135m-instruct"
    if name:
        from medtune.models import load_tokenizer

        tokenizer = load_tokenizer(name)
    result = compute_stats(prepared, tokenizer)
    for key in ("by_split", "by_source", "by_focus_area", "by_question_type"):
        table = Table(title=key.replace("_", " "))
        table.add_column(key.removeprefix("by_"))
        table.add_column("rows", justify="right")
        for label, count in result[key].most_common(top):
            table.add_row(str(label), str(count))
        console.print(table)
    lengths = Table(title="lengths")
    for column in ("field", "min", "median", "mean", "max"):
        lengths.add_column(column, justify="right")
    for key in ("question_chars", "answer_chars", "question_tokens", "answer_tokens"):
        if key in result and result[key]:
            values = result[key]
            lengths.add_row(key, str(min(values)), f"{statistics.median(values):.0f}",
                            f"{statistics.fmean(values):.0f}", str(max(values)))
    console.print(lengths)
    for path in write_figures(result, prepared / "figures"):
        console.print(f"figure: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group."""
    app.add_typer(data_app, name="data")
