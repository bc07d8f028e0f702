"""bench/gpu_smoke.py and the CUDA paths of training.

Here (no CUDA) the smoke script stops at its first CUDA check with one JSON line. On a GPU: QLoRA training in nf4
with paged 8-bit AdamW and the device policy's autocast, a SIGKILLed QLoRA run resumed to its planned step, and
the whole smoke run (train, resume, eval, merge, export, serve) passing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.bench_scripts import BENCH_DIR, load_bench
from tests.train.conftest import QUESTIONS, splits_for, tiny_recipe

BENCH = BENCH_DIR / "gpu_smoke.py"


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def test_gpu_smoke_stops_at_its_first_cuda_check_with_one_json_line() -> None:
    if _has_cuda():
        pytest.skip("CUDA is present: test_gpu_smoke_passes_every_path runs the script instead")
    proc = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = proc.stdout.splitlines()
    result = json.loads(line)
    assert result["skipped"] == "no CUDA" and result["bench"] == "gpu_smoke"
    assert result["reason"].startswith("torch.cuda.is_available() is False")
    assert result["verified"] == []
    assert result["would_verify"] == ["cuda", "train", "resume", "eval", "merge", "export", "serve"]


def test_gpu_smoke_refuses_a_crash_that_cannot_fall_between_checkpoints() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--steps", "4", "--save-steps", "3"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--steps must exceed --save-steps" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.gpu
def test_gpu_qlora_trains_in_nf4_with_paged_8bit_adamw_and_the_policy_autocast(
        tiny_model_dir: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bitsandbytes")
    from medtune.devices import half_dtype
    from medtune.train import trainer as trainer_module

    recipe = tiny_recipe(tiny_model_dir, max_steps=3, optimizer="paged_adamw_8bit", gradient_checkpointing=True)
    recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"quantization": "nf4"})})
    built: list[Any] = []  # (trainer, stats) as train_recipe builds them
    monkeypatch.setattr(trainer_module, "_build_trainer", lambda *args, _build=trainer_module._build_trainer,
                        **kwargs: built.append(_build(*args, **kwargs)) or built[-1])
    rows = [{"question": q, "answer": a} for q, a in QUESTIONS]
    run = trainer_module.train_recipe(recipe, splits=splits_for(tiny_model_dir, rows))
    ((trainer, _stats),) = built
    assert trainer.accelerator.mixed_precision == {"bfloat16": "bf16", "float16": "fp16"}[half_dtype()]
    assert trainer.model.get_base_model().is_loaded_in_4bit
    optimizer = trainer.optimizer.optimizer
    assert type(optimizer).__module__.startswith("bitsandbytes")
    assert optimizer.is_paged and optimizer.args.optim_bits == 8
    summary = run.summary_data()
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    assert summary["peak_memory_bytes"] > 0  # torch.cuda.max_memory_allocated


@pytest.mark.slow
@pytest.mark.parametrize("qlora", [False, pytest.param(True, marks=pytest.mark.gpu)], ids=["lora", "gpu-qlora"])
def test_sigkilled_run_resumes_to_the_planned_step_as_the_smoke_checks(
        qlora: bool, tiny_model_dir: Path, isolated_home: Path, tmp_path: Path) -> None:
    """The smoke's resume path: a child SIGKILLs itself between checkpoints, another resumes it (unquantized here;
    nf4 with paged 8-bit AdamW on a GPU)."""
    from medtune.config import recipe_from_dict
    from medtune.train.trainer import train_recipe

    if qlora:
        pytest.importorskip("bitsandbytes")
    bench = load_bench("gpu_smoke")
    rows = [{"question": q, "answer": a} for q, a in QUESTIONS] * 4
    prepared = bench.write_prepared(tmp_path / "prepared", str(tiny_model_dir), rows, n_val=2, n_test=2)
    recipe = bench.smoke_recipe(str(tiny_model_dir), str(prepared), steps=8, save_steps=3)
    if not qlora:
        recipe["model"]["quantization"], recipe["train"]["optimizer"] = "none", "adamw_torch"
    reference = train_recipe(recipe_from_dict(recipe))  # uninterrupted, in this process
    details = bench.crash_and_resume(recipe, tmp_path / "crash-home", reference.root)
    assert details["resumed_from_step"] == 3 and details["steps"] == 8
    assert details["killed_after_step"] >= 3 + bench.STEPS_PAST_CHECKPOINT
    assert details["max_adapter_diff"] <= 0.1 * details["control_diff"]


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_smoke_passes_every_path(shared_data: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--work", str(tmp_path / "work")], capture_output=True,
                          text=True, timeout=900)
    result = json.loads(proc.stdout.splitlines()[-1])
    errors = {name: path["error"] for name, path in result["paths"].items() if not path["pass"]}
    assert proc.returncode == 0 and result["passed"], errors
    assert result["peak_vram_mb"] > 0 and result["step_time_s"] > 0
    assert result["total_seconds"] < 8 * 60
