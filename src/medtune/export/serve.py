"""``medtune serve``: an OpenAI-compatible server for a model, run by llama-cpp-python (or vLLM on a GPU).

medtune has no HTTP server of its own: it builds the command of an existing server and runs it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from medtune.errors import UserError


def vllm_available() -> bool:
    """True when vLLM is installed and a CUDA GPU is present."""
    from medtune.devices import cuda_available

    return importlib.util.find_spec("vllm") is not None and cuda_available()


def llamacpp_server_command(gguf: Path, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048,
                            model_alias: str | None = None) -> list[str]:
    """The ``python -m llama_cpp.server`` command serving ``gguf`` on ``host:port`` (all layers on the GPU
    when CUDA is present)."""
    from medtune.devices import llama_gpu_layers

    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host, "--port", str(port),
           "--n_ctx", str(n_ctx), "--n_gpu_layers", str(llama_gpu_layers())]
    if model_alias:
        cmd += ["--model_alias", model_alias]
    return cmd


def vllm_server_command(hf_dir: Path, host: str, port: int, n_ctx: int) -> list[str]:
    """The vLLM OpenAI server command for an HF folder."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir), "--host", host,
            "--port", str(port), "--max-model-len", str(n_ctx)]


def serve_command(model: str, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048,
                  engine: str = "auto", quant: str = "q4_k_m") -> list[str]:
    """Return the server command for ``model``; runs/HF folders are exported to GGUF first (llama.cpp), checks
    included.

    Raises:
        ExportCheckError: when the model's export failed (or fails) its checks.
        UserError: for an unknown engine or vLLM requested without a GPU.
    """
    from medtune.inference.llamacpp_backend import find_gguf

    if engine not in ("auto", "llamacpp", "vllm"):
        raise UserError(f"--engine {engine}: choose auto, llamacpp or vllm")
    use_vllm = engine == "vllm" or (engine == "auto" and vllm_available())
    if use_vllm:
        if not vllm_available():
            raise UserError("--engine vllm needs vLLM and a CUDA GPU; use --engine llamacpp.")
        from medtune.export.pipeline import _resolve_source, merged_folder

        source, is_adapter = _resolve_source(model)
        hf_dir = merged_folder(source, source / "export" / "merged") if is_adapter else source
        return vllm_server_command(hf_dir, host, port, n_ctx)
    from medtune.export.checks import ExportCheckError

    try:
        gguf = find_gguf(model)
    except ExportCheckError:
        raise  # an export that failed its check is not served
    except UserError:
        from medtune.export.pipeline import export_model

        gguf = Path(export_model(model, quant=quant)["gguf"])  # with its checks
    return llamacpp_server_command(gguf, host, port, n_ctx, model_alias=Path(model).name or model)


def wait_until_ready(url: str, process: Any = None, timeout: float = 180.0) -> None:
    """Poll ``url`` (an engine's ``/v1/models``) until it answers 200.

    Raises:
        UserError: when the engine exits or does not answer within ``timeout`` seconds.
    """
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise UserError(f"the engine exited with code {process.returncode} before serving; run the printed "
                            "command by hand to see its error.")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise UserError(f"the engine did not answer at {url} within {timeout:.0f} s; check the model and the port.")


def served_guard(model: str, guard_config: str | None = None) -> Any:
    """The server's guard, its system prompt the one ``model`` trained with (one prompt from training to serving;
    :func:`medtune.prompts.served_system_prompt`)."""
    from medtune.guard import Guard
    from medtune.prompts import served_system_prompt

    guard = Guard.from_yaml(guard_config) if guard_config else Guard()
    guard.system_prompt = served_system_prompt(model)
    return guard


def run_guarded_server(model: str, host: str = "127.0.0.1", port: int = 8000, engine_port: int | None = None,
                       n_ctx: int = 2048, engine: str = "auto", upstream: str | None = None,
                       api_key: str | None = None, guard_config: str | None = None,
                       log: Any = print) -> None:
    """Start the engine on 127.0.0.1:``engine_port`` (unless ``upstream`` is given), then the guarded server."""
    import subprocess

    import uvicorn

    from medtune.inference.server import create_app

    guard = served_guard(model, guard_config)
    process = None
    if upstream is None:
        engine_port = engine_port or port + 1
        command = serve_command(model, "127.0.0.1", engine_port, n_ctx, engine)
        log("engine: " + " ".join(command))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        upstream = f"http://127.0.0.1:{engine_port}/v1"
    try:
        wait_until_ready(f"{upstream.rstrip('/')}/models", process)
        log(f"guarded server: http://{host}:{port}/v1 -> {upstream} (Ctrl-C stops)")
        app = create_app(upstream, guard, api_key=api_key, model_name=Path(model).name or model)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
