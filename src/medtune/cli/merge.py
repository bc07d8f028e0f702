"""``medtune merge``: merge a run's LoRA adapter into a 16-bit copy of its base model."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def merge(
    run: str = typer.Argument(..., help="Run folder, run name or name prefix (see `medtune runs`)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN/merged)."),
    dtype: str = typer.Option(
        "auto", "--dtype",
        help="auto (follows the run: float32 for fp32 runs, else bf16; fp16 on GPUs without bf16), bfloat16, "
             "float16, float32.",
    ),
) -> None:
    """Merge the adapter into the unquantized base and write an HF folder with tokenizer and chat template."""
    from medtune.runs import find_run
    from medtune.train.merge import merge_adapter

    report = merge_adapter(find_run(run).root, out, dtype)
    console.print(f"[bold green]merged[/] in {report.dtype} on {report.device}: {report.out_dir}")
    console.print(f"max |logit difference| vs the {report.reference}: {report.max_abs_logit_diff:.3g} "
                  f"({report.prompts} served prompts)")
    if report.trained_quantization != "none":
        console.print(f"the adapter was trained on a {report.trained_quantization} base and is merged into the "
                      "unquantized one: the merged model is close to, not the same as, the trained one")


def register(app: typer.Typer) -> None:
    """Add the ``merge`` command."""
    app.command("merge")(merge)
