"""Hybrid search: dense (FAISS) + lexical (FTS5's BM25, computed in memory by `lexicon`), fused
linearly on exact scores (`linear_fusion`, the default) or by reciprocal rank fusion (`rrf`).

Filters (collections, documents, file kinds) are applied inside both searches, never after
cutting to k. The collections a caller may read come from `archivist.access` alone.
Near-duplicate chunks are collapsed; an optional reranker reorders the fused list.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import itemgetter
from typing import Protocol

import numpy as np

from archivist import access
from archivist.records import Hit
from archivist.retrieval import lexicon, vectors
from archivist.workspace import Workspace, transaction

RRF_K = 60  # the constant of Cormack et al. (2009); robust across collections

STOPWORDS = frozenset("""a an and are as at be been but by can could do does did for from had has have how i if in into is it
its me my no not of on or our so that the their them then there these they this to was we were what when where which
who whom why will with would you your about after all also any before between both each few more most other over same
should some such than too under until very""".split())

_WORD = re.compile(r"\w+", re.UNICODE)


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The same hits, best first, with `score` replaced by the reranker's."""
        ...


def fts_query(text: str) -> str | None:
    """Turn free user text into a safe FTS5 query: terms OR-ed, each quoted, so quotes,
    operators (AND, NEAR, *, :, ^, parentheses) and odd characters can never raise.
    A term with inner punctuation (NW-4410, HR-17, v2.1) stays a quoted phrase."""
    terms = []
    for piece in text.split():
        piece = piece.strip(".,;:!?()[]{}<>\"'`*^+~=|/\\")
        words = _WORD.findall(piece)
        if not words:
            continue
        if len(words) == 1 and words[0].lower() in STOPWORDS:
            continue
        phrase = " ".join(words)
        terms.append('"' + phrase.replace('"', '""') + '"')
    terms = list(dict.fromkeys(terms))
    return " OR ".join(terms) if terms else None


def query_terms(text: str) -> list[str]:
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS))


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
        rows = ws.db.execute("SELECT id FROM documents WHERE CAST(id AS TEXT) = ? OR path = ? OR path LIKE ?",
                             (str(ref), str(ref), f"%/{ref}")).fetchall()
        ids += [r[0] for r in rows]
    return ids


def lexical(ws: Workspace, query: str, collection_ids: Sequence[int], limit: int,
            documents: Sequence[int] | None = None, kinds: Sequence[str] | None = None) -> list[tuple[int, float]]:
    """(chunk id, BM25 score, higher is better), best first: FTS5's bm25 for `fts_query(query)`
    (any word or phrase may match), computed by the in-memory index of `lexicon`."""
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
    `collection_ids` holds every collection of the workspace, when the caller knows."""
    units = lexicon.query_units(query, STOPWORDS)
    if not units or not collection_ids or (documents is not None and not documents):
        return lambda: lexicon.Ranking([], 0.0)
    index = lexicon.current(ws)
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


def rrf(*rankings: Sequence[tuple[int, float]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank), rank from 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (cid, _) in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank)
    return fused


def linear_fusion(ws: Workspace, qvec: np.ndarray, d_rank: Sequence[tuple[int, float]], lex: lexicon.Ranking,
                  weight: float, lexical_cosines: dict[int, float] | None = None) -> dict[int, float]:
    """score(d) = (1 - weight) x cosine(d) + weight x BM25(d) / ceiling, over every candidate of
    either search, with both scores exact: the cosine of a lexical-only candidate comes from its
    stored vector, the BM25 of a dense-only one from the lexical index (0 if no word matches).

    BM25 is divided by the query's ceiling, not by the best score found (a convex combination
    with theoretical min-max normalization, Bruch et al., "An Analysis of Fusion Functions for
    Hybrid Retrieval", 2023), so a query whose words are all common cannot inflate weak lexical
    matches to 1. Measured on the public sets against RRF: bench/RESULTS.md.

    `lexical_cosines` may carry the cosines of the lexical hits, computed beforehand (from `_lexical_side`).
    """
    cos = dict(d_rank)
    ranked = dict(lex.hits)
    missing = [c for c in ranked if c not in cos]
    if missing:
        known = lexical_cosines if lexical_cosines is not None else _cosines(ws, missing, qvec, lex.index)
        cos.update((c, known[c]) for c in missing if c in known)
    bm = {**lex.scores_of([c for c in cos if c not in ranked]), **ranked}
    scale = weight / lex.ceiling if lex.ceiling > 0 else 0.0
    keep = 1 - weight
    fused = {c: keep * v + scale * bm.get(c, 0.0) for c, v in cos.items()}
    for c, v in bm.items():
        if c not in fused:
            fused[c] = scale * v
    return fused


def _cosines(ws: Workspace, ids: list[int], qvec: np.ndarray, index: lexicon.Index | None = None) -> dict[int, float]:
    """The cosine of each chunk's stored vector with the query (chunks without a vector left out)."""
    return _dot(_stored_vectors(ws, ids, index), qvec)


