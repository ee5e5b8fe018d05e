"""Rerankers: reorder the fused candidates of a hybrid search (see `search(..., reranker=)`).

Two kinds, both satisfying `archivist.retrieval.search.Reranker` (`.name`, `.rerank(query, hits)`):

  - `CrossEncoderReranker(path)`: a sentence-transformers CrossEncoder read from a local folder
    (for example a copy of cross-encoder/ms-marco-MiniLM-L-6-v2); it reads query and passage
    together, the strongest kind, at one model call per candidate.
  - `CoverageReranker(ws, embedder)`: no extra model. Each candidate's new score mixes its cosine
    similarity to the query (the stored chunk vector, read from SQLite, so nothing is re-embedded)
    with how much of the query's IDF weight its text covers. It lifts passages that hold all the
    rare query terms and are semantically close over ones that only ranked well on one side.

`load_reranker(spec, ws)` picks one from a CLI value: "none", "coverage", or a folder path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from archivist.records import Hit

DEFAULT_ALPHA = 0.8  # weight of cosine similarity against term coverage (0.6-0.9 tried on the public set; see bench/RESULTS.md)


class CoverageReranker:
    """Re-score candidates by alpha * cosine(query, chunk) + (1 - alpha) * idf-weighted term coverage.

    ws: the workspace the hits came from (chunk vectors and term document frequencies are read
    from it); embedder: embeds the query (the same model that embedded the chunks).
    """

    name = "coverage"

    def __init__(self, ws, embedder=None, alpha: float = DEFAULT_ALPHA):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.ws, self.alpha = ws, alpha
        self._embedder = embedder
        self._df: dict[str, int] = {}
        self._n: int | None = None

    @property
    def embedder(self):
        if self._embedder is None:
            from archivist.models import embedder_for

            self._embedder = embedder_for(self.ws.settings)
        return self._embedder

    def _idf(self, term: str) -> float:
        """BM25's idf of a term over all chunks (document frequency from FTS5, cached)."""
        if self._n is None:
            self._n = int(self.ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        if term not in self._df:
            phrase = '"' + term.replace('"', '""') + '"*'
            try:
                self._df[term] = int(self.ws.db.execute(
                    "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,)).fetchone()[0])
            except Exception:  # an odd term FTS5 cannot parse: treat it as rare
                self._df[term] = 0
        df = self._df[term]
        return math.log(1.0 + (self._n - df + 0.5) / (df + 0.5))

    def _vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        marks = ",".join("?" * len(ids))
        rows = self.ws.db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({marks}) AND embedding IS NOT NULL",
                                  list(ids)).fetchall()
        return {int(r[0]): np.frombuffer(r[1], dtype=np.float32) for r in rows}

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The same hits, best first, `score` replaced by the mixed score (0..1)."""
        from archivist.retrieval.query import query_terms

        if not hits:
            return []
        qvec = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        vecs = self._vectors([h.chunk_id for h in hits])
        terms = query_terms(query)
        weights = {t: self._idf(t) for t in terms}
        total = sum(weights.values()) or 1.0
        for h in hits:
            v = vecs.get(h.chunk_id)
            cos = float(v @ qvec) if v is not None else (h.dense_score or 0.0)
            low = h.text.lower()
            present = h.matched_terms or [t for t in terms if re.search(r"\b" + re.escape(t), low)]
            coverage = sum(weights.get(t, 0.0) for t in present) / total if terms else 0.0
            h.score = self.alpha * max(cos, 0.0) + (1.0 - self.alpha) * coverage
        return sorted(hits, key=lambda h: -h.score)


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder; scores (query, passage) pairs."""

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int = 32):
        from sentence_transformers import CrossEncoder

        from archivist.models import pick_device

        p = Path(path).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"reranker model folder {p} does not exist")
        self.name = f"cross-encoder:{p.name}"
        self.batch_size = batch_size
        self.model = CrossEncoder(str(p), device=pick_device(device))

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self.model.predict([(query, h.text) for h in hits], batch_size=self.batch_size, show_progress_bar=False)
        for h, s in zip(hits, np.asarray(scores, dtype=np.float32).reshape(len(hits), -1)[:, -1]):
            h.score = float(s)
        return sorted(hits, key=lambda h: -h.score)


def load_reranker(spec: str | None, ws, embedder=None):
    """A reranker from a CLI value: None/"none" → None, "coverage" → CoverageReranker,
    a folder → CrossEncoderReranker. Raises FileNotFoundError for a path that does not exist."""
    if spec is None or spec == "none":
        return None
    if spec == "coverage":
        return CoverageReranker(ws, embedder)
    return CrossEncoderReranker(spec, device=ws.settings.device)
