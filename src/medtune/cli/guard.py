"""``medtune guard check "text"`` (the guard's decision on one message) and ``medtune guard eval`` (labelled set)."""

from __future__ import annotations

from pathlib import Path

import typer

from medtune.cli._console import console

guard_app = typer.Typer(help="Medical guardrails: check a message, evaluate on the labelled prompt set.",
                        no_args_is_help=True)
CONFIG_HELP = "Guard YAML file (keys override src/medtune/guard/default.yaml)."


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    """The guard from ``config`` or the defaults."""
    from medtune.guard import Guard

    return Guard.from_yaml(config) if config else Guard()


@guard_app.command("check")
def check(
    text: str = typer.Argument(..., help="A user message to check."),
    answer: str = typer.Option(None, "--answer", help="Also finalize this model answer (dose checks, disclaimer)."),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Print the guard's decision (action, category, reason, canned reply, sanitized input) for one message."""
    guard = _load(config)
    decision = guard.check_input(text)
    console.print(f"[bold]action[/bold]: {decision.action}   [bold]category[/bold]: {decision.category}   "
                  f"[bold]injection[/bold]: {decision.injection_detected}")
    console.print("reason: " + decision.reason, markup=False)
    console.print("sanitized input: " + decision.sanitized_input, markup=False)
    if decision.response:
        console.print("\nreply:\n" + decision.response, markup=False)
    if answer is not None:
        guarded = guard.finalize_answer(answer)
        console.print("\nfinalized answer:\n" + guarded.text, markup=False)


@guard_app.command("eval")
def evaluate(
    prompts: Path = typer.Option(None, "--prompts", help="Labelled JSONL (default: the shipped set)."),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    show_errors: bool = typer.Option(True, help="List the misclassified prompts."),
) -> None:
    """Precision/recall per class, accuracy, emergency recall and false emergency rate; then one JSON line."""
    import json

    from rich.table import Table

    from medtune.guard.evaluation import evaluate_guard, load_labelled, summary_line

    report = evaluate_guard(_load(config), load_labelled(prompts))
    table = Table(title=f"guard on {report['rows']} labelled prompts")
    for column in ("class", "precision", "recall", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, figures in report["per_class"].items():
        table.add_row(name, f"{figures['precision']:.3f}", f"{figures['recall']:.3f}", str(figures["support"]))
    console.print(table)
    console.print(f"accuracy {report['accuracy']:.3f} · emergency recall {report['emergency_recall']:.3f} · "
                  f"false emergency rate on ordinary questions {report['false_emergency_rate']:.3f}")
    if show_errors:
        for error in report["errors"]:
            console.print(f"  ✗ {error['id']}: expected {error['label']}, got {error['category']}: {error['text']}",
                          markup=False)
    print(json.dumps(summary_line(report)))


def register(app: typer.Typer) -> None:
    """Add ``medtune guard check|eval``."""
    app.add_typer(guard_app, name="guard")
