"""Self-distillation data (data.distill): the care-advice check, consensus selection, and prepare end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medtune.config import DataConfig, DistillConfig, SourceSpec
from medtune.data.distill import (
    Sample,
    advises_care,
    choose,
    consensus_scores,
    least_preferred,
    preference_pairs,
)
from medtune.data.pipeline import prepare
from medtune.errors import UserError

MEDICATIONQA = "medicationqa/MedInfo2019-QA-Medications.xlsx"


@pytest.mark.parametrize("text", [
    "If the pain gets worse, see your doctor.",
    "It is best to talk to a healthcare provider about this.",
    "Please consult a qualified medical professional before changing the dose.",
    "Seek immediate medical attention if you have trouble breathing.",
    "Call 911 or go to the emergency room right away.",
    "You should get checked by a GP within a few days.",
    "Ask your pharmacist whether the two can be taken together.",
    "Speak with your child's pediatrician about vaccination.",
    "Go to the nearest A&E.",
])
def test_care_advice_is_found(text: str) -> None:
    assert advises_care(text)


@pytest.mark.parametrize("text", [
    "Doctors diagnose the condition with a blood test.",
    "The emergency was handled by the local team.",
    "Seek out foods rich in iron, such as spinach.",
    "Physicians first described the syndrome in 1952.",
    "Treatment includes rest, fluids and pain relief.",
])
def test_mentions_without_advice_are_not_care_advice(text: str) -> None:
    assert not advises_care(text)


def _sample(text: str = "A complete answer.", *, truncated: bool = False, repeated: float = 0.0,
            care: bool = True, consensus: float = 0.5) -> Sample:
    return Sample(text=text, new_tokens=10, truncated=truncated, repeated_3gram_fraction=repeated,
                  care_advice=care, consensus=consensus)


def test_consensus_is_the_mean_cosine_to_the_other_samples() -> None:
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    scores = consensus_scores(vectors)
    assert scores == pytest.approx([0.4, 0.7, 0.3])  # the middle sample agrees most with the others
    assert consensus_scores(vectors[:1]) == [0.0]


def test_choose_keeps_the_consensus_sample_among_those_that_pass() -> None:
    settings = DistillConfig(enabled=True, require_care_advice=True, max_repeated_3gram_fraction=0.05)
    samples = [_sample(consensus=0.9, truncated=True), _sample(consensus=0.8, care=False),
               _sample(consensus=0.7, repeated=0.2), _sample(consensus=0.6), _sample(consensus=0.5)]
    assert choose(samples, settings) == (3, "kept")
    assert choose(samples, settings.model_copy(update={"require_care_advice": False})) == (1, "kept")


def test_choose_names_the_commonest_failure_when_nothing_passes() -> None:
    settings = DistillConfig(enabled=True)
    samples = [_sample(truncated=True), _sample(repeated=0.5), _sample(truncated=True), _sample(text="  ")]
    assert choose(samples, settings) == (None, "truncated")


def test_the_rejected_side_is_the_failing_sample_furthest_from_the_consensus() -> None:
    settings = DistillConfig(enabled=True, require_care_advice=True)
    samples = [_sample(consensus=0.9, truncated=True), _sample(consensus=0.3, care=False), _sample(consensus=0.6),
               _sample(consensus=0.5, repeated=0.2)]
    assert least_preferred(samples, settings) == 1  # no care advice, and the least agreed-with
    assert least_preferred(samples, settings.model_copy(update={"require_care_advice": False})) == 3
    assert least_preferred([_sample(consensus=0.2), _sample(consensus=0.1)], settings) is None  # no stated reason


def test_preference_pairs_come_from_rows_with_a_rejected_sample() -> None:
    rows = [{"id": "a", "prompt": "P", "completion": "good", "rejected_completion": "bad",
             "rejected_failure": "truncated"}, {"id": "b", "prompt": "Q", "completion": "fine"}]
    assert preference_pairs(rows) == [{"id": "a", "prompt": "P", "chosen": "good", "rejected": "bad",
                                       "rejected_failure": "truncated"}]


def test_distill_is_left_out_of_the_data_hash_while_off() -> None:
    assert "distill" not in DataConfig().model_dump()
    assert DataConfig(distill={"enabled": True}).model_dump()["distill"]["samples"] == 4


def test_distill_with_grounded_prompts_is_refused(tmp_path: Path) -> None:
    data = DataConfig(sources=[SourceSpec(kind="medicationqa", path=MEDICATIONQA)],
                      distill={"enabled": True}, grounded={"index": str(tmp_path / "index")})
    with pytest.raises(UserError, match="cannot be combined"):
        prepare(data, tmp_path / "out", None, progress=False)


def test_a_source_no_row_has_is_named(tmp_path: Path) -> None:
    data = DataConfig(sources=[SourceSpec(kind="medicationqa", path=MEDICATIONQA)], prompt_style="mistral-inst",
                      distill={"enabled": True, "sources": ["chatdoctr"]})
    with pytest.raises(UserError, match=r"no train row comes from them \(the sources here: medicationqa\)"):
        prepare(data, tmp_path / "out", None, progress=False)


@pytest.mark.slow
def test_prepare_distils_the_train_split_only(shared_data: Path, tmp_path: Path) -> None:
    """SmolLM2 writes 3 short answers to each of 6 seeded train questions; every row is accounted for."""
    data = DataConfig(sources=[SourceSpec(kind="medicationqa", path=MEDICATIONQA)], sample_size=60, seed=3,
                      system_prompt="Answer in one short sentence.",
                      distill={"enabled": True, "limit": 6, "samples": 3, "max_new_tokens": 96,
                               "max_repeated_3gram_fraction": 1.0, "min_reference_cosine": -1.0})
    out = tmp_path / "distilled"
    manifest = prepare(data, out, "smollm2-135m-instruct", progress=False)
    block = manifest["distill"]
    assert block["questions"] == 6 and block["not_sampled"] == 48 - 6
    assert manifest["input_rows"] == manifest["kept"] + sum(manifest["rejected"].values())
    assert manifest["splits"]["train"] == block["kept"] == block["outcomes"].get("kept", 0)
    assert manifest["rejected"]["distill_not_sampled"] == 42
    records = [json.loads(line) for line in (out / "distill.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["samples"]) == 3 for r in records)
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in records}
    for row in train:
        record = by_id[row["id"]]
        chosen = record["samples"][record["chosen"]]
        assert row["answer"] == chosen["text"] != record["reference"]
        assert not chosen["truncated"] and row["completion"].startswith(chosen["text"])
        assert "Answer in one short sentence." in row["prompt"]
    for failed in (r for r in records if r["chosen"] is None):
        assert all(s["failure"] for s in failed["samples"])
    assert train, "no sample of 6 questions passed: the checks reject everything"
    generated = {s["text"] for r in records for s in r["samples"]}
    validation = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert validation and not {row["answer"] for row in validation} & generated  # references stay references
    pairs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert len(pairs) == block["preference_pairs"] == sum(r["rejected"] is not None for r in records)
    train_by_id = {row["id"]: row for row in train}
    for pair in pairs:
        record = by_id[pair["id"]]
        worst = record["samples"][record["rejected"]]
        assert pair["chosen"] == train_by_id[pair["id"]]["completion"] and pair["prompt"] == train_by_id[pair["id"]]["prompt"]
        assert pair["rejected"].startswith(worst["text"]) and pair["rejected_failure"] == worst["failure"] is not None
