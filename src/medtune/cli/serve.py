"""`medtune serve MODEL`: a guarded OpenAI-compatible server in front of llama.cpp (or vLLM on a GPU)."""

from __future__ import annotations

import typer

from medtune.cli._console import console


def serve(
    model: str = typer.Argument("smollm2-135m-instruct", help="GGUF file, run (exported first), model folder."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port of the guarded server."),
    engine_port: int = typer.Option(None, help="Port of the engine on 127.0.0.1 (default: PORT + 1)."),
    n_ctx: int = typer.Option(2048, help="Context window."),
    engine: str = typer.Option("auto", help="auto (chosen to fit the GPU found, and said why) | llamacpp | vllm"),
    upstream: str = typer.Option(None, help="Front an engine already running at this /v1 URL instead."),
    api_key: str = typer.Option(None, "--api-key", envvar="MEDTUNE_API_KEY",
                                help="Require `Authorization: Bearer KEY` on every request."),
    guard_config: str = typer.Option(None, help="Guard YAML file."),
    no_guard: bool = typer.Option(False, "--no-guard", help="Serve the bare engine without the guard (not for users)."),
    max_body_bytes: int = typer.Option(1_000_000, min=1, help="Largest request body (413 above)."),
    max_messages: int = typer.Option(64, min=1, help="Most messages in one request (400 above)."),
    max_tokens: int = typer.Option(1024, min=1, help="A request's max_tokens is lowered to this."),
    max_concurrent: int = typer.Option(4, min=1, help="Engine calls at once."),
    max_queue: int = typer.Option(32, min=0, help="Requests waiting for the engine; 429 + Retry-After beyond."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the engine choice (and why) and its command only."),
) -> None:
    """Serve MODEL at http://HOST:PORT/v1 behind the guard (any OpenAI client, `medtune ask --backend openai`)."""
    from medtune.serve.engine import run_guarded_server, serve_command
    from medtune.serve.requests import ServeLimits

    if dry_run or no_guard:
        command = serve_command(model, host if no_guard else "127.0.0.1", port if no_guard else (engine_port or port + 1),
                                n_ctx, engine, log=lambda line: console.print(line, markup=False, highlight=False,
                                                                              soft_wrap=True))
        console.print(" ".join(command), markup=False, highlight=False)
        if dry_run:
            return
        console.print(f"[yellow]unguarded[/] engine at http://{host}:{port}/v1 (Ctrl-C stops)")
        from medtune.children import run_child

        raise typer.Exit(run_child(command))
    try:
        limits = ServeLimits(max_body_bytes=max_body_bytes, max_messages=max_messages, max_tokens=max_tokens,
                             max_concurrent=max_concurrent, max_queue=max_queue)
        run_guarded_server(model, host, port, engine_port, n_ctx, engine, upstream, api_key, guard_config,
                           log=lambda line: console.print(line, markup=False, highlight=False), limits=limits)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register(app: typer.Typer) -> None:
    """Add `serve`."""
    app.command("serve")(serve)
