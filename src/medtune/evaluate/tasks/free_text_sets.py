"""Loaders of the free-text tasks: the prepared MedQuAD test split, MedicationQA (xlsx), TREC-2017 LiveQA-Med."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.evaluate.tasks.base import FreeTextExample, require_file
from medtune.served_model import served_model


def is_prepared_dir(path: Path) -> bool:
    """True when ``path`` is a ``medtune prepare`` output (test.jsonl or a saved DatasetDict)."""
    return (path / "test.jsonl").is_file() or (path / "dataset" / "test").is_dir()


def find_prepared_dir(context: dict[str, Any], task: str = "medquad-test") -> Path:
    """The prepared folder for ``task``: ``--data`` when it is one, else the run's ``prepared_dir``."""
    data = context.get("data_dir")
    if data is not None and is_prepared_dir(Path(data)):
        return Path(data)
    run = context.get("run_dir")
    if run is not None:
        prepared = served_model(run).prepared_dir
        if prepared is not None and is_prepared_dir(prepared):
            return prepared
    raise UserError(f"task {task} needs a prepared data folder: pass --data DIR (a `medtune prepare` output "
                    "with test.jsonl) or evaluate a run folder whose run.json names its prepared_dir.")


def load_prepared_split(split: str, context: dict[str, Any], task: str | None = None) -> list[FreeTextExample]:
    """One split of a prepared folder (``OUT/<split>.jsonl``, else ``OUT/dataset``) as question/reference pairs."""
    folder = find_prepared_dir(context, task or f"prepared-{split}")
    if (folder / f"{split}.jsonl").is_file():
        with (folder / f"{split}.jsonl").open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    else:
        from datasets import load_from_disk

        dataset = load_from_disk(str(folder / "dataset"))
        if split not in dataset:
            raise UserError(f"{folder}: no {split} split (has {', '.join(dataset)}); re-run prepare.")
        rows = list(dataset[split])
    examples = []
    for number, row in enumerate(rows):
        if "question" not in row or "answer" not in row:
            raise UserError(f"{folder}/{split}.jsonl row {number + 1}: needs `question` and `answer`; re-run prepare.")
        examples.append(FreeTextExample(
            id=str(row.get("id") or number), question=row["question"], reference=row["answer"],
            meta={k: row.get(k) for k in ("source", "focus_area", "question_type", "original_id", "group") if row.get(k)},
        ))
    return examples


def medquad_rows(examples: list[FreeTextExample]) -> list[FreeTextExample]:
    """The MedQuAD rows of a split that mixes MedQuAD with other sources; a split without MedQuAD rows, or with no
    other source, is returned whole (a MedQuAD-only folder, or a folder prepared from your own data)."""
    sources = {e.meta.get("source") for e in examples}
    if "medquad" in sources and len(sources) > 1:
        return [e for e in examples if e.meta.get("source") == "medquad"]
    return examples


def load_medquad_test(root: Path, context: dict[str, Any]) -> list[FreeTextExample]:
    """The MedQuAD rows of the prepared test split (held out: report it once, never tune on it)."""
    return medquad_rows(load_prepared_split("test", context, "medquad-test"))


def load_medquad_validation(root: Path, context: dict[str, Any]) -> list[FreeTextExample]:
    """The MedQuAD rows of the prepared validation split: what ablations and threshold choices are scored on."""
    return medquad_rows(load_prepared_split("validation", context, "medquad-validation"))


def load_prepared_test(root: Path, context: dict[str, Any]) -> list[FreeTextExample]:
    """The whole prepared test split, every source (held out)."""
    return load_prepared_split("test", context)


def load_prepared_validation(root: Path, context: dict[str, Any]) -> list[FreeTextExample]:
    """The whole prepared validation split, every source."""
    return load_prepared_split("validation", context)


def load_medicationqa(root: Path, context: dict[str, Any] | None = None) -> list[FreeTextExample]:
    """MedicationQA (MedInfo 2019) xlsx: 690 consumer medication questions with answers."""
    from openpyxl import load_workbook

    path = require_file(root / "medicationqa" / "MedInfo2019-QA-Medications.xlsx", "medicationqa",
                        "put MedInfo2019-QA-Medications.xlsx there (see medicationqa/SOURCE.md).")
    sheet = load_workbook(path, read_only=True).worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [str(cell).strip() if cell is not None else "" for cell in next(rows)]
    if "Question" not in header or "Answer" not in header:
        raise UserError(f"{path}: expected columns Question and Answer, found {header}.")
    q_col, a_col = header.index("Question"), header.index("Answer")
    focus_col = header.index("Focus (Drug)") if "Focus (Drug)" in header else None
    examples = []
    for number, row in enumerate(rows):
        question, answer = row[q_col], row[a_col]
        if not question or not answer or not str(question).strip() or not str(answer).strip():
            continue
        meta = {"focus": row[focus_col]} if focus_col is not None else {}
        examples.append(FreeTextExample(id=f"medicationqa-{number}", question=str(question).strip(),
                                        reference=str(answer).strip(), meta=meta))
    return examples


def _text(element: ET.Element | None) -> str:
    """Whitespace-normalised text of an XML element ('' when absent)."""
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip() if element is not None else ""


def parse_liveqa(path: Path) -> list[FreeTextExample]:
    """Parse TREC-2017 LiveQA-Med test XML; reference answers are ``ReferenceAnswer`` or ``RefAnswer`` elements.

    The question is the NIST paraphrase (the original is noisy); the reference is the first answer, all answers
    are kept in ``meta["references"]``.
    """
    root = ET.parse(path).getroot()
    examples = []
    for node in root.iter("NLM-QUESTION"):
        answers = [_text(ref.find("ANSWER")) for ref in node.iter() if ref.tag in ("ReferenceAnswer", "RefAnswer")]
        answers = [a for a in answers if a]
        question = _text(node.find("NIST-PARAPHRASE")) or _text(node.find("Original-Question/MESSAGE"))
        if not answers or not question:
            continue
        examples.append(FreeTextExample(id=str(node.get("qid")), question=question, reference=answers[0],
                                        meta={"references": answers}))
    return examples


def load_liveqa(root: Path, context: dict[str, Any] | None = None) -> list[FreeTextExample]:
    """TREC-2017 LiveQA-Med test questions (104) with reference answers."""
    path = require_file(root / "liveqa_trec2017_medical" / "TREC-2017-LiveQA-Medical-Test.xml", "liveqa",
                        "put the TREC-2017 LiveQA-Med test XML there (see liveqa_trec2017_medical/SOURCE.md).")
    return parse_liveqa(path)
