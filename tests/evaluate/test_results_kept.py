"""A second evaluation into the same folder keeps the first one's tasks in results.json (compare still finds them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medtune.evaluate.compare import compare_results, load_results
from medtune.evaluate.report import write_reports
from medtune.evaluate.runner import evaluation_stamp, merge_earlier_results


def _task(ids: list[str], scores: list[float]) -> dict[str, Any]:
    metrics = {"acc": sum(scores) / len(scores), "acc_stderr": 0.1, "random_baseline": 0.25}
    return {"kind": "multiple_choice", "n": len(ids), "metrics": metrics,
            "intervals": {}, "per_example": {"acc": scores}, "ids": ids, "samples": [], "notes": [], "seconds": 1.0}


def _results(model: str, created: str, limit: int, tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    results = {"model": model, "created": created, "settings": {"limit": limit, "use_chat_template": True},
               "limit": limit, "sample_seed": 1234, "shots": 0, "prompt": "served", "guard": False, "rag": None, "rag_k": None,
               "rag_hide_own_document": False, "rag_min_score": None, "tasks": tasks,
               "model_info": {"parameters": 1, "size_on_disk_bytes": None}}
    for data in tasks.values():
        data["evaluated"] = evaluation_stamp(results)
    return results


def _write(results: dict[str, Any], out: Path) -> list[str]:
    """What evaluate_model does once its tasks are scored."""
    merged, kept, replaced = merge_earlier_results(results, out)
    assert replaced is None
    write_reports(merged, out)
    return kept


def test_a_second_evaluation_with_other_tasks_keeps_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run" / "eval"
    first = _results("runs/r1", "2025-01-01T10:00:00", 2,
                     {"medqa": _task(["a", "b"], [1.0, 0.0]), "pubmedqa": _task(["c", "d"], [0.0, 0.0])})
    assert _write(first, out) == []
    second = _results("runs/r1", "2025-01-02T10:00:00", 3,
                      {"pubmedqa": _task(["c", "d", "e"], [1.0, 1.0, 0.0]), "mmlu-medical": _task(["f"], [1.0])})
    assert _write(second, out) == ["medqa"]

    saved = json.loads((out / "results.json").read_text())
    assert list(saved["tasks"]) == ["medqa", "pubmedqa", "mmlu-medical"]  # earlier order, new tasks after
    assert saved["tasks"]["medqa"]["per_example"]["acc"] == [1.0, 0.0]  # kept as it was
    assert saved["tasks"]["medqa"]["evaluated"]["created"] == "2025-01-01T10:00:00"
    assert saved["tasks"]["medqa"]["evaluated"]["limit"] == 2
    assert saved["tasks"]["pubmedqa"]["n"] == 3  # evaluated again: replaced
    assert saved["tasks"]["pubmedqa"]["evaluated"]["created"] == "2025-01-02T10:00:00"
    assert saved["created"] == "2025-01-02T10:00:00" and saved["limit"] == 3  # the top level: the latest
    assert "medqa" in (out / "report.md").read_text()

    # `medtune compare RUN/eval` (or RUN) still finds every task
    found = load_results(out.parent)
    assert set(found["tasks"]) == {"medqa", "pubmedqa", "mmlu-medical"}
    other = _results("base", "2025-01-03T10:00:00", 2, {"medqa": _task(["a", "b"], [0.0, 0.0])})
    other["label"] = "base"
    diffs = compare_results([found, other], resamples=50)
    assert [(d.task, d.baseline) for d in diffs] == [("medqa", 0.5)]


def test_an_entry_older_than_the_stamp_gets_its_files_settings(tmp_path: Path) -> None:
    earlier = _results("runs/r1", "2025-01-01T10:00:00", 5, {"medqa": _task(["a"], [1.0])})
    del earlier["tasks"]["medqa"]["evaluated"]
    tmp_path.joinpath("results.json").write_text(json.dumps(earlier))
    merged, kept, _ = merge_earlier_results(_results("runs/r1", "2025-02-01T00:00:00", 1,
                                                     {"pubmedqa": _task(["c"], [0.0])}), tmp_path)
    assert kept == ["medqa"]
    assert merged["tasks"]["medqa"]["evaluated"]["created"] == "2025-01-01T10:00:00"
    assert merged["tasks"]["medqa"]["evaluated"]["limit"] == 5


def test_another_models_results_are_replaced_and_said(tmp_path: Path) -> None:
    tmp_path.joinpath("results.json").write_text(json.dumps(
        _results("other-model", "2025-01-01T10:00:00", 2, {"medqa": _task(["a"], [1.0])})))
    new = _results("runs/r1", "2025-02-01T00:00:00", 2, {"pubmedqa": _task(["c"], [0.0])})
    merged, kept, replaced = merge_earlier_results(new, tmp_path)
    assert merged is new and kept == [] and replaced == "other-model"


def test_the_same_run_folder_named_two_ways_is_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    tmp_path.joinpath("results.json").write_text(json.dumps(
        _results(str(tmp_path / "runs" / "r1"), "2025-01-01T10:00:00", 2, {"medqa": _task(["a"], [1.0])})))
    _, kept, replaced = merge_earlier_results(
        _results("runs/r1/", "2025-02-01T00:00:00", 2, {"pubmedqa": _task(["c"], [0.0])}), tmp_path)
    assert kept == ["medqa"] and replaced is None


def test_nothing_to_keep(tmp_path: Path) -> None:
    new = _results("m", "2025-02-01T00:00:00", 2, {"medqa": _task(["a"], [1.0])})
    assert merge_earlier_results(new, tmp_path) == (new, [], None)  # no results.json yet
    tmp_path.joinpath("results.json").write_text("{not json")
    assert merge_earlier_results(new, tmp_path) == (new, [], None)
    tmp_path.joinpath("results.json").write_text(json.dumps(new))
    assert merge_earlier_results(new, tmp_path) == (new, [], None)  # the same tasks again: replaced


@pytest.mark.slow
def test_cli_eval_twice_into_one_folder_says_what_it_kept(tiny_model_dir: Path, prepared_dir: Path,
                                                          tmp_path: Path, shared_data: Path) -> None:
    from typer.testing import CliRunner

    from medtune.cli import get_app

    runner = CliRunner()
    out = tmp_path / "eval"
    common = ["--limit", "2", "--data", str(prepared_dir), "--max-new-tokens", "4", "--out", str(out),
              "--no-chat-template"]
    first = runner.invoke(get_app(), ["eval", str(tiny_model_dir), "--tasks", "medquad-test", *common])
    assert first.exit_code == 0, first.output
    assert "kept earlier results" not in first.output
    second = runner.invoke(get_app(), ["eval", str(tiny_model_dir), "--tasks", "pubmedqa", *common])
    assert second.exit_code == 0, second.output
    assert "kept earlier results for tasks medquad-test" in " ".join(second.output.split())
    saved = load_results(out)
    assert list(saved["tasks"]) == ["medquad-test", "pubmedqa"]
    assert saved["tasks"]["medquad-test"]["evaluated"]["created"] <= saved["tasks"]["pubmedqa"]["evaluated"]["created"]
