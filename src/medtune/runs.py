"""The run folder: every training run describes itself, and export/serving/UI read it, never re-type it.

Layout of ``MEDTUNE_HOME/runs/<name>-<YYYYmmdd-HHMMSS>/``::

    run.json            base_model, recipe name and recipe_hash, prompt_style, system_prompt, created, status
                        (running, failed, completed), pid and host of the training process
    recipe.yaml         the resolved recipe (every default filled in, ``--max-steps`` included)
    chat_template.jinja the chat template used in training
    data_manifest.json  copy of the prepared data's manifest.json
    metrics.jsonl       one JSON object per logged step (step, loss, lr, grad_norm, tokens_per_s) or eval
    summary.json        initial/final/min/mean train loss, val loss per epoch, steps, seconds, tokens/s, memory
    loss_curve.png      training and validation loss
    adapter/            the PEFT adapter
    tokenizer/          the tokenizer
    eval/               results.json, report.md, report.html of ``medtune eval``
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.paths import runs_dir


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def chat_template(self) -> Path:
        return self.root / "chat_template.jinja"

    @property
    def data_manifest(self) -> Path:
        return self.root / "data_manifest.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def loss_curve(self) -> Path:
        return self.root / "loss_curve.png"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def info(self) -> dict[str, Any]:
        """Return ``run.json`` as a dict (empty when missing)."""
        return json.loads(self.run_json.read_text()) if self.run_json.is_file() else {}

    def summary_data(self) -> dict[str, Any]:
        """Return ``summary.json`` as a dict (empty when missing)."""
        return json.loads(self.summary.read_text()) if self.summary.is_file() else {}

    def recorded_recipe(self) -> dict[str, Any]:
        """Return the resolved recipe the run was trained from (``recipe.yaml``; empty when missing)."""
        import yaml

        return (yaml.safe_load(self.recipe.read_text(encoding="utf-8")) or {}) if self.recipe.is_file() else {}


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, so a process killed mid-write leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def new_run_dir(name: str) -> RunDir:
    """Create a fresh run folder ``<runs>/<name>-<timestamp>`` and return it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = runs_dir() / f"{name}-{stamp}"
    suffix = 1
    while root.exists():
        suffix += 1
        root = runs_dir() / f"{name}-{stamp}-{suffix}"
    root.mkdir(parents=True)
    return RunDir(root)


def is_run_dir(path: Path) -> bool:
    """True when ``path`` looks like a medtune run folder."""
    return (path / "run.json").is_file()


def list_runs() -> list[RunDir]:
    """Every run folder under ``MEDTUNE_HOME/runs``, newest first."""
    runs = [RunDir(p) for p in runs_dir().iterdir() if is_run_dir(p)]
    return sorted(runs, key=lambda r: r.root.stat().st_mtime, reverse=True)


def find_run(name_or_path: str) -> RunDir:
    """Resolve a run folder path, a run folder name, or a name prefix (newest match wins)."""
    path = Path(name_or_path).expanduser()
    if is_run_dir(path):
        return RunDir(path)
    matches = [run for run in list_runs() if run.root.name.startswith(name_or_path)]
    if matches:
        return matches[0]
    raise UserError(f"{name_or_path}: no such run folder (looked in {runs_dir()}); see `medtune runs`.")
