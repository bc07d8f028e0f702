"""HF folder -> GGUF (llama.cpp's convert_hf_to_gguf.py) -> quantized GGUF, and llama.cpp's side of the checks.

llama.cpp's converter is not on PyPI: it is taken from the llama-cpp-python sdist (same version as the
installed package, so the GGUF format matches the runtime) by ``scripts/install.sh`` and kept in the environment
(``share/medtune/llama.cpp``; see :func:`converter_dir`).
Quantization uses llama.cpp's C API bound by llama-cpp-python (``llama_model_quantize``).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from medtune.errors import UserError
from medtune.paths import cache_dir

QUANTS = ("f16", "q8_0", "q4_k_m")
T = TypeVar("T")
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def llama_cpp_version() -> str:
    """Version of the installed llama-cpp-python."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise UserError("export needs llama-cpp-python: pip install 'medtune[serve]'") from None


def converter_locations(version: str) -> list[Path]:
    """Where llama.cpp's converter for llama-cpp-python ``version`` may be, in the order looked at.

    First the environment's own ``share/medtune/llama.cpp/<version>`` (placed there by ``scripts/install.sh``),
    then ``MEDTUNE_HOME/cache/llama.cpp/<version>`` (an earlier export's extraction, or an environment whose
    prefix is not writable).
    """
    return [Path(sys.prefix) / "share" / "medtune" / "llama.cpp" / version,
            cache_dir("llama.cpp") / version]


def find_converter() -> Path | None:
    """The folder holding llama.cpp's converter when it is already there (nothing is fetched), else None."""
    for folder in converter_locations(llama_cpp_version()):
        if (folder / "convert_hf_to_gguf.py").is_file():
            return folder
    return None


def converter_dir() -> Path:
    """Return a folder with llama.cpp's ``convert_hf_to_gguf.py`` (+ ``conversion/``, ``gguf-py/``).

    ``scripts/install.sh`` calls this once, so the converter is extracted at install time into the environment
    (:func:`converter_locations`) and an export never touches the network. Where it is absent (an environment the
    script did not set up) it is extracted here, once, from the llama-cpp-python sdist of the installed version
    (``pip download``), into the environment when it is writable, else into the medtune cache.
    """
    found = find_converter()
    if found is not None:
        return found
    version = llama_cpp_version()
    target = converter_locations(version)[0]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        target = converter_locations(version)[1]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={version}", "-d", tmp, "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise UserError(f"cannot fetch llama.cpp's converter (pip download llama-cpp-python=={version} "
                            f"failed: {done.stderr.strip()[-200:]}); rerun `bash scripts/install.sh` where PyPI "
                            "is reachable (it installs the converter).")
        partial = target.with_name(f"{version}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(sdists[0]) as archive:
            for member in archive.getmembers():
                rel = member.name.split("/vendor/llama.cpp/", 1)
                if len(rel) == 2 and rel[1].startswith(_CONVERTER_PARTS) and member.isfile():
                    member.name = rel[1]
                    archive.extract(member, partial, filter="data")
        partial.rename(target)
    return target


def convert_hf_to_gguf(hf_dir: Path, out_file: Path, outtype: str = "f16") -> Path:
    """Convert an HF folder to a GGUF file with llama.cpp's converter.

    Raises:
        UserError: when the converter fails (its last error line is shown).
    """
    script = converter_dir() / "convert_hf_to_gguf.py"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(script), str(hf_dir), "--outfile", str(out_file), "--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"})
    if done.returncode != 0 or not out_file.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{hf_dir}: llama.cpp conversion failed: {last}")
    return out_file


def run_in_child(function: Callable[..., T], *args: Any) -> T:
    """Run a llama.cpp call in a fresh ``spawn`` process and return its result.

    llama.cpp is native code loaded beside torch: a crash there (a segfault, an abort) would otherwise end the
    caller -- ``medtune export`` or a whole test session -- with no message. In a child it becomes one clear error.

    Raises:
        UserError: when the child dies; errors raised inside it (UserError included) are re-raised as they are.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(function, *args).result()
        except BrokenProcessPool:
            raise UserError(f"llama.cpp crashed in {function.__name__}({', '.join(map(str, args))[:200]}); "
                            f"reinstall llama-cpp-python (bash scripts/install.sh) and retry.") from None


def quantize_gguf(src: Path, dst: Path, quant: str, threads: int = 2) -> Path:
    """Quantize an f16 GGUF to ``q8_0`` or ``q4_k_m`` with llama.cpp's ``llama_model_quantize`` (in a child process).

    Raises:
        UserError: for an unknown quant type or a failed quantization.
    """
    if quant not in ("q8_0", "q4_k_m"):
        raise UserError(f"--quant {quant}: choose one of {', '.join(QUANTS)}")
    return run_in_child(_quantize_here, src, dst, quant, threads)


def _quantize_here(src: Path, dst: Path, quant: str, threads: int) -> Path:
    """Quantize in this process (see quantize_gguf)."""
    import llama_cpp

    ftypes = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0 or not dst.is_file():
        raise UserError(f"{src}: llama.cpp quantization to {quant} failed (status {status}).")
    return dst


def open_gguf(gguf_file: Path, n_ctx: int, *, logits_all: bool = False) -> Any:
    """Load a GGUF with llama.cpp on the CPU (one thread, seed 0: the export checks are deterministic)."""
    from llama_cpp import Llama

    return Llama(model_path=str(gguf_file), n_ctx=n_ctx, logits_all=logits_all, verbose=False, seed=0,
                 n_threads=1, n_gpu_layers=0)


def perplexity_llamacpp(gguf_file: Path, scored: list[tuple[list[int], list[int]]]) -> float:
    """Perplexity of llama.cpp on the answer tokens of ``(prompt ids, answer ids)`` pairs (child process)."""
    return run_in_child(_perplexity_here, gguf_file, scored)


def _perplexity_here(gguf_file: Path, scored: list[tuple[list[int], list[int]]]) -> float:
    """Perplexity in this process (see perplexity_llamacpp); prompts are not scored."""
    import numpy as np

    llm = open_gguf(gguf_file, max(len(p) + len(a) for p, a in scored) + 8, logits_all=True)
    nll: list[float] = []
    for prompt, answer in scored:
        llm.reset()
        llm.eval(prompt + answer)
        logits = np.asarray(llm.scores[len(prompt) - 1: len(prompt) + len(answer) - 1], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        nll.extend((log_norm - logits[np.arange(len(answer)), answer]).tolist())
    return float(np.exp(np.mean(nll)))
