"""``medtune train RECIPE --resume``: continue an interrupted run of the same resolved recipe, crash-safely.

A run is resumable when it never completed, holds a complete checkpoint, was started from the same resolved
recipe (sha256 of every field, defaults filled in), and no live process still trains it. The session goes on
from the newest checkpoint whose ``trainer_state.json`` exists (the HF Trainer writes it last, so a kill
during a save leaves that checkpoint out), and ``metrics.jsonl`` loses the steps logged after that checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.config import Recipe
from medtune.errors import UserError
from medtune.runs import RunDir, list_runs, write_text_atomic

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed session starts: the run, its checkpoint, and the step and tokens saved in it."""

    run: RunDir
    checkpoint: Path
    step: int
    tokens: int


def recipe_hash(resolved: dict[str, Any]) -> str:
    """Short sha256 of a resolved recipe (``Recipe.model_dump(mode="json")``, as run folders record it)."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]


def session_marker() -> dict[str, Any]:
    """What run.json records about the process training a run (checked before another session resumes it)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def latest_checkpoint(run: RunDir) -> ResumePoint | None:
    """The newest checkpoint of ``run`` with a readable trainer state, or None."""
    from transformers import TrainerState

    checkpoints = (run.root / CHECKPOINTS).glob("checkpoint-*")
    for folder in sorted(checkpoints, key=_checkpoint_step, reverse=True):
        try:
            state = TrainerState.load_from_json(str(folder / TRAINER_STATE))
        except (OSError, ValueError):  # missing or half-written: the process died while saving it
            continue
        return ResumePoint(run, folder, state.global_step, int(state.num_input_tokens_seen))
    return None


def _checkpoint_step(folder: Path) -> int:
    """The step in a ``checkpoint-<step>`` folder name (-1 when it is not a number)."""
    suffix = folder.name.removeprefix("checkpoint-")
    return int(suffix) if suffix.isdigit() else -1


def find_resume_point(recipe: Recipe, *, check_live: bool = True) -> ResumePoint:
    """Check that the newest run of ``recipe`` (by creation time) may be continued; return where to continue it.

    ``check_live`` is off on the other processes of a multi-process launch (the main process records itself
    in run.json, which must not stop them).

    Raises:
        UserError: no run yet, the run completed, it has no complete checkpoint, it was started from a
            different resolved recipe, or a live process still trains it.
    """
    runs = sorted(
        (run for run in list_runs() if run.info().get("recipe") == recipe.name),
        key=lambda run: (run.info().get("created", ""), run.root.name),
        reverse=True,
    )
    fresh = "train without --resume to start a new run"
    if not runs:
        raise UserError(f"--resume: recipe '{recipe.name}' has no run to continue; {fresh}.")
    run, info = runs[0], runs[0].info()
    if info.get("status") == "completed":
        raise UserError(
            f"--resume: the newest run of '{recipe.name}', {run.root.name}, completed at step "
            f"{info.get('steps')}; --resume only continues an interrupted run. To train longer, raise "
            f"train.max_steps or train.epochs and {fresh}."
        )
    _refuse_changed_recipe(run, recipe)
    if check_live:
        _refuse_live_session(run, info)
    point = latest_checkpoint(run)
    if point is None:
        raise UserError(f"--resume: {run.root.name} was interrupted before its first checkpoint; {fresh}.")
    return point


def _refuse_changed_recipe(run: RunDir, recipe: Recipe) -> None:
    """Refuse when the run was started from another resolved recipe, naming both hashes and what changed."""
    recorded = run.recorded_recipe()
    current = recipe.model_dump(mode="json")
    old_hash = run.info().get("recipe_hash") or recipe_hash(recorded)
    new_hash = recipe_hash(current)
    if old_hash == new_hash:
        return
    changes = "; ".join(recipe_changes(recorded, current)[:5]) or "see its recipe.yaml"
    raise UserError(
        f"--resume: {run.root.name} was started from recipe hash {old_hash}, the recipe now resolves to "
        f"{new_hash} ({changes}). Restore the recipe (and the same --max-steps) to resume, "
        "or train without --resume to start a new run."
    )


def recipe_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted recipe key whose value differs."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += recipe_changes(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return changes


def _refuse_live_session(run: RunDir, info: dict[str, Any]) -> None:
    """Refuse when the run's status is running and the process recorded in run.json is alive on this machine."""
    pid = info.get("pid")
    if info.get("status") != "running" or info.get("host") != socket.gethostname():
        return
    if not isinstance(pid, int) or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # alive, owned by another user
    raise UserError(
        f"--resume: {run.root.name} is still being trained by process {pid}; wait for it to finish or "
        "stop it, then resume."
    )


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the ``metrics.jsonl`` records logged after ``step``; return how many were dropped.

    A killed session logs steps past its last checkpoint; the resumed session trains them again.
    """
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return len(lines) - len(kept)
