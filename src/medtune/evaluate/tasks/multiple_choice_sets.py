"""Loaders and prompt formats of the multiple-choice benchmarks: MedQA-USMLE (4 options), MedMCQA dev, PubMedQA
test, MMLU medical.

The default formats are lm-evaluation-harness's own task definitions, copied field for field so that accuracies can
be set beside published ones (``medqa_4options``, ``medmcqa``, ``pubmedqa``, ``mmlu_<subject>``; see the
``lm_eval/tasks`` YAML and preprocess files): options listed with letters, the letter scored after ``Answer:``,
no chat template. The ``cloze`` formats (options not listed, each option's text scored; lm-eval's
``mmlu_continuation`` style) are the named variants ``medqa-cloze``, ``medmcqa-cloze``, ``mmlu-medical-cloze``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from medtune.evaluate.tasks.base import ChoiceExample, ChoiceFormat, require_file

LETTERS = ("A", "B", "C", "D")
MMLU_MEDICAL_SUBJECTS = (
    "anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics", "professional_medicine",
)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping blank lines."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_medqa(root: Path, context: dict[str, Any] | None = None) -> list[ChoiceExample]:
    """MedQA-USMLE 4-option test set (1,273 questions); the gold index comes from ``answer_idx`` (A-D)."""
    path = require_file(root / "medqa_usmle_4opt" / "phrases_no_exclude_test.jsonl", "medqa",
                        "put the MedQA-US 4-option test jsonl there (see SOURCE.md) or pass --data.")
    examples = []
    for number, row in enumerate(_jsonl(path)):
        options = row["options"]
        letters = sorted(options)
        examples.append(ChoiceExample(
            id=f"medqa-{number}", question=row["question"], choices=[options[k] for k in letters],
            gold=letters.index(row["answer_idx"]), meta={"meta_info": row.get("meta_info")},
        ))
    return examples


def medmcqa_gold_index(cop: int) -> int:
    """MedMCQA dev ``cop`` is 1-based (1 = opa ... 4 = opd): return the 0-based option index."""
    if cop not in (1, 2, 3, 4):
        raise ValueError(f"MedMCQA cop must be 1-4 (1-based), got {cop!r}")
    return cop - 1


def load_medmcqa(root: Path, context: dict[str, Any] | None = None) -> list[ChoiceExample]:
    """MedMCQA dev split (4,183 questions, JSON lines despite the .json name, ``cop`` 1-based)."""
    path = require_file(root / "medmcqa" / "dev.json", "medmcqa", "put MedMCQA dev.json there (see SOURCE.md).")
    return [
        ChoiceExample(
            id=str(row["id"]), question=str(row["question"]),
            choices=[str(row[k]) for k in ("opa", "opb", "opc", "opd")], gold=medmcqa_gold_index(row["cop"]),
            meta={"subject": row.get("subject_name")},
        )
        for row in _jsonl(path)
    ]


PUBMEDQA_LABELS = ("yes", "no", "maybe")


def _pubmedqa_examples(root: Path, test: bool) -> list[ChoiceExample]:
    """PQA-L examples: the 500 official test ids, or (``test=False``) the other 500 labeled ones."""
    folder = root / "pubmedqa"
    truth = json.loads(require_file(folder / "test_ground_truth.json", "pubmedqa", "see pubmedqa/SOURCE.md.").read_text())
    records = json.loads(require_file(folder / "ori_pqal.json", "pubmedqa", "see pubmedqa/SOURCE.md.").read_text())
    labels = truth if test else {pmid: r["final_decision"] for pmid, r in records.items() if pmid not in truth}
    examples = []
    for pmid, label in labels.items():
        record = records[pmid]
        examples.append(ChoiceExample(
            id=f"pubmedqa-{pmid}", question=record["QUESTION"], context="\n".join(record["CONTEXTS"]),
            choices=list(PUBMEDQA_LABELS), gold=PUBMEDQA_LABELS.index(label), meta={"pmid": pmid},
        ))
    return examples


def load_pubmedqa(root: Path, context: dict[str, Any] | None = None) -> list[ChoiceExample]:
    """PubMedQA PQA-L official test split: the 500 ids of ``test_ground_truth.json``, abstract context included."""
    return _pubmedqa_examples(root, test=True)


def load_pubmedqa_train(root: Path) -> list[ChoiceExample]:
    """The 500 labeled PQA-L questions outside the official test ids (the few-shot pool; never a test item)."""
    return _pubmedqa_examples(root, test=False)


def _mmlu_split(root: Path, split: str) -> list[ChoiceExample]:
    """Read the six MMLU medical subject CSVs of one split (no header: question, A, B, C, D, answer)."""
    examples = []
    for subject in MMLU_MEDICAL_SUBJECTS:
        path = require_file(root / "mmlu_medical" / split / f"{subject}_{split}.csv", "mmlu-medical",
                            "put the MMLU medical CSVs there (see mmlu_medical/SOURCE.md).")
        with path.open(encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.reader(handle)):
                if not row:
                    continue
                examples.append(ChoiceExample(
                    id=f"mmlu-{subject}-{split}-{number}", question=row[0], choices=row[1:5],
                    gold=LETTERS.index(row[5].strip()), meta={"subject": subject},
                ))
    return examples


def load_mmlu_medical(root: Path, context: dict[str, Any] | None = None) -> list[ChoiceExample]:
    """MMLU medical test questions (1,089 over six subjects)."""
    return _mmlu_split(root, "test")


def load_mmlu_medical_dev(root: Path) -> list[ChoiceExample]:
    """MMLU medical dev questions (5 per subject), the pool for k-shot prompts."""
    return _mmlu_split(root, "dev")


def _listed(example: ChoiceExample) -> str:
    """``A. option\n`` for each option (lm-eval's listing in medqa, medmcqa and mmlu)."""
    return "".join(f"{letter}. {choice}\n" for letter, choice in zip(LETTERS, example.choices, strict=True))


def _letters(example: ChoiceExample) -> list[str]:
    """The scored answers of a letter format."""
    return list(LETTERS[:len(example.choices)])


def _options(example: ChoiceExample) -> list[str]:
    """The scored answers of a cloze format: the option texts."""
    return list(example.choices)


def _mmlu_description(example: ChoiceExample) -> str:
    """lm-eval's MMLU description line, naming the subject."""
    subject = str(example.meta.get("subject", "")).replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


def _mmlu_cloze_description(example: ChoiceExample) -> str:
    """lm-eval's ``mmlu_continuation`` description line."""
    subject = str(example.meta.get("subject", "")).replace("_", " ")
    return f"The following are questions (with answers) about {subject}.\n\n"


def _cloze_text(example: ChoiceExample) -> str:
    """``Question: ...\nAnswer:`` without the options (lm-eval's continuation style)."""
    return f"Question: {example.question.strip()}\nAnswer:"


MEDQA_FORMAT = ChoiceFormat("letters", lambda e: f"Question: {e.question}\n{_listed(e)}Answer:", _letters,
                            lm_eval_task="medqa_4options")
MEDMCQA_FORMAT = ChoiceFormat("letters", lambda e: f"Question: {e.question}\nChoices:\n{_listed(e)}Answer:", _letters,
                              lm_eval_task="medmcqa")
PUBMEDQA_FORMAT = ChoiceFormat("labels", lambda e: f"Abstract: {e.context}\nQuestion: {e.question}\nAnswer:",
                               lambda e: list(PUBMEDQA_LABELS), lm_eval_task="pubmedqa")
MMLU_FORMAT = ChoiceFormat("letters", lambda e: f"{e.question.strip()}\n{_listed(e)}Answer:", _letters,
                           _mmlu_description, lm_eval_task="mmlu_<subject> (group mean weighted by size)")
CLOZE_FORMAT = ChoiceFormat("cloze", _cloze_text, _options, lm_eval_task="(cloze variant; no lm-eval twin)")
MMLU_CLOZE_FORMAT = ChoiceFormat("cloze", _cloze_text, _options, _mmlu_cloze_description,
                                 lm_eval_task="mmlu_<subject>_continuation")
