"""Read a folder written by ``medtune prepare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.errors import UserError


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Return the ``manifest.json`` of a prepared folder (UserError when it is not one)."""
    folder = Path(path).expanduser()
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise UserError(f"{folder}: not a prepared data folder (no manifest.json); run `medtune prepare --out "
                        f"{folder} ...` first.")
    try:
        return dict(json.loads(manifest.read_text(encoding="utf-8")))
    except json.JSONDecodeError as error:
        raise UserError(f"{manifest}: line {error.lineno}: malformed JSON; re-run `medtune prepare`.") from None


def load_prepared(path: str | Path) -> Any:
    """Load the ``datasets.DatasetDict`` (train/validation/test) of a prepared folder.

    Raises:
        UserError: when ``path`` is not a complete prepared folder.
    """
    from datasets import load_from_disk

    folder = Path(path).expanduser()
    read_manifest(folder)
    if not (folder / "dataset").is_dir():
        raise UserError(f"{folder}: the dataset/ sub-folder is missing; re-run `medtune prepare`.")
    return load_from_disk(str(folder / "dataset"))


def load_split_rows(path: str | Path, split: str) -> list[dict[str, Any]]:
    """Rows of one split read from its JSONL file (no ``datasets`` import needed)."""
    folder = Path(path).expanduser()
    read_manifest(folder)
    file = folder / f"{split}.jsonl"
    if not file.is_file():
        raise UserError(f"{file}: missing; re-run `medtune prepare`.")
    with file.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
