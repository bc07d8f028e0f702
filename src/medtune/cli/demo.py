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
    from medtune.prompts import served_system_prompt

    tasks = loaded.eval.tasks
    n = limit or loaded.eval.limit
    # the base model answers under the tuned run's system prompt: the two differ only in their weights
    base_settings = loaded.eval.model_copy(update={"system_prompt": served_system_prompt(run.root)})
    base = evaluate_model(loaded.model.name, tasks, limit=n, data_dir=prepared, settings=base_settings,
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


DEMO_METRICS = ("rubric_score", "rougeL", "bleu", "bertscore_minilm_f1", "embedding_cosine", "reference_unsupported_rate",
                "repeated_3gram_fraction", "distinct_2", "hit_token_limit", "answer_words", "acc")


def _print_comparison(base: dict, tuned: dict) -> None:
    """Print base vs tuned per task and headline metric, with the paired difference and its bootstrap 95% CI."""
    from rich.table import Table

    from medtune.evaluate.compare import compare_results

    base.setdefault("label", "base")
    tuned.setdefault("label", "fine-tuned")
    diffs = [d for d in compare_results([base, tuned]) if d.metric in DEMO_METRICS]
    table = Table(title="base vs fine-tuned: same seeded sample, paired bootstrap 95% CI of the difference")
    for column in ("task", "metric", "n", "base", "fine-tuned", "difference [95% CI]", ""):
        # names fold instead of being cut to "rubric_sc…" in an 80-column terminal
        table.add_column(column, justify="left" if column in ("task", "metric", "") else "right", overflow="fold")
    for d in sorted(diffs, key=lambda d: (d.task, DEMO_METRICS.index(d.metric))):
        table.add_row(d.task, d.metric, str(d.n), f"{d.baseline:.3f}", f"{d.other:.3f}",
                      f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]", d.verdict)
    console.print(table)
    for task, data in tuned["tasks"].items():
        reference = data["metrics"].get("reference_repeated_3gram_fraction")
        if reference is None or "repeated_3gram_fraction" not in data["metrics"]:
            continue
        loop = data["metrics"]["repeated_3gram_fraction"]
        base_loop = base["tasks"].get(task, {}).get("metrics", {}).get("repeated_3gram_fraction", float("nan"))
        ratio = f"{loop / reference:.2f}x the references'" if reference else "references have none"
        console.print(f"{task}: repeated 3-gram fraction references {reference:.4f}, base {base_loop:.4f}, "
                      f"fine-tuned {loop:.4f} ({ratio})")


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""
    app.command("demo")(demo)
