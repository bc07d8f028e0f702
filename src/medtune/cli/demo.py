"""``medtune demo``: the README's main job — prepare MedQuAD, train the CPU demo recipe, evaluate base vs tuned."""

from __future__ import annotations

import typer

from medtune.cli._console import console


def demo(
    recipe: str = typer.Option("smollm2-135m/demo", help="Recipe to run (default: the CPU demo)."),
    max_steps: int | None = typer.Option(None, help="Stop training after N steps (a quicker look)."),
    limit: int | None = typer.Option(None, help="Test questions to evaluate (default: the recipe's eval.limit)."),
    skip_eval: bool = typer.Option(False, help="Only prepare and train."),
) -> None:
    """Prepare -> train -> evaluate the base model and the fine-tuned one on the held-out test split."""
    from medtune.config import load_recipe
    from medtune.train.trainer import ensure_prepared, train_recipe

    loaded = load_recipe(recipe)
    console.rule(f"[bold]1/3 prepare[/] {loaded.name}")
    prepared = ensure_prepared(loaded)
    console.print(f"prepared data: {prepared}")
    console.rule("[bold]2/3 train[/]")
    run = train_recipe(loaded, max_steps=max_steps)
    summary = run.summary_data()
    console.print(f"run folder: {run.root}")
    if skip_eval:
        return
    console.rule("[bold]3/3 evaluate[/] base vs fine-tuned on the test split")
    from medtune.evaluate.runner import evaluate_model

    tasks = loaded.eval.tasks
    n = limit or loaded.eval.limit
    base = evaluate_model(loaded.model.name, tasks, limit=n, data_dir=prepared, settings=loaded.eval,
                          out_dir=run.eval_dir / "base")
    tuned = evaluate_model(str(run.root), tasks, limit=n, data_dir=prepared, settings=loaded.eval,
                           out_dir=run.eval_dir / "tuned")
    _print_comparison(base, tuned)
    if summary:
        console.print(f"training: {summary.get('steps')} steps, loss {_fmt(summary.get('initial_loss'))} -> "
                      f"{_fmt(summary.get('final_loss'))}, val loss {_fmt(summary.get('final_val_loss'))}, "
                      f"{summary.get('seconds', 0):.0f} s")
    console.print(f"reports: {run.eval_dir}/base and {run.eval_dir}/tuned; compare them with "
                  f"[bold]medtune compare {run.eval_dir}/base {run.eval_dir}/tuned[/]")


def _fmt(value: float | None) -> str:
    """Format a loss that may be missing (no step logged yet) as text."""
    return "n/a" if value is None else f"{value:.3f}"


def _print_comparison(base: dict, tuned: dict) -> None:
    """Print each task's headline metrics for the base and the tuned model side by side."""
    from rich.table import Table

    table = Table(title="base vs fine-tuned (held-out test split)")
    for column in ("task", "metric", "base", "fine-tuned", "change"):
        table.add_column(column, justify="right" if column in ("base", "fine-tuned", "change") else "left")
    for task, base_result in base.get("tasks", {}).items():
        tuned_metrics = tuned.get("tasks", {}).get(task, {}).get("metrics", {})
        for metric, value in base_result.get("metrics", {}).items():
            other = tuned_metrics.get(metric)
            if not isinstance(value, int | float) or not isinstance(other, int | float):
                continue
            table.add_row(task, metric, f"{value:.4f}", f"{other:.4f}", f"{other - value:+.4f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""
    app.command("demo")(demo)
