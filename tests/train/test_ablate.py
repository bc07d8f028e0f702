"""`medtune ablate`: grid expansion, validation, and a 2-cell grid on the tiny model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from tests.train.conftest import splits_for

from medtune.errors import UserError
from medtune.train.ablate import Grid, cells, load_grid, run_grid


def test_shipped_grid_is_valid() -> None:
    grid = load_grid(Path(__file__).resolve().parents[2] / "ablations" / "smollm2-grid.yaml")
    assert len(cells(grid)) == 4


def test_unknown_axis_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "base": "smollm2-135m/tiny", "grid": {"rank": [4]}}))
    with pytest.raises(UserError, match="unknown grid axis 'rank'"):
        load_grid(path)


def test_grid_writes_comparison(tiny_model_dir: Path, qa_rows: list[dict[str, str]], tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "model": {"name": str(tiny_model_dir), "max_seq_length": 128},
                "train": {
                    "batch_size": 2,
                    "gradient_accumulation_steps": 1,
                    "logging_steps": 1,
                    "gradient_checkpointing": False,
                },
            }
        )
    )
    grid = Grid(
        name="g",
        base=str(base),
        max_steps=2,
        grid={"r": [2, 4], "target_modules": ["attention"], "quantization": ["none", "nf4"]},
    )
    out = run_grid(grid, tmp_path / "out", splits=splits_for(tiny_model_dir, qa_rows))
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "skipped: needs CUDA", "ok", "skipped: needs CUDA"]
    assert int(rows[2]["trainable_params"]) == 2 * int(rows[0]["trainable_params"])  # r=4 vs r=2
    assert (out / "comparison.png").stat().st_size > 0
    assert "| cell |" in (out / "results.md").read_text()
