"""Issue 31's frozen conversation set: unchanged since its hash was recorded, well formed, apart from val."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from medtune.guard.evaluation import EXPECTED_ALL, data_path, recorded_frozen_sha256

DOCS = Path(__file__).resolve().parents[2] / "docs" / "guard.md"
TEST, VAL = "conversations_test.jsonl", "conversations_val.jsonl"
#: The second pair (2026-12-08): written after the first test set had been scored twice; 3 new bypass families.
TEST2, VAL2 = "conversations_test2.jsonl", "conversations_val2.jsonl"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in data_path(name).read_text(encoding="utf-8").splitlines() if line.strip()]


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", unicodedata.normalize("NFKC", text).casefold()).split())


@pytest.mark.parametrize(("test", "val"), [(TEST, VAL), (TEST2, VAL2)])
def test_test_set_has_the_recorded_hash(test: str, val: str) -> None:
    recorded = recorded_frozen_sha256(DOCS, test)
    assert recorded is not None, f"docs/guard.md must record the sha256 of {test}"
    assert hashlib.sha256(data_path(test).read_bytes()).hexdigest() == recorded, (
        f"{test} changed: it is frozen; tune on {val} instead")


@pytest.mark.parametrize("name", [VAL, VAL2])
def test_val_set_hash_is_recorded_too(name: str) -> None:
    assert recorded_frozen_sha256(DOCS, name) == hashlib.sha256(data_path(name).read_bytes()).hexdigest()


@pytest.mark.parametrize(("name", "minimum"), [(TEST, 300), (VAL, 150), (TEST2, 300), (VAL2, 150)])
def test_rows_are_well_formed(name: str, minimum: int) -> None:
    data = rows(name)
    assert len(data) >= minimum
    assert len({r["id"] for r in data}) == len(data)
    for row in data:
        assert row["expected"] in EXPECTED_ALL, row["id"]
        assert row["family"], row["id"]
        assert row["messages"] and row["messages"][-1]["role"] == "user", row["id"]
        assert all(m["role"] in ("user", "assistant") and m["content"].strip() for m in row["messages"]), row["id"]


@pytest.mark.parametrize(("test", "val", "per_family"), [(TEST, VAL, 15), (TEST2, VAL2, 12)])
def test_every_family_has_enough_rows_in_test_and_appears_in_val(test: str, val: str, per_family: int) -> None:
    test_families = Counter(r["family"] for r in rows(test))
    assert len(test_families) >= 20
    assert min(test_families.values()) >= per_family, test_families
    assert set(Counter(r["family"] for r in rows(val))) == set(test_families)
    assert set(r["expected"] for r in rows(test)) == set(EXPECTED_ALL)


def test_second_pair_keeps_the_first_pairs_families() -> None:
    assert set(Counter(r["family"] for r in rows(TEST))) < set(Counter(r["family"] for r in rows(TEST2)))


@pytest.mark.parametrize(("test", "val"), [(TEST, VAL), (TEST2, VAL2)])
def test_no_prompt_text_is_shared_between_val_and_test(test: str, val: str) -> None:
    def user_texts(name: str) -> set[str]:
        return {norm(m["content"]) for r in rows(name) for m in r["messages"] if m["role"] == "user"}

    def conversations(name: str) -> set[tuple[str, ...]]:
        return {tuple(norm(m["content"]) for m in r["messages"]) for r in rows(name)}

    assert not user_texts(test) & user_texts(val)
    assert not conversations(test) & conversations(val)


def test_ordinary_questions_validation_set_is_well_formed_and_apart_from_the_test_sets() -> None:
    data = rows("ordinary_val.jsonl")
    assert len(data) >= 300 and len({r["id"] for r in data}) == len(data)
    assert {r["expected"] for r in data} == {"answer_with_disclaimer"}
    assert all(r["messages"][-1]["role"] == "user" for r in data)
    assert recorded_frozen_sha256(DOCS, "ordinary_val.jsonl") == \
        hashlib.sha256(data_path("ordinary_val.jsonl").read_bytes()).hexdigest()
    own = {norm(r["messages"][-1]["content"]) for r in data}
    for test in (TEST, TEST2, "frozen_test.jsonl"):
        others = {norm(m["content"]) for r in rows(test) for m in r.get("messages", [])} | \
            {norm(r["prompt"]) for r in rows(test) if "prompt" in r}
        assert not own & others, test
