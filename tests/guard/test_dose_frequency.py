"""Max-daily-dose checks when the frequency follows the drug name or the strength is given in brackets."""

from __future__ import annotations

import pytest

from medtune.guard import Guard
from medtune.guard.config import default_guard_config
from medtune.guard.doses import check_max_doses


@pytest.mark.parametrize(
    ("answer", "drug", "mg_per_day"),
    [
        ("Take 1000 mg of acetaminophen every 4 hours.", "acetaminophen", 6000),
        ("Take 2 tablets (500 mg) of acetaminophen every 4 hours.", "acetaminophen", 6000),
        ("Take 800 mg of ibuprofen three times a day.", "ibuprofen", 2400),
        ("Adults can take ibuprofen 400 mg every 4 hours.", "ibuprofen", 2400),
    ],
)
def test_daily_total_over_the_limit_is_flagged(answer: str, drug: str, mg_per_day: float) -> None:
    excess = check_max_doses(answer, default_guard_config().max_daily_doses)
    assert [(e.drug, e.mg_per_day) for e in excess] == [(drug, mg_per_day)]


@pytest.mark.parametrize(
    "answer",
    [
        "Take 500 mg of acetaminophen every 6 hours.",
        "Take 200 mg of ibuprofen every 4 to 6 hours.",
        "Diphenhydramine 25 mg at bedtime.",
        "Take 2 tablets (325 mg) of aspirin every 4 hours.",
    ],
)
def test_label_doses_are_not_flagged_as_excess(answer: str) -> None:
    assert check_max_doses(answer, default_guard_config().max_daily_doses) == []


def test_excess_warning_reaches_the_final_answer() -> None:
    final = Guard().finalize_answer("Take 2 tablets (500 mg) of paracetamol every 4 hours.")
    assert any("6000 mg per day" in warning for warning in final.dose_warnings)
    assert final.text.endswith(final.disclaimer)
