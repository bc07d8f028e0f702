"""Benchmark: medtune's multiple-choice scorer against lm-evaluation-harness running its OWN task definitions.

For each of ``medqa`` (lm-eval ``medqa_4options``), ``medmcqa``, ``pubmedqa`` and ``mmlu-medical`` (lm-eval's
``mmlu_<subject>`` for the six medical subjects) the same seeded random sample of questions
(``medtune.evaluate.multiple_choice.sample_examples``, default 200 per task, seed recorded) is scored

- by medtune: ``load_tokenizer`` + ``load_causal_lm(dtype="float32")`` + ``evaluate_model(..., loaded=...)``;
- by lm-eval: ``simple_evaluate(model="hf", pretrained=<the same folder>, dtype=float32, device=cpu)`` on the task
  configs of the *installed* lm-eval: each YAML is read with lm-eval's own loader (``include:`` and ``!function``
  resolved, so ``doc_to_text`` is ``preprocess_medqa.doc_to_text`` etc.), and only the dataset location is changed:
  ``dataset_path: json``, ``dataset_name: null``, ``dataset_kwargs: {data_files: {test: FILE}}``, ``test_split:
  test``; the hub split keys (training/validation/fewshot) are dropped. Everything else (doc_to_text,
  doc_to_choice, doc_to_target, target_delimiter, description, metric_list) is lm-eval's. The local files hold
  medtune's sample in the hub datasets' row schema (:mod:`medtune.evaluate.tasks.lmeval_bridge`), each row with a
  ``medtune_id``.

0-shot, no chat template, same weights (SmolLM2-135M-Instruct's converted HF folder), same ``--batch-size`` (sequences
per forward pass: with single-token answers, letters or yes/no/maybe, both sides put one sequence per question in a
batch, lm-eval through its logits cache and medtune through its one-token shortcut), same torch thread count (one
process). The JSON records the medtune commit the scorer came from and whether src/medtune/evaluate had local
changes.

Agreement is per item: lm-eval's chosen option (argmax of the per-choice log-likelihoods in its logged samples'
``resps``) against medtune's ``picked``, matched by ``medtune_id``. Accuracies are each side's own ``acc``
(``mmlu-medical``: over all its questions = lm-eval's size-weighted subject mean).

Timing: each side loads its model ONCE PER TASK, and that load is inside the side's time; the clock runs from
before the model load to the result dict (medtune: load + data + scoring + its report files; lm-eval:
``simple_evaluate`` whole, i.e. model load, task/dataset build, scoring, metrics). lm-eval's task registry
(``TaskManager()`` indexing every installed YAML; its time is reported as ``lmeval_registry_seconds_untimed``) and
the writing of lm-eval's local data files are done before either clock starts. The order alternates: medtune first on even-numbered tasks, lm-eval first
on odd ones (``--reverse`` swaps), so neither side always runs on a cold cache. Process CPU seconds are reported
beside the wall times (``cpu_speed_ratio``): on a machine shared with other users the wall times swing with their
load.

Roofline (``roofline`` in the JSON): how fast ANY exact fp32 scorer of the same questions could be on this CPU. The
questions' token counts (context + single-token answer, unpadded) give the forward pass's floating-point work
(:func:`forward_flops`: 2 x in x out per token for every ``nn.Linear`` but the output head, attention scores and
weighted sums, the head at the last position only); :func:`linear_gflops` measures the rate this CPU reaches on the
model's own linear layers alone (no norms, rotary, softmax or framework overhead: an upper bound on what a forward
pass can reach), the best of 256 to 2048 rows per call (a scorer that packs a batch into one row runs its layers
on ~2,000 rows, where this CPU is fastest). ``seconds_at_linear_peak`` = work / that rate is a lower bound on any
exact fp32 scorer's time, so ``lmeval_seconds / seconds_at_linear_peak`` bounds the speed-up any such scorer can
have over lm-eval here, and ``medtune_fraction_of_roofline`` = ``seconds_at_linear_peak / medtune_seconds`` says
how close medtune comes (per task too).

Agreement on the chosen option alone can hide a wrong scorer (SmolLM2-135M picks "A" on nearly every MedQA question
in lm-eval's letter format, so any scorer with the same letter bias agrees), so the bench also compares the
log-likelihoods themselves: ``max_abs_loglik_diff`` per task is the largest |medtune - lm-eval| over every option
of every question, in nats.

Prints ONE JSON line; exits 1 when agreement < 0.99 on any task, |acc difference| > 0.5 points, or any option's
log-likelihood differs by more than 0.01 nats (the first disagreeing ids and both sides' log-likelihoods go to
stderr).

``--lmeval-batch-size 1`` runs lm-eval at its own default batch size instead (what ``lm_eval --model hf`` does when
no ``--batch_size`` is given), against medtune at ``--batch-size``: each tool as a user runs it by default. The JSON
records both batch sizes; say which comparison a ratio comes from.

    python bench/eval_vs_lmeval.py [--limit 200] [--seed 1234] [--batch-size 8] [--lmeval-batch-size N] [--threads N]
        [--tasks medqa,...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("medqa", "medmcqa", "pubmedqa", "mmlu-medical")
#: lm-eval task folders (under lm_eval/tasks) holding each task's installed YAML.
LMEVAL_FOLDERS = {"medqa": "medqa", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa", "mmlu-medical": "mmlu/default"}
#: config keys that point at the hub dataset: dropped, then the dataset location is set to the local file.
HUB_KEYS = ("dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split", "test_split",
            "fewshot_split")
MIN_AGREEMENT = 0.99
MAX_ACC_DIFF_POINTS = 0.5
MAX_LOGLIK_DIFF_NATS = 0.01
#: rows per call at which the linear-layer rate is measured (the best is the roofline's rate).
PEAK_ROWS = (256, 512, 1024, 2048)


@dataclass
class Side:
    """One harness's answer on one task: the chosen option and per-option log-likelihoods per medtune id."""

    picked: dict[str, int]
    loglikelihoods: dict[str, list[float]]
    acc: float
    seconds: float
    cpu_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class Clock:
    """Wall and process CPU time since construction (CPU time is less disturbed by other users of a shared machine,
    though OpenMP threads spinning while descheduled still count)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) so far."""
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def lmeval_task_manager(tasks: list[str] | None = None) -> Any:
    """lm-eval's task registry: every installed task (``tasks=None``), or only the folders of ``tasks``.

    The narrow form indexes the same installed YAML files (tests use it: the full index takes ~15 s).
    """
    from lm_eval.tasks import TaskManager

    if tasks is None:
        return TaskManager()
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    return TaskManager(include_defaults=False, include_path=[str(root / LMEVAL_FOLDERS[t]) for t in tasks])


