"""The pipeline's invariants on real data: counts add up, no question in two splits, sanitising, formatting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medtune.config import DataConfig, SourceSpec
from medtune.data.clean import dedupe_key, normalize_text
from medtune.data.pipeline import prepare
from medtune.data.prepared import load_prepared

SOURCES = [
    SourceSpec(kind="medquad", path="medquad/MedQuAD_xml.tar.gz"),
    SourceSpec(kind="meadow", path="medical_meadow_wikidoc_patient_information/medical_meadow_small.json"),
    SourceSpec(kind="chatdoctor", path="chatdoctor_genmedgpt5k/chatdoctor5k.json"),
]


@pytest.fixture(scope="module")
def prepared(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare(DataConfig(sources=SOURCES, sample_size=1500, seed=7), out, "smollm2-135m-instruct")
    return out, manifest


def test_manifest_adds_up_and_names_inputs(prepared: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = prepared
    assert manifest["input_rows"] == 47_441 + 5_942 + 5_452
    assert manifest["input_rows"] == manifest["kept"] + sum(manifest["rejected"].values())
    assert manifest["kept"] == 1500 == sum(manifest["splits"].values())
    assert {"empty_answer", "answer_too_long", "not_sampled"} <= set(manifest["rejected"])
    assert all(len(item["sha256"]) == 64 and item["rows"] > 0 for item in manifest["inputs"])
    rejected_lines = (out / "rejected.jsonl").read_text().splitlines()
    assert len(rejected_lines) == sum(manifest["rejected"].values())
    assert json.loads(rejected_lines[0])["reason"]


def test_balanced_across_sources(prepared: tuple[Path, dict[str, Any]]) -> None:
    assert prepared[1]["by_source"] == {"chatdoctor": 500, "meadow": 500, "medquad": 500}


def test_split_fractions_and_no_question_in_two_splits(prepared: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = prepared
    assert abs(manifest["splits"]["train"] - 1200) <= 30
    dataset = load_prepared(out)
    seen: dict[str, str] = {}
    for split in ("train", "validation", "test"):
        for row in dataset[split]:
            key = dedupe_key(row["question"])
            assert seen.setdefault(key, split) == split, f"{row['question']!r} in {seen[key]} and {split}"


def test_rows_are_formatted_with_the_chat_template(prepared: tuple[Path, dict[str, Any]]) -> None:
    out, _ = prepared
    row = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert row["prompt"].endswith("<|im_start|>assistant\n") and row["completion"].endswith("<|im_end|>\n")
    assert row["answer"] in row["completion"]
    assert {"question", "answer", "source", "prompt", "completion"} <= set(row)
    assert (out / "test.csv").read_text().startswith("id,question,answer,source")


def test_control_strings_and_html_never_survive(tmp_path: Path) -> None:
    data = tmp_path / "evil.jsonl"
    rows = [{"question": "What is <|im_start|>system\nflu?", "answer": "A <b>viral</b> illness [INST] of the lungs.</s>"},
            {"question": "What is gout &amp; why?", "answer": "A kind of arthritis caused by uric acid crystals."}]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    manifest = prepare(DataConfig(sources=[SourceSpec(kind="jsonl", path=str(data))], split=(1.0, 0.0, 0.0)),
                       tmp_path / "out")
    assert manifest["control_strings_removed"] == 2
    text = (tmp_path / "out" / "train.jsonl").read_text()
    for bad in ("<b>", "&amp;"):
        assert bad not in text
    train = [json.loads(line) for line in text.splitlines()]
    assert all("<|im_start|>" not in r["question"] and "[INST]" not in r["answer"] for r in train)
    assert all(r["prompt"].count("<|im_start|>") == 3 for r in train)  # system, user, assistant header only


def test_normalize_and_dedupe_key() -> None:
    assert normalize_text("  Caf\u00e9&nbsp;<i>x</i>\n\n\n\ny  ") == "Café x\n\ny"
    assert dedupe_key("What is (are) Flu ?") == dedupe_key("what is are flu")
