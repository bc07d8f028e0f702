"""`medtune train` / `merge` / `runs` on a tiny random Llama: run folder, CPU refusals, merge (resume: test_resume)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.train.conftest import splits_for, tiny_recipe
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.errors import UserError
from medtune.runs import list_runs
from medtune.train.resume import recipe_hash
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
    assert info["prompt_style"] == "chat-template" and "prepared_dir" in info
    # splits passed in directly: the rendering prompt is unknown (null), never the literal setting "served"
    assert info["system_prompt"] is None and info["dtype"] == "float32"
    assert info["recipe_hash"] == recipe_hash(run.recorded_recipe()) and info["trust_remote_code"] is False
    summary = run.summary_data()
    assert summary["steps"] == 3 and summary["tokens_per_s"] > 0 and summary["peak_memory_bytes"] > 0
    assert summary["session_tokens"] == summary["tokens"] > 0 and summary["resumed_from_step"] is None
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


def test_training_prints_loss_lines_not_raw_dictionaries(tiny_model_dir: Path, qa_rows: list[dict[str, str]],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from medtune.cli._console import err_console
    from medtune.train.callbacks import RichProgressCallback

    callback = RichProgressCallback()
    state = SimpleNamespace(is_world_process_zero=True, max_steps=10, global_step=0)
    with err_console.capture() as captured:
        callback.on_train_begin(None, state, None)
        state.global_step = 5
        callback.on_log(None, state, None, logs={"loss": 2.2901, "learning_rate": 5e-4})
        callback.on_log(None, state, None, logs={"eval_loss": 1.9876})
        state.global_step = 6
        callback.on_log(None, state, None, logs={"loss": 0.6, "learning_rate": 5e-4, "rewards/margins": 0.25})
        callback.on_train_end(None, state, None)
    text = captured.get()
    assert "step 5/10  loss 2.2901  lr 5.00e-04\n" in text and "validation loss 1.9876" in text
    assert "step 6/10  loss 0.6000  lr 5.00e-04  reward margin +0.250" in text  # DPO
    assert "{'loss'" not in text
    # a real run: the Trainer's PrinterCallback (raw log dictionaries on stdout) is removed
    capsys.readouterr()
    run = train_recipe(tiny_recipe(tiny_model_dir, max_steps=2), splits=splits_for(tiny_model_dir, qa_rows))
    assert run.summary_data()["steps"] == 2
    assert "{'loss'" not in capsys.readouterr().out
