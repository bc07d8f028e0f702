"""``medtune prepare``: raw QA sources -> a clean, leakage-safe, model-formatted prepared folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medtune.cli._console import console, err_console

if TYPE_CHECKING:
    from medtune.config import DataConfig


def prepare(
    source: list[str] = typer.Option(None, "--source", "-s", help="KIND:PATH (repeatable). KIND: medquad, meadow, "
                                     "chatdoctor, medicationqa, csv, jsonl, hf (hf:<dataset id>)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (the prepared dataset)."),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="Recipe whose data section gives the settings."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for sampling and splitting."),
    sample_size: int | None = typer.Option(None, "--sample-size", help="Rows to keep after cleaning."),
    model: str | None = typer.Option(None, "--model", help="Model whose chat template formats the prompts."),
    mapping: str | None = typer.Option(None, "--map", help="Column mapping for csv/jsonl/hf: question=Q,answer=A."),
    prompt_style: str | None = typer.Option(None, "--prompt-style", help="chat-template, mistral-inst, "
                                            "llama3-header."),
    balance: str | None = typer.Option(None, "--balance", help="Sampling across sources: equal or proportional."),
    question_types: str | None = typer.Option(None, "--question-types", help="Comma-separated question types to "
                                              "keep (MedQuAD qtype, e.g. symptoms,treatment); untyped rows stay."),
    grounded: str | None = typer.Option(None, "--grounded", help="Index whose passages go into the train/validation "
                                        "prompts, with cited targets (grounded fine-tuning; the index must be built "
                                        "with --exclude-prepared-test). k and the no-answer share: data.grounded. "
                                        "'none': plain prompts even when the recipe grounds them."),
    distill: str | None = typer.Option(None, "--distill", help="Self-distillation: N seeded train questions (or "
                                       "'all') get the model's own consensus answer as target instead of the "
                                       "reference (~1 s per sample on a CPU for a 135M model; samples and checks: "
                                       "data.distill). 'none': off even when the recipe turns it on."),
) -> None:
    """Load, clean, de-duplicate, sample, split (grouped, stratified) and format medical QA data."""
    from pydantic import ValidationError
    from rich.table import Table

    from medtune.config import DataConfig, describe_validation_error, load_recipe
    from medtune.data.pipeline import DEFAULT_MODEL
    from medtune.data.pipeline import prepare as run_prepare
    from medtune.data.sources import parse_columns, parse_source_arg
    from medtune.errors import UserError

    loaded = load_recipe(recipe) if recipe else None
    data = loaded.data.model_copy(deep=True) if loaded else DataConfig.model_validate({})
    columns = parse_columns(mapping)
    overrides = {"seed": seed, "sample_size": sample_size, "prompt_style": prompt_style, "balance": balance}
    try:
        if source:
            data.sources = [parse_source_arg(text, columns if text.split(":")[0] in ("csv", "jsonl", "hf") else None)
                            for text in source]
        for key, value in overrides.items():
            if value is not None:
                setattr(data, key, value)
        if question_types is not None:
            data.question_types = [t.strip() for t in question_types.split(",") if t.strip()] or None
        if grounded is not None:
            data.grounded.index = None if grounded.lower() == "none" else grounded
        if distill is not None:
            _set_distill(data, distill)
    except ValidationError as error:
        raise UserError(describe_validation_error("command line", error, DataConfig)) from None
    model_name = model or (loaded.model.name if loaded else DEFAULT_MODEL)
    manifest = run_prepare(data, out, model_name,
                           warn=lambda line: err_console.print(f"[yellow]warning:[/] {line}", highlight=False))

    table = Table(title=f"prepared {out}")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("input", f"{manifest['input_rows']:,}")
    table.add_row("[bold green]kept[/]", f"{manifest['kept']:,}")
    for name, count in manifest["splits"].items():
        table.add_row(f"  {name}", f"{count:,}")
    for reason, count in manifest["rejected"].items():
        table.add_row(f"[red]dropped[/] {reason}", f"{count:,}")
    console.print(table)
    if "grounded" in manifest:
        _print_grounded(manifest["grounded"], out)
    if "distill" in manifest:
        _print_distill(manifest["distill"], out)
    changed = ", ".join(f"{k} {v:,}" for k, v in manifest["modified"].items()) or "none"
    console.print(f"text changed by cleaning: {changed}. Dropped rows with reasons: {out / 'rejected.jsonl'}")


def _set_distill(data: DataConfig, value: str) -> None:
    """Apply ``--distill N|all|none`` to the data section."""
    from medtune.errors import UserError

    settings = data.distill
    text = value.strip().lower()
    if text == "none":
        settings.enabled = False
    elif text == "all":
        settings.enabled, settings.limit = True, None
    elif text.isdigit() and int(text) > 0:
        settings.enabled, settings.limit = True, int(text)
    else:
        raise UserError(f"--distill {value}: give a number of train questions (e.g. 400), 'all' or 'none'.")


def _print_distill(info: dict, out: Path) -> None:
    """One paragraph on the self-distilled train split (``OUT/distill.jsonl`` holds every sample)."""
    outcomes = ", ".join(f"{reason} {count:,}" for reason, count in info["outcomes"].items())
    console.print(f"self-distilled by {info['model']}: {info['questions']:,} train questions x {info['samples']} "
                  f"samples -> {info['kept']:,} targets ({outcomes}); care advice in "
                  f"{info['care_advice_share']['samples']:.0%} of samples, {info['care_advice_share']['kept']:.0%} "
                  f"of kept answers; every sample: {out / 'distill.jsonl'}; {info.get('preference_pairs', 0):,} "
                  f"preference pairs (train.objective: dpo): {out / 'preferences.jsonl'}", highlight=False)


def _print_grounded(info: dict, out: Path) -> None:
    """One paragraph on the grounded examples (what ``OUT/grounded.jsonl`` records per row)."""
    rows = ", ".join(f"{split} {counts.get('with_answer', 0):,} with the answer + {counts.get('no_answer', 0):,} "
                     "without" for split, counts in info["rows"].items())
    console.print(f"grounded on index [bold]{info['index']}[/] (k={info['k']}): {rows}; "
                  f"{info['cited_statements']:,} of {info['statements']:,} answer statements cite their passage; "
                  f"test answers in the index: {info['test_answers_in_index']}, passages of test documents left out: "
                  f"{info['test_document_passages_dropped']:,}. Per row: {out / 'grounded.jsonl'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``medtune prepare``."""
    app.command("prepare")(prepare)
