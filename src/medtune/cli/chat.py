"""`medtune chat`: a terminal conversation with history (/reset, /exit)."""

from __future__ import annotations

import typer

from medtune.cli._console import console
from medtune.cli.ask import MODEL_HELP


def chat(
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    backend: str = typer.Option("transformers", "--backend", "-b", help="transformers | llamacpp | ollama | openai"),
    url: str = typer.Option(None, "--url", help="Server URL for ollama/openai backends."),
    temperature: float = typer.Option(0.3, help="0 = greedy."),
    max_new_tokens: int = typer.Option(256, help="Answer length limit in tokens."),
    no_guard: bool = typer.Option(False, "--no-guard", help="Disable the safety guard (not for users)."),
    guard_config: str = typer.Option(None, help="Guard YAML file."),
    rag: str = typer.Option(None, "--rag", help="Ground answers in this retrieval index (see `medtune index build`)."),
    rag_min_score: float = typer.Option(None, "--rag-min-score", min=0.0, max=1.0, help="With --rag, sources-only: "
                                        "say the sources do not cover a question whose best passage scores under this "
                                        "(choose it with `medtune index calibrate`)."),
    model_citations: bool = typer.Option(False, "--model-citations", help="With --rag, show the citation numbers "
                                         "exactly as the model wrote them (default: a number whose source does not "
                                         "state its sentence is moved to the listed source that does, with a note)."),
) -> None:
    """Chat in the terminal; history is kept (trimmed to the context window). /reset clears it, /exit quits."""
    from rich.prompt import Prompt

    from medtune.cli._assistant import after_stream, build_assistant, timing_line
    from medtune.inference.assistant import history_turns

    assistant = build_assistant(model, backend, url, temperature, max_new_tokens, 0.9, 40, 1.1, 1, [],
                                no_guard, guard_config, rag=rag, rag_min_score=rag_min_score,
                                repair_citations=not model_citations)
    console.print(f"[bold]medtune chat[/] · {assistant.backend.info().model} · /reset clears history, /exit quits")
    history: list[dict[str, str]] = []
    while True:
        try:
            question = Prompt.ask("[bold green]you[/]").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if question in ("/exit", "/quit"):
            break
        if question == "/reset":
            history.clear()
            console.print("[dim]history cleared[/]")
            continue
        if not question:
            continue
        console.print("[bold blue]assistant[/] ", end="")
        for event in assistant.stream(question, history):
            if event.kind == "token":
                console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
            elif event.reply is not None:
                reply = event.reply
                console.print(after_stream(reply), markup=False, highlight=False, soft_wrap=True)
                console.print(f"[dim]{timing_line(reply)}[/]")
                history += history_turns(reply)


def register(app: typer.Typer) -> None:
    """Add `chat`."""
    app.command("chat")(chat)
