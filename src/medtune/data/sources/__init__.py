"""Source registry: one small loader module per raw format.

``kind`` -> ``load(path, columns) -> LoadedSource``. Kinds: medquad, meadow, chatdoctor, medicationqa, csv, jsonl,
and ``hf`` (``hf:<dataset id>``, via ``datasets.load_dataset``). Every row keeps its provenance (source, focus area,
question type, URL, original id, group).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medtune.config import SourceSpec
from medtune.data.sources import chatdoctor, meadow, medicationqa, medquad, tabular
from medtune.data.sources.base import LoadedSource
from medtune.errors import UserError

Loader = Callable[[Path, dict[str, str] | None], LoadedSource]

LOADERS: dict[str, Loader] = {
    "medquad": medquad.load,
    "meadow": meadow.load,
    "chatdoctor": chatdoctor.load,
    "medicationqa": medicationqa.load,
    "csv": tabular.load_csv,
    "jsonl": tabular.load_jsonl,
}
KINDS: tuple[str, ...] = (*LOADERS, "hf")


def parse_columns(text: str | None) -> dict[str, str]:
    """Parse ``question=Q,answer=A`` into a mapping (role -> column)."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        role, sep, column = part.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise UserError(f"--map '{text}': write role=COLUMN pairs separated by commas, e.g. question=Q,answer=A")
        mapping[role.strip()] = column.strip()
    return mapping


def parse_source_arg(text: str, columns: dict[str, str] | None = None) -> SourceSpec:
    """Parse a ``KIND:PATH`` command-line source (``hf:<dataset id>`` for the hub)."""
    kind, sep, path = text.partition(":")
    if not sep or not path or kind not in KINDS:
        raise UserError(f"--source '{text}': write KIND:PATH with KIND one of {', '.join(KINDS)} "
                        "(e.g. medquad:medquad/MedQuAD_xml.tar.gz).")
    return SourceSpec.model_validate({"kind": kind, "path": path, "columns": dict(columns or {})})


def load_source(spec: SourceSpec) -> LoadedSource:
    """Load one source spec; relative paths resolve under MEDTUNE_DATA_DIR; ``name`` relabels the rows."""
    from medtune.paths import resolve_data_path

    if spec.kind == "hf" or spec.kind.startswith("hf:"):
        from medtune.data.sources.hf import load_hub

        loaded = load_hub(spec.path if spec.kind == "hf" else spec.kind[3:], spec.columns)
    else:
        loader = LOADERS.get(spec.kind)
        if loader is None:
            raise UserError(f"source kind '{spec.kind}' is unknown; choose one of: {', '.join(KINDS)}")
        path = resolve_data_path(spec.path)
        if path.is_dir() and spec.kind != "medquad":
            raise UserError(f"{path}: is a folder; the {spec.kind} loader needs a file.")
        loaded = loader(path, spec.columns or None)
    if spec.name:
        for row in loaded.rows:
            row["source"] = spec.name
    return loaded
