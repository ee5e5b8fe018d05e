"""Chunks read back as `Hit` records (document, collection, page, heading, span), and the query
terms marked on them."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Sequence

import numpy as np

from archivist.records import Hit
from archivist.retrieval import lexicon
from archivist.retrieval.query import WORD
from archivist.workspace import Workspace


def load_hits(ws: Workspace, ids: Sequence[int]) -> dict[int, Hit]:
    """Chunks as Hit records (document, collection, page, heading, span), by id; score 0."""
    return {chunk: _hit(row) for chunk, row in hit_rows(ws, ids).items()}


def hit_rows(ws: Workspace, ids: Sequence[int]) -> dict[int, tuple]:
    """The rows `load_hits` makes its hits of, by chunk id (the collection's name is row[3])."""
    if not ids:
        return {}
    cur = ws.db.cursor()
    cur.row_factory = None  # plain tuples: every search reads these rows, names cost more than the query
    rows = cur.execute(
        f"SELECT c.id, c.document_id, d.path, k.name, c.text, c.page, c.heading, c.start, c.end, d.kind, c.hash, "
        f"c.shingles, c.boxes "
        f"FROM chunks c JOIN documents d ON d.id = c.document_id JOIN collections k ON k.id = d.collection_id "
        f"WHERE c.id IN ({','.join('?' * len(ids))})", list(ids)).fetchall()
    return {row[0]: row for row in rows}


def _hit(row: tuple) -> Hit:
    chunk, doc, path, coll, text, page, heading, start, end, kind, hash_, shingles_, boxes = row
    hit = Hit(chunk_id=chunk, document_id=doc, document=path, collection=coll, text=text, score=0.0, page=page,
              heading=tuple(h for h in heading.split(" > ") if h), start=start, end=end, kind=kind,
              boxes=tuple(tuple(b) for b in json.loads(boxes)) if boxes else ())
    hit._hash, hit._shingles = hash_, shingles_  # for duplicate collapsing only
    return hit


def ranked_hits(rows: dict[int, tuple], ids: Sequence[int], readable: set[str], scores: dict[int, float],
                d_pos: dict[int, tuple[int, float]], l_pos: dict[int, int]) -> Iterator[Hit]:
    """The hits of `ids` (rows from `hit_rows`) in order, scored, made one at a time as duplicate
    collapsing takes them (it stops at k: the candidates past it are never made)."""
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
    """The hit's lower-cased words, computed once per hit (term marking asks for them)."""
    words = getattr(hit, "_words", None)
    if words is None:
        words = hit._words = WORD.findall(hit.text.lower())
    return words


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
