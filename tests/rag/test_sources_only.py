"""Sources-only mode: the threshold chosen on validation (`medtune index calibrate`) and `eval --rag-min-score`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.errors import UserError
from medtune.rag.calibrate import CANDIDATES, calibrate_min_score, choose_threshold


def test_choose_threshold_balances_answers_kept_and_abstentions_and_prefers_the_lower_on_ties() -> None:
    covered, hidden = [0.9, 0.85, 0.8, 0.7], [0.6, 0.65, 0.72, 0.5]
    threshold, table = choose_threshold(covered, hidden)
    # 0.66-0.70 keep every covered question and abstain on 3 of 4 hidden; 0.73-0.80 the reverse: both 0.875
    assert threshold == 0.66
    row = next(r for r in table if r["threshold"] == 0.66)
    assert (row["covered_kept"], row["hidden_abstained"], row["balanced_accuracy"]) == (1.0, 0.75, 0.875)
    assert max(r["balanced_accuracy"] for r in table) == 0.875
    assert choose_threshold([0.9], [0.4])[0] == 0.41
    with pytest.raises(UserError, match="both with and without"):
        choose_threshold([], [0.4])


def test_calibration_refuses_the_test_split(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="validation"):
        calibrate_min_score("medquad", tmp_path, split="test")
    with pytest.raises(UserError, match="validation.jsonl: not found"):
        calibrate_min_score("medquad", tmp_path)


def _validation_folder(rows: list[dict], folder: Path, count: int = 16) -> Path:
    """A prepared folder whose validation rows are real MedQuAD pairs of the index (one per document, seeded)."""
    by_document: dict[str, dict] = {}
    for row in rows:
        by_document.setdefault(row["document_id"], row)
    chosen = random.Random(7).sample(sorted(by_document), count)
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text("".join(json.dumps(
        {"id": by_document[d]["pair_id"], "question": by_document[d]["question"], "answer": by_document[d]["answer"],
         "original_id": by_document[d]["pair_id"].split("/", 1)[1], "group": "g0"}) + "\n" for d in chosen))
    return folder


def test_calibration_separates_shown_from_hidden_documents_on_a_real_index(index_home, tmp_path: Path) -> None:
    folder = _validation_folder(index_home.rows, tmp_path / "prepared")
    result = calibrate_min_score("medquad", folder, progress=False)
    assert result.questions == 16 and result.own_document_retrieved >= 0.8
    assert result.auc > 0.7 and result.threshold in CANDIDATES
    chosen = next(r for r in result.table if r["threshold"] == result.threshold)
    assert (chosen["covered_kept"], chosen["hidden_abstained"]) == (result.covered_kept, result.hidden_abstained)
    printed = CliRunner().invoke(get_app(), ["index", "calibrate", "medquad", str(folder), "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output.strip().splitlines()[-1])["threshold"] == result.threshold


def test_eval_in_sources_only_mode_never_calls_the_model_under_the_threshold(index_home, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.rag.test_eval_rag import _tiny_model

    import medtune.evaluate.generation as generation
    from medtune.config import EvalConfig
    from medtune.evaluate.runner import evaluate_model
    from medtune.rag import open_retriever
    from medtune.rag.grounding import NOT_COVERED

    rows = [r for r in index_home.rows if r["document_id"] == "2_GARD_QA/0000004"][:2]
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(
        {"id": r["pair_id"], "question": r["question"], "answer": r["answer"]}) + "\n" for r in rows))

    def no_model(*args, **kwargs):
        raise AssertionError("every question is under the threshold: nothing may be generated")

    monkeypatch.setattr(generation, "generate_answers", no_model)
    results = evaluate_model(str(_tiny_model(tmp_path)), ["medquad-test"], data_dir=folder,
                             settings=EvalConfig(max_new_tokens=4, rag_min_score=1.0), rag=open_retriever("medquad"),
                             out_dir=tmp_path / "out")
    task = results["tasks"]["medquad-test"]
    answers = [s["answer"] for s in task["samples"]]
    assert answers and len(answers) == task["n"] and set(answers) == {NOT_COVERED}
    assert task["metrics"]["rag_abstained"] == 1.0 and task["metrics"]["says_not_covered"] == 1.0
    assert results["rag_min_score"] == 1.0
    refused = CliRunner().invoke(get_app(), ["eval", "smollm2-135m-instruct", "--tasks", "medquad-test",
                                             "--rag-min-score", "0.7"])
    assert refused.exit_code != 0 and "needs --rag" in str(refused.exception)
