"""`medtune plan`: exact LoRA parameter counts of the study models and the memory estimate."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.config import load_recipe, recipe_from_dict
from medtune.train.planning import (
    count_parameters,
    estimate_memory,
    load_model_config,
    lora_parameters_by_formula,
)

LLAMA = "meta-llama/Meta-Llama-3-8B-Instruct"
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.2"


@pytest.mark.parametrize(
    ("model", "r", "targets", "expected"),
    [
        (LLAMA, 16, "all-linear", 41_943_040),
        (MISTRAL, 8, ["q_proj", "k_proj", "v_proj", "o_proj"], 6_815_744),
        (MISTRAL, 8, ["q_proj", "v_proj"], 3_407_872),
    ],
)
def test_exact_trainable_params(model: str, r: int, targets: object, expected: int) -> None:
    recipe = recipe_from_dict(
        {"name": "p", "model": {"name": model}, "lora": {"r": r, "target_modules": targets}}
    )
    config = load_model_config(model)
    trainable, total = count_parameters(config, recipe.lora)
    assert trainable == expected
    assert lora_parameters_by_formula(config, recipe.lora) == expected
    assert total > 7_000_000_000


def test_dora_adds_magnitude_vectors() -> None:
    base = {"name": "p", "model": {"name": MISTRAL}, "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}}
    dora = recipe_from_dict({**base, "lora": {**base["lora"], "use_dora": True}})
    trainable, _ = count_parameters(load_model_config(MISTRAL), dora.lora)
    assert trainable == 3_407_872 + 32 * (4096 + 1024)


def _plan(**sections: dict) -> object:
    recipe = recipe_from_dict(
        {
            "name": "p",
            "model": {"name": LLAMA, **sections.get("model", {})},
            "train": sections.get("train", {}),
        }
    )
    config = load_model_config(LLAMA)
    return estimate_memory(recipe, config, 41_943_040, 8_072_204_288, gpu_mem_gb=16)


def test_memory_terms_respond_to_settings() -> None:
    nf4 = _plan(model={"quantization": "nf4"}, train={"optimizer": "adamw_8bit"})
    bf16 = _plan(model={"quantization": "none", "dtype": "bfloat16"}, train={"optimizer": "adamw_torch"})
    assert nf4.weights < bf16.weights / 2.5  # ~4.1 bits vs 16 bits on the linear layers
    assert nf4.optimizer * 4 == bf16.optimizer  # 8-bit vs 32-bit AdamW states
    no_ckpt = _plan(model={"quantization": "nf4"}, train={"gradient_checkpointing": False})
    assert no_ckpt.activations > 2 * nf4.activations
    assert nf4.fits is True and bf16.fits is False  # 8B in bf16 (~15 GiB of weights) cannot train in 16 GB
    dpo = _plan(model={"quantization": "nf4"}, train={"optimizer": "adamw_8bit", "objective": "dpo"})
    assert dpo.activations == 2 * nf4.activations and dpo.weights == nf4.weights  # chosen + rejected per pair


def test_plan_cli_prints_figures() -> None:
    result = CliRunner().invoke(get_app(), ["plan", "mistral-7b/study", "--gpu-mem", "16"])
    assert result.exit_code == 0, result.output
    assert "6,815,744" in result.output
    assert "fits in 16 GB" in result.output
    assert load_recipe("mistral-7b/study").lora.r == 8


@pytest.mark.parametrize(
    ("optimizer", "quantization", "cuda", "expected", "state_bytes"),
    [
        ("auto", "none", False, "adamw_torch", 8),  # CPU
        ("auto", "none", True, "adamw_torch", 8),  # full-precision LoRA on a GPU: no bitsandbytes needed
        ("auto", "nf4", True, "adamw_8bit", 2),  # QLoRA: bitsandbytes is there already
        ("paged_adamw_8bit", "nf4", True, "paged_adamw_8bit", 2),
        ("adamw_torch", "nf4", True, "adamw_torch", 8),
    ],
)
def test_plan_and_train_resolve_the_optimizer_alike(
    optimizer: str, quantization: str, cuda: bool, expected: str, state_bytes: int
) -> None:
    from medtune.train.trainer import build_sft_config

    plan = _plan(model={"quantization": quantization}, train={"optimizer": optimizer})
    recipe = recipe_from_dict({"name": "p", "model": {"quantization": quantization}, "train": {"optimizer": optimizer}})
    args = build_sft_config(recipe, "unused", max_steps=1, has_eval=False, cuda=cuda)
    assert args.optim == expected and plan.optimizer_kind.startswith(f"{expected}:")
    assert plan.optimizer == 41_943_040 * state_bytes


def test_train_refuses_bitsandbytes_optimizers_without_cuda() -> None:
    from medtune.errors import UserError
    from medtune.train.optimizer import resolve_optimizer

    for name in ("adamw_8bit", "paged_adamw_32bit"):
        with pytest.raises(UserError, match=f"train.optimizer: {name} needs a CUDA GPU"):
            resolve_optimizer(name, "none", cuda=False)
        assert resolve_optimizer(name, "none") == name  # planning checks no device


def test_neftune_reaches_the_trainer() -> None:
    from medtune.train.trainer import build_sft_config

    on = recipe_from_dict({"name": "n", "train": {"neftune_noise_alpha": 5}})
    assert build_sft_config(on, "unused", max_steps=1, has_eval=False, cuda=False).neftune_noise_alpha == 5
    off = recipe_from_dict({"name": "n"})
    assert build_sft_config(off, "unused", max_steps=1, has_eval=False, cuda=False).neftune_noise_alpha is None


# --- time: tokens per step, steps, FLOPs and the estimate per GPU class ---------------------------------------------

CONFIG_A_TRAINABLE, CONFIG_A_TOTAL = 41_943_040, 8_072_204_288


def test_config_a_time_estimate_matches_the_formula_by_hand() -> None:
    from medtune.train.planning import ASSUMED_MFU, GPU_CLASSES, estimate_time

    recipe = load_recipe("llama3-8b/config-a")
    plan = estimate_time(recipe, load_model_config(LLAMA), CONFIG_A_TRAINABLE, CONFIG_A_TOTAL)
    # by hand: 2 x 4 x 512 tokens per step; 15,000 rows x 0.8 = 12,000 train rows -> 6,000 batches -> 1,500 steps
    assert plan.tokens_per_step == 4096 and plan.steps == 1500
    frozen = CONFIG_A_TOTAL - CONFIG_A_TRAINABLE - 128_256 * 4096  # untied input embeddings do no matmul
    assert plan.frozen_params == frozen == 7_504_924_672
    per_token = 6 * frozen + 8 * CONFIG_A_TRAINABLE  # 4N + 2N recompute (gradient checkpointing); LoRA 6 + 2
    assert plan.flops_per_token == per_token
    assert ASSUMED_MFU["nf4"] == 0.35 and GPU_CLASSES["T4"].tflops == 65 and GPU_CLASSES["H100"].tflops == 989
    t4_seconds = per_token * 4096 * 1500 / (65e12 * 0.35)
    assert plan.gpus["T4"]["seconds"] == pytest.approx(t4_seconds, rel=1e-9)
    assert 2.5 * 3600 < plan.gpus["T4"]["seconds"] < 4.5 * 3600  # "hours on a T4": ~3.4 h at this upper bound
    assert 10 * 60 < plan.gpus["H100"]["seconds"] < 20 * 60
    assert plan.gpus["T4"]["seconds"] / plan.gpus["H100"]["seconds"] == pytest.approx(989 / 65)
    assert plan.gpus["A10"]["tokens_per_s"] == pytest.approx(125e12 * 0.35 / per_token)


def test_time_responds_to_rows_tokens_checkpointing_and_max_steps() -> None:
    from medtune.train.planning import estimate_time

    config = load_model_config(LLAMA)
    base = {"name": "p", "model": {"name": LLAMA, "max_seq_length": 512},
            "train": {"batch_size": 2, "gradient_accumulation_steps": 4}}
    recipe = recipe_from_dict(base)
    unknown = estimate_time(recipe, config, CONFIG_A_TRAINABLE, CONFIG_A_TOTAL)
    assert unknown.steps is None and unknown.gpus["T4"]["seconds"] is None and "--rows" in unknown.steps_source
    rows = estimate_time(recipe, config, CONFIG_A_TRAINABLE, CONFIG_A_TOTAL, rows=1001, tokens_per_example=300)
    assert rows.steps == 126 and rows.tokens_per_step == 2 * 4 * 300  # ceil(ceil(1001 / 2) / 4)
    no_ckpt = recipe_from_dict({**base, "train": {**base["train"], "gradient_checkpointing": False}})
    plain = estimate_time(no_ckpt, config, CONFIG_A_TRAINABLE, CONFIG_A_TOTAL, rows=1001, tokens_per_example=300)
    assert rows.flops_per_token / plain.flops_per_token == pytest.approx(6 / 4, rel=1e-2)  # recompute: 4N -> 6N
    capped = recipe_from_dict({**base, "train": {**base["train"], "max_steps": 10}})
    assert estimate_time(capped, config, CONFIG_A_TRAINABLE, CONFIG_A_TOTAL, rows=1001).steps == 10
    half = recipe_from_dict({**base, "model": {"name": LLAMA, "quantization": "none", "dtype": "bfloat16"}})
    assert estimate_time(half, config, CONFIG_A_TRAINABLE, CONFIG_A_TOTAL).mfu == 0.45  # the assumption per base


def test_plan_cli_prints_the_time_table_marked_as_estimates() -> None:
    result = CliRunner().invoke(get_app(), ["plan", "llama3-8b/config-a"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "estimated training time" in result.output and "ESTIMATES" in result.output
    assert "tokens per step: 4,096" in result.output and "upper bound" in result.output
    assert "steps: 1,500" in result.output
    for gpu in ("T4", "A10", "L4", "A100", "H100"):
        assert f"│ {gpu} " in result.output
    assert "3 h 24 min" in result.output  # T4, by the formula above
    as_json = CliRunner().invoke(get_app(), ["plan", "llama3-8b/config-a", "--json"])
    import json

    data = json.loads(as_json.output)
    assert data["time"]["steps"] == 1500 and data["time"]["gpus"]["H100"]["tflops"] == 989
    assert data["measured"] is None


def test_rate_from_metrics_leaves_out_the_warmup_steps() -> None:
    from medtune.train.planning import rate_from_metrics

    # step 1 is slow (warm-up: 100 tokens in 10 s), then 100 tokens per step at 50 tokens/s
    records = [{"type": "train", "step": 1, "tokens": 100, "tokens_per_s": 10.0}]
    records += [{"type": "train", "step": s, "tokens": 100 * s, "tokens_per_s": 50.0} for s in range(2, 6)]
    records.append({"type": "end", "step": 5})
    tokens_per_s, seconds_per_step, tokens_per_step = rate_from_metrics(records, warmup_steps=1)
    assert tokens_per_s == pytest.approx(50.0) and seconds_per_step == pytest.approx(2.0) and tokens_per_step == 100


def test_measure_refuses_a_quantized_recipe_without_cuda(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    import torch

    from medtune.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["medtune", "plan", "llama3-8b/config-a", "--measure"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "error: --measure: recipe llama3-8b-config-a trains an nf4 base, which needs a CUDA GPU" in " ".join(
        captured.err.split())
    assert "estimated training time" in captured.out  # the estimates were printed before the refusal


def test_measure_trains_real_steps_on_the_cpu_for_a_full_precision_recipe(tiny_model_dir, qa_rows) -> None:  # noqa: ANN001
    from tests.train.conftest import splits_for, tiny_recipe

    from medtune.runs import list_runs
    from medtune.train.planning import measure_training

    recipe = tiny_recipe(tiny_model_dir)
    measured = measure_training(recipe, steps=4, projected_steps=100, splits=(splits_for(tiny_model_dir, qa_rows)[0],
                                                                                   None))
    assert measured.device == "cpu" and measured.steps == 4 and measured.warmup_steps == 1
    assert measured.tokens_per_s > 0 and measured.tokens_per_step > 0
    assert measured.projected_seconds == pytest.approx(100 * measured.seconds_per_step)
    assert measured.seconds_per_step == pytest.approx(measured.tokens_per_step / measured.tokens_per_s)
    assert list_runs() == []  # the measurement's run folder is removed
