"""Benchmark: the same MedQA questions through ``medtune eval`` and through lm-evaluation-harness.

SmolLM2-135M-Instruct (alias, resolved to its converted HF folder), the first N (default 200) MedQA-USMLE
4-option test questions, zero-shot, no chat template, identical prompt text and option continuations. lm-eval reads
a local custom task (``dataset_path: json`` + ``data_files``, no hub). Prints one JSON line:
medtune_acc, lmeval_acc (and acc_norm), medtune_seconds, lmeval_seconds, speedup (lmeval / medtune seconds).

    python bench/eval_vs_lmeval.py [--limit 200] [--batch-size 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TASK_YAML = """task: medtune_medqa_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: query
doc_to_choice: choices
doc_to_target: gold
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def main() -> None:
    """Run both harnesses on the same questions and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both harnesses (1 avoids OpenMP thrashing on a busy shared CPU)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    from medtune.config import EvalConfig
    from medtune.evaluate.runner import evaluate_model
    from medtune.evaluate.tasks import TASKS
    from medtune.models import SMOLLM2_ALIAS, resolve_model_path
    from medtune.paths import data_dir

    model_path = str(resolve_model_path(SMOLLM2_ALIAS))
    task = TASKS["medqa"]
    from medtune.evaluate.multiple_choice import sample_examples

    examples = sample_examples(task.load(data_dir(), {}), args.limit, 1234, "medqa")  # the ids evaluate_model scores
    work = Path(tempfile.mkdtemp(prefix="medtune-bench-"))
    data = work / "medqa_subset.jsonl"
    with data.open("w") as handle:
        for example in examples:
            record = {"query": task.mc_prompt(example), "choices": example.choices, "gold": example.gold}
            handle.write(json.dumps(record) + "\n")
    (work / "medtune_medqa_local.yaml").write_text(TASK_YAML.format(data=data))

    settings = EvalConfig(use_chat_template=False, batch_size=args.batch_size)
    began = time.perf_counter()
    ours = evaluate_model(SMOLLM2_ALIAS, ["medqa"], limit=args.limit, settings=settings, out_dir=work / "medtune")
    medtune_seconds = time.perf_counter() - began

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    began = time.perf_counter()
    theirs = simple_evaluate(model="hf", model_args=f"pretrained={model_path},dtype=float32", tasks=[
        "medtune_medqa_local"], task_manager=TaskManager(include_path=str(work)), batch_size=args.batch_size,
        device="cpu", log_samples=False)
    lmeval_seconds = time.perf_counter() - began
    lm = theirs["results"]["medtune_medqa_local"]
    print(json.dumps({
        "questions": len(examples), "medtune_acc": round(ours["tasks"]["medqa"]["metrics"]["acc"], 4),
        "lmeval_acc": round(lm["acc,none"], 4),
        "medtune_acc_norm": round(ours["tasks"]["medqa"]["metrics"]["acc_norm"], 4),
        "lmeval_acc_norm": round(lm["acc_norm,none"], 4), "medtune_seconds": round(medtune_seconds, 1),
        "lmeval_seconds": round(lmeval_seconds, 1), "speedup": round(lmeval_seconds / medtune_seconds, 2),
        "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
