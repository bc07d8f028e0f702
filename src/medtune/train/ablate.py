"""``medtune ablate``: train a grid of recipe variants and compare them (markdown + CSV table and a figure).

A grid file (kept under ``ablations/``, not ``recipes/``) names a base recipe and lists values per axis::

    name: smollm2-grid
    base: smollm2-135m/tiny        # recipe file or shipped name
    max_steps: 6                   # optional: override every cell's step budget
    grid:
      sample_size: [100, 200]      # data.sample_size
      epochs: [1]                  # train.epochs
      r: [4, 8]                    # lora.r
      target_modules: [attention]  # lora.target_modules
      quantization: [none]         # model.quantization (nf4/int8 cells are skipped without CUDA)

Any other axis may be given as a dotted key (``lora.alpha: [8, 16]``).

An optional ``eval:`` section scores every trained cell (and the base model) on validation-side tasks only --
``medquad-validation`` or ``rubric:consumer-health-dev``; held-out test sets are refused -- once per decoding
variant (no retraining per variant)::

    eval:
      tasks: [medquad-validation, "rubric:consumer-health-dev"]
      limit: 20                    # seeded random sample per task, the same ids for every cell
      decoding:
        repetition_penalty: [1.0, 1.15]
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medtune.errors import UserError

AXES = {
    "sample_size": "data.sample_size",
    "learning_rate": "train.learning_rate",
    "neftune": "train.neftune_noise_alpha",
    "epochs": "train.epochs",
    "r": "lora.r",
    "target_modules": "lora.target_modules",
    "quantization": "model.quantization",
}
COLUMNS = [
    "cell",
    "settings",
    "status",
    "final_loss",
    "min_loss",
    "mean_loss",
    "val_loss",
    "seconds",
    "peak_memory_mb",
    "trainable_params",
    "run",
]
DECODING_KEYS = ("temperature", "top_p", "num_beams", "repetition_penalty", "repetition_scope",
                 "max_new_tokens")
SCORED = ("rubric_score", "rougeL", "bertscore_minilm_f1", "repeated_3gram_fraction",
          "reference_repeated_3gram_fraction", "hit_token_limit")


class GridEval(BaseModel):
    """How an ablation scores its cells: validation-side tasks, a seeded sample, decoding variants."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(description="Validation-side tasks (medquad-validation, rubric:consumer-health-dev, "
                             "rubric:FILE); held-out test sets are refused.")
    limit: int | None = Field(20, ge=1, description="Seeded random sample per task (same ids for every cell).")
    max_new_tokens: int | None = Field(None, ge=1, description="Answer budget (default: the base recipe's eval).")
    include_base: bool = Field(True, description="Also score the untuned base model under each decoding variant.")
    decoding: dict[str, list[Any]] = Field(default_factory=dict, description="EvalConfig decoding key -> values "
                                           f"({', '.join(DECODING_KEYS)}); every cell is scored under each combination.")


class Grid(BaseModel):
    """An ablation grid over a base recipe."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Used for the output folder.")
    base: str = Field(description="Base recipe file or shipped recipe name.")
    max_steps: int | None = Field(
        None, ge=1, description="Step budget for every cell (default: the recipe's)."
    )
    grid: dict[str, list[Any]] = Field(
        description="Axis -> values; axes: sample_size, epochs, r, "
        "target_modules, quantization or dotted recipe keys."
    )
    eval: GridEval | None = Field(None, description="Score cells on validation-side tasks (default: losses only).")


def load_grid(path: Path) -> Grid:
    """Read and validate a grid YAML file."""
    from medtune.config import describe_validation_error

    if not path.is_file():
        raise UserError(f"{path}: no such grid file; see ablations/smollm2-grid.yaml for the format.")
    try:
        grid = Grid.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as error:
        raise UserError(describe_validation_error(str(path), error, Grid)) from None
    for axis, values in grid.grid.items():
        if "." not in axis and axis not in AXES:
            raise UserError(f"{path}: unknown grid axis '{axis}'; use {', '.join(AXES)} or a dotted key.")
        if not values:
            raise UserError(f"{path}: grid axis '{axis}' has no values; list at least one.")
    if grid.eval is not None:
        check_grid_eval(grid.eval, str(path))
    return grid


def check_grid_eval(settings: GridEval, where: str) -> None:
    """Refuse held-out test tasks, unknown tasks and unknown decoding keys in an ablation's ``eval:`` section."""
    from medtune.evaluate.tasks import is_held_out, parse_tasks

    for task in parse_tasks(settings.tasks):
        if is_held_out(task.name):
            raise UserError(f"{where}: eval task '{task.name}' is a held-out set; ablations choose settings, so score "
                            "them on medquad-validation or rubric:consumer-health-dev and report the test set once.")
    for key, values in settings.decoding.items():
        if key not in DECODING_KEYS:
            raise UserError(f"{where}: eval.decoding key '{key}' is not a decoding setting; use {', '.join(DECODING_KEYS)}.")
        if not values:
            raise UserError(f"{where}: eval.decoding '{key}' has no values; list at least one.")


