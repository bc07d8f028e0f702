"""`medtune train --resume` refusals and crash leftovers, on run folders written by hand (nothing trains)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.train.conftest import fake_run, tiny_recipe
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.errors import UserError
from medtune.train.resume import latest_checkpoint, recipe_hash, truncate_metrics
from medtune.train.trainer import train_recipe, with_max_steps


def test_resume_refuses_a_completed_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(tiny_model_dir, max_steps=4, save_steps=2)
    run = fake_run(recipe, "completed", steps=4)
    before = run.run_json.read_text()
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(run.recipe.read_text())
    result = CliRunner().invoke(get_app(), ["train", str(recipe_file), "--resume"])
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert run.root.name in message and "completed at step 4" in message and "without --resume" in message
    assert run.run_json.read_text() == before  # refused before touching the run


def test_resume_refuses_a_changed_recipe_naming_both_hashes(tiny_model_dir: Path) -> None:
    started = with_max_steps(tiny_recipe(tiny_model_dir, save_steps=2), 6)  # `medtune train R --max-steps 6`
    fake_run(started, "running")
    now = tiny_recipe(tiny_model_dir, save_steps=2)  # `medtune train R --resume` (no --max-steps)
    old_hash, new_hash = recipe_hash(started.model_dump(mode="json")), recipe_hash(now.model_dump(mode="json"))
    assert old_hash != new_hash
    with pytest.raises(UserError) as error:
        train_recipe(now, resume=True, splits=(None, None))
    message = str(error.value)
    assert old_hash in message and new_hash in message
    assert "train.max_steps: 6 -> -1" in message and "--max-steps" in message


def test_resume_refuses_a_run_another_process_still_trains(tiny_model_dir: Path) -> None:
    import socket

    recipe = tiny_recipe(tiny_model_dir, save_steps=2)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake_run(recipe, "running", pid=sleeper.pid, host=socket.gethostname())
        with pytest.raises(UserError, match=f"still being trained by process {sleeper.pid}"):
            train_recipe(recipe, resume=True, splits=(None, None))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resume_refuses_a_run_without_a_complete_checkpoint(tiny_model_dir: Path) -> None:
    recipe = tiny_recipe(tiny_model_dir)
    with pytest.raises(UserError, match="no run to continue"):
        train_recipe(recipe, resume=True, splits=(None, None))
    run = fake_run(recipe, "failed", checkpoint_steps=())
    (run.root / "checkpoints" / "checkpoint-2").mkdir(parents=True)  # killed while saving it
    with pytest.raises(UserError, match="before its first checkpoint"):
        train_recipe(recipe, resume=True, splits=(None, None))


def test_latest_checkpoint_skips_half_written_ones(tiny_model_dir: Path) -> None:
    run = fake_run(tiny_recipe(tiny_model_dir), "running", checkpoint_steps=(2, 4, 10))
    (run.root / "checkpoints" / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 1')
    (run.root / "checkpoints" / "checkpoint-12").mkdir()  # no trainer_state.json yet
    point = latest_checkpoint(run)
    assert point is not None and point.checkpoint.name == "checkpoint-4"  # 10 is cut off, 12 has no state
    assert (point.step, point.tokens) == (4, 400)


def test_truncate_metrics_drops_steps_logged_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    records = [{"step": s, "type": "train", "loss": 1.0 / s} for s in range(1, 6)] + [{"step": 4, "type": "eval"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert truncate_metrics(path, 4) == 1
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["type"]) for r in kept] == [(1, "train"), (2, "train"), (3, "train"), (4, "train"),
                                                      (4, "eval")]
