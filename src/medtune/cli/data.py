"""``medtune data stats``: tables and figures describing a prepared folder."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console

data_app = typer.Typer(help="Inspect prepared datasets.", no_args_is_help=True)


@data_app.command("stats")
def stats(
    folder: Path = typer.Argument(..., help="A folder written by `medtune prepare`."),
    model: str | None = typer.Option(None, "--model", help="Tokenizer for token lengths (default: the manifest's "
                                     "model, else smollm2-135m-instruct); 'none' skips token lengths."),
) -> None:
    """Print distributions (source, focus area, question type, lengths) and write PNG figures to FOLDER/figures."""
    from rich.table import Table

    from medtune.data.prepared import read_manifest
    from medtune.data.splitting import SPLITS
    from medtune.data.stats import compute_stats, make_figures

    manifest = read_manifest(folder)
    name = model or manifest.get("model") or "smollm2-135m-instruct"
    tokenizer = None
    if name.lower() != "none":
        from medtune.models import load_tokenizer

        tokenizer = load_tokenizer(name)
    result = compute_stats(folder, tokenizer)

    table = Table(title="rows by source")
    table.add_column("source")
    for split in SPLITS:
        table.add_column(split, justify="right")
    sources = sorted({s for split in SPLITS for s in result["by_source"][split]})
    for source in sources:
        table.add_row(source, *(f"{result['by_source'][split].get(source, 0):,}" for split in SPLITS))
    table.add_row("[bold]total[/]", *(f"{result['rows'][split]:,}" for split in SPLITS))
    console.print(table)
    for key, title in (("focus_area", "top focus areas"), ("question_type", "question types")):
        top = Table(title=title)
        top.add_column(key)
        top.add_column("rows", justify="right")
        for value, count in list(result[key].items())[:15]:
            top.add_row(value, f"{count:,}")
        console.print(top)
    lengths = Table(title="lengths")
    for column in ("measure", "mean", "median", "p95", "max"):
        lengths.add_column(column, justify="right" if column != "measure" else "left")
    for measure, summary in result["length_summary"].items():
        lengths.add_row(measure, *(f"{summary[k]:,.0f}" for k in ("mean", "median", "p95", "max")))
    console.print(lengths)
    for path in make_figures(folder, result):
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the ``medtune data`` command group."""
    app.add_typer(data_app, name="data")
