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
    return grid


def cells(grid: Grid) -> list[dict[str, Any]]:
    """Every combination of the grid's axis values, as ``{axis: value}``."""
    axes = list(grid.grid)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*grid.grid.values())]


def cell_recipe(base: dict[str, Any], grid_name: str, index: int, cell: dict[str, Any]) -> Any:
    """Apply a cell's values to the base recipe dictionary and validate the result."""
    import copy

    from medtune.config import recipe_from_dict

    raw = copy.deepcopy(base)
    for axis, value in cell.items():
        section, key = AXES.get(axis, axis).split(".", 1)
        raw.setdefault(section, {})[key] = value
    raw["name"] = f"{grid_name}-{index:02d}"
    return recipe_from_dict(raw, f"{grid_name} cell {index} {cell}")


def run_grid(grid: Grid, out_dir: Path | None = None, splits: tuple[Any, Any] | None = None) -> Path:
    """Train every cell and write ``results.csv``, ``results.md`` and ``comparison.png``; return the folder.

    ``splits`` (train, validation prompt/completion datasets) replaces each cell's prepared data; a cell's
    ``sample_size`` then takes the first rows of it.
    """
    import torch

    from medtune.config import find_recipe, load_recipe
    from medtune.paths import medtune_home
    from medtune.train.trainer import train_recipe

    base = load_recipe(find_recipe(grid.base)).model_dump(mode="json")
    out = out_dir or medtune_home() / "ablations" / f"{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
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
        summary = run.summary_data()
        rows.append(
            {
                **row,
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
        )
    write_tables(rows, out)
    plot_comparison(rows, out / "comparison.png", grid.name)
    return out


def _cell_text(value: Any) -> str:
    """Format one table cell."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    """Write results.csv and results.md with :data:`COLUMNS`."""
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: row.get(c) for c in COLUMNS} for row in rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell_text(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def plot_comparison(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bar chart of final train loss and validation loss per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(done)), 4))
    xs = range(len(done))
    ax.bar([x - 0.2 for x in xs], [r["final_loss"] or 0 for r in done], width=0.4, label="final train loss")
    ax.bar([x + 0.2 for x in xs], [r["val_loss"] or 0 for r in done], width=0.4, label="validation loss")
    ax.set_xticks(list(xs), [f"#{r['cell']}" for r in done])
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: cells in results.md")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
