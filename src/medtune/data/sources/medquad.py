"""MedQuAD loader: the upstream XML folder, its ``.tar.gz`` (read member by member, never extracted), a single
XML file, or the Hugging Face ``lavita/MedQuAD`` column layout as CSV/parquet.

Rows are labelled source ``medquad``; the sub-collection folder (e.g. ``2_GARD_QA``) prefixes ``original_id``.
Every ``<QAPair>`` is one input row (47,441 upstream, 16,407 with an answer); rows keep the document id as
``group`` because answers repeat across the question types of one document (split by it to avoid leakage).
A malformed XML file inside a folder/archive is skipped, warned about and counted as rejected ``malformed_xml``;
the 4 upstream NINDS files in another schema (``<doc>/<pair>``, not in the 47,441) as ``unsupported_xml``.
"""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from medtune.data.sources.base import LoadedSource, make_row, read_table, require_columns, sha256_of
from medtune.errors import UserError

#: Column aliases of the Hugging Face layout (lavita/MedQuAD and the simple question/answer/source/focus_area one).
HF_ALIASES: dict[str, tuple[str, ...]] = {
    "question": ("question",),
    "answer": ("answer",),
    "source": ("source", "document_source"),
    "focus_area": ("focus_area", "question_focus"),
    "question_type": ("question_type", "qtype"),
    "url": ("url", "document_url"),
    "original_id": ("question_id", "qid", "id"),
    "group": ("document_id",),
}


class UnsupportedDocument(ValueError):
    """A well-formed XML file without MedQuAD ``<QAPair>`` elements (e.g. 4 NINDS files use ``<doc>/<pair>``)."""


def parse_document(data: bytes, name: str) -> list[dict[str, str]]:
    """Return one row per ``<QAPair>`` of a MedQuAD XML document.

    Raises:
        ET.ParseError: for malformed XML.
        UnsupportedDocument: for well-formed XML in another schema (the upstream/HF counts skip these too);
            a ``<Document>`` with no pairs (6 NIDDK files) simply yields no rows.
    """
    root = ET.fromstring(data)
    pairs = list(root.iter("QAPair"))
    if not pairs and root.tag not in ("Document", "DiseaseFile"):
        raise UnsupportedDocument(f"no <QAPair> elements (root <{root.tag}>, not the MedQuAD <Document> schema)")
    folder = name.rsplit("/", 1)[0] if "/" in name else ""
    doc_id = root.get("id") or root.get("fid") or Path(name).stem
    focus = (root.findtext("Focus") or "").strip()
    rows = []
    for pair in pairs:
        question = pair.find("Question")
        qid = (question.get("qid") if question is not None else None) or f"{doc_id}-{pair.get('pid')}"
        rows.append(make_row(
            question=(question.text if question is not None else "") or "",
            answer=pair.findtext("Answer") or "",
            source="medquad",
            focus_area=focus,
            question_type=question.get("qtype", "") if question is not None else "",
            url=root.get("url", ""),
            original_id=f"{folder or root.get('source', '')}/{qid}",
            group=f"medquad:{folder}/{doc_id}",
        ))
    return rows


def document_of(pair_id: str) -> str:
    """The document part of a MedQuAD pair id: ``FOLDER/DOC-PAIR`` -> ``FOLDER/DOC`` (question ids are
    ``<document id>-<pair number>``; an id without a pair part is returned unchanged)."""
    return pair_id.rsplit("-", 1)[0]


def _xml_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` of every XML file in a tar archive or a folder, in sorted order for folders."""
    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            yield str(file.relative_to(path)), file.read_bytes()
        return
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".xml"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UserError(f"{path}: not a readable tar archive ({error}); give MedQuAD_xml.tar.gz, the XML folder "
                        "or a CSV/parquet export.") from None


def _load_xml(path: Path, kind: str) -> LoadedSource:
    """Load MedQuAD XML from a folder, archive or single file."""
    from tqdm import tqdm

    loaded = LoadedSource(path=str(path), format=kind, sha256=sha256_of(path))
    if path.is_file() and path.suffix == ".xml":
        try:
            loaded.rows = parse_document(path.read_bytes(), path.name)
        except (ET.ParseError, UnsupportedDocument) as error:
            raise UserError(f"{path}: malformed XML ({error}); fix the file or remove it.") from None
        return loaded
    files = 0
    for name, data in tqdm(_xml_members(path), desc=f"reading {path.name}", unit=" files", disable=None):
        files += 1
        try:
            loaded.rows.extend(parse_document(data, name))
        except (ET.ParseError, UnsupportedDocument) as error:
            reason = "malformed_xml" if isinstance(error, ET.ParseError) else "unsupported_xml"
            loaded.rejected.append({**make_row(source="medquad", original_id=name), "reason": reason,
                                    "detail": f"{name}: {error}"})
            loaded.warnings.append(f"{path}: skipped {name}: {reason.replace('_', ' ')} ({error})")
    if files == 0:
        raise UserError(f"{path}: no .xml files found; point at MedQuAD_xml.tar.gz or the folder of XML files.")
    if not loaded.rows and loaded.rejected:
        raise UserError(f"{path}: none of the {files} XML files could be parsed; is this MedQuAD?")
    return loaded


def _load_table(path: Path) -> LoadedSource:
    """Load the Hugging Face column layout (CSV/JSONL/parquet)."""
    frame = read_table(path)
    columns = {str(c) for c in frame.columns}
    require_columns(frame, path, {"question": "question", "answer": "answer"},
                    "expected the lavita/MedQuAD layout (question, answer, source, focus_area, ...).")
    chosen = {role: next((a for a in aliases if a in columns), None) for role, aliases in HF_ALIASES.items()}
    loaded = LoadedSource(path=str(path), format="medquad-table", sha256=sha256_of(path))
    for index, record in enumerate(frame.to_dict("records")):
        values = {role: record.get(column) if column else None for role, column in chosen.items()}
        collection, values["source"] = values.get("source"), "medquad"
        values["original_id"] = f"{collection}/{values.get('original_id') or index}" if collection \
            else str(values.get("original_id") or index)
        if values.get("group"):
            values["group"] = f"medquad:{values['group']}"
        loaded.rows.append(make_row(**values))
    return loaded


def load(path: Path, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load MedQuAD from ``path`` (tar.gz, XML folder, XML file, CSV/JSONL/parquet)."""
    if path.is_dir() or path.suffix == ".xml" or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _load_xml(path, "medquad-xml")
    return _load_table(path)
