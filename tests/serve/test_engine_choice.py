"""`medtune serve` picks an engine configuration that fits the GPU it finds: the pure choice on fake GPU
descriptions (an 8B LoRA run on a 16 GB T4 and an 80 GB H100, with and without vLLM, and the CPU), then the
commands built for a Llama-3-8B-shaped run folder (no weights: sizes come from the shipped config), the CPU path
unchanged, the API key kept off the command line, and `--dry-run`'s reason line."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from medtune.doctor import GIB, Gpu
from medtune.errors import UserError
from medtune.serve import engine
from medtune.serve.plan import (
    bnb_4bit_gib,
    choose_for_gguf,
    choose_serving,
    fp16_gib,
    q4_k_m_gib,
    vllm_lora_rank,
    weights_budget_gib,
)

LLAMA3_8B = "meta-llama/Meta-Llama-3-8B-Instruct"
#: Meta-Llama-3-8B: 8,030,261,248 parameters, of which embeddings + LM head 2 x 128,256 x 4,096; 32 layers.
PARAMS_B, EMBEDDINGS_B, LAYERS = 8.030261248, 2 * 128256 * 4096 / 1e9, 32
T4_GIB, H100_GIB = 15.0, 79.1  # what torch reports as total memory, about (16 GB and 80 GB cards)
SMOL_B = 0.1345  # SmolLM2-135M


def lora_8b(gpu_gib: float | None, **kwargs: Any):
    """The choice for a Llama-3-8B LoRA run (rank 16)."""
    settings = {"vllm": True, "is_adapter": True, "lora_rank": 16, "unquantized_b": EMBEDDINGS_B, "n_layers": LAYERS}
    return choose_serving(PARAMS_B, gpu_gib, **{**settings, **kwargs})


# --- the pure choice ---------------------------------------------------------------------------------------------

def test_weight_arithmetic() -> None:
    assert fp16_gib(PARAMS_B) == pytest.approx(14.96, abs=0.01)  # 2 bytes/param
    assert q4_k_m_gib(PARAMS_B) == pytest.approx(PARAMS_B * 1e9 * 4.85 / 8 / GIB)
    assert bnb_4bit_gib(PARAMS_B, EMBEDDINGS_B) == pytest.approx(
        ((PARAMS_B - EMBEDDINGS_B) * 0.55 + EMBEDDINGS_B * 2) * 1e9 / GIB)
    assert weights_budget_gib(16.0) == pytest.approx(16.0 * 0.9 * 0.8)
    assert [vllm_lora_rank(r) for r in (4, 16, 20, 64, 512, 1024)] == [8, 16, 32, 64, 512, None]


def test_8b_lora_on_a_16gb_t4_with_vllm_is_served_in_4bit_with_the_adapter() -> None:
    plan = lora_8b(T4_GIB)
    assert (plan.engine, plan.weights, plan.lora, plan.max_lora_rank) == ("vllm", "bnb-4bit", True, 16)
    assert "14.96 GiB in fp16" in plan.reason and "4-bit needs" in plan.reason


def test_8b_lora_on_an_80gb_h100_with_vllm_is_the_fp16_base_with_the_adapter() -> None:
    plan = lora_8b(H100_GIB)
    assert (plan.engine, plan.weights, plan.lora, plan.max_lora_rank) == ("vllm", "fp16", True, 16)
    assert "within" in plan.reason and "--enable-lora" in plan.reason


def test_8b_on_16gb_without_vllm_is_the_q4_k_m_gguf_on_the_gpu() -> None:
    plan = lora_8b(T4_GIB, vllm=False)
    assert (plan.engine, plan.weights, plan.n_gpu_layers) == ("llamacpp", "q4_k_m", -1)
    assert lora_8b(H100_GIB, vllm=False).weights == "f16"


@pytest.mark.parametrize("gpu_gib", [T4_GIB, 16.0])
@pytest.mark.parametrize("vllm", [True, False])
@pytest.mark.parametrize("bitsandbytes", [True, False])
@pytest.mark.parametrize("engine_name", ["auto", "llamacpp", "vllm"])
def test_an_8b_never_lands_as_fp16_on_a_16gb_card(gpu_gib: float, vllm: bool, bitsandbytes: bool,
                                                  engine_name: str) -> None:
    try:
        plan = lora_8b(gpu_gib, vllm=vllm, bitsandbytes=bitsandbytes, engine=engine_name)
    except UserError as error:  # --engine vllm that cannot fit: refused with the way out, never launched in fp16
        assert engine_name == "vllm" and ("not installed" in str(error) or "needs vLLM" in str(error))
        return
    assert plan.weights not in ("fp16", "f16"), plan.reason


def test_vllm_without_bitsandbytes_falls_back_to_the_q4_k_m_gguf_and_says_why() -> None:
    plan = lora_8b(T4_GIB, bitsandbytes=False)
    assert (plan.engine, plan.weights) == ("llamacpp", "q4_k_m")
    assert "bitsandbytes" in plan.reason and "medtune[gpu]" in plan.reason


def test_a_model_too_large_even_for_q4_k_m_keeps_the_layers_that_fit_on_the_gpu() -> None:
    plan = choose_serving(70.6, T4_GIB, vllm=False, is_adapter=False, n_layers=80)
    budget, q4 = weights_budget_gib(T4_GIB), q4_k_m_gib(70.6)
    assert plan.weights == "q4_k_m" and plan.n_gpu_layers == int(80 * budget / q4)
    assert f"{plan.n_gpu_layers} of 80 layers on the GPU" in plan.reason


def test_no_gpu_keeps_todays_gguf_path() -> None:
    for vllm in (True, False):
        for params in (PARAMS_B, SMOL_B, None):
            plan = choose_serving(params, None, vllm=vllm, is_adapter=True, lora_rank=16)
            assert (plan.engine, plan.weights, plan.n_gpu_layers) == ("llamacpp", "gguf", None)
    with pytest.raises(UserError, match="needs vLLM and a CUDA GPU"):
        choose_serving(SMOL_B, None, vllm=True, is_adapter=False, engine="vllm")


def test_the_135m_demo() -> None:
    assert choose_serving(SMOL_B, None, vllm=False, is_adapter=False).weights == "gguf"  # CPU: as today
    assert choose_serving(SMOL_B, T4_GIB, vllm=False, is_adapter=False).weights == "f16"
    assert choose_serving(SMOL_B, T4_GIB, vllm=True, is_adapter=False).weights == "fp16"
    given = choose_for_gguf(0.1, T4_GIB)  # the shipped Q4_1 GGUF, named by its alias: served as is
    assert given.weights == "gguf" and "all layers on the GPU" in given.reason
    assert "run out of GPU memory" in choose_for_gguf(14.96, T4_GIB).reason


def test_engine_override_is_said_and_validated() -> None:
    assert lora_8b(H100_GIB, engine="llamacpp").reason.startswith("chosen by --engine: llama.cpp, f16 GGUF")
    assert lora_8b(T4_GIB, engine="vllm").reason.startswith("chosen by --engine: vLLM, 4-bit")
    with pytest.raises(UserError, match="--engine nope"):
        lora_8b(T4_GIB, engine="nope")


def test_an_adapter_vllm_cannot_serve_as_lora_is_merged_and_the_reason_says_why() -> None:
    plan = lora_8b(H100_GIB, lora_problem="it saves whole modules beside the LoRA weights (embed_tokens)")
    assert (plan.weights, plan.lora) == ("fp16", False) and "merged" in plan.reason and "embed_tokens" in plan.reason
    big = lora_8b(H100_GIB, lora_rank=1024)
    assert not big.lora and "ranks up to 512" in big.reason
    assert lora_8b(H100_GIB, lora_rank=20).max_lora_rank == 32


def test_a_cpu_build_of_llamacpp_on_a_gpu_machine_is_said() -> None:
    plan = lora_8b(T4_GIB, vllm=False, llamacpp_gpu=False)
    assert plan.weights == "gguf" and "CPU build" in plan.reason


# --- the commands, for a Llama-3-8B-shaped run (no weights) -------------------------------------------------------

@pytest.fixture(scope="module")
def llama_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a rank-16 LoRA on Meta-Llama-3-8B-Instruct, with an export holding f16 and q4_k_m GGUFs."""
    run = tmp_path_factory.mktemp("runs") / "llama3-8b-config-a"
    (run / "adapter").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    (run / "export").mkdir()
    (run / "run.json").write_text(json.dumps({"base_model": LLAMA3_8B, "quantization": "nf4"}))
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 16, "lora_alpha": 16, "base_model_name_or_path": LLAMA3_8B,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}))
    (run / "tokenizer" / "tokenizer_config.json").write_text("{}")
    files = {}
    for quant in ("f16", "q4_k_m"):
        gguf = run / "export" / f"llama3-8b-config-a-{quant}.gguf"
        gguf.write_bytes(b"GGUF")
        files[gguf.name] = 4
    (run / "export" / "export.json").write_text(json.dumps({"files": files, "gguf": str(gguf),
                                                            "verify": {"passed": True, "failures": []}}))
    return run


