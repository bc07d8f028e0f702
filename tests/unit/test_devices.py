"""The device policy's decisions, with torch.cuda monkeypatched to look like a T4, an A100 or no GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from medtune import devices
from medtune.errors import UserError

GIB = 1024**3


def fake_gpu(monkeypatch: pytest.MonkeyPatch, major: int, minor: int, free_gib: float = 15.0) -> None:
    """Make torch.cuda report one GPU of compute capability ``major.minor`` with ``free_gib`` free."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(major=major, minor=minor, total_memory=16 * GIB))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gib * GIB), 16 * GIB))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.usefixtures("no_gpu")
def test_cpu_loads_fp32_without_a_device_map() -> None:
    placement = devices.plan_placement("auto", "none")
    assert placement == devices.Placement("cpu", "float32", "none", None, None)
    assert devices.resolve_dtype("bfloat16") == "bfloat16"  # an explicit dtype is kept on the CPU
    assert devices.llama_gpu_layers() == 0


@pytest.mark.usefixtures("no_gpu")
def test_quantization_without_cuda_is_refused_for_training_and_dropped_with_a_note_for_runs() -> None:
    with pytest.raises(UserError, match="quantization: none"):
        devices.plan_placement("auto", "nf4", strict=True)
    placement = devices.plan_placement("auto", "nf4", strict=False)
    assert placement.quantization == "none" and placement.dtype == "float32"
    assert placement.note and "nf4" in placement.note and "unquantized" in placement.note


def test_t4_gets_fp16_even_for_an_explicit_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, 7, 5)
    assert not devices.bf16_supported()
    assert devices.resolve_dtype("auto") == "float16" and devices.half_dtype() == "float16"
    placement = devices.plan_placement("bfloat16", "nf4")
    assert placement.dtype == "float16" and placement.quantization == "nf4"
    assert placement.note and "bf16" in placement.note
    assert devices.resolve_dtype("float32") == "float32"
    assert devices.llama_gpu_layers() == -1


def test_ampere_gets_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, 8, 0)
    assert devices.bf16_supported()
    assert devices.plan_placement("auto", "none").dtype == "bfloat16"


def test_device_map_puts_a_model_that_fits_on_one_gpu_and_spreads_one_that_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, 7, 5, free_gib=15.0)
    assert devices.device_map_for(int(8 * GIB)) == {"": 0}
    assert devices.device_map_for(int(16 * GIB)) == "auto"  # an 8B model in fp16 on a 16 GB T4
    assert devices.device_map_for(None) == {"": 0}
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices.device_map_for(int(GIB)) == {"": 1}
    monkeypatch.setenv("WORLD_SIZE", "2")  # DDP: a QLoRA base goes on this process's GPU, others to the Trainer
    assert devices.device_map_for(int(GIB), "nf4") == {"": 1}
    assert devices.device_map_for(int(GIB), "none") is None


def test_weight_bytes_counts_quantized_linear_layers_at_their_bits() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    params = LlamaForCausalLM(config).num_parameters()
    assert devices.weight_bytes(config, "float32") == 4 * params
    assert devices.weight_bytes(config, "float16") == 2 * params
    nf4, int8 = devices.weight_bytes(config, "float16", "nf4"), devices.weight_bytes(config, "float16", "int8")
    assert nf4 < int8 < 2 * params
    embeddings = 2 * 2 * 1000 * 64  # input embedding and lm_head stay 16-bit
    assert nf4 > embeddings


def test_an_8b_fp16_model_does_not_fit_a_t4_but_its_nf4_base_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.train.planning import load_model_config

    fake_gpu(monkeypatch, 7, 5, free_gib=14.5)
    config = load_model_config("meta-llama/Meta-Llama-3-8B-Instruct")
    assert devices.plan_placement("auto", "none", config=config).device_map == "auto"
    assert devices.plan_placement("auto", "nf4", config=config).device_map == {"": 0}