def _dot(found: dict[int, np.ndarray], qvec: np.ndarray) -> dict[int, float]:
    """Chunk id -> the cosine of its vector in `found` with the query."""
    if not found:
        return {}
    return dict(zip(found, (np.stack(list(found.values())) @ qvec.astype(np.float32)).tolist()))


def _lexical_side(rank: Callable[[], lexicon.Ranking], ws: Workspace, with_vectors: bool,
                  collection_ids: Sequence[int]) -> tuple[lexicon.Ranking, dict[int, np.ndarray] | None]:
    """The lexical thread's share of a hybrid search: the BM25 ranking and, when `with_vectors`
    (linear fusion), the stored vector of each of its hits. It needs no query vector, so it runs
    while the caller embeds the query and searches FAISS."""
    lex = rank()
    if not (with_vectors and lex.hits):
        return lex, None
    return lex, _stored_vectors(ws, [c for c, _ in lex.hits], lex.index, collection_ids)


def _stored_vectors(ws: Workspace, ids: list[int], index: lexicon.Index | None = None,
                    collection_ids: Sequence[int] = ()) -> dict[int, np.ndarray]:
    """Chunk vectors read back from FAISS (routed to each chunk's collection by the lexical index,
    `index` or the current one, unless `collection_ids` names the one collection they all come
    from), or from SQLite when FAISS or the lexical index lacks one of them; chunks without a
    vector are left out."""
    groups: dict[int, list[int]] | None = None
    if len(collection_ids) == 1:
        groups = {collection_ids[0]: list(ids)}
    else:
        index = index or lexicon.current(ws)
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


def load_hits(ws: Workspace, ids: Sequence[int]) -> dict[int, Hit]:
    """Chunks as Hit records (document, collection, page, heading, span), by id; score 0."""
    return {chunk: _hit(row) for chunk, row in _hit_rows(ws, ids).items()}


def _hit_rows(ws: Workspace, ids: Sequence[int]) -> dict[int, tuple]:
    """The rows `load_hits` makes its hits of, by chunk id (the collection's name is row[3])."""
    if not ids:
        return {}
    cur = ws.db.cursor()
    cur.row_factory = None  # plain tuples: every search reads these rows, names cost more than the query
    rows = cur.execute(
        f"SELECT c.id, c.document_id, d.path, k.name, c.text, c.page, c.heading, c.start, c.end, d.kind, c.hash, "
        f"c.shingles "
        f"FROM chunks c JOIN documents d ON d.id = c.document_id JOIN collections k ON k.id = d.collection_id "
        f"WHERE c.id IN ({','.join('?' * len(ids))})", list(ids)).fetchall()
    return {row[0]: row for row in rows}


def _hit(row: tuple) -> Hit:
    chunk, doc, path, coll, text, page, heading, start, end, kind, hash_, shingles_ = row
    hit = Hit(chunk_id=chunk, document_id=doc, document=path, collection=coll, text=text, score=0.0, page=page,
              heading=tuple(h for h in heading.split(" > ") if h), start=start, end=end, kind=kind)
    hit._hash, hit._shingles = hash_, shingles_  # for duplicate collapsing only
    return hit


def _ranked_hits(rows: dict[int, tuple], ids: Sequence[int], readable: set[str], scores: dict[int, float],
                 d_pos: dict[int, tuple[int, float]], l_pos: dict[int, int]) -> Iterator[Hit]:
    """The hits of `ids` in order, scored, made one at a time as duplicate collapsing takes them
    (it stops at k: the candidates past it are never made)."""
    for cid in ids:
        row = rows.get(cid)
        # A FAISS file a crash left stale may name chunk ids SQLite has since reused in another
        # collection: check every hit's collection again (access.md, "stale index").
        if row is None or row[3] not in readable:
            continue
        h = _hit(row)
        h.score = scores[cid]
        if cid in d_pos:
            h.dense_rank, h.dense_score = d_pos[cid]
        h.lexical_rank = l_pos.get(cid)
        yield h


def _words(hit: Hit) -> list[str]:
    """The hit's lower-cased words, computed once per hit (duplicate collapsing and term marking share them)."""
    words = getattr(hit, "_words", None)
    if words is None:
        words = hit._words = _WORD.findall(hit.text.lower())
    return words


