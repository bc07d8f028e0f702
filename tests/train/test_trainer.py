"""`medtune train` / `merge` / `runs` on a tiny random Llama: run folder, resume, CPU refusals, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.train.conftest import splits_for, tiny_recipe
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.errors import UserError
from medtune.runs import list_runs
from medtune.train.trainer import train_recipe


@pytest.mark.parametrize("quantization", ["nf4", "int8"])
def test_cpu_refuses_bitsandbytes_quantization(tiny_model_dir: Path, quantization: str) -> None:
    recipe = tiny_recipe(tiny_model_dir)
    recipe.model.quantization = quantization
    with pytest.raises(UserError, match="quantization: none"):
        train_recipe(recipe, splits=(None, None))
    assert list_runs() == []  # refused before any run folder is created


def test_cpu_refuses_8bit_optimizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        f"name: x\nmodel: {{name: {tiny_model_dir}}}\ntrain: {{optimizer: paged_adamw_8bit}}\n"
    )
    result = CliRunner().invoke(get_app(), ["train", str(recipe_file)])
    assert isinstance(result.exception, UserError) and "train.optimizer" in str(result.exception)


def test_train_writes_complete_run_and_changes_adapter(
    tiny_model_dir: Path, qa_rows: list[dict[str, str]]
) -> None:
    run = train_recipe(tiny_recipe(tiny_model_dir, max_steps=3), splits=splits_for(tiny_model_dir, qa_rows))
    for path in (
        run.run_json,
        run.recipe,
        run.chat_template,
        run.metrics,
        run.summary,
        run.loss_curve,
        run.adapter / "adapter_config.json",
        run.adapter / "adapter_model.safetensors",
        run.tokenizer / "tokenizer_config.json",
    ):
        assert path.is_file(), path
    info = run.info()
    assert info["status"] == "completed" and info["base_model"] == str(tiny_model_dir)
    assert info["prompt_style"] == "chat-template" and "system_prompt" in info and "prepared_dir" in info
    summary = run.summary_data()
    assert summary["steps"] == 3 and summary["tokens_per_s"] > 0 and summary["peak_memory_bytes"] > 0
    for key in ("initial_loss", "final_loss", "min_loss", "mean_loss"):
        assert summary[key] > 0
    assert summary["val_loss_per_epoch"]  # 6 rows, batch 2 -> 3 steps cross at least one epoch end
    from safetensors.torch import load_file

    weights = load_file(run.adapter / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: training moved it
    assert summary["trainable_params"] == sum(w.numel() for w in weights.values())
    table = CliRunner().invoke(get_app(), ["runs"])
    assert "tiny-test" in table.output and f"{summary['final_loss']:.4f}"[:4] in table.output


def test_resume_continues_from_saved_step(tiny_model_dir: Path, qa_rows: list[dict[str, str]]) -> None:
    splits = splits_for(tiny_model_dir, qa_rows * 2)
    first = train_recipe(tiny_recipe(tiny_model_dir, max_steps=2, save_steps=2, epochs=5), splits=splits)
    assert (first.root / "checkpoints" / "checkpoint-2").is_dir()
    resumed = train_recipe(
        tiny_recipe(tiny_model_dir, max_steps=4, save_steps=2, epochs=5), splits=splits, resume=True
    )
    assert resumed.root == first.root
    steps = [
        r["step"] for r in map(json.loads, resumed.metrics.read_text().splitlines()) if r["type"] == "train"
    ]
    assert steps == [1, 2, 3, 4]  # the resumed session logged steps 3 and 4 only
    assert resumed.summary_data()["steps"] == 4 and resumed.summary_data()["resumed"] is True


def test_resume_without_checkpoint_is_a_user_error(tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="--resume"):
        train_recipe(tiny_recipe(tiny_model_dir), resume=True, splits=(None, None))


def test_merge_matches_adapter_outputs(tiny_model_dir: Path, qa_rows: list[dict[str, str]]) -> None:
    from transformers import AutoModelForCausalLM

    from medtune.models import load_causal_lm
    from medtune.train.merge import merge_run

    run = train_recipe(tiny_recipe(tiny_model_dir, max_steps=2), splits=splits_for(tiny_model_dir, qa_rows))
    out = merge_run(run, dtype="float32")
    assert run.info()["merged_dir"] == str(out)
    assert (out / "chat_template.jinja").is_file() and (out / "tokenizer_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    adapted = load_causal_lm(str(run.root), dtype="float32").eval()
    ids = torch.arange(10, 30)[None]
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4, rtol=1e-4
        )
