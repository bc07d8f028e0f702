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