def lmeval_configs(task_manager: Any, task: str, examples: list[Any], folder: Path) -> list[dict[str, Any]]:
    """lm-eval's installed task configs for ``task``, with only the dataset pointed at local files of ``examples``.

    One config per lm-eval task (MMLU: per subject in the sample). The YAML is loaded with lm-eval's own loader, as
    its TaskManager does when it builds the task, so ``include`` and ``!function`` resolve to the installed files.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    from medtune.evaluate.tasks.lmeval_bridge import write_lmeval_docs

    configs = []
    for name, path in sorted(write_lmeval_docs(task, examples, folder).items()):
        entry = task_manager.task_index[name]
        config = load_yaml(entry.yaml_path, resolve_func=True)
        for key in HUB_KEYS:
            config.pop(key, None)
        config.update(dataset_path="json", dataset_name=None,
                      dataset_kwargs={"data_files": {"test": str(path)}}, test_split="test")
        configs.append(config)
    return configs


def run_lmeval(model_dir: str | Path, configs: list[dict[str, Any]], task_manager: Any, batch_size: int) -> Side:
    """lm-eval's ``hf`` model on ``configs`` (model load included in the time); choices from its logged samples."""
    from lm_eval import simple_evaluate

    clock = Clock()
    out = simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32"}, tasks=configs,
                          task_manager=task_manager, batch_size=batch_size, device="cpu", num_fewshot=0,
                          log_samples=True, apply_chat_template=False)
    seconds, cpu = clock.read()
    picked: dict[str, int] = {}
    lls: dict[str, list[float]] = {}
    correct = 0.0
    for name, samples in out["samples"].items():
        choices = out["configs"][name]["doc_to_choice"]
        for sample in samples:
            # resps: per choice, the model's [(loglikelihood, is_greedy)]; lm-eval's acc is the argmax of these
            scores = [float(resp[0][0]) for resp in sample["resps"]]
            best = max(range(len(scores)), key=lambda i: scores[i])
            medtune_id = sample["doc"]["medtune_id"]
            picked[medtune_id], lls[medtune_id] = best, scores
            correct += float(sample["acc"])
            gold = choices.index(sample["target"]) if isinstance(sample["target"], str) else sample["target"]
            if float(sample["acc"]) != float(best == gold):
                raise RuntimeError(f"{medtune_id}: lm-eval's acc is not the argmax of its resps ({name})")
    sizes = {name: len(samples) for name, samples in out["samples"].items()}
    acc = sum(out["results"][name]["acc,none"] * n for name, n in sizes.items()) / sum(sizes.values())
    if abs(acc - correct / len(picked)) > 1e-9:
        raise RuntimeError("lm-eval's reported acc is not the mean of its per-sample acc")
    return Side(picked, lls, acc, seconds, cpu, {"tasks": sorted(sizes)})


