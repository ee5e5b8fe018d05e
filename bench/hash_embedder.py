"""An embedder whose vectors come from a hash of the text, for measuring what surrounds the embedder.

Reading, chunking, SQLite, FTS5 and FAISS stay real; only the model's work is skipped, so a benchmark
or test can measure memory, speed or concurrency at sizes where the real embedder would take hours
on a CPU, or start a process without loading torch. Its vectors find nothing by meaning.

It lives here, not in the archivist package: it is no backend a user could choose (search with it
is noise), and tests reach it as bench's other helpers, by putting bench/ on their path (appended,
so it never shadows an installed module). This module sets nothing on import, unlike common.py.
"""

from __future__ import annotations

import hashlib

import numpy as np


class HashEmbedder:
    """The same text gives the same unit float32 vector: a normal draw seeded by the text's SHA-256.

    Its own model, "hash:384", by default; `like(real)` takes a real embedder's name and dimension,
    so that a workspace records the real model (and a later real search of it is allowed), with an
    identity of its own, so that no vector of it is ever reused as a real one's."""

    def __init__(self, name: str = "hash", dim: int = 384, identity: str | None = None):
        self.name, self.dim = name, dim
        self.model_id = f"{name}:{dim}"
        self.identity = identity or self.model_id

    @classmethod
    def like(cls, real) -> HashEmbedder:
        return cls(real.name, real.dim, f"{real.name}:{real.dim} backend=hash")

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Normalized float32 vectors, one row per text (`batch_size` is the Embedder protocol's, unused)."""
        out = np.empty((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
