"""ChatDoctor loader: ``chatdoctor5k.json`` (GenMedGPT-5k, synthetic patient/doctor exchanges) and files in the same
instruction/input/output layout (patient message = question, doctor reply = answer)."""

from __future__ import annotations

from pathlib import Path

from medtune.data.sources.base import LoadedSource
from medtune.data.sources.meadow import load_instruction_file


def load(path: Path, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load a ChatDoctor JSON file (5,452 records for GenMedGPT-5k)."""
    return load_instruction_file(path, "chatdoctor", "chatdoctor")
