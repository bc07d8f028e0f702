"""AppTest tests of the Runs page and the run-folder helpers, on run folders written by hand."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from medtune.runs import RunDir  # noqa: E402
from medtune.ui import runs_view  # noqa: E402

from .tests_ui_paths import APP, RUNS_PAGE  # noqa: E402


def make_run(home: Path, name: str, losses: list[float], val: list[float], r: int, evaluated: bool = False,
             age: float = 0.0) -> RunDir:
    """A run folder with run.json, recipe.yaml, metrics.jsonl and summary.json as `medtune train` writes them."""
    root = home / "runs" / name
    root.mkdir(parents=True)
    run = RunDir(root)
    run.run_json.write_text(json.dumps({"base_model": "smollm2-135m-instruct", "recipe": name.split("-")[0],
                                        "status": "completed", "created": "2026-11-24T10:00:00"}))
    run.recipe.write_text(f"name: {name}\nlora:\n  r: {r}\n  alpha: {2 * r}\ntrain:\n  learning_rate: 0.0002\n"
                          "  epochs: 1.0\n")
    lines = [{"step": i + 1, "epoch": (i + 1) / len(losses), "type": "train", "loss": loss}
             for i, loss in enumerate(losses)]
    lines += [{"step": (i + 1) * 2, "epoch": (i + 1) * 2 / len(losses), "type": "eval", "val_loss": v}
              for i, v in enumerate(val)]
    run.metrics.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    run.summary.write_text(json.dumps({"initial_loss": losses[0], "final_loss": losses[-1], "min_loss": min(losses),
                                       "final_val_loss": val[-1], "steps": len(losses), "seconds": 42.0}))
    run.data_manifest.write_text(json.dumps({"input_rows": 100, "kept": 90, "splits": {"train": 80}}))
    if evaluated:
        run.eval_dir.mkdir()
        (run.eval_dir / "results.json").write_text(json.dumps(
            {"created": "2026-11-24", "limit": 20, "shots": 0,
             "tasks": {"medquad": {"kind": "free_text", "n": 20, "metrics": {"rougeL": 0.21, "bleu": 3.5}}}}))
    stamp = time.time() - age
    os.utime(root, (stamp, stamp))
    return run


@pytest.fixture
def two_runs(isolated_home: Path) -> list[RunDir]:
    return [make_run(isolated_home, "alpha-20261124-100000", [2.0, 1.6, 1.3, 1.1], [1.5, 1.2], r=8,
                     evaluated=True, age=0),
            make_run(isolated_home, "beta-20261124-090000", [2.1, 1.9, 1.8, 1.7], [1.9, 1.8], r=16, age=60)]


def test_loss_frame_and_compare_rows(two_runs: list[RunDir]) -> None:
    frame = runs_view.loss_frame(two_runs[0])
    assert list(frame["train loss"]) == [2.0, 1.6, 1.3, 1.1]  # the broken last line is skipped
    assert frame.loc[4, "validation loss"] == 1.2
    row = runs_view.run_row(two_runs[0])
    assert row["lora r"] == 8 and row["final_loss"] == 1.1 and row["medquad/rougeL"] == 0.21
    table = runs_view.compare_frame(two_runs)
    assert list(table.columns) == ["alpha-20261124-100000", "beta-20261124-090000"]
    assert table.loc["final_val_loss", "beta-20261124-090000"] == "1.8"
    curves = runs_view.compare_loss_frame(two_runs, "validation loss")
    assert list(curves.index) == [2, 4] and curves.loc[4, "beta-20261124-090000"] == 1.8


def test_runs_page_shows_newest_run(two_runs: list[RunDir]) -> None:
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=30).run()
    assert not at.exception, at.exception
    assert at.multiselect(key="runs_pick").value == ["alpha-20261124-100000"]
    assert [m.value for m in at.metric][:3] == ["1.1000", "1.2000", "4"]
    assert "r: 8" in at.code[0].value
    assert len(at.get("vega_lite_chart")) == 1  # the loss curves
    eval_table = at.dataframe[0].value
    assert eval_table.loc["medquad", "rougeL"] == 0.21


def test_runs_page_compares_selected_runs(two_runs: list[RunDir]) -> None:
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=30).run()
    at.multiselect(key="runs_pick").set_value(["alpha-20261124-100000", "beta-20261124-090000"]).run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "Comparison"
    table = at.dataframe[0].value
    assert table.loc["lora r"].tolist() == ["8", "16"]
    at.radio(key="compare_curve").set_value("validation loss").run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 3  # comparison chart + one per run
    assert len(at.expander) == 2


def test_runs_page_without_runs(isolated_home: Path) -> None:
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=30).run()
    assert not at.exception
    assert "No run folders" in at.info[0].value


def test_navigation_reaches_runs_page(two_runs: list[RunDir], fake_backend: object) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Training runs"


def test_broken_summary_is_reported_not_crashing(two_runs: list[RunDir]) -> None:
    two_runs[0].summary.write_text("{not json")
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=30).run()
    assert not at.exception, at.exception
    assert "summary.json: invalid JSON" in at.error[0].value
