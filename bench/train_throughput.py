"""Training throughput on the CPU: medtune's default against the HF Trainer as a user writes it and TRL's defaults.

Three setups train the same LoRA adapter on the same rows for the same number of optimizer steps:

  (a) ``trainer``: ``transformers.Trainer`` as a user writes it: each row tokenized with labels -100 on the prompt,
      ``DataCollatorForSeq2Seq`` padding every batch to its longest row, no gradient checkpointing (the Trainer's
      default);
  (b) ``trl``: TRL's ``SFTTrainer`` on a conversational prompt/completion dataset with ``SFTConfig``'s defaults
      (TRL 1.x: ``completion_only_loss=None`` = loss on the completion for prompt/completion data,
      ``padding_free=False``, ``packing=False``, ``max_length=1024``, ``gradient_checkpointing=True``), except
      ``bf16``: TRL turns it on by default, which a CPU without native bf16 emulates (~5.6 real tokens/s
      measured here by the earlier version of this bench), so (b) trains in fp32 like the others;
  medtune: ``medtune.train.trainer.train_recipe`` with the shipped CPU recipe (``smollm2-135m/demo``: padding-free
      batches, answer-only loss, no gradient checkpointing) and the device policy's choices, which its JSON records
      (``medtune_setup``: batching, attention, loss head; on a CPU per-sequence SDPA over the padding-free row and
      the output head at answer positions only, see :mod:`medtune.attention` and :mod:`medtune.train.answer_loss`).

Shared by all three, from the demo recipe: SmolLM2-135M-Instruct in fp32, LoRA (r=16, alpha=32, all linear
layers, same seed so the same initial adapter), batch 4, AdamW, learning rate 1e-3 with cosine decay and 5%
warmup, seed 42. Rows: a seeded random sample of the prepared demo data (MedQuAD rendered with the run's served
system prompt), only rows within ``model.max_seq_length`` tokens so no setup drops or truncates one; the train
sample is exactly ``steps x batch`` rows, so each setup sees every row once, in the same order (the Trainer's
sampler seeded alike). Validation loss: one function (:func:`validation_loss`) loads each saved adapter on the
base and averages cross-entropy over the answer tokens of the same held-out validation rows, one row at a time.

Runs alternate (default order ``a,medtune,b,medtune``); medtune's figures are the mean of its runs and both runs
are printed. ``packing`` (not in the default order) is medtune with ``train.packing: true`` (BFD rows of
``max_seq_length``). Real tokens are the non-pad tokens fed to the model; ``pad_fraction`` = pad / all token
positions. FLOPs per row of ``l`` tokens: ``(4 x base matmul params + 6 x LoRA params) x l`` (forward + activation gradients
through the frozen base, forward + both gradients for the adapters; embedding lookups excluded, the tied
``lm_head`` counted) plus attention ``6 x layers x heads x head_dim x l (l + 1)`` (QK^T and AV over the causal
triangle, x3 for backward); gradient-checkpointing recomputation is not counted (model FLOPs). MFU is given only
on a CPU without native bf16 (no ``avx512_bf16``/``amx_bf16`` in /proc/cpuinfo), where fp32 is the training
precision and the peak: the best of repeated 2048x2048 fp32 matmuls on all torch threads, measured before and
after the runs. Elsewhere MFU is left out. Prints one JSON line.

    python bench/train_throughput.py [--steps 30] [--val 32] [--order a,medtune,b,medtune]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "smollm2-135m" / "demo.yaml"
IGNORE_INDEX = -100


def log(message: str) -> None:
    """Progress on stderr (stdout carries the JSON line)."""
    print(f"train_throughput: {message}", file=sys.stderr, flush=True)


def bench_recipe(steps: int) -> Any:
    """The demo recipe trained for ``steps`` steps, without checkpoints or validation passes during training."""
    from medtune.config import load_recipe

    recipe = load_recipe(DEMO)
    train = recipe.train.model_copy(update={"max_steps": steps, "save_steps": 10**6, "eval_steps": None})
    return recipe.model_copy(update={"train": train})


def sample_rows(recipe: Any, tokenizer: Any, n_train: int, n_val: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Seeded samples of the prepared demo data's train and validation splits (rows within max_seq_length)."""
    from medtune.data.prepared import load_prepared
    from medtune.train.dataset import tokenize_pair
    from medtune.train.trainer import ensure_prepared

    splits = load_prepared(ensure_prepared(recipe))  # prepared once, then reused from MEDTUNE_HOME/prepared

    def fitting(split: Any) -> list[dict]:
        rows = [dict(r) for r in split]
        return [r for r in rows if len(tokenize_pair(r["prompt"], r["completion"], tokenizer)["input_ids"])
                <= recipe.model.max_seq_length]

    train, val = fitting(splits["train"]), fitting(splits["validation"])
    if len(train) < n_train or len(val) < n_val:
        raise SystemExit(f"the prepared demo data has {len(train)} train / {len(val)} validation rows within "
                         f"{recipe.model.max_seq_length} tokens; lower --steps or --val")
    return random.Random(seed).sample(train, n_train), random.Random(seed + 1).sample(val, n_val)


