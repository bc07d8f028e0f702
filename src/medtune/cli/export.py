"""`medtune export RUN --format gguf --quant q4_k_m [--ollama NAME]`."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console


def export(
    model: str = typer.Argument(..., help="Run name/folder, adapter folder, or plain model (alias, HF folder)."),
    fmt: str = typer.Option("gguf", "--format", help="gguf | hf (merged 16-bit folder)."),
    quant: str = typer.Option("q4_k_m", "--quant", help="f16 | q8_0 | q4_k_m"),
    ollama: str = typer.Option(None, "--ollama", help="Write a Modelfile and `ollama create` this name."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <run>/export or MEDTUNE_HOME/exports)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare llama.cpp with transformers."),
    temperature: float = typer.Option(0.3, help="Modelfile temperature."),
    top_p: float = typer.Option(0.9, help="Modelfile top_p."),
    top_k: int = typer.Option(40, help="Modelfile top_k."),
    num_ctx: int = typer.Option(2048, help="Modelfile num_ctx."),
) -> None:
    """Merge the adapter (16-bit), convert to GGUF, quantize, verify against transformers, write a Modelfile."""
    from medtune.export.pipeline import export_model

    report = export_model(model, fmt=fmt, quant=quant, ollama=ollama, out_dir=out, verify=verify,
                          params={"temperature": temperature, "top_p": top_p, "top_k": top_k, "num_ctx": num_ctx})
    for name, size in report.get("files", {}).items():
        console.print(f"[green]wrote[/] {Path(report['out_dir']) / name} ({size / 1e6:.1f} MB)")
    for name, check in report.get("verify", {}).items():
        status = "identical" if check["exact"] else "differs"
        console.print(f"{name}: greedy agreement with transformers {check['agreement']:.0%} over "
                      f"{check['n_tokens']} tokens ({status})")
    if "ollama" in report:
        info = report["ollama"]
        console.print(f"[green]wrote[/] {info['modelfile']}")
        console.print("created in Ollama" if info["created"] else f"ollama not found; run: {info['command']}")
    console.print(f"report: {Path(report['out_dir']) / 'export.json'}")


def register(app: typer.Typer) -> None:
    """Add `export`."""
    app.command("export")(export)
