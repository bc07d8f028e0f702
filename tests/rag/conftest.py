"""A real MedQuAD slice (~500 answered pairs from GARD, GHR and NINDS) indexed once per session."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SLICE = {"2_GARD_QA": 80, "3_GHR_QA": 40, "6_NINDS_QA": 45}  # folder -> documents with answers (549 pairs)
MAX_WORDS = 400  # 570 chunks instead of 800 at the default 160: the CPU embedding time is the test budget


@dataclass
class BuiltIndex:
    """The session index: its MEDTUNE_HOME, source folder, build manifest and the slice's rows."""

    home: Path
    source: Path
    manifest: dict
    rows: list[dict]
    max_words: int = MAX_WORDS


def extract_slice(shared_data: Path, out: Path, slice_: dict[str, int]) -> Path:
    """Copy the first answered XML documents of some MedQuAD folders out of the upstream tar.gz."""
    from medtune.data.sources.medquad import UnsupportedDocument, parse_document

    wanted = dict(slice_)
    with tarfile.open(shared_data / "medquad" / "MedQuAD_xml.tar.gz") as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 2 or wanted.get(parts[0], 0) <= 0:
                continue
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            try:
                answered = any(row["answer"].strip() for row in parse_document(data, member.name))
            except UnsupportedDocument:  # 4 upstream NINDS files use another schema
                answered = False
            if answered:
                (out / parts[0]).mkdir(parents=True, exist_ok=True)
                (out / parts[0] / parts[1]).write_bytes(data)
                wanted[parts[0]] -= 1
            if not any(v > 0 for v in wanted.values()):
                break
    return out


@pytest.fixture(scope="session")
def slice_extractor() -> Callable[[Path, Path, dict[str, int]], Path]:
    """:func:`extract_slice`, for tests that need their own small slice."""
    return extract_slice


@pytest.fixture(scope="session")
def medquad_slice(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of real MedQuAD XML documents (~500 answered pairs)."""
    return extract_slice(shared_data, tmp_path_factory.mktemp("medquad_slice"), SLICE)


@pytest.fixture(scope="session")
def built_index(medquad_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltIndex:
    """The slice indexed as ``medquad`` (BM25 + Qdrant local) in its own MEDTUNE_HOME."""
    from medtune.rag.builder import build_index
    from medtune.rag.sources import IndexSource, iter_rows

    home = tmp_path_factory.mktemp("rag_home")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDTUNE_HOME", str(home))
    try:
        spec = IndexSource("medquad", medquad_slice, f"medquad:{medquad_slice}")
        manifest = build_index([spec], "medquad", max_words=MAX_WORDS, progress=False)
    finally:
        patch.undo()
    return BuiltIndex(home, medquad_slice, manifest, list(iter_rows(spec)))


@pytest.fixture
def index_home(built_index: BuiltIndex, monkeypatch: pytest.MonkeyPatch) -> BuiltIndex:
    """Use the session index's MEDTUNE_HOME in this test."""
    monkeypatch.setenv("MEDTUNE_HOME", str(built_index.home))
    return built_index
