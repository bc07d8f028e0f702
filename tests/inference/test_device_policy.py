"""load_causal_lm and the backends follow the device policy: what reaches from_pretrained on a (pretend) GPU,
the CPU fallback of a QLoRA run, and the real CUDA path (``gpu`` tests, skipped without a GPU)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.inference.conftest import make_lora_run
from tests.unit.test_devices import fake_gpu

from medtune.models import load_causal_lm, quantization_config


class Captured(Exception):
    """Raised by the fake from_pretrained once it has recorded its arguments."""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record the keyword arguments of AutoModelForCausalLM.from_pretrained instead of loading weights."""
    from transformers import AutoModelForCausalLM

    seen: dict[str, Any] = {}

    def fake(source: str, **kwargs: Any) -> None:
        seen.update(kwargs, source=source)
        raise Captured

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    return seen


@pytest.fixture(scope="module")
def qlora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose run.json says it trained on an nf4 base (recipe dtype auto)."""
    return make_lora_run(tmp_path_factory.mktemp("qlora-run"), str(tiny_model_dir), quantization="nf4",
                         dtype="auto")


@pytest.fixture(scope="module")
def fp32_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose recipe trained in float32."""
    return make_lora_run(tmp_path_factory.mktemp("fp32-run"), str(tiny_model_dir), dtype="float32")


def test_qlora_run_on_a_t4_loads_its_base_in_the_training_quantization_on_the_gpu(
        qlora_run: Path, captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, 7, 5)
    monkeypatch.setattr("medtune.devices.bitsandbytes_problem", lambda: None)  # bitsandbytes looks installed
    with pytest.raises(Captured):
        load_causal_lm(str(qlora_run))
    assert captured["device_map"] == {"": 0} and captured["dtype"] == torch.float16
    training_config = quantization_config("nf4", torch.float16)  # what load_model_for_training builds
    assert captured["quantization_config"].to_dict() == training_config.to_dict()


def test_a_quantized_load_on_a_gpu_without_bitsandbytes_is_one_clear_error(
        qlora_run: Path, tiny_model_dir: Path, captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.errors import UserError

    fake_gpu(monkeypatch, 7, 5)
    monkeypatch.setattr("medtune.devices.bitsandbytes_problem", lambda: "is not installed")
    with pytest.raises(UserError, match=r"quantization nf4 needs bitsandbytes, which is not installed here; "
                                        r"install it: pip install 'medtune\[gpu\]'") as error:
        load_causal_lm(str(qlora_run))  # a QLoRA run loaded for eval or chat, in the quantization it trained in
    assert str(qlora_run) in str(error.value)
    with pytest.raises(UserError, match="quantization int8 needs bitsandbytes"):
        load_causal_lm(str(tiny_model_dir), quantization="int8")
    assert not captured  # refused before transformers is asked (no ImportError traceback)


def test_plain_model_on_an_ampere_gpu_gets_bf16_and_a_device_map(
        tiny_model_dir: Path, captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, 8, 6)
    with pytest.raises(Captured):
        load_causal_lm(str(tiny_model_dir))
    assert captured["device_map"] == {"": 0} and captured["dtype"] == torch.bfloat16
    assert "quantization_config" not in captured


def test_fp32_run_stays_fp32_on_the_gpu(fp32_run: Path, captured: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, 8, 0)
    with pytest.raises(Captured):
        load_causal_lm(str(fp32_run))
    assert captured["dtype"] == torch.float32 and captured["device_map"] == {"": 0}


def test_qlora_run_on_the_cpu_falls_back_to_the_unquantized_base_with_a_note(
        qlora_run: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="medtune.models"):
        model = load_causal_lm(str(qlora_run))
    assert hasattr(model, "peft_config") and getattr(model, "hf_quantizer", None) is None
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert any("nf4" in r.message and "unquantized" in r.message for r in caplog.records)


def test_explicit_quantization_without_cuda_stays_an_error(tiny_model_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        load_causal_lm(str(tiny_model_dir), quantization="nf4")


@pytest.mark.gpu
def test_gpu_backend_runs_on_cuda(tiny_model_dir: Path) -> None:
    from medtune.inference.base import GenerationSettings
    from medtune.inference.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(tiny_model_dir))
    assert backend.model.device.type == "cuda"
    assert backend.info().extra["device"].startswith("cuda")
    backend.chat([{"role": "user", "content": "What is asthma?"}], GenerationSettings(max_new_tokens=4))
    assert backend.last_generated_tokens is not None and backend.last_generated_tokens > 0


@pytest.mark.gpu
def test_gpu_qlora_run_is_loaded_in_nf4(qlora_run: Path) -> None:
    pytest.importorskip("bitsandbytes")
    model = load_causal_lm(str(qlora_run))
    assert model.device.type == "cuda" and getattr(model, "is_loaded_in_4bit", False)
    with torch.inference_mode():
        logits = model(input_ids=torch.arange(5, 15, device=model.device)[None]).logits
    assert torch.isfinite(logits).all()


def test_an_inference_load_merges_the_adapter_with_the_same_logits(fp32_run: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel

    ids = torch.tensor([[1, 42, 7, 99, 13]])
    adapter_model = load_causal_lm(str(fp32_run)).eval()
    merged = load_causal_lm(str(fp32_run), merge_adapter=True).eval()
    base = load_causal_lm(str(tiny_model_dir)).eval()
    assert isinstance(adapter_model, PeftModel) and not isinstance(merged, PeftModel)
    with torch.inference_mode():
        expected, got, plain = (m(ids).logits for m in (adapter_model, merged, base))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter is really in the merged weights


def test_a_quantized_base_is_never_merged_into(qlora_run: Path, tiny_model_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from medtune import models

    tiny = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))  # stands for the nf4 base on the GPU
    seen: dict[str, Any] = {}

    def fake(source: str, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return tiny

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    monkeypatch.setattr(models, "quantization_config", lambda *args: "nf4-config")  # as the GPU path returns
    model = load_causal_lm(str(qlora_run), merge_adapter=True)
    assert seen["quantization_config"] == "nf4-config" and isinstance(model, PeftModel)  # adapter kept apart
