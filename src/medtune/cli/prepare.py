"""``medtune prepare``: raw medical QA sets -> a clean, split, model-formatted dataset folder."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def prepare(
    source: list[str] = typer.Option(None, "--source", "-s", help="KIND:PATH (repeatable), e.g. "
                                     "medquad:medquad/MedQuAD_xml.tar.gz, csv:my.csv, hf:lavita/MedQuAD."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    recipe: str | None = typer.Option(None, help="Take the data section (and model) from this recipe."),
    seed: int | None = typer.Option(None, help="Random seed for sampling and splitting."),
    sample_size: int | None = typer.Option(None, help="Rows to keep after cleaning (balanced across sources)."),
    balance: str | None = typer.Option(None, help="equal | proportional"),
    model: str | None = typer.Option(None, help="Model whose chat template formats the prompts."),
    prompt_style: str | None = typer.Option(None, help="chat-template | mistral-inst | llama3-header"),
    system_prompt: str | None = typer.Option(None, help="System prompt for every example."),
    column_map: str | None = typer.Option(None, "--map", help="For csv/jsonl/hf: question=COL,answer=COL,..."),
    multi_answer_policy: str | None = typer.Option(None, help="first | longest | keep_all"),
) -> None:
    """Load, clean, dedupe, filter, balance, split (grouped, stratified) and format QA data."""
    from rich.table import Table

    from medtune.config import DataConfig, Recipe, SourceSpec, load_recipe, recipe_from_dict
    from medtune.data.pipeline import prepare as run_prepare
    from medtune.data.sources import parse_source_arg
    from medtune.data.sources.tabular import parse_mapping

    base: Recipe = load_recipe(recipe) if recipe else recipe_from_dict({"name": "prepare"})
    data = base.data.model_dump()
    if source:
        mapping = parse_mapping(column_map)
        data["sources"] = [SourceSpec(kind=k, path=p, columns=mapping).model_dump()
                           for k, p in map(parse_source_arg, source)]
    overrides = {"seed": seed, "sample_size": sample_size, "balance": balance, "prompt_style": prompt_style,
                 "system_prompt": system_prompt, "multi_answer_policy": multi_answer_policy}
    data.update({k: v for k, v in overrides.items() if v is not None})
    config = recipe_from_dict({"name": base.name, "data": data}, "command line").data
    manifest = run_prepare(DataConfig.model_validate(config.model_dump()), out, model or base.model.name)
    table = Table(title=f"prepared {out}")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_row("input rows", str(manifest["input_rows"]))
    table.add_row("[green]kept[/]", str(manifest["kept"]))
    for reason, count in manifest["rejected"].items():
        table.add_row(f"[red]dropped[/]: {reason}", str(count))
    for name, count in manifest["splits"].items():
        table.add_row(f"split {name}", str(count))
    console.print(table)
    console.print(f"files: {out}/{{train,validation,test}}.{{jsonl,csv}}, dataset/, rejected.jsonl, manifest.json;"
                  f" figures: medtune data stats {out}")


def register(app: typer.Typer) -> None:
    """Add the ``prepare`` command."""
    app.command("prepare")(prepare)
