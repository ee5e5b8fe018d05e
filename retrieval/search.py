"""Hybrid search, the entry point: dense (FAISS) and lexical (FTS5's BM25, computed in memory by
`lexicon`) searches over what the user may read, fused (`fusion`), loaded as hits (`hits`), with
near-duplicates collapsed (`duplicates`) and an optional reranker reordering the fused list.

Filters (collections, documents, file kinds) are applied inside both searches, never after
cutting to k. The collections a caller may read come from `archivist.access` alone. BM25's
statistics (N, document frequencies, average length) are counted over the collections searched,
never over the whole workspace (`lexicon.Index.statistics`; `statistics_scope` for the answer gates),
so no score depends on a collection the caller cannot read. What a query's words are: `query`;
whether the hits likely hold an answer: `answerability`.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import itemgetter
from typing import Protocol

import numpy as np

from archivist import access
from archivist.records import Hit
from archivist.retrieval import lexicon, lexicon_store, vectors
from archivist.retrieval.duplicates import collapse_duplicates
from archivist.retrieval.fusion import cosines_of, fuse, stored_vectors
from archivist.retrieval.hits import hit_rows, mark_matched_terms, ranked_hits
from archivist.retrieval.query import query_terms, stopwords_of
from archivist.workspace import Workspace


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: list[Hit], collections: Sequence[int] | None = None) -> list[Hit]:
        """The same hits, best first, with `score` replaced by the reranker's. `collections`: the ids
        the search looked in (None: every collection), which any word statistics are counted over."""
        ...


def _scope_sql(collection_ids: Sequence[int], documents: Sequence[int] | None, kinds: Sequence[str] | None) -> tuple[str, list]:
    where = [f"d.collection_id IN ({','.join('?' * len(collection_ids))})"]
    args: list = list(collection_ids)
    if documents is not None:
        where.append(f"d.id IN ({','.join('?' * len(documents))})")
        args += list(documents)
    if kinds is not None:
        where.append(f"d.kind IN ({','.join('?' * len(kinds))})")
        args += list(kinds)
    return " AND ".join(where), args


def resolve_documents(ws: Workspace, refs: Sequence[str | int] | None) -> list[int] | None:
    """Document ids for names or ids given by a caller (names match the full name or its last part)."""
    if refs is None:
        return None
    ids = []
    for ref in refs:
        ref = unicodedata.normalize("NFC", str(ref))  # names are stored NFC: "café" typed decomposed (macOS) names it too
        # the last part matched as written: LIKE ignored ASCII case and read "_" and "%" as wildcards,
        # so `-d a_b.md` also searched x/axb.md and `-d Notes.md` notes.md
        tail = f"/{ref}"
        rows = ws.db.execute("SELECT id FROM documents WHERE CAST(id AS TEXT) = ? OR path = ? OR substr(path, -?) = ?",
                             (str(ref), str(ref), len(tail), tail)).fetchall()
        ids += [r[0] for r in rows]
    return ids


def unreadable_document(ws: Workspace, user: str | None, collections: Sequence[str] | None,
                        refs: Sequence[str | int] | None) -> str | int | None:
    """The first of `refs` (document names or ids) that names no document `user` may read in `collections`
    (None: any readable one), else None. A filter on it finds nothing, which a caller cannot tell from a real
    miss, so the CLI and the API refuse it; the same whether it exists in a collection the user may not read
    or not at all, so nothing is told about documents they may not see."""
    readable = [c for c in access.readable_collections(ws, user) if not collections or c in collections]
    for ref in refs or []:
        ids = resolve_documents(ws, [ref])
        if not ids or not readable or not ws.db.execute(
                f"SELECT 1 FROM documents d JOIN collections c ON c.id = d.collection_id WHERE d.id IN "
                f"({','.join('?' * len(ids))}) AND c.name IN ({','.join('?' * len(readable))}) LIMIT 1",
                [*ids, *readable]).fetchone():
            return ref
    return None


def searched(ws: Workspace, user: str | None, collections: Sequence[str] | None = None) -> tuple[list[str], list[int], bool]:
    """What a search by `user` in `collections` (names; None: any) looks in: the names of the
    collections the user may read among them, their ids (those that exist), and whether the ids are
    every collection of the workspace. Raises AccessDenied for an unknown user."""
    readable = access.readable_collections(ws, user)
    if collections is not None:
        readable = [c for c in readable if c in set(collections)]
    known = {r[0]: r[1] for r in ws.db.execute("SELECT name, id FROM collections")}
    cids = [known[c] for c in readable if c in known]
    return readable, cids, len(set(cids)) == len(known)


def statistics_scope(ws: Workspace, user: str | None, collections: Sequence[str] | None = None) -> list[int] | None:
    """The collection ids whose chunks the lexical statistics of a search by `user` in `collections`
    are counted over (`lexicon.Index.statistics`): the ones it searches, or None when that is every
    collection of the workspace. For the gates that judge a search's hits (`answerability`,
    `keyanswer.term_stats`). Raises AccessDenied for an unknown user."""
    _, cids, every = searched(ws, user, collections)
    return None if every else cids


def lexical(ws: Workspace, query: str, collection_ids: Sequence[int], limit: int,
            documents: Sequence[int] | None = None, kinds: Sequence[str] | None = None) -> list[tuple[int, float]]:
    """(chunk id, BM25 score, higher is better), best first: FTS5's bm25 for `fts_query(query)`
    (any word or phrase may match), computed by the in-memory index of `lexicon` with statistics
    over the chunks of `collection_ids` (FTS5's own when that is every collection)."""
    return lexical_ranking(ws, query, collection_ids, limit, documents, kinds).hits


def lexical_ranking(ws: Workspace, query: str, collection_ids: Sequence[int], limit: int,
                    documents: Sequence[int] | None = None, kinds: Sequence[str] | None = None) -> lexicon.Ranking:
    """`lexical`'s hits, with the query's BM25 ceiling and the BM25 of any other chunk (`scores_of`)."""
    return _lexical_ranker(ws, query, collection_ids, limit, documents, kinds)()


def _lexical_ranker(ws: Workspace, query: str, collection_ids: Sequence[int], limit: int,
                    documents: Sequence[int] | None = None, kinds: Sequence[str] | None = None,
                    every: bool | None = None) -> Callable[[], lexicon.Ranking]:
    """`lexical_ranking` in two steps: what needs SQLite runs now; the ranking itself (numpy only, so
    it may run on another thread) when the returned function is called. `every`: whether
    `collection_ids` holds every collection of the workspace, when the caller knows. The
    statistics are those of `collection_ids` (the index's own, the fast path, when `every`), never
    narrowed by `documents` or `kinds`: those filter the ranked chunks only."""
    units = lexicon.query_units(query, stopwords_of(query))
    if not units or not collection_ids or (documents is not None and not documents):
        return lambda: lexicon.Ranking([], 0.0)
    index = lexicon_store.current(ws)
    allowed_docs = None
    if documents is not None or kinds is not None:
        scope, args = _scope_sql(collection_ids, documents, kinds)
        allowed_docs = np.array([r[0] for r in ws.db.execute(f"SELECT d.id FROM documents d WHERE {scope}", args)], np.int64)
    scoped = None if (every if every is not None else _all_collections(ws, collection_ids)) else collection_ids
    return partial(index.rank, units, limit, scoped, allowed_docs)


def _all_collections(ws: Workspace, collection_ids: Sequence[int]) -> bool:
    """True when `collection_ids` holds every collection of the workspace (so no chunk is out of scope)."""
    return {r[0] for r in ws.db.execute("SELECT id FROM collections")} <= set(collection_ids)


def dense(ws: Workspace, qvec: np.ndarray, collection_ids: Sequence[int], limit: int,
          documents: Sequence[int] | None = None, kinds: Sequence[str] | None = None) -> list[tuple[int, float]]:
    """(chunk id, cosine) from FAISS across collections, best first; filters go into FAISS as an id selector."""
    return _faiss_search(ws, qvec, limit, _dense_scope(ws, collection_ids, documents, kinds))


def _dense_scope(ws: Workspace, collection_ids: Sequence[int], documents: Sequence[int] | None,
                 kinds: Sequence[str] | None) -> list[tuple[int, np.ndarray | None]]:
    """`dense`'s SQLite half: each collection with the chunk ids its filters allow (None: all)."""
    if documents is None and kinds is None:
        return [(cid, None) for cid in collection_ids]
    out = []
    for cid in collection_ids:
        scope, args = _scope_sql([cid], documents, kinds)
        out.append((cid, np.array([r[0] for r in ws.db.execute(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {scope}", args)], dtype=np.int64)))
    return out


def _faiss_search(ws: Workspace, qvec: np.ndarray, limit: int, scope: list[tuple[int, np.ndarray | None]]) -> list[tuple[int, float]]:
    """`dense`'s FAISS half."""
    if len(scope) == 1:  # FAISS returns one collection's hits best first
        return vectors.search(ws, scope[0][0], qvec, limit, scope[0][1])
    out = []
    for cid, allowed in scope:
        out += vectors.search(ws, cid, qvec, limit, allowed)
    out.sort(key=itemgetter(1), reverse=True)
    return out[:limit]


# Hybrid search ranks BM25 (and reads the vectors of its hits) here while the calling thread embeds
# the query and searches FAISS, both of which release the GIL and leave a core partly idle on a
# single short query: on two or more cores the lexical side adds little to the latency
# (bench/RESULTS.md, findings 2c and 2d). One search at a time uses one thread; concurrent
# searches (the API's) get more, up to the cores.
_LEXICAL_THREAD = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="archivist-bm25")


def _lexical_side(rank: Callable[[], lexicon.Ranking], ws: Workspace, with_vectors: bool,
                  collection_ids: Sequence[int]) -> tuple[lexicon.Ranking, dict[int, np.ndarray] | None]:
    """The lexical thread's share of a hybrid search: the BM25 ranking and, when `with_vectors`
    (linear fusion), the stored vector of each of its hits. It needs no query vector, so it runs
    while the caller embeds the query and searches FAISS."""
    lex = rank()
    if not (with_vectors and lex.hits):
        return lex, None
    return lex, stored_vectors(ws, [c for c, _ in lex.hits], lex.index, collection_ids)


def search(
    ws: Workspace,
    query: str,
    k: int = 10,
    user: str | None = None,
    collections: Sequence[str] | None = None,
    documents: Sequence[str | int] | None = None,
    kinds: Sequence[str] | None = None,
    mode: str = "hybrid",
    reranker: Reranker | None = None,
    embedder=None,
    candidates: int | None = None,
) -> list[Hit]:
    """Ranked chunks for `query` among what `user` may read.

    mode: "hybrid" (dense and lexical fused as `settings.fusion` says), "dense" or "lexical".
    `score` is the fused score (hybrid) or the method's own; `dense_score` is the cosine
    similarity when the chunk came up in the dense search. Raises AccessDenied for an unknown user.
    """
    if mode not in ("hybrid", "dense", "lexical"):
        raise ValueError(f"mode must be hybrid, dense or lexical, got {mode!r}")
    readable, cids, every = searched(ws, user, collections)
    if not cids or not query.strip() or k <= 0:
        return []
    doc_ids = resolve_documents(ws, documents)
    limit = max(candidates or ws.settings.candidates, k)
    d_rank: list[tuple[int, float]] = []
    l_rank: list[tuple[int, float]] = []
    if mode in ("hybrid", "dense"):
        scope = _dense_scope(ws, cids, doc_ids, kinds)
    if mode == "hybrid":
        # BM25 needs no query vector: rank it (and read its hits' vectors, for linear fusion) on the
        # lexical thread while this one embeds the query and searches FAISS (bench/RESULTS.md, finding 2d).
        linear = ws.settings.fusion == "linear"
        ranker = _lexical_ranker(ws, query, cids, limit, doc_ids, kinds, every=every)
        pending = _LEXICAL_THREAD.submit(_lexical_side, ranker, ws, linear, cids)
    if mode in ("hybrid", "dense"):
        from archivist.models import embedder_for

        embedder = embedder or embedder_for(ws.settings)
        qvec = embedder.embed([query])[0]
        d_rank = _faiss_search(ws, qvec, limit, scope)
    if mode == "hybrid":
        lex, lex_vectors = pending.result()
        l_rank = lex.hits
        scores = fuse(ws, qvec, d_rank, lex, cosines_of(lex_vectors, qvec) if lex_vectors is not None else None)
    elif mode == "lexical":
        l_rank = _lexical_ranker(ws, query, cids, limit, doc_ids, kinds, every=every)().hits
        scores = dict(l_rank)
    else:
        scores = dict(d_rank)
    # equal scores (a copy of a passage has its vector) go to the earlier chunk, in every mode: which
    # copy a search keeps, and so which document an evaluation credits, must not depend on the mode
    order = sorted(scores, key=lambda c: (-scores[c], c))
    d_pos = {cid: (r, s) for r, (cid, s) in enumerate(d_rank, start=1)}
    l_pos = {cid: r for r, (cid, _) in enumerate(l_rank, start=1)}
    want = max(k * 3, 20) if reranker is not None else k
    # Load the best candidates with a margin for duplicates; only if duplicates or stale ids leave
    # too few, all of them.
    for ids in (order[:want + max(5, want // 2)], order):
        hits = collapse_duplicates(ranked_hits(hit_rows(ws, ids), ids, set(readable), scores, d_pos, l_pos), limit=want)
        if len(hits) >= want or len(ids) == len(order):
            break
    # the index that ranked this search's BM25, else the current one
    index = lex.index if mode == "hybrid" and lex.index is not None else lexicon_store.current(ws)
    mark_matched_terms(hits, query_terms(query), index)
    if reranker is not None:
        hits = reranker.rerank(query, hits, None if every else cids)
    return hits[:k]
