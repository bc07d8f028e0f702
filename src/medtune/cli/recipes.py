"""``medtune recipes``: list the shipped recipes and validate them."""

from __future__ import annotations

import typer

from medtune.cli._console import console


def recipes() -> None:
    """List the shipped recipes with their model, data size, LoRA, epochs and description (each one validated)."""
    from rich.table import Table

    from medtune.config import load_recipe
    from medtune.recipes import recipes_root, shipped_recipes

    table = Table(title=f"Recipes in {recipes_root()}")
    table.add_column("recipe", no_wrap=True, style="bold")
    for column in ("model", "quant", "samples", "epochs", "lora", "description"):
        table.add_column(column, overflow="fold")
    for path in shipped_recipes():
        recipe = load_recipe(path)
        lora = recipe.lora
        targets = lora.target_modules if isinstance(lora.target_modules, str) else ",".join(lora.target_modules)
        table.add_row(
            str(path.relative_to(recipes_root()).with_suffix("")),
            recipe.model.name,
            recipe.model.quantization,
            str(recipe.data.sample_size or "all"),
            f"{recipe.train.epochs:g}",
            f"r={lora.r} a={lora.alpha} {targets}{' rslora' if lora.use_rslora else ''}",
            recipe.description,
        )
    console.print(table)
    console.print("Run one with the command in its first line, e.g. [bold]medtune train recipes/smollm2-135m/tiny.yaml[/]")


def register(app: typer.Typer) -> None:
    """Add the ``recipes`` command."""
    app.command("recipes")(recipes)