_facts = cache(engine.model_facts)  # the real function, counted once per model (an 8B on the meta device)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Pretend this machine has ``gpu`` (GiB, native bf16 or not), vLLM and bitsandbytes (or not)."""

    def pretend(gpu_gib: float | None, *, vllm: bool, bf16: bool = True, bitsandbytes: bool = True) -> None:
        gpu = None if gpu_gib is None else Gpu("fake", (8, 0) if bf16 else (7, 5), int(gpu_gib * GIB),
                                                int(gpu_gib * GIB), 1)
        monkeypatch.setattr("medtune.doctor.gpu_info", lambda: gpu)
        monkeypatch.setattr(engine, "vllm_installed", lambda: vllm)
        monkeypatch.setattr(engine, "_llamacpp_gpu", lambda gpu: True)  # a CUDA build of llama.cpp
        monkeypatch.setattr(engine, "model_facts", _facts)
        monkeypatch.setattr("medtune.devices.bf16_supported", lambda: bf16)
        monkeypatch.setattr("medtune.devices.bitsandbytes_problem",
                            lambda: None if bitsandbytes else "is not installed")

    return pretend


def test_model_facts_read_the_base_size_from_its_config_without_weights(llama_run: Path) -> None:
    facts = engine.model_facts(str(llama_run))
    assert facts.is_adapter and facts.base == LLAMA3_8B and facts.adapter == llama_run / "adapter"
    assert facts.params_b == pytest.approx(PARAMS_B) and facts.unquantized_b == pytest.approx(EMBEDDINGS_B)
    assert (facts.n_layers, facts.lora_rank, facts.lora_problem) == (LAYERS, 16, None)
    assert facts.tokenizer == llama_run / "tokenizer"