def combinations(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, as ``{axis: value}`` (one empty combination for no axes)."""
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def cells(grid: Grid) -> list[dict[str, Any]]:
    """Every combination of the grid's axis values, as ``{axis: value}``."""
    return combinations(grid.grid)


def cell_recipe(base: dict[str, Any], grid_name: str, index: int, cell: dict[str, Any]) -> Any:
    """Apply a cell's values to the base recipe dictionary and validate the result."""
    import copy

    from medtune.config import recipe_from_dict

    raw = copy.deepcopy(base)
    for axis, value in cell.items():
        *parents, key = AXES.get(axis, axis).split(".")
        node = raw
        for parent in parents:  # data.distill.require_care_advice: nested sections
            node = node.setdefault(parent, {})
        node[key] = value
    raw["name"] = f"{grid_name}-{index:02d}"
    return recipe_from_dict(raw, f"{grid_name} cell {index} {cell}")


def run_grid(grid: Grid, out_dir: Path | None = None, splits: tuple[Any, Any] | None = None) -> Path:
    """Train every cell (and score it when the grid has ``eval:``); write ``results.csv``, ``results.md`` and
    ``comparison.png``; return the folder.

    ``splits`` (train, validation prompt/completion datasets) replaces each cell's prepared data; a cell's
    ``sample_size`` then takes the first rows of it. Without ``splits`` and without ``data.*`` axes the base
    recipe's data is prepared once and shared by every cell (the same validation rows for all).
    """
    import torch

    from medtune.config import load_recipe
    from medtune.paths import medtune_home
    from medtune.recipes import find_recipe
    from medtune.train.trainer import ensure_prepared, train_recipe

    base_recipe = load_recipe(find_recipe(grid.base))
    base = base_recipe.model_dump(mode="json")
    shared_data = splits is None and not any(AXES.get(a, a).startswith("data.") for a in grid.grid)
    prepared = ensure_prepared(base_recipe) if shared_data else None
    if prepared is not None:
        base["data"]["prepared"] = str(prepared)
    out = out_dir or medtune_home() / "ablations" / f"{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if grid.eval is not None and grid.eval.include_base:
        base_row = {"cell": "base", "settings": json.dumps({"model": base_recipe.model.name}), "status": "ok"}
        rows += score_cell(base_recipe.model.name, base_row, grid.eval, base_eval_settings(base_recipe, splits),
                           prepared if prepared is not None or splits is not None else ensure_prepared(base_recipe),
                           out / "base")
    for index, cell in enumerate(cells(grid)):
        recipe = cell_recipe(base, grid.name, index, cell)
        row: dict[str, Any] = {"cell": index, "settings": json.dumps(cell)}
        if recipe.model.quantization != "none" and not torch.cuda.is_available():
            rows.append({**row, "status": "skipped: needs CUDA"})
            continue
        cell_splits = splits
        if splits is not None and recipe.data.sample_size:
            train, val = splits
            cell_splits = (train.select(range(min(recipe.data.sample_size, len(train)))), val)
        run = train_recipe(recipe, max_steps=grid.max_steps, splits=cell_splits)
        row.update(training_figures(run))
        if grid.eval is None:
            rows.append(row)
        else:
            rows += score_cell(str(run.root), row, grid.eval, recipe.eval, prepared, out / f"cell-{index:02d}")
    write_tables(rows, out)
    plot_comparison(rows, out / "comparison.png", grid.name)
    return out


def base_eval_settings(base_recipe: Any, splits: Any = None) -> Any:
    """The base recipe's eval settings with the system prompt its cells are served with, so the base model and the
    cells differ only in their weights (``splits`` given: the runs record no prompt and are served the guard's)."""
    from medtune.prompts import served_prompt_for, training_system_prompt

    trained_with = None if splits is not None else training_system_prompt(base_recipe.data.system_prompt)
    return base_recipe.eval.model_copy(update={"system_prompt": served_prompt_for(trained_with)})


def training_figures(run: Any) -> dict[str, Any]:
    """The training columns of a finished cell (losses, time, memory, parameters, run folder name)."""
    summary = run.summary_data()
    return {
        "status": "ok",
        "final_loss": summary["final_loss"],
        "min_loss": summary["min_loss"],
        "mean_loss": summary["mean_loss"],
        "val_loss": summary["final_val_loss"],
        "seconds": summary["seconds"],
        "peak_memory_mb": round(summary["peak_memory_bytes"] / 2**20),
        "trainable_params": summary["trainable_params"],
        "run": run.root.name,
    }


def score_cell(model: str, row: dict[str, Any], settings: GridEval, recipe_eval: Any, prepared: Path | None,
               out: Path) -> list[dict[str, Any]]:
    """Evaluate one model under every decoding variant; one table row per variant (scores with 95% CIs)."""
    from medtune.evaluate.runner import evaluate_model

    rows = []
    for number, decoding in enumerate(combinations(settings.decoding)):
        overrides: dict[str, Any] = {"tasks": settings.tasks, "limit": settings.limit, **decoding}
        if settings.max_new_tokens and "max_new_tokens" not in decoding:
            overrides["max_new_tokens"] = settings.max_new_tokens
        eval_settings = recipe_eval.model_copy(update=overrides)
        results = evaluate_model(model, settings.tasks, data_dir=prepared,
                                 settings=eval_settings, out_dir=out / f"decoding-{number}")
        rows.append({**row, "decoding": json.dumps(decoding), "eval": results["out_dir"], **score_columns(results)})
    return rows


def score_columns(results: dict[str, Any]) -> dict[str, Any]:
    """``{"TASK METRIC": value, "TASK METRIC ci": [low, high]}`` for the :data:`SCORED` metrics of each task."""
    columns: dict[str, Any] = {}
    for task, data in results["tasks"].items():
        for metric in SCORED:
            if metric in data["metrics"]:
                columns[f"{task} {metric}"] = data["metrics"][metric]
                columns[f"{task} {metric} ci"] = data.get("intervals", {}).get(metric)
    return columns


def _cell_text(value: Any) -> str:
    """Format one table cell."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """:data:`COLUMNS`, then ``decoding`` and every score column the rows carry (first-seen order)."""
    extra: list[str] = []
    for row in rows:
        extra += [key for key in row if key not in COLUMNS and key not in extra and not key.endswith(" ci")]
    return COLUMNS + extra


def scored_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The table columns that are scores (they carry a 95% CI), in :func:`table_columns` order."""
    return [c for c in table_columns(rows) if any(f"{c} ci" in row for row in rows)]


def write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    """Write results.csv (CI bounds in ``... ci_low``/``ci_high`` columns) and results.md (value [95% CI])."""
    from medtune.evaluate.report import format_with_interval

    columns = table_columns(rows)
    scored = scored_columns(rows)
    csv_columns = [c for column in columns for c in
                   ([column, f"{column} ci_low", f"{column} ci_high"] if column in scored else [column])]
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=csv_columns)
        writer.writeheader()
        for row in rows:
            flat = {c: row.get(c) for c in columns}
            for column in scored:
                interval = row.get(f"{column} ci") or [None, None]
                flat[f"{column} ci_low"], flat[f"{column} ci_high"] = interval
            writer.writerow(flat)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells_ = [format_with_interval(row.get(c), row.get(f"{c} ci")) if c in scored and row.get(c) is not None
                  else _cell_text(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells_) + " |")
    if scored:
        lines.append("\nScores: seeded random samples of validation-side tasks (95% bootstrap CIs); the same ids "
                     "for every row. `medtune compare A B` on two rows' eval folders gives the paired difference.")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def plot_comparison(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bar chart of final train loss and validation loss per cell, and of the first score with its 95% CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "ok"]
    score = next(iter(scored_columns(rows)), None)
    panels = 2 if score else 1
    fig, axes = plt.subplots(1, panels, figsize=(max(6, 1.2 * len(done)) * panels, 4), squeeze=False)
    labels = [f"#{r['cell']}" + (f" d{json.loads(r['decoding'])}" if r.get("decoding") not in (None, "{}") else "")
              for r in done]
    ax = axes[0][0]
    xs = range(len(done))
    ax.bar([x - 0.2 for x in xs], [r.get("final_loss") or 0 for r in done], width=0.4, label="final train loss")
    ax.bar([x + 0.2 for x in xs], [r.get("val_loss") or 0 for r in done], width=0.4, label="validation loss")
    ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: cells in results.md")
    ax.legend()
    if score:
        ax = axes[0][1]
        values = [r.get(score) or 0.0 for r in done]
        cis = [r.get(f"{score} ci") or [v, v] for r, v in zip(done, values, strict=True)]
        errors = [[v - c[0] for v, c in zip(values, cis, strict=True)], [c[1] - v for v, c in zip(values, cis, strict=True)]]
        ax.bar(list(xs), values, yerr=errors, capsize=3, color="tab:green")
        ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{score} (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