def run_medtune(model_dir: str | Path, task: str, limit: int, seed: int, batch_size: int, out_dir: Path) -> Side:
    """medtune's scorer (model load included in the time), 0-shot, no chat template."""
    import torch

    from medtune.config import EvalConfig
    from medtune.evaluate.runner import evaluate_model
    from medtune.models import load_causal_lm, load_tokenizer

    clock = Clock()
    tokenizer = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir), dtype="float32")
    parameter = next(model.parameters())
    if parameter.dtype != torch.float32 or parameter.device.type != "cpu":
        raise RuntimeError(f"medtune loaded {parameter.dtype} on {parameter.device}; the bench needs float32 on cpu")
    settings = EvalConfig(batch_size=batch_size, sample_seed=seed, mc_chat_template=False)
    results = evaluate_model(str(model_dir), [task], limit=limit, shots=0, settings=settings, out_dir=out_dir,
                             loaded=(model, tokenizer))
    seconds, cpu = clock.read()
    scored = results["tasks"][task]
    picked = dict(zip(scored["ids"], scored["picked"], strict=True))
    lls = {i: s["scores"] for i, s in zip(scored["ids"], scored["samples"], strict=True)}
    return Side(picked, lls, scored["metrics"]["acc"], seconds, cpu, {"format": scored["format"]})


def forward_flops(model: Any, lengths: list[int], head_positions: int | None = 1) -> float:
    """Floating-point operations of causal-LM forward passes over unpadded sequences of ``lengths`` tokens.

    Per token, 2 x in x out for every ``nn.Linear`` except the output head; per layer, 4 x t x (heads x head dim)
    at position t for the attention scores and the weighted sum (causal: t = 1..L); the output head at
    ``head_positions`` positions per sequence (None: every position, as lm-eval computes its logits).
    """
    import torch

    head = model.get_output_embeddings()
    per_token = sum(2 * m.in_features * m.out_features for m in model.modules()
                    if isinstance(m, torch.nn.Linear) and m is not head)
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention_width = config.num_attention_heads * head_dim
    head_flops = 2 * head.in_features * head.out_features
    total = 0.0
    for length in lengths:
        total += length * per_token + config.num_hidden_layers * 2 * attention_width * length * (length + 1)
        total += head_flops * (length if head_positions is None else min(head_positions, length))
    return total


def linear_gflops(model: Any, tokens: int = 512, repeats: int = 3) -> float:
    """GFLOP/s this CPU reaches running the model's own linear layers (output head excluded) on ``tokens`` rows:
    every layer's weight applied to a fresh input, best of ``repeats`` timed passes after one warm-up."""
    import torch

    head = model.get_output_embeddings()
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    inputs = {w.shape[1]: torch.randn(tokens, w.shape[1], dtype=w.dtype) for w in weights}
    flops = sum(2 * tokens * w.shape[0] * w.shape[1] for w in weights)
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            began = time.perf_counter()
            for weight in weights:
                torch.nn.functional.linear(inputs[weight.shape[1]], weight)
            if attempt:
                best = min(best, time.perf_counter() - began)
    return flops / best / 1e9


def question_lengths(task: str, examples: list[Any], tokenizer: Any) -> list[int]:
    """Tokens per forward pass of each question, 0-shot without chat template: context + first answer - 1 (the
    single-token answers of these formats are all scored from that one pass)."""
    from medtune.evaluate.multiple_choice import encode_pair
    from medtune.evaluate.tasks import TASKS as REGISTRY

    definition = REGISTRY[task]
    lengths = []
    for example in examples:
        context, answer = encode_pair(tokenizer, definition.mc_prompt(example, []),
                                      definition.continuations(example)[0])
        lengths.append(len(context) + len(answer) - 1)
    return lengths


