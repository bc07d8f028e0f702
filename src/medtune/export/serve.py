"""``medtune serve``: an OpenAI-compatible server for a model, run by llama-cpp-python (or vLLM on a GPU).

medtune has no HTTP server of its own: it builds the command of an existing server and runs it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from medtune.errors import UserError


def vllm_available() -> bool:
    """True when vLLM is installed and a CUDA GPU is present."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def llamacpp_server_command(gguf: Path, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048,
                            model_alias: str | None = None) -> list[str]:
    """The ``python -m llama_cpp.server`` command serving ``gguf`` on ``host:port``."""
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host, "--port", str(port),
           "--n_ctx", str(n_ctx)]
    if model_alias:
        cmd += ["--model_alias", model_alias]
    return cmd


def vllm_server_command(hf_dir: Path, host: str, port: int, n_ctx: int) -> list[str]:
    """The vLLM OpenAI server command for an HF folder."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir), "--host", host,
            "--port", str(port), "--max-model-len", str(n_ctx)]


def serve_command(model: str, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 2048,
                  engine: str = "auto", quant: str = "q4_k_m") -> list[str]:
    """Return the server command for ``model``; runs/HF folders are exported to GGUF first (llama.cpp).

    Raises:
        UserError: for an unknown engine or vLLM requested without a GPU.
    """
    from medtune.inference.llamacpp_backend import find_gguf

    if engine not in ("auto", "llamacpp", "vllm"):
        raise UserError(f"--engine {engine}: choose auto, llamacpp or vllm")
    use_vllm = engine == "vllm" or (engine == "auto" and vllm_available())
    if use_vllm:
        if not vllm_available():
            raise UserError("--engine vllm needs vLLM and a CUDA GPU; use --engine llamacpp.")
        from medtune.export.pipeline import _resolve_source, merge_adapter

        source, is_adapter = _resolve_source(model)
        hf_dir = merge_adapter(source, source / "export" / "merged") if is_adapter else source
        return vllm_server_command(hf_dir, host, port, n_ctx)
    try:
        gguf = find_gguf(model)
    except UserError:
        from medtune.export.pipeline import export_model

        gguf = Path(export_model(model, quant=quant, verify=False)["gguf"])
    return llamacpp_server_command(gguf, host, port, n_ctx, model_alias=Path(model).name or model)
