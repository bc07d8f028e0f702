"""``medtune prepare`` and ``medtune data stats`` through the real command line (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medtune", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture()
def qa_csv(tmp_path: Path) -> Path:
    rows = ["Q,A,Topic"] + [f'"What is condition number {i}?","Condition {i} is a long enough answer.",t{i % 3}'
                            for i in range(30)] + ['"short","An answer long enough to keep.",t0']
    path = tmp_path / "qa.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_prepare_then_stats(tmp_path: Path, qa_csv: Path) -> None:
    done = run("prepare", "--source", f"csv:{qa_csv}", "--map", "question=Q,answer=A,focus_area=Topic",
               "--out", "out", "--prompt-style", "mistral-inst", "--seed", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "question_too_short" in done.stdout and "kept" in done.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["kept"] == 30 and manifest["rejected"] == {"question_too_short": 1} and manifest["seed"] == 5
    done = run("data", "stats", "out", "--model", "none", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "t0" in done.stdout and "question_chars" in done.stdout
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert figures == ["answer_length.png", "by_source.png", "focus_area.png", "question_length.png",
                       "question_type.png"]
    assert all((tmp_path / "out" / "figures" / f).stat().st_size > 5000 for f in figures)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--source", "csv:qa.csv"], "no column 'question'"),
    (["--source", "xml:qa.csv"], "KIND:PATH"),
    (["--source", "csv:missing.csv"], "missing.csv: not found"),
    (["--source", "csv:qa.csv", "--map", "question=Q,answer=A", "--prompt-style", "alpaca"], "prompt_style 'alpaca'"),
])
def test_user_errors_exit_2_with_one_line(tmp_path: Path, qa_csv: Path, args: list[str], fragment: str) -> None:
    done = run("prepare", *args, "--out", "out", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_stats_on_a_non_prepared_folder(tmp_path: Path) -> None:
    done = run("data", "stats", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "not a prepared data folder" in done.stderr and "Traceback" not in done.stderr


def test_recipe_data_section_with_flag_overrides(tmp_path: Path, qa_csv: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\ndata:\n  sources:\n    - {kind: csv, path: qa.csv, columns: {question: Q, answer: A}, name: mine}\n"
        "  prompt_style: llama3-header\n  sample_size: 25\n  seed: 1\n", encoding="utf-8")
    done = run("prepare", "--recipe", str(recipe), "--out", "out", "--seed", "9", "--sample-size", "20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["seed"], manifest["sample_size"], manifest["kept"]) == (9, 20, 20)
    assert manifest["prompt_style"] == "llama3-header" and manifest["by_source"] == {"mine": 20}
    assert manifest["rejected"] == {"question_too_short": 1, "not_sampled": 10}


def test_a_bad_distill_value_is_one_clear_line(tmp_path: Path, qa_csv: Path) -> None:
    done = run("prepare", "--source", f"csv:{qa_csv}", "--map", "question=Q,answer=A", "--out", "out",
               "--prompt-style", "mistral-inst", "--distill", "lots", cwd=tmp_path)
    assert done.returncode == 2 and "--distill lots" in done.stderr and "Traceback" not in done.stderr
