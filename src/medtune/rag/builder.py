"""``medtune index build``: chunk sources, index BM25 + dense vectors (Qdrant), write a manifest.

Layout of ``MEDTUNE_HOME/indexes/<name>/``: ``manifest.json`` (written last: sources with sha256, settings,
counts), ``state.json`` (the build key of the collection being filled), ``chunks.jsonl`` (payloads, in BM25 order),
``bm25/`` (bm25s), ``qdrant/`` (local mode; absent with a server). Rebuilding with the same sources and settings
is a no-op; an interrupted build resumes (already stored points are skipped).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medtune import embeddings as dense
from medtune.errors import UserError
from medtune.paths import medtune_home
from medtune.rag.bm25 import BM25Index
from medtune.rag.chunking import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, Chunk, answer_key, chunk_rows
from medtune.rag.sources import IndexSource, iter_rows, parse_source, prepared_split_rows
from medtune.rag.store import VectorStore


def indexes_dir() -> Path:
    """``MEDTUNE_HOME/indexes`` (created)."""
    path = medtune_home() / "indexes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def index_dir(name: str) -> Path:
    """Folder of one index; the name must be a plain folder name."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"index name {name!r}: use a plain name such as medquad (letters, digits, - or _).")
    return indexes_dir() / name


def read_manifest(name: str) -> dict[str, Any] | None:
    """The manifest of a completed build, or None."""
    file = index_dir(name) / "manifest.json"
    return json.loads(file.read_text()) if file.is_file() else None


def require_manifest(name: str) -> dict[str, Any]:
    """The manifest of index ``name``; a one-line error naming the build command when there is none."""
    manifest = read_manifest(name)
    if manifest is None:
        raise UserError(f"index {name!r} not found in {index_dir(name).parent}; build it with "
                        f"`medtune index build medquad:medquad/MedQuAD_xml.tar.gz --name {name}`.")
    return manifest


def _excluded_answers(folder: Path | None) -> set[str]:
    """Normalised answer hashes of a prepared folder's test split."""
    if folder is None:
        return set()
    if not (folder / "test.jsonl").is_file():
        raise UserError(f"{folder}: no test.jsonl; --exclude-prepared-test needs a folder written by medtune prepare.")
    return {answer_key(row["answer"]) for row in prepared_split_rows(folder, "test")}


