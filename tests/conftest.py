"""Shared fixtures: real dataset folder (MEDTUNE_DATA_DIR), an isolated MEDTUNE_HOME, marker handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.paths import data_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA and `network` tests always (no hub here)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "network" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs the network (Hugging Face hub)"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The raw dataset folder (MEDTUNE_DATA_DIR, default ../shared/data); skip when it is absent."""
    path = data_dir()
    if not (path / "medquad").is_dir():
        pytest.skip(f"raw datasets not found in {path}; set MEDTUNE_DATA_DIR")
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MEDTUNE_HOME at a per-test folder, sharing the converted-model cache across tests."""
    home = tmp_path_factory.mktemp("medtune_home")
    shared_cache = tmp_path_factory.getbasetemp() / "shared_model_cache"
    shared_cache.mkdir(exist_ok=True)
    (home / "cache").mkdir()
    (home / "cache" / "models").symlink_to(shared_cache, target_is_directory=True)
    monkeypatch.setenv("MEDTUNE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def guard():  # type: ignore[no-untyped-def]
    """The guard with the shipped defaults (rules + the shipped intent classifier), loaded once."""
    from medtune.guard import Guard

    return Guard()
