"""Fixtures of the data-pipeline tests: the full MedQuAD archive parsed once, a small MedQuAD XML folder."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest

from medtune.config import SourceSpec

MEADOW = "medical_meadow_wikidoc_patient_information/medical_meadow_small.json"
CHATDOCTOR = "chatdoctor_genmedgpt5k/chatdoctor5k.json"
MEDICATIONQA = "medicationqa/MedInfo2019-QA-Medications.xlsx"
MEDQUAD = "medquad/MedQuAD_xml.tar.gz"


@pytest.fixture(scope="session")
def medquad_loaded(shared_data: Path) -> Any:
    """The whole MedQuAD archive parsed once per session."""
    from medtune.data.sources import load_source

    return load_source(SourceSpec(kind="medquad", path=MEDQUAD))


@pytest.fixture(scope="session")
def medquad_folder(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MedQuAD XML folder: the first 60 GARD and 60 GHR documents of the archive."""
    out = tmp_path_factory.mktemp("medquad_xml")
    wanted = {"2_GARD_QA": 60, "3_GHR_QA": 60}
    taken = dict.fromkeys(wanted, 0)
    with tarfile.open(shared_data / MEDQUAD, "r:gz") as archive:
        for member in archive:
            folder = member.name.split("/")[0]
            if member.isfile() and member.name.endswith(".xml") and taken.get(folder, 99) < wanted.get(folder, 0):
                target = out / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = archive.extractfile(member)
                assert handle is not None
                target.write_bytes(handle.read())
                taken[folder] += 1
            if taken == wanted:
                break
    return out
