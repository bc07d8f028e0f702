"""``medtune plan``: trainable LoRA parameters and a memory estimate of a recipe, without loading weights."""

from __future__ import annotations

import json

import typer

from medtune.cli._console import console


def plan(
    recipe: str = typer.Argument(..., help="Recipe YAML file or shipped name (e.g. llama3-8b/config-a)."),
    gpu_mem: float | None = typer.Option(
        None, "--gpu-mem", help="Device memory in GB; says whether it fits."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as one JSON object."),
) -> None:
    """Count trainable LoRA parameters exactly and estimate training memory, without loading weights."""
    from rich.table import Table

    from medtune.config import load_recipe
    from medtune.train.lora import target_modules
    from medtune.train.planning import GIB, plan_recipe

    loaded = load_recipe(recipe)
    result = plan_recipe(loaded, gpu_mem)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    lora = loaded.lora
    console.print(
        f"[bold]{loaded.name}[/]: {result.model}, quantization {result.quantization}, "
        f"LoRA r={lora.r} on {','.join(target_modules(lora))}"
        f"{' (RSLoRA)' if lora.use_rslora else ''}{' (DoRA)' if lora.use_dora else ''}"
    )
    console.print(
        f"trainable parameters: [bold]{result.trainable_params:,}[/] of {result.total_params:,} "
        f"({100 * result.trainable_params / result.total_params:.3f}%)"
    )
    table = Table(title=f"estimated memory, batch {result.batch_size} x {result.seq_length} tokens")
    table.add_column("term")
    table.add_column("GiB", justify="right")
    rows = [
        (f"base weights ({result.quantization})", result.weights),
        ("adapters + gradients (fp32)", result.adapters_and_grads),
        (f"optimizer states ({result.optimizer_kind})", result.optimizer),
        (
            f"activations (gradient checkpointing {'on' if result.gradient_checkpointing else 'off'})",
            result.activations,
        ),
        ("CUDA context / fragmentation", result.overhead),
        ("[bold]total[/]", result.total),
    ]
    for label, value in rows:
        table.add_row(label, f"{value / GIB:.2f}")
    console.print(table)
    if result.fits is not None:
        verdict = "[green]fits[/]" if result.fits else "[red]does not fit[/]"
        console.print(f"{verdict} in {gpu_mem:g} GB (keeping 5% headroom)")


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command."""
    app.command("plan")(plan)
