"""Where medtune keeps things: ``MEDTUNE_HOME`` (runs, caches) and ``MEDTUNE_DATA_DIR`` (raw datasets).

Both are read at call time (never at import time), so tests can point them elsewhere with monkeypatch.
"""

from __future__ import annotations

import os
from pathlib import Path

from medtune.errors import UserError

HOME_ENV = "MEDTUNE_HOME"
DATA_ENV = "MEDTUNE_DATA_DIR"


def medtune_home() -> Path:
    """Return the medtune home folder (``$MEDTUNE_HOME``, default ``~/.medtune``), creating it."""
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".medtune").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def runs_dir() -> Path:
    """Return the folder holding one sub-folder per training run."""
    path = medtune_home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """Return (and create) a cache sub-folder of the medtune home, e.g. ``cache_dir("models")``."""
    path = medtune_home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default_data_dir() -> Path:
    """Find ``shared/data`` next to the project checkout or the current directory (this environment's layout)."""
    candidates = [Path.cwd() / "../shared/data", Path(__file__).resolve().parents[3] / "../shared/data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return (Path.home() / ".medtune" / "data").resolve()


def data_dir() -> Path:
    """Return the raw dataset folder: ``$MEDTUNE_DATA_DIR``, else ``../shared/data`` when it exists."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser().resolve() if value else _default_data_dir()


def resolve_data_path(path: str | Path) -> Path:
    """Resolve a dataset path: absolute or existing paths as given, otherwise relative to :func:`data_dir`.

    Raises:
        UserError: when the file is in neither place.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        if not candidate.exists():
            raise UserError(f"{candidate}: no such file or folder; check the path.")
        return candidate
    under_data = data_dir() / candidate
    if under_data.exists():
        return under_data
    raise UserError(
        f"{path}: not found (looked in the current folder and in {data_dir()}); "
        f"give an existing path or set {DATA_ENV} to the folder holding the datasets."
    )
