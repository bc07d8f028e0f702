"""``medtune train``: LoRA / QLoRA fine-tuning of a recipe into a self-describing run folder."""

from __future__ import annotations

import typer

from medtune.cli._console import console


def train(
    recipe: str = typer.Argument(..., help="Recipe YAML file or shipped name (e.g. smollm2-135m/tiny)."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the newest run of this recipe from its last checkpoint, if it was interrupted and the "
        "recipe (and --max-steps) are unchanged.",
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Stop after N optimizer steps (overrides the recipe)."
    ),
) -> None:
    """Fine-tune the recipe's model with LoRA on its prepared data (prepared on first use)."""
    from medtune.config import load_recipe
    from medtune.train.trainer import train_recipe

    run = train_recipe(load_recipe(recipe), resume=resume, max_steps=max_steps)
    summary = run.summary_data()
    console.print(f"[bold green]done[/]: {run.root}")
    if summary.get("resumed_from_step") is not None:
        console.print(f"resumed from step {summary['resumed_from_step']}; tokens/s below is this session's")
    if summary:
        def fmt(key: str) -> str:
            value = summary.get(key)
            return "n/a" if value is None else f"{value:.4f}"

        console.print(f"steps {summary['steps']}, loss {fmt('initial_loss')} -> {fmt('final_loss')}, "
                      f"val loss {fmt('final_val_loss')}, {summary['seconds']:.0f} s, "
                      f"{summary['tokens_per_s']:.0f} tokens/s")


def register(app: typer.Typer) -> None:
    """Add the ``train`` command."""
    app.command("train")(train)
