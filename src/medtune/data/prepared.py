"""Read a prepared folder written by ``medtune prepare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.errors import UserError


def read_manifest(prepared_dir: str | Path) -> dict[str, Any]:
    """Return a prepared folder's manifest; UserError when the folder is not one."""
    path = Path(prepared_dir).expanduser() / "manifest.json"
    if not path.is_file():
        raise UserError(f"{prepared_dir}: not a `medtune prepare` output (no manifest.json); run medtune prepare.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_prepared(prepared_dir: str | Path) -> Any:
    """Load the DatasetDict (train/validation/test) of a prepared folder."""
    from datasets import load_from_disk

    read_manifest(prepared_dir)
    return load_from_disk(str(Path(prepared_dir).expanduser() / "dataset"))