def test_vllm_lora_command_on_an_h100(llama_run: Path, machine) -> None:
    machine(H100_GIB, vllm=True)
    lines: list[str] = []
    command = engine.serve_command(str(llama_run), "127.0.0.1", 8001, 2048, log=lines.append)
    alias = llama_run.name
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == LLAMA3_8B  # the base, not a merged copy
    assert "--enable-lora" in command and command[command.index("--max-lora-rank") + 1] == "16"
    assert command[command.index("--lora-modules") + 1] == f"{alias}={llama_run / 'adapter'}"
    assert command[command.index("--tokenizer") + 1] == str(llama_run / "tokenizer")
    assert command[command.index("--served-model-name") + 1] == f"{alias}-base"  # requests for ALIAS get the adapter
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.9"
    assert "--quantization" not in command and "--dtype" not in command
    assert len(lines) == 1 and lines[0].startswith("engine choice: vLLM, fp16 base + LoRA adapter")


def test_vllm_lora_command_on_a_t4_is_4bit(llama_run: Path, machine) -> None:
    machine(T4_GIB, vllm=True, bf16=False)
    lines: list[str] = []
    command = engine.serve_command(str(llama_run), log=lines.append)
    assert command[command.index("--quantization") + 1] == "bitsandbytes"
    assert "--enable-lora" in command and command[command.index("--model") + 1] == LLAMA3_8B
    assert command[command.index("--dtype") + 1] == "float16"  # a T4 has no bf16
    assert "4-bit bitsandbytes base + LoRA adapter" in lines[0]


