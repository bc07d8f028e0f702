"""``medtune serve``: an OpenAI-compatible engine for a model (llama-cpp-python, or vLLM on a GPU), started as a
sealed, supervised child of the guarded proxy (:mod:`medtune.serve.server`).

Sealed: the engine listens on 127.0.0.1 and requires a random key made for this run, passed through its
environment (not its command line, which every local user can read); only the proxy knows it. Supervised: the
engine runs in its own process group, gets SIGTERM when ``medtune serve`` dies (Linux parent-death signal),
is stopped with its group on SIGTERM/SIGINT/exit, and writes its log to ``MEDTUNE_HOME/logs/``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.serve.plan import ENGINES, GPU_MEMORY_UTILIZATION, ServingPlan, choose_for_gguf, choose_serving


def vllm_installed() -> bool:
    """True when vLLM can be imported (found without importing it: its import initialises CUDA)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_available() -> bool:
    """True when vLLM is installed and a CUDA GPU is present."""
    from medtune.devices import cuda_available

    return vllm_installed() and cuda_available()


def llamacpp_server_command(gguf: Path, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048,
                            model_alias: str | None = None, n_gpu_layers: int | None = None) -> list[str]:
    """The ``python -m llama_cpp.server`` command serving ``gguf`` on ``host:port``; ``n_gpu_layers`` None puts all
    layers on the GPU when CUDA is present."""
    from medtune.devices import llama_gpu_layers

    layers = llama_gpu_layers() if n_gpu_layers is None else n_gpu_layers
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host, "--port", str(port),
           "--n_ctx", str(n_ctx), "--n_gpu_layers", str(layers)]
    if model_alias:
        cmd += ["--model_alias", model_alias]
    return cmd