def shingles(text: str) -> bytes:
    """The text's word 3-grams (lower-cased words; the whole text when it has fewer than three), each
    hashed to its CRC-32, sorted and unique: what `collapse_duplicates` compares, stored with each
    chunk at ingestion so a query never re-reads the texts of its hits."""
    words = _WORD.findall(text.lower())
    grams = zip(words, words[1:], words[2:]) if len(words) > 2 else [words]
    crcs = np.fromiter((zlib.crc32("\x1f".join(g).encode("utf-8", "surrogatepass")) for g in grams), np.uint32)
    return np.unique(crcs).tobytes()


def _shingle_array(hit: Hit) -> memoryview:
    """The hit's sorted, unique 3-gram hashes (stored at ingestion, else computed now)."""
    blob = getattr(hit, "_shingles", None)
    return memoryview(blob if blob is not None else shingles(hit.text)).cast("I")


def backfill_shingles(ws: Workspace) -> int:
    """Store the shingles of chunks ingested before they were kept (once per workspace); returns how many."""
    if ws.meta("shingles") == "1":
        return 0
    done, last = 0, 0
    while rows := ws.db.execute("SELECT id, text FROM chunks WHERE id > ? AND shingles IS NULL ORDER BY id LIMIT 2000",
                                (last,)).fetchall():
        with transaction(ws.db):
            ws.db.executemany("UPDATE chunks SET shingles = ? WHERE id = ?", [(shingles(r["text"]), r["id"]) for r in rows])
        done, last = done + len(rows), rows[-1]["id"]
    ws.set_meta("shingles", "1")
    return done


def collapse_duplicates(hits: Iterable[Hit], threshold: float = 0.9, limit: int | None = None) -> list[Hit]:
    """Keep the best of chunks whose text is the same or nearly so (Jaccard of word 3-grams at least
    `threshold`); stop once `limit` hits are kept (the rest would be cut anyway)."""
    kept, seen_hash = [], set()
    sizes, shingled = [], []  # the kept hits' 3-gram sets, by size (Jaccard >= t needs sizes within a factor t)
    for h in hits:
        if limit is not None and len(kept) >= limit:
            break
        key = getattr(h, "_hash", None) or h.text
        if key in seen_hash:
            continue
        mine = _Shingles(_shingle_array(h))
        lo = bisect.bisect_left(sizes, threshold * mine.n)
        hi = bisect.bisect_right(sizes, mine.n / threshold) if threshold > 0 else len(sizes)
        if any(mine.near(other, threshold) for other in shingled[lo:hi]):
            continue
        seen_hash.add(key)
        at = bisect.bisect(sizes, mine.n)
        sizes.insert(at, mine.n)
        shingled.insert(at, mine)
        kept.append(h)
    return kept


class _Shingles:
    """A sorted set of 3-gram hashes, with an exact test for Jaccard >= t that rarely builds the sets."""

    PREFIX = 16

    def __init__(self, array: memoryview):
        self.array, self.n, self._set = array, len(array), None
        self.prefix = set(array[:self.PREFIX])

    def full(self) -> set[int]:
        if self._set is None:
            self._set = set(self.array)
        return self._set

    def near(self, other: _Shingles, t: float) -> bool:
        n, m = self.n, other.n
        if not (t * n <= m and t * m <= n):  # Jaccard <= min(n, m) / max(n, m)
            return False
        # Jaccard >= t needs i = |A & B| >= t (n + m) / (1 + t), so at most n - i of A's hashes are
        # missing from B, and B holds at most m - i hashes A lacks. Then of A's k smallest, at least
        # k - (n - i) are in B, each among B's k + (m - i) smallest: too few there rules the pair out.
        need = t * (n + m) / (1 + t) - 1e-9  # (rounded down: the shortcut must never reject a true pair)
        k = len(self.prefix)
        if len(self.prefix.intersection(other.array[:k + int(m - need)])) < k - (n - need):
            return False
        i = len(self.full() & other.full())
        return i >= t * (n + m - i)


