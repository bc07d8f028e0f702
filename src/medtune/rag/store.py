"""Dense vectors in Qdrant: local in-process mode (``QdrantClient(path=...)``) or a server (``url=...``).

Point ids are uuid5 of the chunk id, so re-running a build upserts the same points (resumable, idempotent).
"""

from __future__ import annotations

import atexit
import uuid
from pathlib import Path
from typing import Any

from medtune.errors import UserError

_NAMESPACE = uuid.UUID("7b0f1d4e-3c55-4a8e-9a43-6d1f0b2c9e11")
_LOCAL_CLIENTS: dict[str, Any] = {}


def point_id(chunk_id: str) -> str:
    """Deterministic Qdrant point id (uuid5) of a chunk id."""
    return str(uuid.uuid5(_NAMESPACE, chunk_id))


def collection_name(index_name: str) -> str:
    """The Qdrant collection of an index (prefixed, so a shared server can hold other collections)."""
    return f"medtune_{index_name}"


def _server_error(url: str, error: Exception) -> UserError:
    """The one-line error for an unreachable/failed Qdrant server."""
    detail = str(error).splitlines()[0] if str(error) else ""
    return UserError(f"Qdrant server {url}: {type(error).__name__}: {detail} — start it "
                     "(docker run -p 6333:6333 qdrant/qdrant) or drop --qdrant-url to use local mode.")


def close_local_clients() -> None:
    """Close every local-mode client of this process (releases the folder locks)."""
    while _LOCAL_CLIENTS:
        _, client = _LOCAL_CLIENTS.popitem()
        client.close()


class VectorStore:
    """One Qdrant collection of chunk vectors (cosine distance)."""

    def __init__(self, index_name: str, path: Path | None = None, url: str | None = None,
                 timeout: int = 10) -> None:
        """Open local mode at ``path`` (one client per folder per process) or connect to ``url``."""
        from qdrant_client import QdrantClient

        if (path is None) == (url is None):
            raise ValueError("give exactly one of path or url")
        self.url = url
        self.collection = collection_name(index_name)
        if url is not None:
            self.client = QdrantClient(url=url, timeout=timeout, check_compatibility=False)
        else:
            key = str(Path(path).resolve())  # type: ignore[arg-type]
            if not _LOCAL_CLIENTS:
                atexit.register(close_local_clients)
            if key not in _LOCAL_CLIENTS:
                Path(key).mkdir(parents=True, exist_ok=True)
                try:
                    _LOCAL_CLIENTS[key] = QdrantClient(path=key)
                except RuntimeError as error:  # folder locked by another process
                    raise UserError(f"{key}: {error} — close the other medtune process "
                                    "using this index.") from error
            self.client = _LOCAL_CLIENTS[key]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a client method, turning server connection failures into UserError."""
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except UserError:
            raise
        except Exception as error:
            if self.url is None:
                raise
            raise _server_error(self.url, error) from error

    def ensure(self, dim: int, recreate: bool = False) -> None:
        """Create the collection (cosine, ``dim``) unless it exists; ``recreate`` drops it first."""
        from qdrant_client import models

        exists = self._call("collection_exists", self.collection)
        if exists and recreate:
            self._call("delete_collection", self.collection)
            exists = False
        if not exists:
            self._call("create_collection", self.collection,
                       vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))

    def existing(self, chunk_ids: list[str]) -> set[str]:
        """Which of ``chunk_ids`` are already stored (to resume an interrupted build)."""
        ids = {point_id(c): c for c in chunk_ids}
        found = self._call("retrieve", self.collection, ids=list(ids), with_payload=False, with_vectors=False)
        return {ids[str(p.id)] for p in found}

    def upsert(self, payloads: list[dict[str, Any]], vectors: Any) -> None:
        """Upsert one batch of chunks (payload dicts with an ``id``) and their vectors."""
        from qdrant_client import models

        points = [models.PointStruct(id=point_id(p["id"]), vector=[float(x) for x in v], payload=p)
                  for p, v in zip(payloads, vectors, strict=True)]
        self._call("upsert", self.collection, points=points, wait=True)

    def count(self) -> int:
        """Number of stored points."""
        return int(self._call("count", self.collection, exact=True).count)

    def search(self, vector: Any, limit: int) -> list[tuple[str, float]]:
        """Nearest chunks as ``(chunk_id, cosine)`` best first."""
        result = self._call("query_points", self.collection, query=[float(x) for x in vector], limit=limit,
                            with_payload=["id"])
        return [(str(p.payload["id"]), float(p.score)) for p in result.points]

    def vectors(self, chunk_ids: list[str]) -> dict[str, list[float]]:
        """Stored vectors of some chunks (to score BM25-only hits by cosine)."""
        ids = {point_id(c): c for c in chunk_ids}
        found = self._call("retrieve", self.collection, ids=list(ids), with_vectors=True, with_payload=False)
        return {ids[str(p.id)]: list(p.vector) for p in found}
