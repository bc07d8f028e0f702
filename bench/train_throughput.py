"""Training throughput on CPU: the study's padded recipe vs TRL packing vs medtune's default.

Same SmolLM2-135M-Instruct, same MedQuAD examples (answers <= 1000 chars), LoRA r=8 on q/k/v/o, batch 4,
constant learning rate 5e-4, fp32:
  (a) baseline: pad to 512, transformers' DataCollatorForLanguageModeling, loss on all tokens, ``--steps`` steps;
  (b) TRL SFTTrainer, ``packing=True`` (BFD rows of 512) on the plain text (loss on all tokens), with bf16 turned
      off: TRL's default bf16 is emulated on CPUs without AVX512-BF16 (measured 5.6 real tokens/s here);
  (c) medtune's default (``medtune.train``): padding-free batches of 4 examples, completion-only loss.
(b) and (c) stop once they have seen as many real tokens as (a), so validation losses compare equal data.
Real tokens/s counts non-pad tokens. Validation loss = mean loss on answer tokens of held-out examples.
MFU = achieved FLOP/s on real tokens (4 x base params + 6 x LoRA params + attention per token) / measured bf16
matmul peak of this CPU (also vs the fp32 peak: CPUs without native bf16 emulate it slowly).
Prints one JSON line.

    python bench/train_throughput.py [--examples 1000] [--steps 40] [--modes a,b,c] [--seq 512]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def load_examples(n: int, n_val: int, tokenizer: Any) -> tuple[Any, Any]:
    """First MedQuAD pairs with answers (shuffled with a fixed seed), rendered as prompt/completion."""
    import random

    from medtune.config import SourceSpec
    from medtune.data.sources import load_source
    from medtune.train.dataset import rows_to_prompt_completion

    records = [
        r
        for r in load_source(SourceSpec(kind="medquad", path="medquad/MedQuAD_xml.tar.gz")).rows
        if 20 <= len(r["answer"]) <= 1000 and len(r["question"]) >= 10
    ]
    random.Random(0).shuffle(records)
    rows = [{"question": r["question"], "answer": r["answer"]} for r in records[: n + n_val]]
    return (rows_to_prompt_completion(rows[:n], tokenizer), rows_to_prompt_completion(rows[n:], tokenizer))


def matmul_peak_flops(dtype_name: str = "bfloat16", size: int = 1024, reps: int = 10) -> float:
    """Measured matmul FLOP/s on this CPU (all threads) in ``dtype_name``."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * size**3 * reps / (time.perf_counter() - start)


def answer_loss(model: Any, val_tok: Any) -> float:
    """Mean cross-entropy over answer tokens of the validation examples (one at a time, no padding)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in val_tok:
            ids = torch.tensor([example["input_ids"]])
            labels = torch.tensor([example["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels, use_cache=False).loss) * n
            count += n
    model.train()
    return total / count


def token_budget_callback(budget: int | None) -> Any:
    """A callback that stops training once ``budget`` real (non-pad) tokens have been seen."""
    from transformers import TrainerCallback

    class StopAtTokenBudget(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if budget is not None and state.num_input_tokens_seen >= budget:
                control.should_training_stop = True
            return control

    return StopAtTokenBudget()


def run_mode(
    mode: str,
    args: argparse.Namespace,
    train_raw: Any,
    val_tok: Any,
    bf16: bool = False,
    token_budget: int | None = None,
) -> dict[str, Any]:
    """Train one mode for ``args.steps`` steps, or until ``token_budget`` real tokens; return tokens/s, val loss."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from trl import SFTConfig, SFTTrainer

    from medtune.config import recipe_from_dict
    from medtune.train.dataset import tokenize_split
    from medtune.train.trainer import build_sft_config, load_model_for_training

    recipe = recipe_from_dict(
        {
            "name": "bench",
            "model": {"name": "smollm2-135m-instruct", "max_seq_length": args.seq},
            "lora": {"r": 8, "alpha": 16, "target_modules": "attention"},
            "train": {
                "batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_steps": args.steps,
                "logging_steps": 10,
                "gradient_checkpointing": False,
                "learning_rate": 5e-4,
                "save_steps": 100000,
            },
        }
    )
    model, tokenizer = load_model_for_training(recipe)
    out = f"/tmp/medtune-bench-{mode}"
    max_steps = args.steps if token_budget is None else 20 * args.steps
    common = dict(
        output_dir=out,
        max_steps=max_steps,
        lr_scheduler_type="constant",  # same learning rate at every step whatever the step count
        bf16=False,  # TRL's SFTConfig defaults to bf16, which this CPU emulates ~100x slower than fp32
        per_device_train_batch_size=4,
        learning_rate=5e-4,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        include_num_input_tokens_seen="non_padding",
        use_cpu=True,
    )
    if mode == "a":
        texts = [p + c for p, c in zip(train_raw["prompt"], train_raw["completion"], strict=True)]
        enc = tokenizer(
            texts, add_special_tokens=False, padding="max_length", truncation=True, max_length=512
        )
        from datasets import Dataset

        data = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        trainer: Any = Trainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=data,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        )
    elif mode == "b":
        from datasets import Dataset

        texts = [p + c for p, c in zip(train_raw["prompt"], train_raw["completion"], strict=True)]
        config = SFTConfig(**common, packing=True, max_length=args.seq)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_dict({"text": texts}),
            processing_class=tokenizer,
        )
    else:
        data, _ = tokenize_split(train_raw, tokenizer, args.seq)
        config = build_sft_config(
            recipe, __import__("pathlib").Path(out), max_steps=max_steps, has_eval=False, cuda=False
        )
        config.save_strategy = "no"
        config.lr_scheduler_type = "constant"
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    trainer.add_callback(token_budget_callback(token_budget))
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        trainer.train()
    seconds = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen)
    print(f"mode {mode}: {tokens} real tokens in {seconds:.1f}s", file=__import__("sys").stderr, flush=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "steps": trainer.state.global_step,
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "tokens": tokens,
        "val_loss": answer_loss(model, val_tok),
        "trainable": trainable,
        "base": total - trainable,
    }


