"""Sentence embeddings with the embedded all-MiniLM-L6-v2 (a hub model id can replace it at scale)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEFAULT_EMBEDDER = "embedded:all-minilm-l6-v2"


@lru_cache(maxsize=2)
def _model(model_id: str):
    from sentence_transformers import SentenceTransformer

    from diffaudit.environments.embedded import EMBEDDED_PREFIX, ensure_embedding_model

    path = str(ensure_embedding_model()) if model_id.startswith(EMBEDDED_PREFIX) else model_id
    return SentenceTransformer(path, device="cpu")


def embed(texts: list[str], model_id: str = DEFAULT_EMBEDDER, batch_size: int = 64) -> np.ndarray:
    """Unit-normalised embeddings, shape [len(texts), dim]; an empty list gives shape [0, dim]."""
    model = _model(model_id)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def mean_pairwise_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity over all pairs (rows of `a` × rows of `b`); rows must be unit-normalised."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float((a @ b.T).mean())
