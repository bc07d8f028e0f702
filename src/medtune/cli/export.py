"""`medtune export RUN --format gguf --quant q4_k_m [--ollama NAME]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medtune.cli._console import console

if TYPE_CHECKING:
    from medtune.config import ExportConfig

RECORDED = "default: the run's recipe export: section, else"


def export_settings(model: str, flags: dict[str, Any]) -> ExportConfig:
    """The flags the user gave, else the run's recorded recipe ``export:`` section, else the defaults."""
    from pydantic import ValidationError

    from medtune.config import ExportConfig, describe_validation_error
    from medtune.errors import UserError
    from medtune.export.pipeline import export_source
    from medtune.runs import RunDir

    run = RunDir(export_source(model)[0])
    try:
        recorded = ExportConfig.model_validate(run.recorded_recipe().get("export") or {})
    except ValidationError as error:
        raise UserError(describe_validation_error(f"{run.recipe} (export)", error, ExportConfig)) from None
    return recorded.model_copy(update={key: value for key, value in flags.items() if value is not None})


def export(
    model: str = typer.Argument(..., help="Run name/folder, adapter folder, or plain model (alias, HF folder)."),
    fmt: str | None = typer.Option(None, "--format", help=f"gguf | hf (merged 16-bit folder); {RECORDED} gguf."),
    quant: str | None = typer.Option(None, "--quant", help=f"f16 | q8_0 | q4_k_m; {RECORDED} q4_k_m."),
    ollama: str | None = typer.Option(
        None, "--ollama", help=f"Write a Modelfile and `ollama create` this name; {RECORDED} none."
    ),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <run>/export or MEDTUNE_HOME/exports)."),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Check the GGUFs against the model users trained (a failed check exits 1)."),
    check_prompts: int = typer.Option(4, "--check-prompts", min=1, max=8,
                                      help="Served prompts whose greedy continuation the GGUFs score (teacher-forced)."),
    check_tokens: int = typer.Option(32, "--check-tokens", min=1, help="Continuation tokens per prompt."),
    max_ppl_increase: float = typer.Option(
        None, "--max-ppl-increase", min=0.0,
        help="Fail when a quantized GGUF's perplexity on held-out answers exceeds the f16 GGUF's by more "
             "than this fraction (0.05 = 5%)."),
    temperature: float | None = typer.Option(None, help=f"Modelfile temperature; {RECORDED} 0.3."),
    top_p: float | None = typer.Option(None, help=f"Modelfile top_p; {RECORDED} 0.9."),
    top_k: int | None = typer.Option(None, help=f"Modelfile top_k; {RECORDED} 40."),
    num_ctx: int | None = typer.Option(None, help=f"Modelfile num_ctx; {RECORDED} 2048."),
) -> None:
    """Merge the adapter (16-bit), convert to GGUF, quantize, check the GGUFs, write a Modelfile."""
    from medtune.export.pipeline import export_model

    settings = export_settings(model, {"format": fmt, "quant": quant, "ollama_name": ollama,
                                       "temperature": temperature, "top_p": top_p, "top_k": top_k, "num_ctx": num_ctx})
    fmt, quant, ollama = settings.format, settings.quant, settings.ollama_name
    temperature, top_p, top_k, num_ctx = settings.temperature, settings.top_p, settings.top_k, settings.num_ctx

    report = export_model(model, fmt=fmt, quant=quant, ollama=ollama, out_dir=out, verify=verify,
                          check_prompts=check_prompts, n_tokens=check_tokens, max_ppl_increase=max_ppl_increase,
                          params={"temperature": temperature, "top_p": top_p, "top_k": top_k, "num_ctx": num_ctx})
    for name, size in report.get("files", {}).items():
        console.print(f"[green]wrote[/] {Path(report['out_dir']) / name} ({size / 1e6:.1f} MB)")
    if "verify" in report:
        print_checks(report["verify"])
    if "ollama" in report:
        info = report["ollama"]
        console.print(f"[green]wrote[/] {info['modelfile']}")
        console.print("created in Ollama" if info["created"] else f"ollama not found; run: {info['command']}")
    console.print(f"report: {Path(report['out_dir']) / 'export.json'}")


def print_checks(verify: dict) -> None:
    """Per GGUF: vocabulary/stop/template status, the continuation's log-prob deltas and perplexity ratio, greedy
    agreement with its ties, and the held-out perplexity change; then each failure."""
    console.print(f"checked against the {verify['reference']} on {verify['n_prompts']} served prompts x "
                  f"{verify['n_tokens']} tokens (teacher-forced); perplexity on {verify['held_out']['answers']} "
                  f"held-out answers")
    for name, check in verify["files"].items():
        line = f"{name}: template {check.get('template', '?')}"
        if "ppl_ratio" in check:
            status = ("[green]identical[/]" if check["exact"] else
                      f"{check['decisive_divergences']} changed beyond the tie tolerance, {len(check['ties'])} tie(s)")
            line += (f", mean |delta log-prob| {check['mean_abs_delta_logprob']:.4f}, continuation perplexity "
                     f"x{check['ppl_ratio']:.3f} (limit x{check['max_ppl_ratio']:g}), greedy agreement "
                     f"{check['agreement']:.0%} ({status})")
        if check.get("perplexity") is not None:
            line += f", held-out perplexity {check['perplexity']:.3f}"
        if "ppl_increase" in check:
            line += f" ({check['ppl_increase']:+.1%} vs f16)"
        console.print(line, highlight=False)
        for tie in check.get("ties", []):
            console.print(f"  tie (not a fault): prompt {tie['prompt']}, position {tie['position']}: expected "
                          f"{tie['expected']}, got {tie['got']}; the model's own margin {tie['reference_margin']:.4f} "
                          f"nats <= {verify.get('tie_margin', 0):g}", highlight=False)
    for failure in verify.get("failures", []):
        console.print(f"[red]failed[/] {failure}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `export`."""
    app.command("export")(export)