def build_index(sources: Iterable[str | IndexSource], name: str = "medquad", *, qdrant_url: str | None = None,
                exclude_prepared_test: Path | None = None, exclude_pairs: Iterable[str] = (),
                max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP,
                encoder: str = dense.DEFAULT_MODEL, batch_size: int = 64, force: bool = False,
                row_filter: Callable[[dict[str, Any]], bool] | None = None, progress: bool = True,
                filter_tag: str = "") -> dict[str, Any]:
    """Build (or resume, or skip) the index ``name`` and return its manifest (``skipped`` True on a no-op).

    Args:
        sources: source specs (``medquad:PATH`` or prepared folders).
        exclude_prepared_test: drop rows whose answer appears in this prepared folder's test split.
        exclude_pairs: drop these pair ids (benchmarks hold out their test questions' own answers).
        row_filter: keep only rows it accepts (describe it in ``filter_tag``, part of the build key).
    """
    started = time.perf_counter()
    specs = [s if isinstance(s, IndexSource) else parse_source(s) for s in sources]
    if not specs:
        raise UserError("medtune index build: give at least one source, e.g. medquad:medquad/MedQuAD_xml.tar.gz")
    excluded_pairs = sorted(set(exclude_pairs))
    settings = {"max_words": max_words, "overlap": overlap, "encoder": encoder, "qdrant_url": qdrant_url,
                "exclude_prepared_test": str(exclude_prepared_test) if exclude_prepared_test else None,
                "exclude_prepared_test_sha256": IndexSource("prepared", exclude_prepared_test, "").sha256()
                if exclude_prepared_test else None,
                "excluded_pairs_sha256": hashlib.sha256("\n".join(excluded_pairs).encode()).hexdigest(),
                "filter": filter_tag}
    source_info = [{"spec": s.text, "kind": s.kind, "path": str(s.path), "sha256": s.sha256()} for s in specs]
    key = hashlib.sha256(json.dumps([source_info, settings], sort_keys=True).encode()).hexdigest()
    folder = index_dir(name)
    previous = read_manifest(name)
    if previous and previous.get("key") == key and not force:
        return {**previous, "skipped": True}

    excluded_answers = _excluded_answers(exclude_prepared_test)
    drop_pairs = set(excluded_pairs)
    rows, dropped = [], {"excluded_test_answer": 0, "excluded_pair": 0, "filtered": 0}
    for spec in specs:
        for row in iter_rows(spec):
            if row["pair_id"] in drop_pairs:
                dropped["excluded_pair"] += 1
            elif excluded_answers and answer_key(row["answer"]) in excluded_answers:
                dropped["excluded_test_answer"] += 1
            elif row_filter is not None and not row_filter(row):
                dropped["filtered"] += 1
            else:
                rows.append(row)
    chunks: list[Chunk] = list(chunk_rows(rows, max_words, overlap))
    if not chunks:
        raise UserError(f"{', '.join(s.text for s in specs)}: no answered QA pairs left to index; check the sources.")

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)
    state_file = folder / "state.json"
    resume = state_file.is_file() and json.loads(state_file.read_text()).get("key") == key and not force
    store = VectorStore(name, path=None if qdrant_url else folder / "qdrant", url=qdrant_url)
    store.ensure(dense.dimension(encoder), recreate=not resume)
    state_file.write_text(json.dumps({"key": key}))
    with (folder / "chunks.jsonl").open("w", encoding="utf-8") as handle:
        for chunk in chunks:
            handle.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    shutil.rmtree(folder / "bm25", ignore_errors=True)
    BM25Index.build([f"{c.title}\n{c.text}" for c in chunks]).save(folder / "bm25")

    embedded, cached = _embed_missing(store, chunks, encoder, batch_size, progress)
    manifest = {"name": name, "key": key, "sources": source_info, "settings": settings,
                "pairs": len(rows), "documents": len({r["document_id"] for r in rows}), "chunks": len(chunks),
                "dropped": dropped, "embedded_this_run": embedded,
                "vectors_from_cache": cached, "vectors": store.count(),
                "build_seconds": round(time.perf_counter() - started, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {**manifest, "skipped": False}


def _embed_missing(store: VectorStore, chunks: list[Chunk], encoder: str, batch_size: int,
                   progress: bool) -> tuple[int, int]:
    """Embed and upsert, batch by batch, the chunks not yet stored; return (embedded now, taken from the cache).

    Vectors go through the encoder's embedding cache (:func:`medtune.embeddings.embed_cached`), so a second index
    over mostly the same passages (the served index after the grounded-training one) embeds only the new ones.
    """
    from tqdm.auto import tqdm

    done = cached = 0
    with tqdm(total=len(chunks), desc="embedding chunks", unit="chunk", disable=not progress) as bar:
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start:start + batch_size]
            stored = store.existing([c.id for c in batch])
            todo = [c for c in batch if c.id not in stored]
            if todo:
                vectors, embedded = dense.embed_cached([c.embedding_text() for c in todo], encoder, batch_size=batch_size)
                store.upsert([c.to_dict() for c in todo], vectors)
                done += embedded
                cached += len(todo) - embedded
            bar.update(len(batch))
    return done, cached


def list_indexes() -> list[dict[str, Any]]:
    """Manifests of every completed index (incomplete builds are listed with ``complete`` False)."""
    found = []
    for folder in sorted(p for p in indexes_dir().iterdir() if p.is_dir()):
        manifest = read_manifest(folder.name)
        found.append({**manifest, "complete": True} if manifest else {"name": folder.name, "complete": False})
    return found