class CountingCollator:
    """Wraps a data collator; records each row's length and the token positions of each batch it builds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lengths: list[int] = []
        self.positions = 0

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.inner(features)
        if "position_ids" in batch and "attention_mask" not in batch:  # flattened: a row starts at position 0
            flat = batch["position_ids"].reshape(-1).tolist()
            starts = [i for i, position in enumerate(flat) if position == 0] + [len(flat)]
            self.lengths += [end - start for start, end in zip(starts, starts[1:], strict=False)]
        else:
            self.lengths += [len(f["input_ids"]) for f in features]
        self.positions += int(batch["input_ids"].numel())
        return batch


def shared_arguments(recipe: Any, out: Path) -> dict[str, Any]:
    """Training arguments every setup shares (the demo recipe's optimisation settings)."""
    train = recipe.train
    return dict(output_dir=str(out), max_steps=train.max_steps, per_device_train_batch_size=train.batch_size,
                gradient_accumulation_steps=train.gradient_accumulation_steps, learning_rate=train.learning_rate,
                lr_scheduler_type=train.lr_scheduler, warmup_steps=train.warmup_steps or train.warmup_ratio,
                weight_decay=train.weight_decay, max_grad_norm=train.max_grad_norm, optim="adamw_torch",
                seed=train.seed, data_seed=train.seed, logging_steps=train.logging_steps, save_strategy="no",
                report_to="none", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
                include_num_input_tokens_seen="non_padding")


def lora_model(recipe: Any, model_dir: str) -> Any:
    """The base in fp32 wrapped with the recipe's LoRA, seeded as ``medtune train`` seeds it (same initial adapter)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from medtune.train.lora import peft_lora_config

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(recipe.train.seed)
    return get_peft_model(model, peft_lora_config(recipe.lora))


def train_plain_trainer(recipe: Any, model_dir: str, rows: list[dict], out: Path) -> dict[str, Any]:
    """(a) transformers.Trainer with labels -100 on the prompt and padding to the longest row of each batch."""
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def tokenize(row: dict) -> dict[str, list[int]]:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"]
        return {"input_ids": ids, "attention_mask": [1] * len(ids),
                "labels": [IGNORE_INDEX] * len(prompt) + ids[len(prompt):]}

    model = lora_model(recipe, model_dir)
    collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX))
    trainer = Trainer(model=model, args=TrainingArguments(**shared_arguments(recipe, out)),
                      train_dataset=Dataset.from_list([tokenize(r) for r in rows]), data_collator=collator)
    return timed_train(trainer, collator, out)


def train_trl_defaults(recipe: Any, model_dir: str, rows: list[dict], out: Path, system_prompt: str) -> dict[str, Any]:
    """(b) TRL's SFTTrainer with SFTConfig's defaults (bf16 off: see the module docstring)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = Dataset.from_list([{"prompt": [{"role": "system", "content": system_prompt},
                                          {"role": "user", "content": r["question"]}],
                               "completion": [{"role": "assistant", "content": r["answer"]}]} for r in rows])
    model = lora_model(recipe, model_dir)
    trainer = SFTTrainer(model=model, args=SFTConfig(**shared_arguments(recipe, out), bf16=False),
                         train_dataset=data, processing_class=tokenizer)
    collator = CountingCollator(trainer.data_collator)
    trainer.data_collator = collator
    result = timed_train(trainer, collator, out)
    result["trl_defaults"] = {key: getattr(trainer.args, key) for key in (
        "completion_only_loss", "padding_free", "packing", "max_length", "gradient_checkpointing")}
    return result


def timed_train(trainer: Any, collator: CountingCollator, out: Path) -> dict[str, Any]:
    """Train, save the adapter to ``out/adapter`` and return the counts (seconds around ``trainer.train()`` only)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints log dictionaries to stdout, which carries the JSON line
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(out / "adapter")
    return {"seconds": seconds, "steps": trainer.state.global_step, "lengths": collator.lengths,
            "positions": collator.positions, "tokens_seen": int(trainer.state.num_input_tokens_seen),
            "gradient_checkpointing": bool(trainer.args.gradient_checkpointing), "adapter": out / "adapter"}


def train_medtune(recipe: Any, rows: list[dict], out: Path) -> dict[str, Any]:
    """medtune's default: ``train_recipe`` on the rows' prompt/completion text (the run folder goes to ``out``)."""
    from datasets import Dataset

    from medtune.train import trainer as trainer_module

    counters: list[CountingCollator] = []
    build = trainer_module._build_trainer

    def counting_build(*args: Any, **kwargs: Any) -> Any:  # count what medtune's own trainer is fed
        trainer, stats = build(*args, **kwargs)
        counters.append(CountingCollator(trainer.data_collator))
        trainer.data_collator = counters[-1]
        return trainer, stats

    from medtune.paths import medtune_home

    home, cache = out / "home", medtune_home() / "cache"  # the run folder goes here; converted models are shared
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "cache").exists():
        (home / "cache").symlink_to(cache.resolve(), target_is_directory=True)
    previous = os.environ.get("MEDTUNE_HOME")
    os.environ["MEDTUNE_HOME"], trainer_module._build_trainer = str(home), counting_build
    try:
        data = Dataset.from_dict({"prompt": [r["prompt"] for r in rows], "completion": [r["completion"] for r in rows]})
        run = trainer_module.train_recipe(recipe, splits=(data, None))
    finally:
        trainer_module._build_trainer = build
        if previous is None:
            os.environ.pop("MEDTUNE_HOME", None)
        else:
            os.environ["MEDTUNE_HOME"] = previous
    summary, info = run.summary_data(), run.info()
    return {"seconds": summary["seconds"], "steps": summary["steps"], "lengths": counters[0].lengths,
            "positions": counters[0].positions, "tokens_seen": summary["tokens"],
            "gradient_checkpointing": recipe.train.gradient_checkpointing, "adapter": run.adapter,
            "medtune_setup": {key: info.get(key) for key in ("batching", "attention", "loss_head")}}


def validation_loss(model_dir: str, adapter: Path | None, examples: list[dict[str, list[int]]]) -> float:
    """Mean cross-entropy over the answer tokens of ``examples`` (one row at a time, no padding) for the base model
    with ``adapter`` (None: the base alone). The one loss every setup is scored with."""
    import torch
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for example in examples:
            ids, labels = torch.tensor([example["input_ids"]]), torch.tensor([example["labels"]])
            logits = model(input_ids=ids).logits[0, :-1].float()
            targets = labels[0, 1:]
            keep = targets != IGNORE_INDEX
            total += float(torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def model_shape(model_dir: str, recipe: Any) -> dict[str, int]:
    """Matmul parameters of the base (Linear layers incl. the tied lm_head), LoRA parameters, layers, attention width."""
    import torch

    model = lora_model(recipe, model_dir)
    base = model.get_base_model()
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    matmul = sum(m.weight.numel() for name, m in base.named_modules()
                 if isinstance(m, torch.nn.Linear) and "lora_" not in name)
    config = base.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {"base_matmul_params": matmul, "lora_params": lora, "layers": config.num_hidden_layers,
            "attention_width": config.num_attention_heads * head_dim}


def training_flops(lengths: list[int], shape: dict[str, int]) -> float:
    """Model FLOPs of one training pass over rows of ``lengths`` tokens (see the module docstring)."""
    per_token = 4 * shape["base_matmul_params"] + 6 * shape["lora_params"]
    attention = 6 * shape["layers"] * shape["attention_width"]
    return float(sum(per_token * n + attention * n * (n + 1) for n in lengths))


def native_bf16() -> bool | None:
    """True when /proc/cpuinfo lists a native bf16 instruction set (avx512_bf16, amx_bf16, aarch64 bf16); None when
    unknown."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith(("flags", "Features"))), "")
    except OSError:
        return None
    if not flags:
        return None
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags.split(":", 1)[-1].split()))