def roofline(model_dir: str | Path, lengths_by_task: dict[str, list[int]], per_task: dict[str, dict[str, Any]]
             ) -> dict[str, Any]:
    """The work of scoring each task's questions (their token ``lengths``), this CPU's linear-layer rate, the bound
    it puts on any exact fp32 scorer's speed-up over lm-eval, and the fraction of it each side reaches (module
    docstring). Adds ``medtune_fraction_of_roofline`` to each row of ``per_task``."""
    from medtune.models import load_causal_lm

    model = load_causal_lm(str(model_dir), dtype="float32")
    lengths = [n for task_lengths in lengths_by_task.values() for n in task_lengths]
    medtune_seconds = sum(row["medtune_seconds"] for row in per_task.values())
    lmeval_seconds = sum(row["lmeval_seconds"] for row in per_task.values())
    work = forward_flops(model, lengths)
    by_rows = {rows: linear_gflops(model, rows) for rows in PEAK_ROWS}
    rate = max(by_rows.values())
    floor = work / rate / 1e9
    for task, task_lengths in lengths_by_task.items():
        task_floor = forward_flops(model, task_lengths) / rate / 1e9
        per_task[task]["medtune_fraction_of_roofline"] = round(task_floor / per_task[task]["medtune_seconds"], 3)
    return {"tokens": sum(lengths), "gflop": round(work / 1e9, 1),
            "lmeval_gflop_all_position_logits": round(forward_flops(model, lengths, None) / 1e9, 1),
            "linear_gflops_per_s_by_rows": {str(k): round(v, 1) for k, v in by_rows.items()},
            "linear_gflops_per_s": round(rate, 1), "seconds_at_linear_peak": round(floor, 1),
            "medtune_fraction_of_roofline": round(floor / medtune_seconds, 3),
            "lmeval_fraction_of_roofline": round(floor / lmeval_seconds, 3),
            "medtune_gflops_per_s": round(work / medtune_seconds / 1e9, 1),
            "lmeval_gflops_per_s": round(work / lmeval_seconds / 1e9, 1),
            "max_exact_fp32_speedup_over_lmeval": round(lmeval_seconds / floor, 2)}


def compare(ours: Side, theirs: Side) -> dict[str, Any]:
    """Per-item agreement, both accuracies and times for one task."""
    if set(ours.picked) != set(theirs.picked):
        raise RuntimeError(f"the two sides scored different questions: {len(ours.picked)} vs {len(theirs.picked)}")
    ids = list(ours.picked)  # medtune's order (the sample's original order)
    differing = [i for i in ids if ours.picked[i] != theirs.picked[i]]
    gaps = [abs(a - b) for i in ids
            for a, b in zip(ours.loglikelihoods[i], theirs.loglikelihoods[i], strict=True)]
    return {"n": len(ids), "agreement": round(1 - len(differing) / len(ids), 4),
            "max_abs_loglik_diff": float(f"{max(gaps):.2g}"),
            "medtune_acc": round(ours.acc, 4), "lmeval_acc": round(theirs.acc, 4),
            "acc_diff_points": round(100 * (ours.acc - theirs.acc), 2),
            "medtune_seconds": round(ours.seconds, 1), "lmeval_seconds": round(theirs.seconds, 1),
            "medtune_cpu_seconds": round(ours.cpu_seconds, 1), "lmeval_cpu_seconds": round(theirs.cpu_seconds, 1),
            "first_disagreements": differing[:5]}


def failed_tasks(per_task: dict[str, dict[str, Any]]) -> list[str]:
    """Tasks whose agreement is below MIN_AGREEMENT, whose accuracies differ by more than MAX_ACC_DIFF_POINTS, or
    where some option's log-likelihood differs by more than MAX_LOGLIK_DIFF_NATS."""
    return [task for task, row in per_task.items()
            if row["agreement"] < MIN_AGREEMENT or abs(row["acc_diff_points"]) > MAX_ACC_DIFF_POINTS
            or row["max_abs_loglik_diff"] > MAX_LOGLIK_DIFF_NATS]


