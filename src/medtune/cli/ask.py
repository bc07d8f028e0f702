"""`medtune ask "question"`: stream one guarded answer and show the response time."""

from __future__ import annotations

import typer

from medtune.cli._console import console

MODEL_HELP = "Alias, model folder, run folder, .gguf; 'default' = smollm2-135m-instruct (openai: server's model)."


def ask(
    question: str = typer.Argument(..., help="The medical question."),
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    backend: str = typer.Option("transformers", "--backend", "-b", help="transformers | llamacpp | ollama | openai"),
    url: str = typer.Option(None, "--url", help="Server URL for ollama/openai backends."),
    temperature: float = typer.Option(0.3, help="0 = greedy."),
    max_new_tokens: int = typer.Option(256, help="Answer length limit in tokens."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling."),
    top_k: int = typer.Option(40, help="Top-k sampling."),
    repetition_penalty: float = typer.Option(1.1, help="Repetition penalty."),
    num_beams: int = typer.Option(1, help="Beam search width (transformers only; disables streaming)."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
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
    """Ask one question; the answer streams, then the disclaimer and the timing are shown."""
    from medtune.cli._assistant import after_stream, build_assistant, timing_line

    assistant = build_assistant(model, backend, url, temperature, max_new_tokens, top_p, top_k,
                                repetition_penalty, num_beams, stop, no_guard, guard_config, rag=rag, rag_min_score=rag_min_score,
                                repair_citations=not model_citations)
    for event in assistant.stream(question, []):
        if event.kind == "token":
            console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
        elif event.reply is not None:
            reply = event.reply
            console.print(after_stream(reply), markup=False, highlight=False, soft_wrap=True)
            console.print(f"[dim]{timing_line(reply)}[/]")


def register(app: typer.Typer) -> None:
    """Add `ask`."""
    app.command("ask")(ask)
