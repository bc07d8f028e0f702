"""``medtune merge``: merge a run's LoRA adapter into a 16-bit copy of its base model."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def merge(
    run: str = typer.Argument(..., help="Run folder, run name or name prefix (see `medtune runs`)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN/merged)."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (bf16, fp16 on old GPUs), bfloat16, float16, float32."
    ),
) -> None:
    """Merge the adapter into the unquantized base and write an HF folder with tokenizer and chat template."""
    from medtune.runs import find_run
    from medtune.train.merge import merge_run

    folder = merge_run(find_run(run), out, dtype)
    console.print(f"[bold green]merged[/]: {folder}")


def register(app: typer.Typer) -> None:
    """Add the ``merge`` command."""
    app.command("merge")(merge)