def vllm_server_command(hf_dir: Path | str, host: str, port: int, n_ctx: int, *, served_name: str | None = None,
                        extra: Sequence[str] = ()) -> list[str]:
    """The vLLM OpenAI server command for an HF folder (or hub id), served as ``served_name``, plus ``extra`` flags.
    The API key is never an argument (the environment's ``VLLM_API_KEY``, :func:`engine_environment`)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir), "--host", host,
           "--port", str(port), "--max-model-len", str(n_ctx)]
    if served_name:
        cmd += ["--served-model-name", served_name]
    return cmd + list(extra)


@dataclass(frozen=True)
class ModelFacts:
    """What the engine choice needs to know about a model, read from configs (no weights loaded)."""

    source: Path  # the run/adapter folder, or the model's HF folder
    is_adapter: bool
    base: str  # what vLLM loads for LoRA serving: the base's HF folder or hub id (the model folder itself otherwise)
    adapter: Path | None = None
    tokenizer: Path | None = None  # a run's own tokenizer folder (its pad token and chat template)
    params_b: float | None = None  # parameters of the (base) model, billions
    unquantized_b: float = 0.0  # of which token embeddings + LM head (16-bit under bitsandbytes)
    n_layers: int | None = None
    lora_rank: int | None = None
    lora_problem: str | None = None  # why vLLM cannot serve the adapter as LoRA


def adapter_lora_facts(adapter: Path) -> tuple[int | None, str | None]:
    """``(rank, problem)`` of a PEFT adapter folder: its largest rank, and why vLLM cannot serve it as LoRA (a DoRA
    adapter, or whole modules saved beside the LoRA weights: resized embeddings / LM head, known trap #16)."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    rank = max(ranks) or None
    if config.get("use_dora"):
        return rank, "a DoRA adapter"
    saved = config.get("modules_to_save") or []
    weights = adapter / "adapter_model.safetensors"
    if not saved and weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            names = list(handle.keys())  # the header only: no tensor is read
        saved = sorted({part for key in names for part in ("embed_tokens", "lm_head") if part in key})
    if saved:
        return rank, f"it saves whole modules beside the LoRA weights ({', '.join(saved)})"
    return rank, None


def model_facts(model: str) -> ModelFacts:
    """Size, layers and adapter of ``model`` (run, adapter folder, HF folder or alias) from its configs: parameters
    counted on the meta device by :func:`medtune.train.planning.count_parameters` (the base's, for an adapter)."""
    from medtune.config import LoraConfig
    from medtune.export.pipeline import export_source
    from medtune.models import resolve_model_path
    from medtune.served_model import adapter_dir, served_model
    from medtune.train.planning import count_parameters, load_model_config

    source, is_adapter = export_source(model)
    facts = ModelFacts(source, is_adapter, str(source))
    name, gguf_file, trust = str(source), None, False
    if is_adapter:
        record = served_model(source)  # an adapter here: export_source applies the record's own adapter rule
        name, gguf_file, trust = record.base_model, record.gguf_file, record.trust_remote_code
        adapter = record.adapter or adapter_dir(source)
        rank, problem = adapter_lora_facts(adapter)
        tokenizer = source / "tokenizer"
        facts = replace(facts, base=str(resolve_model_path(name, gguf_file)), adapter=adapter,
                        tokenizer=tokenizer if (tokenizer / "tokenizer_config.json").is_file() else None,
                        lora_rank=rank, lora_problem=problem)
    try:
        config = load_model_config(name, gguf_file, trust_remote_code=trust)
        trainable, total = count_parameters(config, LoraConfig.model_validate({"target_modules": "attention"}),
                                            trust_remote_code=trust)
    except (OSError, ValueError, KeyError, TypeError, ImportError, UserError):
        return facts  # size unknown: the choice says so
    embeddings = getattr(config, "vocab_size", 0) * getattr(config, "hidden_size", 0)
    heads = 1 if getattr(config, "tie_word_embeddings", False) else 2
    return replace(facts, params_b=(total - trainable) / 1e9, unquantized_b=embeddings * heads / 1e9,
                   n_layers=getattr(config, "num_hidden_layers", None))


def _given_gguf(model: str) -> Path | None:
    """The GGUF file ``model`` names directly (a .gguf path or a built-in alias), else None."""
    from medtune.models import BUILTIN_MODELS, builtin_gguf_path

    if model in BUILTIN_MODELS:
        return builtin_gguf_path(model)
    path = Path(model).expanduser()
    return path if path.is_file() and path.suffix == ".gguf" else None


def _llamacpp_gpu(gpu: Any) -> bool:
    """False only when llama.cpp loads and reports a CPU build (``medtune doctor``'s check)."""
    from medtune.doctor import MISSING, check_llama_cpp

    return not any(row.name == "llama.cpp GPU offload" and row.status == MISSING for row in check_llama_cpp(gpu))


def _model_gguf(model: str, quant: str) -> Path:
    """The GGUF behind ``model`` as before the engine choice: its export (or the file it names), else a new export
    at ``quant`` with its checks."""
    from medtune.export.checks import ExportCheckError
    from medtune.inference.llamacpp_backend import find_gguf

    try:
        return find_gguf(model)
    except ExportCheckError:
        raise  # an export that failed its check is not served
    except UserError:
        from medtune.export.pipeline import export_model

        return Path(export_model(model, quant=quant)["gguf"])  # with its checks


def _exported_gguf(model: str, facts: ModelFacts, quant: str) -> Path:
    """The ``quant`` GGUF of ``model``'s export (a file of its passed export.json), else a new ``quant`` export."""
    from medtune.export.checks import ExportCheckError
    from medtune.export.pipeline import default_export_dir, export_model
    from medtune.inference.llamacpp_backend import find_gguf

    folder = default_export_dir(str(facts.source) if facts.is_adapter else model)
    try:
        found: Path | None = find_gguf(str(folder))
    except ExportCheckError:
        raise  # an export that failed its check is not served
    except UserError:
        found = None
    if found is not None:
        report = found.parent / "export.json"
        names = [found.name, *(json.loads(report.read_text()).get("files", {}) if report.is_file() else {})]
        for name in names:
            if name.endswith(f"-{quant}.gguf") and (found.parent / name).is_file():
                return found.parent / name
    return Path(export_model(model, quant=quant)["gguf"])  # with its checks


def _vllm_command(plan: ServingPlan, facts: ModelFacts, host: str, port: int, n_ctx: int, alias: str) -> list[str]:
    """vLLM's command for ``plan``: the base + ``--enable-lora`` (the adapter served under ``alias``, the name the
    guarded proxy forwards), or the merged/plain model; ``--quantization bitsandbytes`` for 4-bit; fp16 on GPUs
    without bf16."""
    from medtune.devices import bf16_supported

    extra = ["--gpu-memory-utilization", f"{GPU_MEMORY_UTILIZATION:g}"]
    if not bf16_supported():
        extra += ["--dtype", "float16"]
    if plan.weights == "bnb-4bit":
        extra += ["--quantization", "bitsandbytes"]
    if plan.lora:
        extra += ["--enable-lora", "--lora-modules", f"{alias}={facts.adapter}",
                  "--max-lora-rank", str(plan.max_lora_rank or 16)]
        if facts.tokenizer is not None:
            extra += ["--tokenizer", str(facts.tokenizer)]
        return vllm_server_command(facts.base, host, port, n_ctx, served_name=f"{alias}-base", extra=extra)
    hf_dir: Path | str = facts.base
    if facts.is_adapter:
        from medtune.export.pipeline import merged_folder

        hf_dir = merged_folder(facts.source, facts.source / "export" / "merged")
    return vllm_server_command(hf_dir, host, port, n_ctx, served_name=alias, extra=extra)


def plan_serving(model: str, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048, engine: str = "auto",
                 quant: str = "q4_k_m") -> tuple[ServingPlan, list[str]]:
    """Choose the engine configuration for ``model`` on this machine (:func:`medtune.serve.plan.choose_serving`)
    and build its command. Without a GPU: llama.cpp with the model's GGUF (its export, else a new ``quant`` export).

    Raises:
        ExportCheckError: when the model's export failed (or fails) its checks.
        UserError: for an unknown engine or vLLM requested without vLLM and a GPU.
    """
    from medtune.devices import bitsandbytes_problem
    from medtune.doctor import GIB, gpu_info

    if engine not in ENGINES:
        raise UserError(f"--engine {engine}: choose auto, llamacpp or vllm")
    vllm, alias = vllm_installed(), Path(model).name or model
    gpu = gpu_info()
    if gpu is None:
        plan = choose_serving(None, None, vllm=vllm, is_adapter=False, engine=engine)
        return plan, llamacpp_server_command(_model_gguf(model, quant), host, port, n_ctx, model_alias=alias)
    llamacpp_gpu = _llamacpp_gpu(gpu)
    given = _given_gguf(model)
    if given is not None and not (engine == "vllm" or (engine == "auto" and vllm)):
        plan = choose_for_gguf(given.stat().st_size / GIB, gpu.total / GIB, llamacpp_gpu=llamacpp_gpu, engine=engine)
        return plan, llamacpp_server_command(given, host, port, n_ctx, model_alias=alias)
    facts = model_facts(model)
    plan = choose_serving(facts.params_b, gpu.total / GIB, vllm=vllm, is_adapter=facts.is_adapter,
                          lora_rank=facts.lora_rank, lora_problem=facts.lora_problem,
                          unquantized_b=facts.unquantized_b, bitsandbytes=bitsandbytes_problem() is None,
                          llamacpp_gpu=llamacpp_gpu, n_layers=facts.n_layers, engine=engine)
    if plan.engine == "vllm":
        return plan, _vllm_command(plan, facts, host, port, n_ctx, alias)
    gguf = _model_gguf(model, quant) if plan.weights == "gguf" else _exported_gguf(model, facts, plan.weights)
    return plan, llamacpp_server_command(gguf, host, port, n_ctx, model_alias=alias, n_gpu_layers=plan.n_gpu_layers)


def serve_command(model: str, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048,
                  engine: str = "auto", quant: str = "q4_k_m", log: Callable[[str], Any] | None = None) -> list[str]:
    """Return the engine command for ``model`` (:func:`plan_serving`) and say in one line (``log``, default stderr)
    which configuration was chosen and why. Runs/HF folders are exported to GGUF first for llama.cpp, checks
    included.

    Raises:
        ExportCheckError: when the model's export failed (or fails) its checks.
        UserError: for an unknown engine or vLLM requested without a GPU.
    """
    plan, command = plan_serving(model, host, port, n_ctx, engine, quant)
    (log or (lambda line: print(line, file=sys.stderr)))(f"engine choice: {plan.reason}")
    return command


def wait_until_ready(url: str, process: Any = None, timeout: float = 180.0, api_key: str | None = None,
                     log_path: Path | None = None) -> None:
    """Poll ``url`` (an engine's ``/v1/models``) until it answers 200.

    Raises:
        UserError: when the engine exits or does not answer within ``timeout`` seconds.
    """
    import time

    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    where = f"; its log: {log_path}" if log_path else "; run the printed command by hand to see its error"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise UserError(f"the engine exited with code {process.returncode} before serving{where}.")
        try:
            if httpx.get(url, timeout=2.0, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise UserError(f"the engine did not answer at {url} within {timeout:.0f} s; check the model and the "
                    f"port{where}.")


def served_guard(model: str, guard_config: str | None = None) -> Any:
    """The server's guard, its system prompt the one ``model`` trained with (one prompt from training to serving;
    :func:`medtune.prompts.served_system_prompt`)."""
    from medtune.guard import Guard
    from medtune.prompts import served_system_prompt

    guard = Guard.from_yaml(guard_config) if guard_config else Guard()
    guard.system_prompt = served_system_prompt(model)
    return guard


def engine_environment(command: list[str], key: str) -> dict[str, str]:
    """The engine's environment: ours plus its API key under the name its server reads (llama.cpp's settings
    read ``API_KEY``, vLLM reads ``VLLM_API_KEY``)."""
    import os

    name = "VLLM_API_KEY" if any("vllm" in part for part in command) else "API_KEY"
    return {**os.environ, name: key}


def engine_log_path() -> Path:
    """A new log file for one engine run, under ``MEDTUNE_HOME/logs/``."""
    import time

    from medtune.paths import medtune_home

    return medtune_home() / "logs" / f"engine-{time.strftime('%Y%m%d-%H%M%S')}.log"


def run_guarded_server(model: str, host: str = "127.0.0.1", port: int = 8000, engine_port: int | None = None,
                       n_ctx: int = 2048, engine: str = "auto", upstream: str | None = None,
                       api_key: str | None = None, guard_config: str | None = None,
                       log: Any = print, limits: Any = None) -> None:
    """Start the sealed engine on 127.0.0.1:``engine_port`` (unless ``upstream`` is given), then the guarded
    server; the engine is stopped however this returns (SIGTERM and SIGINT included)."""
    import secrets
    import signal

    import uvicorn

    from medtune.children import start_child, stop_child
    from medtune.serve.server import create_app

    def stop_on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    guard = served_guard(model, guard_config)
    process, engine_key, log_path = None, None, None
    try:
        if upstream is None:
            engine_port = engine_port or port + 1
            command = serve_command(model, "127.0.0.1", engine_port, n_ctx, engine, log=log)
            engine_key, log_path = secrets.token_urlsafe(32), engine_log_path()
            log("engine: " + " ".join(command))
            log(f"engine log: {log_path}")
            process = start_child(command, engine_environment(command, engine_key), log_path)
            upstream = f"http://127.0.0.1:{engine_port}/v1"
        wait_until_ready(f"{upstream.rstrip('/')}/models", process, api_key=engine_key, log_path=log_path)
        log(f"guarded server: http://{host}:{port}/v1 (Ctrl-C stops)")
        alive = (lambda: process.poll() is None) if process is not None else None
        app = create_app(upstream, guard, api_key=api_key, model_name=Path(model).name or model,
                         upstream_api_key=engine_key, limits=limits, engine_alive=alive,
                         engine_log=str(log_path) if log_path else None)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        stop_child(process)
        signal.signal(signal.SIGTERM, previous)
