"""Collapsing near-duplicate hits: of chunks whose text is the same or nearly so (Jaccard of word
3-grams), a search keeps the best. The 3-grams are fingerprints stored with each chunk at
ingestion (`archivist.ingest.shingles`); this module only reads them."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from archivist.ingest.shingles import shingles
from archivist.records import Hit


def collapse_duplicates(hits: Iterable[Hit], threshold: float = 0.9, limit: int | None = None) -> list[Hit]:
    """Keep the best of chunks whose text is the same or nearly so (Jaccard of word 3-grams at least
    `threshold`); stop once `limit` hits are kept (the rest would be cut anyway).

    Nearly the same text is collapsed only within one collection: a near copy is often the same
    passage with one fact changed ("16 weeks" made "52 weeks"), and a writer of one collection could
    otherwise hide another collection's passage from every reader of both by ranking a changed copy
    above it. (Within a collection its writers could change the passage itself.)"""
    kept, seen_hash = [], set()
    # per collection, the kept hits' 3-gram sets by size (Jaccard >= t needs sizes within a factor t)
    by_collection: dict[str, tuple[list, list]] = {}
    for h in hits:
        if limit is not None and len(kept) >= limit:
            break
        key = getattr(h, "_hash", None) or h.text
        if key in seen_hash:
            continue
        mine = _Shingles(_shingle_array(h))
        sizes, shingled = by_collection.setdefault(h.collection, ([], []))
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


def _shingle_array(hit: Hit) -> memoryview:
    """The hit's sorted, unique 3-gram hashes (stored at ingestion, else computed now)."""
    blob = getattr(hit, "_shingles", None)
    return memoryview(blob if blob is not None else shingles(hit.text)).cast("I")


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
