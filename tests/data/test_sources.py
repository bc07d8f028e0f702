"""Every loader on the real files (counts from each SOURCE.md), provenance, and the MedQuAD special cases."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.data.conftest import CHATDOCTOR, MEADOW, MEDICATIONQA

from medtune.config import SourceSpec
from medtune.data.sources import load_source, parse_columns, parse_source_arg
from medtune.errors import UserError


def test_medquad_archive_counts_and_provenance(medquad_loaded: Any) -> None:
    rows = medquad_loaded.rows
    assert len(rows) == 47_441
    assert sum(1 for r in rows if r["answer"].strip()) == 16_407
    # 4 NINDS files use another schema (<doc>/<pair>) and are not part of the 47,441: counted, never silent.
    assert [r["reason"] for r in medquad_loaded.rejected] == ["unsupported_xml"] * 4
    assert medquad_loaded.input_rows == 47_445
    gard = next(r for r in rows if r["original_id"] == "2_GARD_QA/0000004-1")
    assert gard["focus_area"] == "ABCD syndrome"
    assert gard["question_type"] == "symptoms"
    assert gard["url"] == "https://rarediseases.info.nih.gov/gard/335/abcd-syndrome"
    assert gard["group"] == "medquad:2_GARD_QA/0000004"
    assert len({r["question_type"] for r in rows}) >= 30
    assert len(medquad_loaded.sha256) == 64


def test_medquad_folder_skips_one_broken_file(medquad_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "xml"
    for file in medquad_folder.rglob("*.xml"):
        target = folder / file.relative_to(medquad_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.read_bytes())
    (folder / "2_GARD_QA" / "9999999.xml").write_text("<Document id='9'><QAPairs><QAPair>", encoding="utf-8")
    clean = load_source(SourceSpec(kind="medquad", path=str(medquad_folder)))
    broken = load_source(SourceSpec(kind="medquad", path=str(folder)))
    assert len(broken.rows) == len(clean.rows) > 100
    assert [r["reason"] for r in broken.rejected] == ["malformed_xml"]
    assert "9999999.xml" in broken.rejected[0]["detail"]
    assert any("9999999.xml" in w for w in broken.warnings)


def test_medquad_archive_with_broken_member(medquad_folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "mini.tar.gz"
    files = sorted(medquad_folder.rglob("*.xml"))[:5]
    with tarfile.open(archive, "w:gz") as tar:
        for file in files:
            tar.add(file, arcname=str(file.relative_to(medquad_folder)))
        bad = b"<?xml version='1.0'?><Document><Focus>x</Focus"
        info = tarfile.TarInfo("2_GARD_QA/broken.xml")
        info.size = len(bad)
        tar.addfile(info, io.BytesIO(bad))
    loaded = load_source(SourceSpec(kind="medquad", path=str(archive)))
    assert loaded.rows and {r["reason"] for r in loaded.rejected} == {"malformed_xml"}
    assert loaded.input_rows == len(loaded.rows) + 1


def test_medquad_hf_column_layout(tmp_path: Path) -> None:
    path = tmp_path / "medquad.csv"
    path.write_text("question,answer,source,focus_area\nWhat is gout?,Gout is a form of arthritis.,GHR,Gout\n",
                    encoding="utf-8")
    rows = load_source(SourceSpec(kind="medquad", path=str(path))).rows
    assert rows == [{"question": "What is gout?", "answer": "Gout is a form of arthritis.", "source": "medquad",
                     "focus_area": "Gout", "question_type": "", "url": "", "original_id": "GHR/0", "group": ""}]


@pytest.mark.parametrize(("kind", "path", "count", "source"), [
    ("meadow", MEADOW, 5_942, "meadow"),
    ("chatdoctor", CHATDOCTOR, 5_452, "chatdoctor"),
    ("medicationqa", MEDICATIONQA, 690, "medicationqa"),
])
def test_real_loaders(shared_data: Path, kind: str, path: str, count: int, source: str) -> None:
    loaded = load_source(SourceSpec(kind=kind, path=path))
    assert len(loaded.rows) == count
    assert all(r["question"].strip() and r["answer"].strip() for r in loaded.rows)
    assert {r["source"] for r in loaded.rows} == {source}
    assert len({r["original_id"] for r in loaded.rows}) == count
    if kind == "medicationqa":
        first = loaded.rows[0]
        assert first["focus_area"] == "rivastigmine" and first["question_type"] == "Interaction"
        assert first["url"] == "https://medlineplus.gov/druginfo/meds/a602009.html"
    if kind == "meadow":
        assert loaded.rows[0]["question"] == "What are the symptoms of Allergy?"


def test_csv_and_jsonl_with_mapping(tmp_path: Path) -> None:
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text('Q,A,Topic\n"What is asthma, really?","A chronic disease of the airways.",lungs\n',
                        encoding="utf-8")
    jsonl_path = tmp_path / "qa.jsonl"
    jsonl_path.write_text('{"q": "What is asthma?", "a": "Airway disease.", "id": "x1"}\n', encoding="utf-8")
    mapping = parse_columns("question=Q,answer=A,focus_area=Topic")
    rows = load_source(SourceSpec(kind="csv", path=str(csv_path), columns=mapping)).rows
    assert rows[0]["question"] == "What is asthma, really?" and rows[0]["focus_area"] == "lungs"
    assert rows[0]["source"] == "qa"
    spec = parse_source_arg(f"jsonl:{jsonl_path}", {"question": "q", "answer": "a", "original_id": "id"})
    spec.name = "mine"
    rows = load_source(spec).rows
    assert rows[0]["original_id"] == "x1" and rows[0]["source"] == "mine"


def test_hf_unreachable_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"hf:lavita/MedQuAD: .*csv:PATH"):
        load_source(parse_source_arg("hf:lavita/MedQuAD"))


def test_bad_source_argument() -> None:
    with pytest.raises(UserError, match="KIND:PATH"):
        parse_source_arg("excel:foo.xlsx")
    with pytest.raises(UserError, match="role=COLUMN"):
        parse_columns("question")
