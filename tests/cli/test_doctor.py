"""`medtune doctor [RECIPE]` and the one-line bitsandbytes error of `medtune train` on a GPU without it.

On this CPU machine the doctor must name every missing GPU piece with its install command; GPU verdicts (a recipe
that fits, one that does not, a T4 without bf16) are checked against a fake :class:`medtune.doctor.Gpu`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

import pytest

from medtune import doctor
from medtune.config import load_recipe
from medtune.devices import BITSANDBYTES_FIX

GIB = 1024**3
T4 = doctor.Gpu("Tesla T4", (7, 5), free=15 * GIB, total=16 * GIB, count=1)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``medtune ARGS`` in this process through the real entry point; return (exit code, stdout, stderr)."""
    from medtune.cli import main

    monkeypatch.setattr(sys, "argv", ["medtune", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def absent(module: str) -> bool:
    return importlib.util.find_spec(module) is None


@pytest.fixture
def no_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks this CPU machine's report")


@pytest.mark.usefixtures("no_cuda")
def test_doctor_names_every_missing_gpu_piece_with_its_fix(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "doctor", "smollm2-135m/tiny", "--json")
    assert code == 0
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    expected = {"CUDA": "NVIDIA GPU"}
    if absent("bitsandbytes"):
        expected["bitsandbytes"] = "pip install 'medtune[gpu]'"
    if absent("vllm"):
        expected["vLLM"] = "pip install 'medtune[vllm]'"
    if absent("flash_attn"):
        expected["flash-attention"] = "pip install flash-attn"
    if not absent("llama_cpp"):
        expected["llama.cpp GPU offload"] = "CMAKE_ARGS=-DGGML_CUDA=on"
    for name, fix in expected.items():
        assert rows[name]["status"] == "missing" and fix in rows[name]["fix"], rows[name]
    assert rows["precision"]["detail"] == "float32 on the CPU"
    assert all(row["fix"] for row in rows.values() if row["status"] == "missing")  # no missing piece without a fix
    assert rows["recipe smollm2-135m/tiny"]["status"] == "ok"


@pytest.mark.usefixtures("no_cuda")
def test_the_table_shows_the_install_commands_literally(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(doctor, "bitsandbytes_problem", lambda: "is not installed")
    code, out, _ = run_cli(monkeypatch, capsys, "doctor", "smollm2-135m/tiny")
    assert code == 0
    assert "medtune[gpu]" in out  # rich markup would eat "[gpu]" if the fix were not escaped
    assert "llama.cpp GPU offload" in out and "model smollm2-135m-instruct" in out


@pytest.mark.usefixtures("no_cuda")
def test_doctor_with_an_nf4_llama3_recipe_exits_2_with_one_error_line(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "doctor", "llama3-8b/config-a")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: recipe llama3-8b/config-a cannot train here")
    assert "model.quantization: nf4" in lines[0] and "CUDA" in lines[0] and "fix:" in lines[0]


def test_doctor_with_the_smollm2_demo_recipe_exits_0(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "doctor", "smollm2-135m/demo", "--json")
    assert code == 0 and "error" not in err
    (row,) = [r for r in json.loads(out)["checks"] if r["check"] == "recipe smollm2-135m/demo"]
    assert row["status"] == "ok" and "plan" in row["detail"]


_PLANS: dict[Any, Any] = {}  # configs and parameter counts shared by the GPU verdicts below


def test_on_a_t4_the_nf4_recipe_fits_once_bitsandbytes_works(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load_recipe("llama3-8b/config-a")
    monkeypatch.setattr(doctor, "bitsandbytes_problem", lambda: "is not installed")
    missing = doctor.recipe_check("llama3-8b/config-a", recipe, T4, _PLANS)
    assert missing.status == "missing" and "bitsandbytes" in missing.detail and missing.fix == BITSANDBYTES_FIX
    monkeypatch.setattr(doctor, "bitsandbytes_problem", lambda: None)
    fits = doctor.recipe_check("llama3-8b/config-a", recipe, T4, _PLANS)
    need = doctor.plan_bytes(recipe, _PLANS)
    assert 4 * GIB < need < 0.95 * T4.free  # `medtune plan llama3-8b/config-a`: ~7.9 GiB
    assert fits.status == "ok" and fits.detail.startswith("fits") and "15.0 GiB free" in fits.detail


def test_a_recipe_larger_than_the_free_gpu_memory_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "bitsandbytes_problem", lambda: None)
    small = doctor.Gpu("Tesla T4", (7, 5), free=4 * GIB, total=16 * GIB, count=1)
    check = doctor.recipe_check("llama3-8b/config-a", load_recipe("llama3-8b/config-a"), small, _PLANS)
    assert check.status == "missing" and check.detail.startswith("does not fit") and "batch_size" in check.fix


def test_a_t4_trains_in_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "bf16_supported", lambda: False)
    check = doctor.check_precision(T4)
    assert check.detail.startswith("fp16") and "_fp16.yaml" in check.detail
    monkeypatch.setattr(doctor, "bf16_supported", lambda: True)
    assert doctor.check_precision(T4).detail.startswith("bf16")


def test_train_nf4_on_a_gpu_without_bitsandbytes_is_one_error_line(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from medtune.runs import list_runs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` now raises ImportError
    code, _, err = run_cli(monkeypatch, capsys, "train", "llama3-8b/config-a")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.quantization: nf4 needs bitsandbytes")
    assert "pip install 'medtune[gpu]'" in lines[0]
    assert list_runs() == []  # refused before any run folder or model load
