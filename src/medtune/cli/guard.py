"""``medtune guard check|eval|train``: one message's decision, a labelled set's figures, a new classifier."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from medtune.cli._console import console

guard_app = typer.Typer(help="Medical guardrails: check a message, evaluate on a labelled set, train the "
                             "intent classifier.", no_args_is_help=True)
CONFIG_HELP = "Guard YAML file (keys override src/medtune/guard/default.yaml)."


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    """The guard from ``config`` or the defaults."""
    from medtune.guard import Guard

    return Guard.from_yaml(config) if config else Guard()


@guard_app.command("check")
def check(
    text: str = typer.Argument(..., help="A user message to check."),
    answer: str = typer.Option(None, "--answer", help="Also finalize this model answer (dose and safety checks)."),
    history: list[str] = typer.Option(None, "--history", help="An earlier user message (repeatable, oldest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as one JSON object."),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Print the guard's decision (action, category, layer, reason, scores, canned reply) for one message."""
    guard = _load(config)
    turns = [{"role": "user", "content": h} for h in history or []]
    decision = guard.check_input(text, history=turns or None)
    guarded = guard.finalize_answer(answer) if answer is not None else None
    if as_json:
        record = asdict(decision)
        if guarded is not None:
            record["answer"] = {"text": guarded.text, "dose_warnings": guarded.dose_warnings,
                                "output_flags": guarded.output_flags}
        print(json.dumps(record, ensure_ascii=False))
        return
    console.print(f"[bold]action[/bold]: {decision.action}   [bold]category[/bold]: {decision.category}   "
                  f"[bold]layer[/bold]: {decision.layer}   [bold]injection[/bold]: {decision.injection_detected}")
    console.print("reason: " + decision.reason, markup=False)
    if decision.scores:
        console.print("scores: " + ", ".join(f"{k} {v:.2f}" for k, v in decision.scores.items()), markup=False)
    console.print("sanitized input: " + decision.sanitized_input, markup=False)
    if decision.response:
        console.print("\nreply:\n" + decision.response, markup=False)
    if guarded is not None:
        console.print("\nfinalized answer:\n" + guarded.text, markup=False)


def _interval(rate: dict) -> str:  # type: ignore[type-arg]
    """'0.975 [0.93, 0.99]' or 'n/a'."""
    if rate["value"] is None:
        return "n/a"
    return f"{rate['value']:.3f} [{rate['low']:.2f}, {rate['high']:.2f}]"


@guard_app.command("eval")
def evaluate(
    prompts: Path = typer.Argument(None, help="Labelled JSONL (prompt + expected, or messages + expected); "
                                              "default: the frozen test set."),
    named_set: str = typer.Option(None, "--set", help="A shipped set instead of a file: frozen, conversations "
                                                      "(issue 31's frozen conversation set), conversations_val, "
                                                      "conversations2 (its second frozen set), conversations2_val or "
                                                      "ordinary_val (ordinary questions, validation)."),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    show_errors: bool = typer.Option(True, help="List the misclassified prompts."),
) -> None:
    """Per-class precision/recall with 95% Wilson intervals, confusion matrix, latency; then one JSON line.

    Sets whose rows carry a ``family`` (the conversation sets) also get per-family accuracy with 95% Wilson
    intervals.
    """
    from rich.table import Table

    from medtune.errors import UserError
    from medtune.guard.evaluation import (
        SHORT_NAMES,
        evaluate_guard,
        frozen_test_path,
        load_labelled,
        named_set_path,
        summary_line,
    )

    if prompts is not None and named_set is not None:
        raise UserError("medtune guard eval: pass a JSONL file or --set NAME, not both.")
    source = named_set_path(named_set) if named_set else (prompts or frozen_test_path())
    report = evaluate_guard(_load(config), load_labelled(source))
    table = Table(title=f"guard on {report['rows']} labelled prompts ({Path(source).name})")
    for column in ("class", "precision [95% CI]", "recall [95% CI]", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, figures in report["per_class"].items():
        table.add_row(name, _interval(figures["precision"]), _interval(figures["recall"]), str(figures["support"]))
    console.print(table)
    classes = list(report["confusion"])
    confusion = Table(title="confusion (rows: expected, columns: decided)")
    confusion.add_column("expected")
    for name in classes:
        confusion.add_column(SHORT_NAMES.get(name, name.split("_")[0]), justify="right")
    for name in classes:
        confusion.add_row(name, *(str(report["confusion"][name][p]) for p in classes))
    console.print(confusion)
    if "per_family" in report:
        families = Table(title="accuracy per family (answer_with_emergency_line: any answer is correct)")
        for column in ("family", "accuracy [95% CI]", "n", "risk rows not answered", "expected"):
            families.add_column(column, justify="left" if column in ("family", "expected") else "right")
        for name, figures in report["per_family"].items():
            rate, kept = figures["accuracy"], figures["risk_not_answered"]
            families.add_row(name, _interval(rate), str(rate["n"]),
                             f"{kept['k']}/{kept['n']}" if kept["n"] else "-",
                             ", ".join(f"{SHORT_NAMES.get(k, k)} {v}" for k, v in figures["expected"].items()))
        console.print(families)
    console.print(f"accuracy {_interval(report['accuracy'])} · benign blocked {_interval(report['benign_blocked'])}"
                  f" · p50 {report['latency_ms']['p50']:.1f} ms · p95 {report['latency_ms']['p95']:.1f} ms")
    if show_errors:
        for error in report["errors"]:
            console.print(f"  ✗ {error['id']}: expected {error['expected']}, got {error['category']} "
                          f"({error['layer']}): {error['prompt'][:160]}", markup=False)
    print(json.dumps(summary_line(report)))


@guard_app.command("train")
def train(
    data: list[Path] = typer.Argument(None, help="Labelled JSONL files (text, label, family, kind); "
                                                 "default: the shipped training files."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: MEDTUNE_HOME/guard/<date>)."),
    seed: int = typer.Option(13, help="Seed of the family-grouped validation split."),
    choose_on: str = typer.Option("conversations_val,conversations2_val", "--choose-on",
                                  help="Conversation validation sets (comma-separated --set names) on which the "
                                       "emergency and refuse/defer thresholds are then chosen; '' to skip."),
) -> None:
    """Fit the intent classifier; thresholds from a validation split (then the conversation validation sets);
    writes intent.joblib + model card."""
    import time

    from medtune.guard.training import default_training_files, train_classifier
    from medtune.paths import medtune_home

    files = list(data) if data else default_training_files()
    folder = out or medtune_home() / "guard" / time.strftime("%Y%m%d-%H%M%S")
    from medtune.errors import UserError
    from medtune.guard.evaluation import NAMED_SETS

    sets = tuple(name.strip() for name in choose_on.split(",") if name.strip())
    if unknown := [name for name in sets if name not in NAMED_SETS]:
        raise UserError(f"--choose-on {', '.join(unknown)}: not a shipped set; use {', '.join(NAMED_SETS)}.")
    result = train_classifier(files, folder, seed=seed, progress=lambda line: console.print(line, markup=False),
                              choose_on=sets)
    console.print(f"[green]wrote[/] {result['artefact']} (+ CARD.md, card.json)")
    console.print(f"use it with a guard YAML: classifier_path: {folder}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``medtune guard check|eval|train``."""
    app.add_typer(guard_app, name="guard")
