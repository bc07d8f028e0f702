"""`medtune demo` scores the base model under the tuned run's system prompt (they differ only in their weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def test_demo_scores_base_and_tuned_under_the_runs_prompt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import medtune.evaluate.runner as runner
    import medtune.train.trainer as trainer
    from medtune.cli.demo import demo

    run_root = tmp_path / "run"
    run_root.mkdir()
    (run_root / "run.json").write_text(json.dumps({"system_prompt": "You are the demo's trained prompt."}))

    class FakeRun:
        root = run_root
        eval_dir = run_root / "eval"

        def summary_data(self) -> dict[str, Any]:
            return {}

    scored: dict[str, Any] = {}

    def fake_evaluate(model: str, tasks: list[str], **kwargs: Any) -> dict[str, Any]:
        scored[model] = kwargs["settings"]
        return {"tasks": {}}

    monkeypatch.setattr(trainer, "ensure_prepared", lambda recipe: tmp_path / "prepared")
    monkeypatch.setattr(trainer, "train_recipe", lambda recipe, max_steps=None: FakeRun())
    monkeypatch.setattr(runner, "evaluate_model", fake_evaluate)
    monkeypatch.setattr("medtune.cli.demo._print_comparison", lambda base, tuned: None)
    demo(recipe="smollm2-135m/demo", max_steps=None, limit=2, skip_eval=False)

    base, tuned = scored["smollm2-135m-instruct"], scored[str(run_root)]
    assert base.system_prompt == "You are the demo's trained prompt."
    # the tuned run is scored as served (its run.json prompt), the base under that same text
    assert tuned.system_prompt is None and runner._run_context(str(run_root))["system_prompt"] == base.system_prompt
