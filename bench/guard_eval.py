"""Benchmark: the medical guardrails on the labelled prompt set (no model needed).

Prints precision and recall per class (answer, emergency, refuse, defer, injection), overall accuracy,
emergency recall and the false emergency rate on ordinary questions, as a table, then one JSON line.
Targets: emergency recall 100%, accuracy >= 90%, false emergency rate <= 2%.

With ``--real`` it also runs the guard on real consumer questions from MEDTUNE_DATA_DIR (HealthSearchQA,
MedicationQA, LiveQA-Med; unlabelled, almost all ordinary questions) and reports how often each action fires
there (``real_<set>_emergency_rate`` ...), listing the flagged questions for inspection.

    python bench/guard_eval.py [--prompts my_set.jsonl] [--config my_guard.yaml] [--real]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any


def real_questions() -> dict[str, list[str]]:
    """Consumer questions from the raw datasets that are present (deduplicated), by set name."""
    from medtune.paths import data_dir

    root, sets = data_dir(), {}
    path = root / "healthsearchqa" / "test.jsonl"
    if path.is_file():
        sets["healthsearchqa"] = [json.loads(line)["question"] for line in path.open() if line.strip()]
    try:
        from medtune.evaluate.tasks.free_text_sets import load_liveqa, load_medicationqa

        sets["medicationqa"] = [example.question for example in load_medicationqa(root)]
        sets["liveqa"] = [example.question for example in load_liveqa(root)]
    except Exception as error:  # missing files or the optional pandas/openpyxl extra
        print(f"(skipping MedicationQA/LiveQA: {error})")
    return {name: list(dict.fromkeys(q.strip() for q in questions if q.strip())) for name, questions in sets.items()}


def flag_rates(guard: Any, questions: list[str]) -> tuple[Counter[str], list[tuple[str, str]]]:
    """How often each action fires on ``questions``, and the flagged (category, question) pairs."""
    counts: Counter[str] = Counter()
    flagged = []
    for question in questions:
        decision = guard.check_input(question)
        counts[decision.action] += 1
        if decision.action != "answer":
            flagged.append((decision.category, question))
    return counts, flagged


def main() -> None:
    """Run the guard on the labelled set (and optionally real questions); print the table and the JSON line."""
    from medtune.guard import Guard
    from medtune.guard.evaluation import evaluate_guard, load_labelled, summary_line

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompts", default=None, help="Labelled JSONL (default: the shipped set).")
    parser.add_argument("--config", default=None, help="Guard YAML file.")
    parser.add_argument("--real", action="store_true", help="Also report flag rates on real consumer questions.")
    args = parser.parse_args()
    guard = Guard.from_yaml(args.config) if args.config else Guard()
    start = time.perf_counter()
    report = evaluate_guard(guard, load_labelled(args.prompts))
    seconds = time.perf_counter() - start
    print(f"{'class':<10} {'precision':>9} {'recall':>7} {'support':>7}")
    for name, figures in report["per_class"].items():
        print(f"{name:<10} {figures['precision']:>9.3f} {figures['recall']:>7.3f} {figures['support']:>7}")
    print(f"accuracy {report['accuracy']:.3f}  emergency recall {report['emergency_recall']:.3f}  "
          f"false emergency rate {report['false_emergency_rate']:.3f}")
    for error in report["errors"]:
        print(f"  x {error['id']}: expected {error['label']}, got {error['category']}: {error['text']}")
    line = summary_line(report)
    line["ms_per_prompt"] = round(1000 * seconds / max(1, report["rows"]), 3)
    if args.real:
        for name, questions in real_questions().items():
            counts, flagged = flag_rates(guard, questions)
            print(f"{name}: {len(questions)} questions, " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
            for category, question in flagged:
                print(f"  {category}: {question[:140]!r}")
            line[f"real_{name}_questions"] = len(questions)
            for action in ("emergency", "refuse", "defer"):
                line[f"real_{name}_{action}_rate"] = round(counts[action] / max(1, len(questions)), 4)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
