"""Indexable QA rows from a source: any ``KIND:PATH`` of the data registry (``medquad:PATH`` ...) or a prepared dir.

Raw sources are read by :mod:`medtune.data.sources` (the same loaders as ``medtune prepare``). Rows are dicts
with ``pair_id, document_id, question, answer, source, focus_area, url, question_type``; unanswered pairs are
skipped. Document ids are the loaders' ``group`` without the ``medquad:`` prefix (``2_GARD_QA/0000004``), the
same for a raw MedQuAD source and a prepared folder, so recall and test-split exclusion line up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.data.sources.medquad import document_of
from medtune.errors import UserError
from medtune.paths import resolve_data_path

SPLITS = ("train", "validation", "test")


@dataclass
class IndexSource:
    """A parsed ``SOURCES`` argument of ``medtune index build``: a raw dataset (a recipe's
    :class:`medtune.config.SourceSpec`, read by the data loaders) or a prepared folder."""

    kind: str   # a data-registry kind (medquad, meadow, csv, ...) or "prepared"
    path: Path
    text: str   # as the user wrote it

    def sha256(self) -> str:
        """Content hash of the source files (the manifest key that makes re-indexing a no-op)."""
        digest = hashlib.sha256()
        if self.path.is_file():
            files = [self.path]
        else:
            files = sorted(p for p in self.path.rglob("*") if p.is_file()
                           and (self.kind != "prepared" or p.suffix == ".jsonl"))
        for file in files:
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def parse_source(text: str) -> IndexSource:
    """Parse ``KIND:PATH`` (a data-registry kind, as ``prepare --source`` parses it) or a prepared folder
    (``manifest.json``); else UserError."""
    from medtune.data.sources import LOADERS, parse_source_arg

    if text.partition(":")[0] in LOADERS:
        spec = parse_source_arg(text)
        return IndexSource(spec.kind, resolve_data_path(spec.path), text)
    path = resolve_data_path(text)
    if path.is_dir() and (path / "manifest.json").is_file():
        return IndexSource("prepared", path, text)
    raise UserError(f"{text}: unknown source; use KIND:PATH with KIND one of {', '.join(LOADERS)} "
                    "(e.g. medquad:medquad/MedQuAD_xml.tar.gz) or a folder written by `medtune prepare`.")


def _normalise(row: dict[str, Any], kind: str, number: int) -> dict[str, Any]:
    """Loader/prepared row -> index row (document and pair ids, whitespace collapsed)."""
    original = str(row.get("original_id") or row.get("id") or number)
    group = str(row.get("group") or "").removeprefix("medquad:")
    document = group or f"{kind}:{document_of(original)}"
    folder = group.rsplit("/", 1)[0] if "/" in group else kind
    return {"pair_id": f"{folder}/{original}", "document_id": document,
            "question": " ".join(str(row["question"]).split()), "answer": " ".join(str(row["answer"]).split()),
            "source": str(row.get("source") or kind), "focus_area": " ".join(str(row.get("focus_area") or "").split()),
            "url": str(row.get("url") or ""), "question_type": str(row.get("question_type") or "")}


def prepared_split_rows(folder: Path, split: str) -> Iterator[dict[str, Any]]:
    """Rows of ``folder/<split>.jsonl`` written by ``medtune prepare`` (nothing when the split is absent)."""
    file = folder / f"{split}.jsonl"
    if not file.is_file():
        return
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = _normalise(json.loads(line), "prepared", number)
            except (json.JSONDecodeError, KeyError) as error:
                raise UserError(f"{file}:{number}: bad prepared row ({error}); re-run `medtune prepare`.") from error
            if row["answer"]:
                yield row


def iter_rows(spec: IndexSource) -> Iterator[dict[str, Any]]:
    """All answered rows of a source (every split of a prepared folder), with unique pair ids.

    A few MedQuAD question ids repeat inside a document; the second one becomes ``<id>~2`` and so on.
    """
    seen: dict[str, int] = {}
    for row in _rows(spec):
        count = seen[row["pair_id"]] = seen.get(row["pair_id"], 0) + 1
        if count > 1:
            row["pair_id"] = f"{row['pair_id']}~{count}"
        yield row


def _rows(spec: IndexSource) -> Iterator[dict[str, Any]]:
    """Answered rows of a source, as read."""
    if spec.kind == "prepared":
        for split in SPLITS:
            yield from prepared_split_rows(spec.path, split)
        return
    from medtune.config import SourceSpec
    from medtune.data.sources import load_source

    loaded = load_source(SourceSpec(kind=spec.kind, path=str(spec.path)))
    for number, row in enumerate(loaded.rows):
        if str(row.get("answer") or "").strip() and str(row.get("question") or "").strip():
            yield _normalise(row, spec.kind, number)
