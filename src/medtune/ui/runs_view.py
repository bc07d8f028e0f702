"""Load what the Runs page shows from run folders: recipe, loss curves, summary, figures, evaluation.

Plain functions over :class:`medtune.runs.RunDir`, returning dicts and pandas DataFrames, so the page
script stays thin and these can be tested without Streamlit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.runs import RunDir

SUMMARY_FIELDS = ["initial_loss", "final_loss", "min_loss", "mean_loss", "final_val_loss", "steps", "seconds",
                  "tokens_per_s", "peak_memory_bytes", "trainable_params"]


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object file (empty dict when missing).

    Raises:
        UserError: when the file is not valid JSON.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: invalid JSON ({error.msg} at line {error.lineno}); fix or delete the file.") from None
    return data if isinstance(data, dict) else {}


def read_metrics(run: RunDir) -> list[dict[str, Any]]:
    """Return the records of ``metrics.jsonl``; a broken line is skipped (a run may be writing it)."""
    if not run.metrics.is_file():
        return []
    records = []
    for line in run.metrics.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def loss_frame(run: RunDir) -> Any:
    """A DataFrame indexed by step with columns ``train loss`` and ``validation loss`` (NaN where absent)."""
    import pandas as pd

    records = read_metrics(run)
    train = {r["step"]: r["loss"] for r in records if r.get("type", "train") == "train" and "loss" in r}
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    frame = pd.DataFrame({"train loss": pd.Series(train, dtype=float),
                          "validation loss": pd.Series(val, dtype=float)})
    frame.index.name = "step"
    return frame.sort_index()


def compare_loss_frame(runs: list[RunDir], column: str = "train loss") -> Any:
    """One column per run (its folder name) with ``column`` by step, to draw several runs on one chart."""
    import pandas as pd

    series = {run.root.name: loss_frame(run)[column] for run in runs}
    frame = pd.DataFrame(series).sort_index()
    frame.index.name = "step"
    return frame.dropna(how="all")


def eval_results(run: RunDir) -> dict[str, Any]:
    """``eval/results.json`` of the run (empty dict when the run was not evaluated)."""
    return read_json(run.eval_dir / "results.json")


def eval_frame(results: dict[str, Any]) -> Any:
    """One row per evaluated task with its example count and numeric metrics."""
    import pandas as pd

    rows = []
    for name, task in (results.get("tasks") or {}).items():
        metrics = {k: v for k, v in (task.get("metrics") or {}).items() if isinstance(v, int | float)}
        rows.append({"task": name, "n": task.get("n"), **metrics})
    return pd.DataFrame(rows).set_index("task") if rows else pd.DataFrame()


def figures(run: RunDir) -> list[Path]:
    """PNG figures of the run: the loss curve first, then any others in the run and its eval folder."""
    found = [run.loss_curve] if run.loss_curve.is_file() else []
    for folder in (run.root, run.root / "figures", run.eval_dir, run.eval_dir / "figures"):
        if folder.is_dir():
            found += sorted(p for p in folder.glob("*.png") if p not in found)
    return found


def recipe_text(run: RunDir) -> str:
    """The resolved recipe YAML of the run (empty when missing)."""
    return run.recipe.read_text(encoding="utf-8") if run.recipe.is_file() else ""


def recipe_values(run: RunDir) -> dict[str, Any]:
    """The parsed recipe (empty dict when missing or unreadable)."""
    import yaml

    text = recipe_text(run)
    try:
        data = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def run_row(run: RunDir) -> dict[str, Any]:
    """One comparison row: base model, recipe, status, LoRA settings, summary figures, eval metrics."""
    info, summary, recipe = run.info(), read_json(run.summary), recipe_values(run)
    lora, train = recipe.get("lora") or {}, recipe.get("train") or {}
    row: dict[str, Any] = {
        "run": run.root.name, "base model": info.get("base_model"), "recipe": info.get("recipe"),
        "status": info.get("status"), "lora r": lora.get("r"), "lora alpha": lora.get("alpha"),
        "learning rate": train.get("learning_rate"), "epochs": train.get("epochs", train.get("num_epochs")),
    }
    row.update({name: summary.get(name) for name in SUMMARY_FIELDS if name in summary})
    if not summary:
        frame = loss_frame(run)
        if not frame.empty:
            losses = frame["train loss"].dropna()
            vals = frame["validation loss"].dropna()
            row.update({"final_loss": float(losses.iloc[-1]) if len(losses) else None,
                        "min_loss": float(losses.min()) if len(losses) else None,
                        "final_val_loss": float(vals.iloc[-1]) if len(vals) else None,
                        "steps": int(frame.index.max())})
    for task, metrics in eval_frame(eval_results(run)).iterrows():
        for name, value in metrics.items():
            if name != "n" and value == value:  # skip NaN
                row[f"{task}/{name}"] = value
    return row


def compare_frame(runs: list[RunDir]) -> Any:
    """The comparison table: one column per run, one row per figure (transposed for narrow screens)."""
    import pandas as pd

    frame = pd.DataFrame([run_row(run) for run in runs]).set_index("run")
    return frame.T.astype(str).replace({"None": "-", "nan": "-"})
