"""``medtune doctor [RECIPE]``: what this machine can run, in one table with the fix for each missing piece."""

from __future__ import annotations

import json

import typer

from medtune.cli._console import console


def doctor(
    recipe: str | None = typer.Argument(
        None, help="Recipe YAML file or shipped name: exit 2 when it cannot train here. Default: every shipped recipe."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as one JSON object."),
) -> None:
    """Check CUDA, precision, GPU memory against recipe plans, bitsandbytes, llama.cpp, vLLM, flash-attention,
    the offline models and the GGUF converter; each missing piece comes with its install command."""
    from rich.markup import escape
    from rich.table import Table

    from medtune.config import load_recipe
    from medtune.doctor import (
        MISSING,
        OK,
        as_rows,
        describe,
        gpu_info,
        machine_checks,
        recipe_check,
        shipped_recipe_checks,
    )
    from medtune.errors import UserError

    gpu = gpu_info()
    checks = machine_checks(gpu)
    verdict = None
    if recipe is None:
        checks += shipped_recipe_checks(gpu)
    else:
        verdict = recipe_check(describe(recipe), load_recipe(recipe), gpu)
        checks.append(verdict)
    if as_json:
        typer.echo(json.dumps({"checks": as_rows(checks)}))
    else:
        table = Table(title="medtune doctor: what this machine can run")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        style = {OK: "green", MISSING: "red"}
        for check in checks:
            color = style.get(check.status, "dim")
            table.add_row(escape(check.name), f"[{color}]{check.status}[/]", escape(check.detail), escape(check.fix))
        console.print(table)
    if verdict is not None and verdict.status == MISSING:
        raise UserError(f"recipe {verdict.name.removeprefix('recipe ')} cannot train here: {verdict.detail}; "
                        f"fix: {verdict.fix}")


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command."""
    app.command("doctor")(doctor)
