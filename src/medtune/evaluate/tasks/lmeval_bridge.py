"""The local benchmark files in the row schema of the hub datasets lm-evaluation-harness's task YAMLs read.

lm-eval's ``medqa_4options`` reads ``GBaker/MedQA-USMLE-4-options-hf`` (``sent1``, ``ending0-3``, ``label``),
``medmcqa`` reads ``openlifescienceai/medmcqa`` (``cop`` 0-based), ``pubmedqa`` reads ``bigbio/pubmed_qa`` source
rows (``QUESTION``, ``CONTEXTS``, ``final_decision``) and ``mmlu_<subject>`` reads ``cais/mmlu`` (``question``,
``choices``, ``answer``). Writing medtune's examples in those schemas lets lm-eval run its *own* installed task
definitions (YAML and preprocess functions unchanged) on exactly the questions medtune scores, with only the dataset
location pointed at a local JSON file. Used by ``bench/eval_vs_lmeval.py`` and the format tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.evaluate.tasks.base import ChoiceExample
from medtune.evaluate.tasks.multiple_choice_sets import PUBMEDQA_LABELS

#: medtune task -> lm-eval task name (MMLU: one lm-eval task per subject).
LM_EVAL_TASKS = {"medqa": "medqa_4options", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa",
                 "mmlu-medical": "mmlu_{subject}"}


def to_lmeval_doc(task: str, example: ChoiceExample) -> dict[str, Any]:
    """One example as a row of the hub dataset lm-eval's task reads (see the module docstring)."""
    if task == "medqa":
        return {"sent1": example.question, **{f"ending{i}": c for i, c in enumerate(example.choices)},
                "label": example.gold, "medtune_id": example.id}
    if task == "medmcqa":
        return {"id": example.id, "question": example.question,
                **dict(zip(("opa", "opb", "opc", "opd"), example.choices, strict=True)), "cop": example.gold,
                "medtune_id": example.id}
    if task == "pubmedqa":
        return {"QUESTION": example.question, "CONTEXTS": example.context.split("\n"),
                "final_decision": PUBMEDQA_LABELS[example.gold], "medtune_id": example.id}
    if task == "mmlu-medical":
        return {"question": example.question, "choices": list(example.choices), "answer": example.gold,
                "subject": example.meta.get("subject"), "medtune_id": example.id}
    raise ValueError(f"no lm-eval twin for task {task!r}; known: {', '.join(LM_EVAL_TASKS)}")


def write_lmeval_docs(task: str, examples: list[ChoiceExample], folder: Path) -> dict[str, Path]:
    """Write the examples as JSON lines in lm-eval's row schema; return ``{lm-eval task name: file}``.

    MMLU gets one file per subject (one lm-eval task each); the others one file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        name = LM_EVAL_TASKS[task].format(subject=example.meta.get("subject"))
        by_task.setdefault(name, []).append(to_lmeval_doc(task, example))
    paths = {}
    for name, rows in by_task.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return paths
