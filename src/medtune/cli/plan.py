"""``medtune plan``: trainable LoRA parameters, memory and time estimates of a recipe, without loading weights;
``--measure`` trains 20 real steps and projects the run's time from them."""

from __future__ import annotations

import json
from typing import Any

import typer

from medtune.cli._console import console


def plan(
    recipe: str = typer.Argument(..., help="Recipe YAML file or shipped name (e.g. llama3-8b/config-a)."),
    gpu_mem: float | None = typer.Option(
        None, "--gpu-mem", help="Device memory in GB; says whether it fits."
    ),
    rows: int | None = typer.Option(
        None, "--rows", min=1, help="Training rows (default: data.sample_size x the train fraction, or the "
        "prepared folder's train.jsonl)."),
    tokens_per_example: int | None = typer.Option(
        None, "--tokens-per-example", min=1,
        help="Mean tokens per training example (default: model.max_seq_length, an upper bound)."),
    measure: bool = typer.Option(
        False, "--measure", help="Train 20 real steps (a CUDA GPU; on a CPU only recipes with quantization: none) "
        "and project the run's time from the measured rate."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as one JSON object."),
) -> None:
    """Count trainable LoRA parameters exactly and estimate training memory and time, without loading weights."""
    from dataclasses import asdict

    from medtune.config import load_recipe
    from medtune.train.planning import measure_training, plan_recipe

    loaded = load_recipe(recipe)
    result = plan_recipe(loaded, gpu_mem, rows=rows, tokens_per_example=tokens_per_example)
    steps = result.time.steps if result.time else None
    if as_json:
        measured = measure_training(loaded, projected_steps=steps) if measure else None
        console.print_json(json.dumps({**result.to_dict(), "measured": asdict(measured) if measured else None}))
        return
    print_memory(loaded, result, gpu_mem)
    if result.time is not None:
        print_time(result.time)
    if measure:  # after the estimates, so a refused or failed measurement still leaves them on screen
        print_measurement(measure_training(loaded, projected_steps=steps), result.time)


def duration(seconds: float | None) -> str:
    """``3 h 24 min``, ``13 min``, ``45 s`` (``?`` for None)."""
    if seconds is None:
        return "?"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60):02d} min"
    return f"{round(seconds / 60)} min" if seconds >= 60 else f"{seconds:.0f} s"


def print_memory(loaded: Any, result: Any, gpu_mem: float | None) -> None:
    """The parameter counts and the memory table."""
    from rich.table import Table

    from medtune.train.lora import target_modules
    from medtune.train.planning import GIB

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


def print_time(time: Any) -> None:
    """Tokens per step, steps, the FLOPs formula and the per-GPU estimate table."""
    from rich.table import Table

    console.print(f"tokens per step: [bold]{time.tokens_per_step:,}[/] (batch x accumulation x "
                  f"{time.tokens_per_example} tokens per example: {time.tokens_per_example_source})")
    console.print(f"steps: [bold]{'?' if time.steps is None else f'{time.steps:,}'}[/] ({time.steps_source})")
    console.print(f"FLOPs per token: {time.flops_per_token / 1e9:.1f} G = {time.flops_formula}")
    table = Table(title=f"estimated training time (ESTIMATES: FLOPs / (peak dense 16-bit TFLOPS x an assumed "
                        f"{time.mfu:.0%} utilisation); --measure on a GPU for a measured figure)")
    for column in ("GPU", "peak TFLOPS", "est. tokens/s", "est. s/step", "est. total", "memory fits"):
        table.add_column(column, justify="left" if column == "GPU" else "right")
    for name, gpu in time.gpus.items():
        fits = "?" if gpu["fits"] is None else ("yes" if gpu["fits"] else "[red]no[/]")
        table.add_row(name, f"{gpu['tflops']:g}", f"{gpu['tokens_per_s']:,.0f}", f"{gpu['seconds_per_step']:.1f}",
                      duration(gpu["seconds"]), f"{fits} ({gpu['memory_gb']:g} GB)")
    console.print(table)


def print_measurement(measured: Any, time: Any) -> None:
    """The measured rate on this machine and the projected time of the whole run."""
    console.print(f"[bold]measured[/] on {measured.device}: {measured.tokens_per_s:,.0f} tokens/s, "
                  f"{measured.seconds_per_step:.2f} s/step, {measured.tokens_per_step:,.0f} tokens/step (steps "
                  f"{measured.warmup_steps + 1}-{measured.steps} of {measured.steps}; the first ones warm up)")
    if measured.peak_memory_bytes:
        console.print(f"peak memory while measuring: {measured.peak_memory_bytes / 1024**3:.2f} GiB")
    if measured.projected_seconds is not None and time is not None:
        console.print(f"projected time of {time.steps:,} steps here: [bold]{duration(measured.projected_seconds)}[/]")


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command."""
    app.command("plan")(plan)
