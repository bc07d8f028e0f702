"""Recipe keys that reach their users: ``model.trust_remote_code`` (loaders, plan) and ``export:`` (medtune export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.train.conftest import fake_run, tiny_recipe
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.config import recipe_from_dict
from medtune.errors import UserError


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: list[tuple[str, Any]]) -> None:
    """Record the ``trust_remote_code`` keyword of every call of ``owner.name`` (then call it)."""
    original = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((name, kwargs.get("trust_remote_code")))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


@pytest.mark.parametrize("trust", [True, False])
def test_trust_remote_code_reaches_the_training_loaders_and_plan(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, trust: bool
) -> None:
    import transformers

    import medtune.models
    from medtune.train.planning import plan_recipe
    from medtune.train.trainer import load_model_for_training

    calls: list[tuple[str, Any]] = []
    for name in ("load_tokenizer", "load_causal_lm"):
        _spy(monkeypatch, medtune.models, name, calls)
    _spy(monkeypatch, transformers.AutoConfig, "from_pretrained", calls)
    recipe = tiny_recipe(tiny_model_dir)
    recipe.model.trust_remote_code = trust
    load_model_for_training(recipe)
    plan_recipe(recipe)
    assert ("load_tokenizer", trust) in calls and ("load_causal_lm", trust) in calls
    assert ("from_pretrained", trust) in calls  # plan reads the model's config.json with the same flag
    assert all(flag is trust for _, flag in calls)  # no loader got the opposite (or no) flag


def _export_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *argv: str) -> dict[str, Any]:
    """Run ``medtune export ARGV`` with the pipeline replaced by a recorder; return its keyword arguments."""
    calls: list[dict[str, Any]] = []

    def record(model: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"out_dir": str(tmp_path)}

    monkeypatch.setattr("medtune.export.pipeline.export_model", record)
    result = CliRunner().invoke(get_app(), ["export", *argv])
    if result.exception is not None:
        raise result.exception
    (kwargs,) = calls
    return kwargs


def _run_with_export(tiny_model_dir: Path, export: dict[str, Any]) -> Path:
    """A run folder (adapter config only) whose recorded recipe has this ``export:`` section."""
    recipe = recipe_from_dict({**tiny_recipe(tiny_model_dir).model_dump(mode="json"), "export": export})
    run = fake_run(recipe, "completed", checkpoint_steps=())
    run.adapter.mkdir()
    (run.adapter / "adapter_config.json").write_text("{}")
    return run.root


def test_export_takes_its_defaults_from_the_runs_recipe(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorded = {"format": "hf", "quant": "q8_0", "ollama_name": "med", "temperature": 0.1, "num_ctx": 4096}
    run = _run_with_export(tiny_model_dir, recorded)
    kwargs = _export_calls(monkeypatch, tmp_path, str(run))
    assert (kwargs["fmt"], kwargs["quant"], kwargs["ollama"]) == ("hf", "q8_0", "med")
    assert kwargs["params"] == {"temperature": 0.1, "top_p": 0.9, "top_k": 40, "num_ctx": 4096}
    flags = _export_calls(monkeypatch, tmp_path, str(run), "--quant", "f16", "--temperature", "0.5")
    assert (flags["fmt"], flags["quant"]) == ("hf", "f16")  # a flag wins over the recorded section
    assert flags["params"]["temperature"] == 0.5 and flags["params"]["num_ctx"] == 4096


def test_export_of_a_plain_model_uses_the_defaults(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kwargs = _export_calls(monkeypatch, tmp_path, str(tiny_model_dir))
    assert (kwargs["fmt"], kwargs["quant"], kwargs["ollama"]) == ("gguf", "q4_k_m", None)


def test_a_bad_recorded_export_section_names_the_file(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = _run_with_export(tiny_model_dir, {})
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"]["quant"] = "q9_9"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(UserError, match=r"recipe\.yaml \(export\): key 'quant'"):
        _export_calls(monkeypatch, tmp_path, str(run))
