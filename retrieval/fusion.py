"""Fusing the dense and the lexical ranking into one score per chunk: linearly on exact scores
(`linear_fusion`, the default) or by reciprocal rank fusion (`rrf`). Settings.fusion chooses, in
`fuse`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from archivist.retrieval import lexicon, lexicon_store, vectors
from archivist.workspace import Workspace

RRF_K = 60  # the constant of Cormack et al. (2009); robust across collections


def rrf(*rankings: Sequence[tuple[int, float]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank), rank from 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (cid, _) in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank)
    return fused


def fuse(ws: Workspace, qvec: np.ndarray, d_rank: Sequence[tuple[int, float]], lex: lexicon.Ranking,
         lexical_cosines: dict[int, float] | None = None) -> dict[int, float]:
    """Hybrid search's score per chunk, as the workspace's settings say: `linear_fusion` with
    settings.lexical_weight and settings.fusion_norm, or `rrf` of the two rankings (settings.fusion).
    `search.search` and the retriever fine-tune's held-out evaluation (finetune/retriever.py) both
    fuse here, so what decides an adapted embedder's activation is what search serves."""
    s = ws.settings
    if s.fusion == "linear":
        return linear_fusion(ws, qvec, d_rank, lex, s.lexical_weight, lexical_cosines, s.fusion_norm)
    return rrf(d_rank, lex.hits)


def linear_fusion(ws: Workspace, qvec: np.ndarray, d_rank: Sequence[tuple[int, float]], lex: lexicon.Ranking,
                  weight: float, lexical_cosines: dict[int, float] | None = None, norm: str = "max") -> dict[int, float]:
    """score(d) = (1 - weight) x cosine(d) + weight x BM25(d) / N, over every candidate of either
    search, with both scores exact: the cosine of a lexical-only candidate comes from its stored
    vector, the BM25 of a dense-only one from the lexical index (0 if no word matches).

    N (`norm`, settings.fusion_norm): "max", the best BM25 found for the query (the default), or
    "ceiling", the score a chunk holding every query word could reach (a convex combination with
    theoretical min-max normalization, Bruch et al., "An Analysis of Fusion Functions for Hybrid
    Retrieval", 2023), so that a query whose words are all common cannot inflate weak lexical
    matches to 1. On the public sets' tuning splits "max" at weight 0.2 ranked first of 127
    variants and "ceiling" at 0.3, the earlier default, 29th (bench/fusion.py; bench/RESULTS.md,
    finding 19): a query's best lexical match is evidence in itself, whatever words it lacks.

    `lexical_cosines` may carry the cosines of the lexical hits, computed beforehand (from
    `search._lexical_side`).
    """
    cos = dict(d_rank)
    ranked = dict(lex.hits)
    missing = [c for c in ranked if c not in cos]
    if missing:
        known = lexical_cosines if lexical_cosines is not None else cosines(ws, missing, qvec, lex.index)
        cos.update((c, known[c]) for c in missing if c in known)
    bm = {**lex.scores_of([c for c in cos if c not in ranked]), **ranked}
    top = lex.ceiling if norm == "ceiling" else max(ranked.values(), default=0.0)
    scale = weight / top if top > 0 else 0.0
    keep = 1 - weight
    fused = {c: keep * v + scale * bm.get(c, 0.0) for c, v in cos.items()}
    for c, v in bm.items():
        if c not in fused:
            fused[c] = scale * v
    return fused


def cosines(ws: Workspace, ids: list[int], qvec: np.ndarray, index: lexicon.Index | None = None) -> dict[int, float]:
    """The cosine of each chunk's stored vector with the query (chunks without a vector left out)."""
    return cosines_of(stored_vectors(ws, ids, index), qvec)


def cosines_of(found: dict[int, np.ndarray], qvec: np.ndarray) -> dict[int, float]:
    """Chunk id -> the cosine of its vector in `found` with the query."""
    if not found:
        return {}
    return dict(zip(found, (np.stack(list(found.values())) @ qvec.astype(np.float32)).tolist()))


def stored_vectors(ws: Workspace, ids: list[int], index: lexicon.Index | None = None,
                   collection_ids: Sequence[int] = ()) -> dict[int, np.ndarray]:
    """Chunk vectors read back from FAISS (routed to each chunk's collection by the lexical index,
    `index` or the current one, unless `collection_ids` names the one collection they all come
    from), or from SQLite when FAISS or the lexical index lacks one of them; chunks without a
    vector are left out."""
    groups: dict[int, list[int]] | None = None
    if len(collection_ids) == 1:
        groups = {collection_ids[0]: list(ids)}
    else:
        index = index or lexicon_store.current(ws)
        pos, held = index.positions(np.asarray(ids, np.int64))
        if held.all():
            groups = {}
            for chunk, coll in zip(ids, index.colls[pos].tolist()):
                groups.setdefault(coll, []).append(chunk)
    if groups is not None:
        found = vectors.stored(ws, groups)
        if found is not None:
            return found
    rows = ws.db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({','.join('?' * len(ids))}) "
                         f"AND embedding IS NOT NULL", ids).fetchall()
    return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}