def test_the_api_key_never_reaches_the_command_line(llama_run: Path, machine, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """The real launch path up to the switch: run_guarded_server's command and environment for the vLLM engine."""
    machine(H100_GIB, vllm=True)
    monkeypatch.setenv("MEDTUNE_HOME", str(tmp_path))
    monkeypatch.setattr(engine, "served_guard", lambda model, config=None: None)
    launched: dict[str, Any] = {}

    class Launched(Exception):
        pass

    def fake_start(command: list[str], env: dict[str, str], log_path: Path) -> None:
        launched.update(command=command, env=env, log_path=log_path)
        raise Launched

    monkeypatch.setattr("medtune.children.start_child", fake_start)
    with pytest.raises(Launched):
        engine.run_guarded_server(str(llama_run), port=18000, log=lambda line: None)
    key = launched["env"]["VLLM_API_KEY"]
    assert len(key) >= 32 and "--enable-lora" in launched["command"]
    assert not any(key in part for part in launched["command"]) and "--api-key" not in launched["command"]
    assert str(launched["log_path"]).startswith(str(tmp_path))


def test_llamacpp_on_a_16gb_gpu_serves_the_exported_q4_k_m(llama_run: Path, machine) -> None:
    machine(T4_GIB, vllm=False)
    lines: list[str] = []
    command = engine.serve_command(str(llama_run), log=lines.append)
    assert command[command.index("--model") + 1] == str(llama_run / "export" / "llama3-8b-config-a-q4_k_m.gguf")
    assert command[command.index("--n_gpu_layers") + 1] == "-1"
    assert "q4_k_m GGUF" in lines[0]


def test_llamacpp_on_an_h100_serves_the_exported_f16(llama_run: Path, machine) -> None:
    machine(H100_GIB, vllm=False)
    command = engine.serve_command(str(llama_run), engine="llamacpp", log=lambda line: None)
    assert command[command.index("--model") + 1] == str(llama_run / "export" / "llama3-8b-config-a-f16.gguf")


def test_the_cpu_path_is_unchanged(llama_run: Path, machine) -> None:
    """Without a GPU: the GGUF find_gguf finds (export.json's), as before the choice existed, whatever is installed."""
    from medtune.inference.llamacpp_backend import find_gguf

    for vllm in (True, False):
        machine(None, vllm=vllm)
        lines: list[str] = []
        command = engine.serve_command(str(llama_run), "127.0.0.1", 8001, 2048, log=lines.append)
        assert command == engine.llamacpp_server_command(find_gguf(str(llama_run)), "127.0.0.1", 8001, 2048,
                                                         model_alias=llama_run.name)
        assert command[command.index("--n_gpu_layers") + 1] == "0"
        assert "on the CPU (no CUDA GPU)" in lines[0]
    with pytest.raises(UserError, match="needs vLLM and a CUDA GPU"):
        engine.serve_command(str(llama_run), engine="vllm")


def test_dry_run_prints_the_reason_and_the_command(llama_run: Path, machine) -> None:
    from typer.testing import CliRunner

    from medtune.cli import get_app

    machine(T4_GIB, vllm=True)
    result = CliRunner().invoke(get_app(), ["serve", str(llama_run), "--dry-run"])
    assert result.exit_code == 0, result.output
    reason = next(line for line in result.output.splitlines() if line.startswith("engine choice: "))
    assert reason.startswith("engine choice: vLLM, 4-bit bitsandbytes") and reason.endswith("16-bit)")  # one line
    command = "".join(result.output.split(reason, 1)[1].split())  # rich may fold the command at the console width
    assert "vllm.entrypoints.openai.api_server" in command and "--quantizationbitsandbytes" in command
    machine(T4_GIB, vllm=True)
    result = CliRunner().invoke(get_app(), ["serve", str(llama_run), "--dry-run", "--engine", "llamacpp"])
    assert "engine choice: chosen by --engine: llama.cpp, q4_k_m GGUF" in result.output
