"""The one merge: precision follows the run, and the report's logit difference is the real one (tiny model, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.inference.conftest import make_lora_run, tiny_model_dir  # noqa: F401  (fixture)
from tests.unit.test_devices import fake_gpu

from medtune.train.merge import MERGE_CHECK_QUESTIONS, merge_adapter, merge_dtype


@pytest.fixture
def fp32_run(tiny_model_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    return make_lora_run(tmp_path / "fp32-run", str(tiny_model_dir), dtype="float32", std=0.2)


@pytest.fixture
def qlora_run(tiny_model_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    return make_lora_run(tmp_path / "qlora-run", str(tiny_model_dir), quantization="nf4", dtype="auto")


def test_merge_precision_follows_the_run(fp32_run: Path, qlora_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert merge_dtype(fp32_run) == "float32"
    assert merge_dtype(qlora_run) == "bfloat16"  # QLoRA: a 16-bit copy of the base
    assert merge_dtype(fp32_run, "bfloat16") == "bfloat16"
    fake_gpu(monkeypatch, 7, 5)  # a T4: no native bf16
    assert merge_dtype(qlora_run) == "float16" and merge_dtype(fp32_run) == "float32"


def served_logits(model_dir: str, source: Path) -> list[torch.Tensor]:
    """Logits of ``model_dir`` on the merge's served prompts of ``source``."""
    from medtune.inference.transformers_backend import TransformersBackend, served_prompt_ids
    from medtune.models import load_causal_lm, load_tokenizer
    from medtune.train.merge import prompt_logits

    model = load_causal_lm(model_dir).eval()
    backend = TransformersBackend(str(source), model_obj=model, tokenizer=load_tokenizer(str(source)))
    return prompt_logits(model, served_prompt_ids(backend, MERGE_CHECK_QUESTIONS))


def test_fp32_merge_reports_the_logit_difference_it_has(fp32_run: Path) -> None:
    report = merge_adapter(fp32_run)
    merged = Path(report.out_dir)
    assert report.dtype == "float32" and report.device == "cpu" and report.prompts == len(MERGE_CHECK_QUESTIONS)
    assert "unquantized base" in report.reference
    adapter, plain = served_logits(str(fp32_run), fp32_run), served_logits(str(merged), fp32_run)
    measured = max(float((a - b).abs().max()) for a, b in zip(adapter, plain, strict=True))
    assert report.max_abs_logit_diff == pytest.approx(measured, abs=1e-6)
    assert report.max_abs_logit_diff < 1e-4
    base = served_logits(str(json.loads((fp32_run / "run.json").read_text())["base_model"]), fp32_run)
    assert max(float((a - b).abs().max()) for a, b in zip(adapter, base, strict=True)) > 1e-3  # adapter matters
    info = json.loads((fp32_run / "run.json").read_text())
    assert info["merged_dir"] == str(merged) and info["merge"]["max_abs_logit_diff"] == report.max_abs_logit_diff
    assert json.loads((merged / "merge.json").read_text())["dtype"] == "float32"
    assert (merged / "tokenizer_config.json").is_file() and not (merged / "adapter_config.json").exists()


def test_a_16bit_merge_of_an_fp32_run_is_measurably_worse(fp32_run: Path, tmp_path: Path) -> None:
    exact = merge_adapter(fp32_run, tmp_path / "fp32")
    rounded = merge_adapter(fp32_run, tmp_path / "bf16", dtype="bfloat16")
    assert rounded.dtype == "bfloat16" and rounded.max_abs_logit_diff > 10 * exact.max_abs_logit_diff


def test_qlora_merge_on_the_cpu_goes_into_a_16bit_base_and_says_what_it_compared(qlora_run: Path) -> None:
    report = merge_adapter(qlora_run)
    assert report.dtype == "bfloat16" and report.trained_quantization == "nf4"
    assert report.reference.startswith("adapter model on its unquantized base")  # no GPU: no nf4 reference
    assert report.max_abs_logit_diff > 0


def test_merge_cli_prints_the_report(fp32_run: Path) -> None:
    from typer.testing import CliRunner

    from medtune.cli import get_app

    result = CliRunner().invoke(get_app(), ["merge", str(fp32_run)])
    assert result.exit_code == 0, result.output
    assert "merged in float32 on cpu" in result.output and "max |logit difference|" in result.output


@pytest.mark.gpu
def test_gpu_merges_a_qlora_run_in_16bit_on_cuda_against_its_nf4_adapter_model(qlora_run: Path) -> None:
    pytest.importorskip("bitsandbytes")
    report = merge_adapter(qlora_run)
    assert report.device.startswith("cuda") and report.dtype in ("bfloat16", "float16")
    assert report.reference.startswith("adapter model on its nf4 base")
    assert 0 < report.max_abs_logit_diff < 50