def mark_matched_terms(hits: Sequence[Hit], terms: Sequence[str], index: lexicon.Index | None = None) -> None:
    """Set each hit's `matched_terms`: the query terms it holds as the lexical search matches them,
    read from the lexical index (a term's Porter stems in the text or heading: "policies" matches
    "policy"). A hit the index does not hold yet (just ingested by another process), or any hit
    when no index is given, gets the terms that begin a word of its text."""
    found = [False] * len(hits)
    parts = {t: p for t in terms if (p := lexicon.tokens(t))}  # "foo_bar" is two tokens, as the index has it
    stems = sorted({s for p in parts.values() for s in p})
    if index is not None and hits and stems:
        held, found = index.holding(stems, [h.chunk_id for h in hits])
        row = {s: i for i, s in enumerate(stems)}
        # has[j][i]: hit j holds every stem of term i (one table, read as lists: numpy scalars are slow)
        starts = np.cumsum([0] + [len(p) for p in parts.values()])[:-1]
        has = np.logical_and.reduceat(held[[row[s] for p in parts.values() for s in p]], starts, axis=0).T.tolist()
        found = found.tolist()
    for j, h in enumerate(hits):
        if found[j]:
            h.matched_terms = [t for t, m in zip(parts, has[j]) if m]
            continue
        words = sorted(set(_words(h)))
        matched = []
        for t in terms:
            i = bisect.bisect_left(words, t)  # the first word >= t starts with t if any word does
            if i < len(words) and words[i].startswith(t):
                matched.append(t)
        h.matched_terms = matched


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
    readable = access.readable_collections(ws, user)
    if collections is not None:
        readable = [c for c in readable if c in set(collections)]
    known = {r[0]: r[1] for r in ws.db.execute("SELECT name, id FROM collections")}
    cids = [known[c] for c in readable if c in known]
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
        ranker = _lexical_ranker(ws, query, cids, limit, doc_ids, kinds, every=len(set(cids)) == len(known))
        pending = _LEXICAL_THREAD.submit(_lexical_side, ranker, ws, linear, cids)
    if mode in ("hybrid", "dense"):
        from archivist.models import embedder_for

        embedder = embedder or embedder_for(ws.settings)
        qvec = embedder.embed([query])[0]
        d_rank = _faiss_search(ws, qvec, limit, scope)
    if mode == "hybrid":
        lex, lex_vectors = pending.result()
        l_rank = lex.hits
        if linear:
            scores = linear_fusion(ws, qvec, d_rank, lex, ws.settings.lexical_weight,
                                   _dot(lex_vectors, qvec) if lex_vectors is not None else None)
        else:
            scores = rrf(d_rank, l_rank)
    elif mode == "lexical":
        l_rank = lexical(ws, query, cids, limit, doc_ids, kinds)
        scores = dict(l_rank)
    else:
        scores = dict(d_rank)
    order = sorted(scores, key=scores.__getitem__, reverse=True)
    d_pos = {cid: (r, s) for r, (cid, s) in enumerate(d_rank, start=1)}
    l_pos = {cid: r for r, (cid, _) in enumerate(l_rank, start=1)}
    want = max(k * 3, 20) if reranker is not None else k
    # Load the best candidates with a margin for duplicates; only if duplicates or stale ids leave
    # too few, all of them.
    for ids in (order[:want + max(5, want // 2)], order):
        hits = collapse_duplicates(_ranked_hits(_hit_rows(ws, ids), ids, set(readable), scores, d_pos, l_pos), limit=want)
        if len(hits) >= want or len(ids) == len(order):
            break
    # the index that ranked this search's BM25, else the current one
    index = lex.index if mode == "hybrid" and lex.index is not None else lexicon.current(ws)
    mark_matched_terms(hits, query_terms(query), index)
    if reranker is not None:
        hits = reranker.rerank(query, hits)
    return hits[:k]


def relevance(hit: Hit) -> float:
    """How relevant a hit is on an absolute scale (the cosine similarity; 0 if dense missed it)."""
    return hit.dense_score if hit.dense_score is not None else 0.0


def term_coverage(ws: Workspace, query: str, hits: Sequence[Hit], top: int = 3) -> float:
    """IDF-weighted share of the query's content words found in the top hits (0..1).

    A question about something absent from the documents has rare words (or words the corpus
    lacks entirely) that no top passage contains, even when its common words match well.
    """
    terms = query_terms(query)
    if not terms:
        return 0.0
    index = lexicon.current(ws)
    n = index.n_live
    text = " ".join(h.text.lower() + " " + " ".join(h.heading).lower() for h in hits[:top])
    total = got = 0.0
    for t in terms:
        df = index.df(lexicon.stem(t))
        idf = math.log((n + 1) / (df + 0.5))
        total += idf
        if re.search(r"\b" + re.escape(t[: max(4, len(t) - 2)]), text):  # a crude stem: "reimbursed" ~ "reimburse"
            got += idf
    return got / total if total > 0 else 0.0


def answerability(ws: Workspace, query: str, hits: Sequence[Hit]) -> float:
    """How likely the hits hold an answer: the best cosine similarity plus half the term coverage.

    Calibrated on the sample documents (samples/QUESTIONS.jsonl): every answerable question
    scored >= 0.68, most unanswerable ones < 0.55; Settings.min_relevance defaults to 0.62.
    """
    if not hits:
        return 0.0
    return max(relevance(h) for h in hits) + 0.5 * term_coverage(ws, query, hits)
