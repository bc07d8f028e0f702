"""The served-model record (medtune.served_model): one resolution of what --model stands for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.errors import UserError
from medtune.served_model import served_model


def _run_folder(root: Path, **info: object) -> Path:
    """A run folder: run.json with ``info``, an adapter config and a recipe."""
    (root / "adapter").mkdir(parents=True)
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "from-adapter"}))
    (root / "recipe.yaml").write_text("model:\n  dtype: float16\n")
    (root / "run.json").write_text(json.dumps(info))
    return root


def test_a_run_folder_resolves_every_fact_from_its_records(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run", base_model="smollm2-135m-instruct", prompt_style="chatml",
                      system_prompt="Be brief.", prepared_dir=str(tmp_path / "prepared"), quantization="nf4",
                      gguf_file="model.gguf", trust_remote_code=True)
    (run / "data_manifest.json").write_text(json.dumps({"grounded": {"passage_header": "topic"}}))
    record = served_model(str(run))
    assert record.run_dir == run and record.adapter == run / "adapter"
    assert record.base_model == "smollm2-135m-instruct"  # run.json wins over the adapter config
    assert (record.prompt_style, record.trained_system_prompt) == ("chatml", "Be brief.")
    assert record.prepared_dir == tmp_path / "prepared"
    assert (record.dtype, record.quantization) == ("float16", "nf4")  # dtype from recipe.yaml when run.json lacks it
    assert (record.gguf_file, record.trust_remote_code) == ("model.gguf", True)
    assert record.passage_header() == "topic"


def test_plain_models_and_bare_adapters_get_the_defaults(tmp_path: Path) -> None:
    alias = served_model("smollm2-135m-instruct")
    assert alias.run_dir is None and alias.adapter is None and alias.base_model == "smollm2-135m-instruct"
    assert (alias.prompt_style, alias.trained_system_prompt, alias.prepared_dir) == ("chat-template", None, None)
    assert (alias.dtype, alias.quantization, alias.passage_header()) == ("auto", "none", "question")
    bare = tmp_path / "adapter-only"
    bare.mkdir()
    (bare / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "some/base"}))
    record = served_model(bare)
    assert record.adapter == bare and record.run_dir is None and record.base_model == "some/base"
    (bare / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="base_model_name_or_path"):
        _ = served_model(bare).base_model


def test_a_bad_manifest_is_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run", base_model="smollm2-135m-instruct")
    (run / "data_manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="data_manifest.json: not valid JSON"):
        served_model(run).passage_header()
    (run / "data_manifest.json").write_text(json.dumps({"grounded": {"passage_header": "title"}}))
    with pytest.raises(UserError, match="must be one of"):
        served_model(run).passage_header()


def test_every_path_reads_the_same_record(tmp_path: Path) -> None:
    """ask/chat/serve (served_system_prompt), eval (_run_context) and the transformers backend agree on a run."""
    from medtune.evaluate.runner import _run_context
    from medtune.inference.transformers_backend import _prompt_style
    from medtune.prompts import served_system_prompt

    run = _run_folder(tmp_path / "run", base_model="smollm2-135m-instruct", prompt_style="chatml",
                      system_prompt="Be brief.")
    context = _run_context(str(run))
    assert context["system_prompt"] == served_system_prompt(str(run)) == "Be brief."
    assert context["style"] == _prompt_style(str(run)) == "chatml" and context["run_dir"] == run
    assert _run_context(str(run), prompt="training")["system_prompt"] == "Be brief."
    with pytest.raises(UserError, match="needs a run folder"):
        _run_context("smollm2-135m-instruct", prompt="training")