def main() -> None:
    """Run the modes and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--val", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--modes", default="a,b,c")
    parser.add_argument("--bf16", action="store_true", help="Also time medtune with bf16 autocast.")
    args = parser.parse_args()
    from medtune.models import load_tokenizer
    from medtune.train.dataset import tokenize_split

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    train_raw, val_raw = load_examples(args.examples, args.val, tokenizer)
    val_tok, _ = tokenize_split(val_raw, tokenizer, args.seq)
    results: dict[str, dict[str, Any]] = {}
    budget = None
    for mode in args.modes.split(","):
        results[mode] = run_mode(mode, args, train_raw, val_tok, token_budget=budget)
        budget = budget or results[mode]["tokens"]  # later modes train on as many real tokens as the first
    if args.bf16 and "c" in results:
        results["c_bf16"] = run_mode("c", args, train_raw, val_tok, bf16=True, token_budget=budget)
    line: dict[str, Any] = {"examples": args.examples, "steps": args.steps}
    names = {"a": "baseline", "b": "trl_packing", "c": "medtune", "c_bf16": "medtune_bf16"}
    for key, res in results.items():
        line[f"{names[key]}_tokens_per_s"] = round(res["tokens_per_s"], 1)
        line[f"{names[key]}_val_loss"] = round(res["val_loss"], 4)
        line[f"{names[key]}_steps"] = res["steps"]
        line[f"{names[key]}_real_tokens"] = res["tokens"]
    if "a" in results and "c" in results:
        line["ratio"] = round(results["c"]["tokens_per_s"] / results["a"]["tokens_per_s"], 2)
    if "b" in results and "c" in results:
        line["ratio_vs_trl"] = round(results["c"]["tokens_per_s"] / results["b"]["tokens_per_s"], 2)
    if "c" in results:
        res = results["c"]
        flops_per_token = 4 * res["base"] + 6 * res["trainable"]
        achieved = res["tokens_per_s"] * flops_per_token
        bf16_peak, fp32_peak = matmul_peak_flops("bfloat16"), matmul_peak_flops("float32")
        line["mfu"] = round(achieved / bf16_peak, 4)  # as specified; >1 when this CPU emulates bf16
        line["mfu_vs_fp32_peak"] = round(achieved / fp32_peak, 4)
        line["achieved_gflops"] = round(achieved / 1e9, 2)
        line["bf16_peak_gflops"] = round(bf16_peak / 1e9, 2)
        line["fp32_peak_gflops"] = round(fp32_peak / 1e9, 2)
        line["medtune_seconds_per_step"] = round(res["seconds"] / max(res["steps"], 1), 2)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
