"""Share llama.cpp's converter (extracted from the llama-cpp-python sdist) across the tests of a session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def shared_llama_cpp_cache(isolated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point MEDTUNE_HOME/cache/llama.cpp at one folder per test session."""
    shared = tmp_path_factory.getbasetemp() / "shared_llama_cpp"
    shared.mkdir(exist_ok=True)
    link = isolated_home / "cache" / "llama.cpp"
    if not link.exists():
        link.symlink_to(shared, target_is_directory=True)
    return shared
