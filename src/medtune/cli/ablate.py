"""``medtune ablate``: train a grid of recipe variants and write a comparison table and figure."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def ablate(
    grid: Path = typer.Argument(..., help="Grid YAML (e.g. ablations/smollm2-grid.yaml)."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: MEDTUNE_HOME/ablations/...)."
    ),
) -> None:
    """Train every cell of a grid (sample size x epochs x rank x targets x quantization) and compare them."""
    from medtune.train.ablate import load_grid, run_grid

    folder = run_grid(load_grid(grid), out)
    console.print((folder / "results.md").read_text(), markup=False)
    console.print(f"[bold green]written[/]: {folder}/results.md, results.csv, comparison.png")


def register(app: typer.Typer) -> None:
    """Add the ``ablate`` command."""
    app.command("ablate")(ablate)
