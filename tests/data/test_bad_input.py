"""Bad input: one clear UserError naming the file (and row/line), or a skipped-and-counted file."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from medtune.config import DataConfig, SourceSpec
from medtune.data.pipeline import prepare
from medtune.data.sources import load_source
from medtune.errors import UserError

GOOD_XML = b"""<?xml version="1.0"?><Document id="1" source="X" url="http://x"><Focus>Flu</Focus><QAPairs>
<QAPair pid="1"><Question qid="1-1" qtype="information">What is (are) Flu ?</Question>
<Answer>Influenza is a contagious respiratory illness caused by influenza viruses.</Answer></QAPair>
</QAPairs></Document>"""


@pytest.mark.parametrize(
    ("name", "content", "kind", "expected"),
    [
        ("empty.csv", b"", "csv", "empty"),
        ("header.csv", b"question,answer\n", "csv", "header only"),
        ("cols.csv", b"Q,A\nx,y\n", "csv", "column(s) question, answer not found"),
        ("bad.jsonl", b'{"question": "a", "answer": "b"}\n{broken\n', "jsonl", "line 2"),
        ("latin.csv", "question,answer\ncaf\u00e9?,x\n".encode("latin-1"), "csv", "not UTF-8"),
        ("list.json", b"{not json", "meadow", "malformed JSON"),
    ],
)
def test_bad_files_name_file_and_fix(tmp_path: Path, name: str, content: bytes, kind: str, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_source(kind, str(path))
    assert str(path) in str(error.value) and expected in str(error.value)


def test_one_malformed_xml_in_archive_is_skipped_and_counted(tmp_path: Path) -> None:
    archive = tmp_path / "mq.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for index, content in enumerate([GOOD_XML, b"<Document><QAPairs>", GOOD_XML.replace(b'id="1"', b'id="2"')]):
            info = tarfile.TarInfo(f"1_X_QA/{index:07d}.xml")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    manifest = prepare(DataConfig(sources=[SourceSpec(kind="medquad", path=str(archive))], prompt_style="mistral-inst"),
                       tmp_path / "out")
    assert manifest["rejected"]["malformed_xml"] == 1
    assert manifest["input_rows"] == manifest["kept"] + sum(manifest["rejected"].values())


def test_cli_bad_source_exits_2_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    result = subprocess.run([sys.executable, "-m", "medtune", "prepare", "--source", f"csv:{bad}", "--out",
                             str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(bad) in result.stderr
    unknown = subprocess.run([sys.executable, "-m", "medtune", "prepare", "--source", "xml:foo", "--out",
                              str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown source kind" in unknown.stderr
