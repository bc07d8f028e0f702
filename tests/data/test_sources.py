"""Each loader on the real files in MEDTUNE_DATA_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.data.records import LoadResult
from medtune.data.sources import load_source


@pytest.fixture(scope="module")
def medquad(shared_data: Path) -> LoadResult:
    return load_source("medquad", str(shared_data / "medquad/MedQuAD_xml.tar.gz"))


def test_medquad_archive_counts_and_provenance(medquad: LoadResult) -> None:
    assert medquad.input_rows == 47_441
    assert sum(1 for r in medquad.records if r.answer.strip()) == 16_407
    gard = next(r for r in medquad.records if r.original_id == "0000004-1" and "GARD" in r.document_id)
    assert gard.focus_area == "ABCD syndrome" and gard.question_type == "symptoms"
    assert gard.url.startswith("https://rarediseases.info.nih.gov/")


def test_meadow_chatdoctor_medicationqa_counts(shared_data: Path) -> None:
    meadow = load_source("meadow", "medical_meadow_wikidoc_patient_information/medical_meadow_small.json")
    assert meadow.input_rows == 5_942 and meadow.records[0].question.startswith("What")
    chat = load_source("chatdoctor", "chatdoctor_genmedgpt5k/chatdoctor5k.json")
    assert chat.input_rows == 5_452 and chat.records[0].question.startswith("Doctor,")
    med = load_source("medicationqa", "medicationqa/MedInfo2019-QA-Medications.xlsx")
    assert med.input_rows == 690
    assert med.records[0].focus_area and med.records[0].url.startswith("http")


def test_generic_csv_jsonl_with_mapping(tmp_path: Path) -> None:
    csv_file = tmp_path / "qa.csv"
    csv_file.write_text("Q,A,Topic\nWhat is asthma?,A chronic disease of the airways.,lungs\n")
    rows = load_source("csv", str(csv_file), {"question": "Q", "answer": "A", "focus_area": "Topic"}, "mine")
    assert rows.records[0].focus_area == "lungs" and rows.records[0].source == "mine"
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text('{"q": "What is gout?", "a": "A form of inflammatory arthritis."}\n')
    assert load_source("jsonl", str(jsonl), {"question": "q", "answer": "a"}).records[0].question == "What is gout?"
