"""Each class of bad input ends in one UserError naming the file (and line) and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.config import SourceSpec
from medtune.data.sources import load_source
from medtune.errors import UserError

CASES = [
    # (kind, file name, bytes, expected message fragment)
    ("csv", "wrong.csv", b"foo,bar\n1,2\n", r"no column 'question' .*--map"),
    ("csv", "empty.csv", b"", r"is empty"),
    ("csv", "header.csv", b"question,answer\n", r"header .* but no data rows"),
    ("meadow", "header.csv", b"instruction,input,output\n", r"no data rows"),
    ("medquad", "bad.xml", b"<Document><QAPairs><QAPair></QAPairs>", r"malformed XML"),
    ("jsonl", "bad.jsonl", b'{"question": "a?", "answer": "b"}\n{"question": "c?"\n', r"line 2: malformed JSON"),
    ("chatdoctor", "bad.json", b'[\n {"input": "x", "output": "y"},\n {"input": \n]', r"line 4: malformed JSON"),
    ("csv", "latin1.csv", "question,answer\nQu'est-ce que la fièvre?,Une élévation\n".encode("latin-1"),
     r"line 2: not UTF-8"),
    ("medicationqa", "fake.xlsx", b"not a zip file", r"not a readable xlsx"),
    ("meadow", "list.json", b'[1, 2]', r"record 1 is a int"),
    ("chatdoctor", "cols.json", b'[{"question": "x", "reply": "y"}]', r"no column 'input'"),
]


@pytest.mark.parametrize(("kind", "name", "content", "message"), CASES, ids=[c[1] + "-" + c[0] for c in CASES])
def test_bad_file(tmp_path: Path, kind: str, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as caught:
        load_source(SourceSpec(kind=kind, path=str(path)))
    text = str(caught.value)
    assert str(path) in text and "\n" not in text


def test_missing_path_names_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError, match="nope.json: not found"):
        load_source(SourceSpec(kind="meadow", path="nope.json"))