def fp32_matmul_peak(size: int = 2048, reps: int = 8) -> float:
    """Best FLOP/s of single 2048x2048 fp32 matmuls on all torch threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def describe(result: dict[str, Any], val_loss: float, flops: float, peak: float | None) -> dict[str, Any]:
    """The printed figures of one run."""
    real = sum(result["lengths"])
    line = {"real_tokens_per_s": round(real / result["seconds"], 1), "wall_s": round(result["seconds"], 1),
            "steps": result["steps"], "real_tokens": real, "token_positions": result["positions"],
            "pad_fraction": round(1 - real / result["positions"], 4), "val_loss": round(val_loss, 4),
            "gradient_checkpointing": result["gradient_checkpointing"],
            "achieved_gflops": round(flops / result["seconds"] / 1e9, 2)}
    if peak:
        line["mfu"] = round(flops / result["seconds"] / peak, 4)
    for key in ("trl_defaults", "medtune_setup"):  # what each setup ran with
        if key in result:
            line[key] = result[key]
    return line


def main() -> None:
    """Run the setups in the given order and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="Optimizer steps per setup (rows = steps x batch).")
    parser.add_argument("--val", type=int, default=32, help="Held-out validation rows.")
    parser.add_argument("--order", default="a,medtune,b,medtune",
                        help="Run order (a, b, medtune, packing; repeats allowed).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the row samples.")
    parser.add_argument("--out", type=Path, default=Path("/tmp/medtune-train-throughput"))
    args = parser.parse_args()
    order = [name.strip() for name in args.order.split(",")]
    if not set(order) <= {"a", "b", "medtune", "packing"} or "medtune" not in order:
        parser.error("--order takes a, b, medtune and packing (medtune at least once)")
    import torch

    from medtune.models import load_tokenizer, resolve_model_path
    from medtune.prompts import training_system_prompt
    from medtune.train.dataset import tokenize_pair

    load_start = os.getloadavg()[0]
    recipe = bench_recipe(args.steps)
    model_dir = str(resolve_model_path(recipe.model.name))
    tokenizer = load_tokenizer(recipe.model.name)
    rows, val_rows = sample_rows(recipe, tokenizer, args.steps * recipe.train.batch_size, args.val, args.seed)
    system_prompt = training_system_prompt(recipe.data.system_prompt) or ""
    assert all(r["prompt"].count(system_prompt) == 1 for r in rows), "rows were not rendered with the run's prompt"
    val = [tokenize_pair(r["prompt"], r["completion"], tokenizer) for r in val_rows]
    bf16 = native_bf16()
    peaks = [fp32_matmul_peak()] if bf16 is False else []
    shape = model_shape(model_dir, recipe)
    log("validation loss of the base model (also warms up the kernels)")
    base_loss = validation_loss(model_dir, None, val)
    runs: list[tuple[str, dict[str, Any]]] = []
    for index, name in enumerate(order):
        out = args.out / f"{index}-{name}"
        log(f"run {index + 1}/{len(order)}: {name}")
        if name == "a":
            result = train_plain_trainer(recipe, model_dir, rows, out)
        elif name == "b":
            result = train_trl_defaults(recipe, model_dir, rows, out, system_prompt)
        elif name == "packing":
            packed = recipe.train.model_copy(update={"packing": True})
            result = train_medtune(recipe.model_copy(update={"train": packed}), rows, out)
        else:
            result = train_medtune(recipe, rows, out)
        result["val_loss"] = validation_loss(model_dir, result["adapter"], val)
        log(f"{name}: {sum(result['lengths'])} real tokens in {result['seconds']:.1f} s, val loss {result['val_loss']:.4f}")
        runs.append((name, result))
    if bf16 is False:
        peaks.append(fp32_matmul_peak())
    peak = max(peaks) if peaks else None
    setups = {f"{index}-{name}": describe(result, result["val_loss"], training_flops(result["lengths"], shape), peak)
              for index, (name, result) in enumerate(runs)}
    rate = {name: [s["real_tokens_per_s"] for key, s in setups.items() if key.split("-", 1)[1] == name]
            for name in set(order)}
    mean = {name: sum(values) / len(values) for name, values in rate.items()}
    line: dict[str, Any] = {
        "bench": "train_throughput", "model": recipe.model.name, "recipe": "smollm2-135m/demo",
        "rows": len(rows), "val_rows": len(val), "steps": args.steps, "batch": recipe.train.batch_size,
        "lora": f"r={recipe.lora.r} alpha={recipe.lora.alpha} {recipe.lora.target_modules}", "order": order,
        "threads": torch.get_num_threads(), "load_avg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "native_bf16": bf16,
        "fp32_peak_gflops": round(peak / 1e9, 1) if peak else None,
        "mfu_note": ("MFU vs the measured fp32 matmul peak (this CPU has no native bf16; training is fp32)"
                     if peak else "MFU omitted: the CPU has native bf16 or its flags are unknown"),
        "flops_per_row": "(4 x base matmul + 6 x LoRA params) x l + 6 x layers x attention width x l (l + 1)",
        "shape": shape, "base_val_loss": round(base_loss, 4), "setups": setups,
        "real_tokens_per_s": {name: round(value, 1) for name, value in mean.items()},
    }
    line["same_rows"] = len({tuple(sorted(result["lengths"])) for _, result in runs}) == 1  # token lengths agree
    if "a" in mean:
        line["ratio_medtune_vs_a"] = round(mean["medtune"] / mean["a"], 2)
    if "b" in mean:
        line["ratio_medtune_vs_b"] = round(mean["medtune"] / mean["b"], 2)
    if "packing" in mean:
        line["ratio_medtune_vs_packing"] = round(mean["medtune"] / mean["packing"], 2)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
