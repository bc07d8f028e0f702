"""`medtune ablate`: grid expansion, validation, and a 2-cell grid on the tiny model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from tests.train.conftest import splits_for

from medtune.errors import UserError
from medtune.prompts import served_system_prompt
from medtune.train.ablate import Grid, base_eval_settings, cells, load_grid, run_grid


def test_shipped_grids_are_valid() -> None:
    folder = Path(__file__).resolve().parents[2] / "ablations"
    assert len(cells(load_grid(folder / "smollm2-grid.yaml"))) == 4
    choices = load_grid(folder / "smollm2-demo-choices.yaml")
    assert len(cells(choices)) == 2 and choices.eval is not None and choices.eval.decoding


def test_a_nested_axis_sets_a_key_of_a_sub_section() -> None:
    from medtune.config import load_recipe
    from medtune.recipes import find_recipe
    from medtune.train.ablate import cell_recipe

    base = load_recipe(find_recipe("smollm2-135m/distilled")).model_dump(mode="json")
    recipe = cell_recipe(base, "g", 1, {"data.distill.require_care_advice": True, "data.distill.samples": 5})
    assert recipe.data.distill.require_care_advice and recipe.data.distill.samples == 5
    assert recipe.data.distill.limit == 256 and recipe.name == "g-01"  # the rest of the section is kept
    assert not load_recipe(find_recipe("smollm2-135m/distilled")).data.distill.require_care_advice


def test_unknown_axis_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "base": "smollm2-135m/tiny", "grid": {"rank": [4]}}))
    with pytest.raises(UserError, match="unknown grid axis 'rank'"):
        load_grid(path)


def test_ablation_refuses_held_out_tasks_and_unknown_decoding_keys(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    for tasks, decoding, message in (
        (["medquad-test"], {}, "'medquad-test' is a held-out set"),
        (["rubric:consumer-health"], {}, "'rubric:consumer-health' is a held-out set"),
        (["medqa"], {}, "'medqa' is a held-out set"),
        (["medquad-validation"], {"beam_width": [2]}, "'beam_width' is not a decoding setting"),
    ):
        path.write_text(yaml.safe_dump({"name": "g", "base": "smollm2-135m/tiny", "grid": {"r": [4]},
                                        "eval": {"tasks": tasks, "decoding": decoding}}))
        with pytest.raises(UserError, match=message):
            load_grid(path)
    path.write_text(yaml.safe_dump({"name": "g", "base": "smollm2-135m/tiny", "grid": {"r": [4]},
                                    "eval": {"tasks": ["medquad-validation", "rubric:consumer-health-dev"]}}))
    assert load_grid(path).eval is not None


def _tiny_base_recipe(tiny_model_dir: Path, path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "model": {"name": str(tiny_model_dir), "max_seq_length": 128},
                "data": {"system_prompt": "You are a tiny test helper."},
                "train": {"batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
                          "gradient_checkpointing": False, "learning_rate": 1e-2},
            }
        )
    )
    return path


def test_grid_scores_cells_and_base_under_each_decoding(
    tiny_model_dir: Path, qa_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    import json

    rubric = tmp_path / "rubric.jsonl"
    rubric.write_text("".join(json.dumps({"id": f"q{n}", "question": question, "criteria": [
        {"criterion": "Names it", "points": 5, "phrases": "the"}]}) + "\n" for n, question in
        enumerate(["What is gout?", "What is asthma?", "What is anemia?"])))
    grid = Grid(
        name="g",
        base=str(_tiny_base_recipe(tiny_model_dir, tmp_path / "base.yaml")),
        max_steps=3,
        grid={"neftune": [None, 5.0]},
        eval={"tasks": [f"rubric:{rubric}"], "limit": 2, "max_new_tokens": 3,
              "decoding": {"repetition_penalty": [1.0, 1.3]}},
    )
    out = run_grid(grid, tmp_path / "out", splits=splits_for(tiny_model_dir, qa_rows))
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["cell"], json.loads(r["decoding"])["repetition_penalty"]) for r in rows] == [
        ("base", 1.0), ("base", 1.3), ("0", 1.0), ("0", 1.3), ("1", 1.0), ("1", 1.3)]
    score = f"rubric:{rubric} rubric_score"
    for row in rows:
        low, value, high = (float(row[f"{score} ci_low"]), float(row[score]), float(row[f"{score} ci_high"]))
        assert 0.0 <= low <= value <= high <= 1.0
        assert Path(row["eval"], "results.json").is_file()
    # the base answers under the prompt its cells trained with (they differ only in their weights)
    prompts = {json.loads(Path(r["eval"], "results.json").read_text())["tasks"][f"rubric:{rubric}"]["system_prompt"]
               for r in rows}
    assert prompts == {served_system_prompt(rows[2]["run"])}
    # NEFTune noise changes what the model is trained on, so the two cells' losses differ
    assert rows[2]["final_loss"] != rows[4]["final_loss"]
    assert rows[0]["final_loss"] == ""  # the base row has no training figures
    markdown = (out / "results.md").read_text()
    assert f"| {score} |" in markdown.splitlines()[0]
    assert "95% bootstrap CIs" in markdown and (out / "comparison.png").stat().st_size > 0


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


def test_base_is_scored_under_the_prompt_its_cells_are_served_with(tiny_model_dir: Path, tmp_path: Path) -> None:
    from medtune.config import load_recipe
    from medtune.guard.config import default_guard_config

    recipe = load_recipe(_tiny_base_recipe(tiny_model_dir, tmp_path / "base.yaml"))
    assert base_eval_settings(recipe).system_prompt == "You are a tiny test helper."
    # pre-rendered splits: the runs record no prompt, so they (and the base) are served the guard's
    assert base_eval_settings(recipe, splits=("train", "val")).system_prompt == default_guard_config().system_prompt
    served = recipe.model_copy(update={"data": recipe.data.model_copy(update={"system_prompt": "served"})})
    assert base_eval_settings(served).system_prompt == default_guard_config().system_prompt
