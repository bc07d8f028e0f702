"""`medtune serve MODEL`: an OpenAI-compatible server (llama-cpp-python; vLLM on a GPU)."""

from __future__ import annotations

import typer

from medtune.cli._console import console


def serve(
    model: str = typer.Argument("smollm2-135m-instruct", help="GGUF file, run (exported first), model folder."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
    n_ctx: int = typer.Option(2048, help="Context window."),
    engine: str = typer.Option("auto", help="auto | llamacpp | vllm"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the server command only."),
) -> None:
    """Serve MODEL at http://HOST:PORT/v1 (use it with `medtune ask --backend openai --url ...`)."""
    import subprocess

    from medtune.export.serve import serve_command

    command = serve_command(model, host, port, n_ctx, engine)
    console.print(" ".join(command), markup=False, highlight=False)
    if dry_run:
        return
    console.print(f"[green]serving[/] http://{host}:{port}/v1 (Ctrl-C stops)")
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register(app: typer.Typer) -> None:
    """Add `serve`."""
    app.command("serve")(serve)
