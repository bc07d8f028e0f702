"""``medtune ui``: start the Streamlit chat UI (chat page + Runs page)."""

from __future__ import annotations

import typer

from medtune.cli._console import err_console


def ui(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m",
                              help="Model alias, folder, run folder, GGUF path or server model name."),
    backend: str = typer.Option("transformers", "--backend", "-b",
                                help="transformers | llamacpp | ollama | openai (or package.module:factory)."),
    url: str | None = typer.Option(None, "--url", help="Server URL for the ollama/openai backends."),
    rag: str | None = typer.Option(None, "--rag", help="Answer from this retrieval index by default (see "
                                   "`medtune index build`); the sidebar can switch it off."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=8, max=1024, help="Default maximum answer length."),
    temperature: float = typer.Option(0.3, "--temperature", min=0.0, max=1.5, help="Default temperature."),
    port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes it on the network)."),
) -> None:
    """Open the chat UI in the browser: streamed guarded answers, feedback, model and run details."""
    import os
    import sys
    from importlib.util import find_spec
    from pathlib import Path

    from medtune.errors import UserError

    if find_spec("streamlit") is None:
        raise UserError("the UI needs streamlit: pip install 'medtune[ui]'")
    if backend not in ("transformers", "llamacpp", "ollama", "openai") and ":" not in backend:
        raise UserError(f"--backend {backend}: unknown; choose transformers, llamacpp, ollama or openai.")
    if rag:
        from medtune.rag.builder import require_manifest

        require_manifest(rag)
    app = Path(__file__).resolve().parents[1] / "ui" / "app.py"
    env = {**os.environ, "MEDTUNE_UI_MODEL": model, "MEDTUNE_UI_BACKEND": backend,
           "MEDTUNE_UI_MAX_TOKENS": str(max_tokens), "MEDTUNE_UI_TEMPERATURE": str(temperature),
           "MEDTUNE_UI_RAG": rag or ""}
    if url:
        env["MEDTUNE_UI_URL"] = url
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
               "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "minimal"]
    err_console.print(f"[bold]medtune ui[/] on http://{host}:{port}  (model {model}, backend {backend}"
                      f"{f', sources from index {rag}' if rag else ''}); Ctrl+C to stop")
    from medtune.children import run_child

    raise typer.Exit(run_child(command, env))


def register(app: typer.Typer) -> None:
    """Add the ``ui`` command."""
    app.command("ui")(ui)
