"""Recipes: every shipped file validates; unknown keys, wrong types and missing files are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app
from medtune.config import Recipe, load_recipe
from medtune.errors import UserError
from medtune.recipes import recipe_header_command, shipped_recipes


@pytest.mark.parametrize("path", shipped_recipes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_recipe_validates_and_names_its_command(path: Path) -> None:
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    command = recipe_header_command(path)
    assert command is not None and command.startswith("medtune ")


def test_there_are_study_recipes() -> None:
    names = {p.stem for p in shipped_recipes()}
    assert {"config-a", "config-b", "config-c", "config-d", "rslora-r64", "study", "demo"} <= names


def test_study_recipe_values() -> None:
    a = load_recipe("llama3-8b/config-a")
    assert (a.data.sample_size, a.train.epochs, a.lora.r, a.lora.alpha) == (15000, 1, 16, 16)
    assert a.lora.target_modules == "all-linear" and a.model.quantization == "nf4"
    rs = load_recipe("llama3-8b/rslora-r64")
    assert (rs.lora.r, rs.lora.alpha, rs.lora.use_rslora) == (64, 128, True)
    mistral = load_recipe("mistral-7b/study")
    assert mistral.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (mistral.lora.dropout, mistral.train.lr_scheduler, mistral.train.epochs) == (0.05, "cosine", 3)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nlora:\n  rank: 8\n")
    with pytest.raises(UserError) as error:
        load_recipe(path)
    message = str(error.value)
    assert str(path) in message and "lora.rank" in message and "'r'" in message


def test_wrong_type_names_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"train\.epochs"):
        load_recipe(write(tmp_path, "name: x\ntrain:\n  epochs: many\n"))


def test_bad_split_and_yaml(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="add up to 1"):
        load_recipe(write(tmp_path, "name: x\ndata:\n  split: [0.5, 0.1, 0.1]\n"))
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: [x\n"))


def test_missing_recipe_lists_shipped(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="smollm2-135m/demo"):
        load_recipe(tmp_path / "nope.yaml")


def test_cli_recipes_lists_and_bad_recipe_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(get_app(), ["recipes"])
    assert result.exit_code == 0, result.output
    assert "config-a" in result.output
    assert "Study" in result.output  # recipe descriptions are listed