def medtune_source() -> dict[str, Any]:
    """The checkout's HEAD and whether src/medtune/evaluate differs from it (None outside a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src/medtune/evaluate"], cwd=root,
                                 check=False).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return {"medtune_commit": None, "evaluate_changed_locally": None}
    return {"medtune_commit": head, "evaluate_changed_locally": changed}


def main() -> int:
    """Run both harnesses task by task, print the JSON line, return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="questions per task (seeded random sample)")
    parser.add_argument("--seed", type=int, default=1234, help="sample seed (medtune's sample_seed)")
    parser.add_argument("--batch-size", type=int, default=8, help="option sequences per forward pass, both sides")
    parser.add_argument("--lmeval-batch-size", type=int, default=None,
                        help="lm-eval's batch size when it should differ from --batch-size (1 = lm-eval's own "
                             "default, what `lm_eval --model hf` runs when none is given)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--reverse", action="store_true", help="lm-eval first on even tasks (default medtune)")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    lmeval_batch_size = args.lmeval_batch_size or args.batch_size
    if unknown := [t for t in tasks if t not in TASKS]:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    import lm_eval

    from medtune.evaluate.multiple_choice import sample_examples
    from medtune.evaluate.tasks import TASKS as REGISTRY
    from medtune.models import SMOLLM2_ALIAS, resolve_model_path
    from medtune.paths import data_dir

    model_dir = Path(str(resolve_model_path(SMOLLM2_ALIAS)))
    source = medtune_source()  # before the scorer runs: the code imported now is the code measured
    began = time.perf_counter()
    task_manager = lmeval_task_manager()  # outside both clocks
    registry_seconds = time.perf_counter() - began
    work = Path(tempfile.mkdtemp(prefix="medtune-bench-"))
    per_task: dict[str, dict[str, Any]] = {}
    details: list[str] = []
    lengths: dict[str, list[int]] = {}
    from medtune.models import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    for number, task in enumerate(tasks):
        examples = sample_examples(REGISTRY[task].load(data_dir(), {}), args.limit, args.seed, task)
        configs = lmeval_configs(task_manager, task, examples, work / "docs" / task)
        lengths[task] = question_lengths(task, examples, tokenizer)
        medtune_first = (number % 2 == 0) != args.reverse
        sides: dict[str, Side] = {}
        for side in ("medtune", "lmeval") if medtune_first else ("lmeval", "medtune"):
            if side == "medtune":
                sides[side] = run_medtune(model_dir, task, args.limit, args.seed, args.batch_size, work / task)
            else:
                sides[side] = run_lmeval(model_dir, configs, task_manager, lmeval_batch_size)
            gc.collect()
        if set(sides["medtune"].picked) != {e.id for e in examples}:
            raise RuntimeError(f"{task}: medtune scored a different sample than the one written for lm-eval")
        row = compare(sides["medtune"], sides["lmeval"])
        row["first"] = "medtune" if medtune_first else "lmeval"
        per_task[task] = row
        for item in row["first_disagreements"]:
            details.append(f"{task} {item}: medtune picked {sides['medtune'].picked[item]} "
                           f"{[round(v, 4) for v in sides['medtune'].loglikelihoods[item]]}, lm-eval picked "
                           f"{sides['lmeval'].picked[item]} "
                           f"{[round(v, 4) for v in sides['lmeval'].loglikelihoods[item]]}")
        print(f"[bench] {task}: {json.dumps(row)}", file=sys.stderr, flush=True)
    n = sum(r["n"] for r in per_task.values())
    medtune_seconds = sum(r["medtune_seconds"] for r in per_task.values())
    lmeval_seconds = sum(r["lmeval_seconds"] for r in per_task.values())
    cpu = {side: sum(r[f"{side}_cpu_seconds"] for r in per_task.values()) for side in ("medtune", "lmeval")}
    agreeing = sum(round(r["agreement"] * r["n"]) for r in per_task.values())
    failures = failed_tasks(per_task)
    print(json.dumps({
        "tasks": per_task,
        "total": {"n": n, "agreement": round(agreeing / n, 4), "medtune_seconds": round(medtune_seconds, 1),
                  "lmeval_seconds": round(lmeval_seconds, 1), "medtune_cpu_seconds": round(cpu["medtune"], 1),
                  "lmeval_cpu_seconds": round(cpu["lmeval"], 1)},
        "speed_ratio": round(lmeval_seconds / medtune_seconds, 2),
        "roofline": roofline(model_dir, lengths, per_task),
        "cpu_speed_ratio": round(cpu["lmeval"] / cpu["medtune"], 2),
        "seed": args.seed, "limit": args.limit, "batch_size": args.batch_size,
        "lmeval_batch_size": lmeval_batch_size, "torch_threads": torch.get_num_threads(),
        "lm_eval_version": lm_eval.__version__, "torch_version": torch.__version__, "model": str(model_dir),
        "lmeval_registry_seconds_untimed": round(registry_seconds, 1), **source,
        "ok": not failures, "failed": failures,
    }), flush=True)
    if failures:
        print(f"FAILED {failures}: agreement < {MIN_AGREEMENT}, |acc diff| > {MAX_ACC_DIFF_POINTS} points or "
              f"|log-likelihood diff| > {MAX_LOGLIK_DIFF_NATS} nats", file=sys.stderr)
        print("\n".join(details), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
