"""Lexical search: BM25 over the chunks of the searched collections, held in memory beside FAISS.

The scores are FTS5's own `bm25()` as `chunks_fts` would compute it for `MATCH 'a OR b ...'`
(k1 1.2, b 0.75, the text column weighted 1.0 and the heading 0.5, a row's length counted over
both columns, idf floored at 1e-6), over the same tokens (unicode61 folding, Porter stems) for
ASCII text. Beyond ASCII the tokens part from FTS5's (`tokens`): text is folded (NFKC, diacritics,
case, invisible characters) and Chinese/Japanese/Korean cut into characters and bigrams
(retrieval/folding.py), where unicode61 keeps a whole run of them, a sentence, as one token.
Fields (BM25F in FTS5's own form): a chunk's frequency of a word is the weighted sum of its
frequencies in the text (1.0), the heading path (`Fields.heading`) and the document's title
(`Fields.title`), and its length the sum of those fields' lengths; a field of weight 0 is left out
of both. With the default `Fields` (title 0) that is exactly `chunks_fts`'s bm25. A query piece with
inner punctuation (an identifier: os.path.join, --keep-index) also scores `Fields.identifier` x its
frequency as written, adjacent within one whitespace-free piece, on top of its words' co-occurrence.
FTS5 recomputes that for every row matching any query term, which at 100,000 chunks was most of
a hybrid query's time (bench/RESULTS.md); here a query gathers the postings of its few terms from
a term-by-chunk CSR matrix and scores them with numpy.

Statistics follow the search's scope: N, each word's document frequency and the average length are
counted over the live chunks of the collections searched (`Index.statistics`, one cached mask per
set of collections), never over the whole workspace, so a member's scores, and the answer gates
built on document frequencies (`answerability`, `keyanswer`), say nothing about the words of
collections they cannot read (docs/access.md). Searching every collection (None) is FTS5's
whole-table BM25, on the precomputed impacts: the single-user case and every benchmark.

The index on disk, and how it is kept in step with SQLite, is lexicon_store's. An `Index` is never
changed in place: `with_chunks`, `without` and `merged` give a new one, so a search running in
another thread keeps a consistent one.
"""

from __future__ import annotations

import json
import math
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from archivist.retrieval import folding
from archivist.workspace import Workspace

K1, B = 1.2, 0.75
HEADING_WEIGHT = 0.5
_SPACE = re.compile(r"\s")
_PAIR = "\x00"  # joins the stems of adjacent words of an identifier into one term (never inside a stem)
_TOKEN = re.compile(r"[^\W_]+")  # unicode61: runs of letters and digits; "_" separates
# What `tokens` makes of a text, as a number saved with the index: an index file or pending segment
# tokenized by another version is rebuilt from SQLite (lexicon_store). 2: text beyond ASCII folded
# (`folding.fold`) and Chinese/Japanese/Korean cut into characters and bigrams (`folding.words`).
# 3: letters without a decomposition made plain (`folding.PLAIN_LETTERS`: ł, ø, æ). 4: a word with
# a German umlaut also as typed without it (`umlaut_twins`: "Müller" is found by "Mueller").
TOKENIZER = 4
_local = threading.local()
_stems: dict[str, str] = {}
STEMS_MAX = 100_000  # words whose stem is remembered; then forgotten at once (a CSV of a million ids has a million words)


def stem(word: str) -> str:
    """A lower-cased word's Porter stem, diacritics removed first (as FTS5's porter unicode61); beyond
    ASCII the word is folded as `tokens` folds text (`folding.fold`), so a CJK bigram is its own term."""
    s = _stems.get(word)
    if s is None:
        w = word
        if not w.isascii():
            w = folding.fold(w, quick=False)
        if w.isascii() and len(w) > 2:
            stemmer = getattr(_local, "stemmer", None)
            if stemmer is None:  # snowball stemmers keep state: one per thread
                import snowballstemmer

                stemmer = _local.stemmer = snowballstemmer.stemmer("porter")
            w = stemmer.stemWord(w)
        s = w
        if len(_stems) >= STEMS_MAX:  # ~16 MB: kept bounded, the ingesting process's memory must not grow with its words
            _stems.clear()
        _stems[word] = s
    return s


def tokens(text: str) -> list[str]:
    """The terms of `text` as the index holds them: ASCII words as unicode61 + Porter make them;
    other text folded first (`folding.fold`), Chinese/Japanese/Korean as characters and bigrams."""
    low = text.lower()
    if low.isascii():
        return [stem(w) for w in _TOKEN.findall(low)]
    low = folding.fold(low)
    if not folding.CJK_CHAR.search(low):
        return [stem(w) for w in folding.patterns()[3].findall(low)]
    return [w if cjk else stem(w) for _, _, w, cjk in folding.words(low)]


def umlaut_twins(text: str) -> list[str]:
    """The terms of the words of `text` written with ä, ö or ü as German is typed without them
    (`folding.typed`: "Müller" -> mueller, "Größe" -> groess), beside the folded terms `tokens` gives
    them (muller, gross): a question typing "Mueller" finds "Müller". Extra terms, counted in no
    chunk's length (they are the same words again), so no other term's score changes; [] for text
    without umlauts, all ASCII text among it."""
    also = folding.typed(text.lower())
    if also is None:
        return []
    word = folding.patterns()[3]
    # the umlauts are letters, written as two letters: the words of both texts pair up one to one
    low = unicodedata.normalize("NFC", text.lower())
    return [stem(t) for w, t in zip(word.findall(folding.fold(low)), word.findall(folding.fold(also))) if w != t]


def query_units(text: str, stopwords: frozenset[str] = frozenset()) -> list[tuple[str, ...]]:
    """What a query searches for, as FTS5 would read `fts_query(text)`: each whitespace-separated
    piece is one unit, a single stem, or a phrase of stems when the piece has inner punctuation
    (NW-1180, v2.1); a piece that is one stop word is left out. Beyond ASCII the piece is folded as
    the index's text is (`tokens`), and each CJK bigram (or lone character) is a unit of its own:
    a question written without spaces finds the chunks holding most of its pairs."""
    units = []
    for piece in folding.plain(text).split():  # composed: a decomposed "fu\u0308r" is the stop word "für" too
        low = piece.lower()
        if low.isascii():
            words = _TOKEN.findall(low)
            if not words or (len(words) == 1 and words[0] in stopwords):
                continue
            units.append(tuple(stem(w) for w in words))
            continue
        found = list(folding.words(folding.fold(low), query=True))
        units += [(w,) for _, _, w, cjk in found if cjk]
        words = [w for _, _, w, cjk in found if not cjk]
        if words and not (len(words) == 1 and words[0] in stopwords):
            units.append(tuple(stem(w) for w in words))
    return list(dict.fromkeys(units))


@dataclass(frozen=True)
class Fields:
    """How much each part of a chunk counts in its BM25 (see the module's docstring). Changing
    them rebuilds the index (`sync`)."""

    heading: float = HEADING_WEIGHT  # the heading path; 0.5 as `chunks_fts`'s heading column
    title: float = 0.0               # the document's title; 0: not indexed (FTS5 has no such column)
    identifier: float = 0.0          # extra frequency per verbatim match of a query identifier; 0: off

    def __post_init__(self):
        for name in ("heading", "title", "identifier"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"lexical field weight {name} must be a finite number >= 0, got {v!r}")

    def to_json(self) -> str:
        return json.dumps({"heading": self.heading, "title": self.title, "identifier": self.identifier})

    @classmethod
    def from_json(cls, text: str) -> Fields:
        return cls(**json.loads(text))


DEFAULT_FIELDS = Fields()  # as the settings' defaults; bench/RESULTS.md, "Lexical index: Tantivy vs hand-written"


def fields_of(ws: Workspace) -> Fields:
    """The field weights the workspace's settings ask for (settings lexical_*_weight)."""
    s = ws.settings
    return Fields(heading=s.lexical_heading_weight, title=s.lexical_title_weight, identifier=s.lexical_identifier_weight)


def identifier_pairs(text: str) -> list[str]:
    """The adjacent word pairs of each identifier in `text` (words joined by punctuation and no
    space, as in os.path.join or --keep-index), each as one term: stem, `_PAIR`, stem."""
    out = []
    low = text.lower()
    if low.isascii():
        found = ((m.start(), m.end(), m.group(), False) for m in _TOKEN.finditer(low))
    else:
        low = folding.fold(low)
        found = folding.words(low, query=True)
    prev_end, prev = -1, None
    for start, end, word, cjk in found:
        if cjk:  # a CJK run is no identifier's part, and ends the one before it
            prev = None
            continue
        word = stem(word)
        if prev is not None and not _SPACE.search(low, prev_end, start):
            out.append(prev + _PAIR + word)
        prev_end, prev = end, word
    return out


@dataclass
class Ranking:
    hits: list[tuple[int, float]]  # (chunk id, BM25), best first
    ceiling: float                 # the highest score any chunk could reach for the query
    index: Index | None = None     # the index that ranked, and its BM25 of every position
    scores: np.ndarray | None = None

    def scores_of(self, chunk_ids: Sequence[int]) -> dict[int, float]:
        """The BM25 of these chunks, ranked or not (0 where no query word matches or the index
        lacks the chunk)."""
        want = np.asarray(chunk_ids, np.int64)
        if self.scores is None or not len(want):
            return dict.fromkeys(want.tolist(), 0.0)
        pos, found = self.index.positions(want)
        return dict(zip(want.tolist(), np.where(found, self.scores[pos], 0.0).tolist()))


@dataclass(frozen=True)
class Statistics:
    """What BM25 counts over: the live chunks of some collections (or of the whole index)."""

    mask: np.ndarray  # bool per position: live and in scope
    n: int            # how many chunks that is
    avgdl: float      # their average length

    def df(self, index: Index, stem_: str) -> int:
        """How many of these chunks hold the stem."""
        t = index.terms.get(stem_)
        if t is None:
            return 0
        return int(self.mask[index.post_pos[index.indptr[t]:index.indptr[t + 1]]].sum())


SCOPES_KEPT = 64  # per index: the scopes (sets of collections) whose statistics are cached


@dataclass(frozen=True)
class Index:
    terms: dict[str, int]     # stem -> row of the CSR matrix
    indptr: np.ndarray        # int64 [n_terms + 1]
    post_pos: np.ndarray      # int32 chunk position of each posting
    post_f: np.ndarray        # float32 weighted term frequency (text + 0.5 x heading)
    ids: np.ndarray           # int64 chunk id per position
    docs: np.ndarray          # int64 document id per position
    colls: np.ndarray         # int64 collection id per position
    length: np.ndarray        # float32 tokens in the weighted fields (text + heading by default) per position
    live: np.ndarray          # bool; deleted chunks stay as dead positions until compaction
    mtime: float = field(default=0.0, compare=False)
    fields: Fields = DEFAULT_FIELDS  # how the postings were weighted
    tokenizer: int = TOKENIZER       # the `tokens` its terms came from (an older one's index is rebuilt)

    @classmethod
    def empty(cls, fields: Fields = DEFAULT_FIELDS) -> Index:
        i64, f32 = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return cls({}, np.zeros(1, np.int64), np.zeros(0, np.int32), f32, i64, i64, i64, f32, np.zeros(0, bool), fields=fields)

    @cached_property
    def n_live(self) -> int:
        return int(self.live.sum())

    @cached_property
    def avgdl(self) -> float:
        return float(self.length[self.live].sum()) / max(1, self.n_live)

    @cached_property
    def _scopes(self) -> dict[frozenset[int], Statistics]:
        return {}

    def statistics(self, collections: Iterable[int] | None = None) -> Statistics:
        """N, average length and the chunks counted, over the live chunks of `collections` (None: every
        live chunk). Cached per set of collections (the mask is one byte per position)."""
        if collections is None:
            return Statistics(self.live, self.n_live, self.avgdl)
        key = frozenset(int(c) for c in collections)
        hit = self._scopes.get(key)
        if hit is None:
            mask = self.live & np.isin(self.colls, np.fromiter(key, np.int64, len(key)))
            n = int(mask.sum())
            hit = Statistics(mask, n, float(self.length[mask].sum()) / max(1, n))
            if len(self._scopes) >= SCOPES_KEPT:  # many users' scopes: forget them all, each is cheap to make
                self._scopes.clear()
            self._scopes[key] = hit
        return hit

    def _impact(self, f: np.ndarray, pos: np.ndarray, avgdl: float | None = None) -> np.ndarray:
        """BM25's term-frequency part for frequencies `f` in the chunks at `pos` (idf left out), with
        the average length `avgdl` (None: the whole index's)."""
        avgdl = self.avgdl if avgdl is None else avgdl
        return (f * (K1 + 1) / (f + K1 * (1 - B + B * self.length[pos] / avgdl))).astype(np.float32)

    @cached_property
    def impact(self) -> np.ndarray:
        """Every posting's `_impact`, computed once per index (they change with the average length)."""
        return self._impact(self.post_f, self.post_pos)

    def df(self, stem_: str, collections: Iterable[int] | None = None) -> int:
        """How many live chunks of `collections` (None: of any) hold the stem."""
        return self.statistics(collections).df(self, stem_)

    def with_chunks(self, rows: Sequence[tuple]) -> Index:
        """A new index holding these chunks too: rows of (chunk id, document id, collection id, text,
        heading[, document title])."""
        if not rows:
            return self
        terms = dict(self.terms)
        base = len(self.ids)
        fields = self.fields
        t_parts, p_parts, f_parts, lengths = [], [], [], []
        for k, row in enumerate(rows):
            texts = [(row[3] or "", 1.0)]
            if fields.heading > 0:
                texts.append((row[4] or "", fields.heading))
            if fields.title > 0 and len(row) > 5:
                texts.append((row[5] or "", fields.title))
            parts = [(tokens(text), w) for text, w in texts]
            words = [t for part, _ in parts for t in part]
            lengths.append(len(words))
            if fields.identifier > 0:  # pairs count toward no length: they are the same words again
                pairs = identifier_pairs(row[3] or "")
                parts.append((pairs, 1.0))
                words += pairs
            for text, w in texts:  # nor do umlaut twins, for the same reason
                if twins := umlaut_twins(text):
                    parts.append((twins, w))
                    words += twins
            if not words:
                continue
            tid = np.fromiter((terms.setdefault(t, len(terms)) for t in words), dtype=np.int64, count=len(words))
            weight = np.concatenate([np.full(len(part), w, np.float32) for part, w in parts])
            uniq, inv = np.unique(tid, return_inverse=True)
            t_parts.append(uniq)
            f_parts.append(np.bincount(inv, weights=weight).astype(np.float32))
            p_parts.append(np.full(len(uniq), base + k, np.int32))
        T = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
        P = np.concatenate(p_parts) if p_parts else np.zeros(0, np.int32)
        F = np.concatenate(f_parts) if f_parts else np.zeros(0, np.float32)
        return self._append(terms, T, P, F, np.array([r[0] for r in rows], np.int64),
                            np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.int64),
                            np.array(lengths, np.float32))

    def merged(self, parts: Iterable[Index]) -> Index:
        """A new index holding the live chunks of `parts` (indexes weighted as this one, holding none
        of its chunks) after its own, their postings mapped onto its terms: no chunk is tokenized
        again. `parts` may be a generator: each is let go once its postings are mapped."""
        terms = dict(self.terms)
        base = len(self.ids)
        T, P, F, cols = [], [], [], {k: [] for k in ("ids", "docs", "colls", "length")}
        for part in parts:
            words = sorted(part.terms, key=part.terms.get)  # the word of each row
            remap = np.fromiter((terms.setdefault(w, len(terms)) for w in words), np.int64, count=len(words))
            term_of = np.repeat(np.arange(len(words)), np.diff(part.indptr))
            keep = part.live[part.post_pos]
            new_pos = (np.cumsum(part.live) - 1 + base).astype(np.int32)
            T.append(remap[term_of[keep]])
            P.append(new_pos[part.post_pos[keep]])
            F.append(part.post_f[keep])
            for k, v in cols.items():
                v.append(getattr(part, k)[part.live])
            base += part.n_live
            del words, remap, term_of, part  # a segment's term table is let go before the next is read
        if not T:
            return self
        order = np.argsort(np.concatenate(T), kind="stable")  # rows by term, positions ascending within a row
        T, P, F = np.concatenate(T)[order], np.concatenate(P)[order], np.concatenate(F)[order]
        return self._append(terms, T, P, F, *(np.concatenate(cols[k]) for k in ("ids", "docs", "colls", "length")), presorted=True)

    def _append(self, terms: dict[str, int], T: np.ndarray, P: np.ndarray, F: np.ndarray, ids: np.ndarray,
                docs: np.ndarray, colls: np.ndarray, lengths: np.ndarray, presorted: bool = False) -> Index:
        """A new index with postings (term row `T`, position `P`, frequency `F`) of new chunks at the
        positions after this one's (`ids`, `docs`, `colls`, `lengths` per new position); `terms` holds
        this index's terms and the new ones, numbered after them."""
        n_terms = len(terms)
        old_counts = np.zeros(n_terms, np.int64)
        old_counts[:len(self.indptr) - 1] = np.diff(self.indptr)
        if len(T) and not presorted:
            order = np.argsort(T, kind="stable")  # by term, positions ascending within a term
            T, P, F = T[order], P[order], F[order]
        counts = old_counts + np.bincount(T, minlength=n_terms)
        indptr = np.zeros(n_terms + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        # Each term's old postings keep their order at the start of its new row; new ones follow:
        # inserted at the end of the term's old row (np.insert keeps equal places in order), or at
        # the end for a new term. One pass over the old postings, no index array as long as them.
        n_old_terms = len(self.indptr) - 1
        at = np.where(T < n_old_terms, self.indptr[np.minimum(T, n_old_terms - 1) + 1], len(self.post_pos))
        post_pos, post_f = np.insert(self.post_pos, at, P), np.insert(self.post_f, at, F)
        return Index(terms, indptr, post_pos, post_f,
                     np.concatenate([self.ids, ids]), np.concatenate([self.docs, docs]),
                     np.concatenate([self.colls, colls]), np.concatenate([self.length, lengths]),
                     np.concatenate([self.live, np.ones(len(ids), bool)]), fields=self.fields, tokenizer=self.tokenizer)

    def without(self, chunk_ids: np.ndarray, min_dead: int = 1000) -> Index:
        """A new index without these chunks. They stay as dead positions until a quarter of all
        positions (and at least `min_dead`) are dead; then the matrix is compacted (`compacted`)."""
        live = self.live & ~np.isin(self.ids, chunk_ids)
        dead = len(live) - int(live.sum())
        masked = replace(self, live=live)
        return masked if dead < min_dead or dead < len(live) // 4 else masked.compacted()

    def compacted(self) -> Index:
        """A new index holding nothing of its dead positions: their postings, and the terms no live
        chunk holds (a deleted document's rare words, a name, stayed readable in the file else). One
        pass over the postings in their order, no sort and no chunk tokenized again: what a rebuild
        from SQLite would hold, positions in this index's order. This index itself if none is dead or
        unheld."""
        counts = np.diff(self.indptr)
        if self.live.all() and counts.all():
            return self
        live, keep = self.live, self.live[self.post_pos]
        counts = np.bincount(np.repeat(np.arange(len(counts)), counts)[keep], minlength=len(counts))
        held = counts > 0
        words = sorted(self.terms, key=self.terms.get)  # rows keep their order: a held word's new row is its rank
        indptr = np.zeros(int(held.sum()) + 1, np.int64)
        np.cumsum(counts[held], out=indptr[1:])
        return Index({w: i for i, w in enumerate(w for w, h in zip(words, held) if h)}, indptr,
                     (np.cumsum(live) - 1)[self.post_pos[keep]].astype(np.int32), self.post_f[keep],
                     self.ids[live], self.docs[live], self.colls[live], self.length[live], np.ones(int(live.sum()), bool),
                     fields=self.fields, tokenizer=self.tokenizer)

    def _postings(self, unit: tuple[str, ...], stats: Statistics | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Positions (ascending) and impacts of the chunks holding every stem of `unit`: every chunk,
        or with `stats` the chunks it counts, their impacts by its average length. A phrase's
        words are not checked for adjacency; its frequency in a chunk is that of its rarest word there,
        plus `Fields.identifier` x how often it appears as written (see `_verbatim`)."""
        if len(unit) == 1:
            t = self.terms.get(unit[0])
            if t is None:
                return None
            row = slice(self.indptr[t], self.indptr[t + 1])
            if stats is None:
                return self.post_pos[row], self.impact[row]
            pos = self.post_pos[row]
            keep = stats.mask[pos]
            pos = pos[keep]
            return pos, self._impact(self.post_f[row][keep], pos, stats.avgdl)
        rows = []
        for s in unit:
            t = self.terms.get(s)
            if t is None:
                return None
            rows.append(slice(self.indptr[t], self.indptr[t + 1]))
        rows.sort(key=lambda r: r.stop - r.start)
        pos, f = self.post_pos[rows[0]], self.post_f[rows[0]]
        if stats is not None:
            keep = stats.mask[pos]
            pos, f = pos[keep], f[keep]
        for row in rows[1:]:  # keep the rarest word's chunks that hold each other word too
            if not len(pos):
                break
            freq = _scratch(len(self.ids))  # the word's frequency by position (0: absent)
            freq[self.post_pos[row]] = self.post_f[row]
            there = freq[pos]
            both = np.flatnonzero(there)
            pos, f = pos[both], np.minimum(f[both], there[both])
        if self.fields.identifier > 0 and len(pos):
            f = f + np.float32(self.fields.identifier) * self._verbatim(unit, pos)
        return pos, self._impact(f, pos, None if stats is None else stats.avgdl)

    def _verbatim(self, unit: tuple[str, ...], pos: np.ndarray) -> np.ndarray:
        """How often the chunks at `pos` hold `unit` as an identifier: each adjacent pair of its
        words written together (the fewest of any pair; 0 where a pair is missing)."""
        out = None
        for a, b in zip(unit, unit[1:]):
            t = self.terms.get(a + _PAIR + b)
            if t is None:
                return np.zeros(len(pos), np.float32)
            freq = _scratch(len(self.ids))
            freq[self.post_pos[self.indptr[t]:self.indptr[t + 1]]] = self.post_f[self.indptr[t]:self.indptr[t + 1]]
            there = freq[pos]
            out = there if out is None else np.minimum(out, there)
        return out

    @cached_property
    def _by_id(self) -> tuple[np.ndarray, np.ndarray]:
        """Live chunk ids in ascending order and their positions, to find chunks by id."""
        pos = np.flatnonzero(self.live)
        order = np.argsort(self.ids[pos], kind="stable")
        return self.ids[pos][order], pos[order]

    @cached_property
    def _position_of(self) -> np.ndarray | None:
        """Chunk id -> live position (-1: none), when ids are dense enough for an array (chunk ids
        only grow, so a workspace re-ingested many times falls back to `_by_id`'s binary search)."""
        ids, pos = self._by_id
        if not len(ids) or ids[0] < 0 or ids[-1] >= 4 * len(ids) + 65536:
            return None
        out = np.full(int(ids[-1]) + 1, -1, np.int32)
        out[ids] = pos
        return out

    def positions(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, found) of each chunk id; a chunk the index does not hold gets found False (and
        position 0)."""
        direct = self._position_of
        if direct is not None:  # one memory access per id, where a binary search takes ~17 cold ones
            at = direct[np.clip(chunk_ids, 0, len(direct) - 1)]
            found = (at >= 0) & (chunk_ids >= 0) & (chunk_ids < len(direct))
            return np.where(found, at, 0), found
        ids, pos = self._by_id
        if not len(ids):
            return np.zeros(len(chunk_ids), np.int64), np.zeros(len(chunk_ids), bool)
        at = np.minimum(np.searchsorted(ids, chunk_ids), len(ids) - 1)
        found = ids[at] == chunk_ids
        return np.where(found, pos[at], 0), found

    def holding(self, stems: Sequence[str], chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(held, found): held[i, j] says whether chunk_ids[j] holds stems[i] (text or heading);
        found[j] whether the index holds that chunk at all."""
        pos, found = self.positions(np.asarray(chunk_ids, np.int64))
        held = np.zeros((len(stems), len(pos)), bool)
        for i, s in enumerate(stems):
            t = self.terms.get(s)
            if t is None:
                continue
            start, end = self.indptr[t:t + 2].tolist()
            if start < end:
                row = self.post_pos[start:end]  # ascending
                held[i] = row.take(np.searchsorted(row, pos), mode="clip") == pos
        held &= found
        return held, found

    def search(self, units: Sequence[tuple[str, ...]], limit: int, collections: Sequence[int] | None = None,
               documents: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best `limit` live chunks holding any of the units (see
        `query_units`), best first; only chunks of `collections` (None: any) and of `documents`
        (None: any) are ranked. Statistics (N, df, average length) are over the live chunks of
        `collections` (`statistics`; None: every live chunk, as FTS5's), whatever `documents` says."""
        return self.rank(units, limit, collections, documents).hits

    def rank(self, units: Sequence[tuple[str, ...]], limit: int, collections: Sequence[int] | None = None,
             documents: np.ndarray | None = None) -> Ranking:
        """`search`'s hits, the ceiling (the score of a chunk that matched every unit as well as a
        chunk can), and every chunk's score for `Ranking.scores_of` (0 outside `collections`)."""
        # None: the whole index, on the precomputed impacts (the benchmarked path); else the
        # collections' own statistics, so no chunk outside them changes a score.
        stats = None if collections is None else self.statistics(collections)
        n = self.n_live if stats is None else stats.n
        if n == 0 or limit <= 0:
            return Ranking([], 0.0)
        scores = np.zeros(len(self.ids), np.float32)
        matched = []
        ceiling = 0.0
        for unit in dict.fromkeys(units):
            found = self._postings(unit, stats)
            if found is None:
                continue
            pos, impact = found
            if stats is None and n < len(self.ids):  # a scope's postings are live already
                alive = self.live[pos]
                pos, impact = pos[alive], impact[alive]
            if len(pos):
                idf = math.log((n - len(pos) + 0.5) / (len(pos) + 0.5))
                idf = idf if idf > 0 else 1e-6
                np.add.at(scores, pos, np.float32(idf) * impact)  # 3x faster than scores[pos] += in numpy 2
                ceiling += idf * (K1 + 1)  # an impact tends to K1 + 1 as the frequency grows
                matched.append(pos)
        if not matched:
            return Ranking([], 0.0)
        # A floor for the limit-th best score from the chunks of the rarest units (their scores are
        # final): only chunks at or above it can make the cut, usually a few hundred.
        matched.sort(key=len)
        upto = 1 + next((i for i, size in enumerate(np.cumsum([len(p) for p in matched])) if size >= 2 * limit), len(matched))
        rare = self._in_scope(_union(matched[:upto]), documents)
        floor = np.partition(scores[rare], len(rare) - limit)[len(rare) - limit] if len(rare) >= limit else 0
        cand = self._in_scope(np.flatnonzero(scores >= floor) if floor > 0 else np.flatnonzero(scores > 0), documents)
        if len(cand) > limit:  # the limit-th best score by partitioning values (argpartition is slow on ties)
            values = scores[cand]
            cut = np.partition(values, len(values) - limit)[len(values) - limit]
            cand = cand[values >= cut]
        cand = cand[np.lexsort((self.ids[cand], -scores[cand]))][:limit]
        return Ranking([(int(self.ids[p]), float(scores[p])) for p in cand], ceiling, self, scores)

    def _in_scope(self, pos: np.ndarray, documents: np.ndarray | None) -> np.ndarray:
        """The positions of `documents` (None: all) among `pos` (the collections are filtered by
        `_postings` already: only their chunks score)."""
        if documents is not None:
            pos = pos[np.isin(self.docs[pos], documents)]
        return pos


def _scratch(n: int) -> np.ndarray:
    """n zeroed float32 slots, reused by this thread: a fresh array this size each time costs more
    in page faults than the work done in it."""
    buf = getattr(_local, "scratch", None)
    if buf is None or len(buf) < n:
        buf = _local.scratch = np.zeros(n, np.float32)
        return buf
    buf = buf[:n]
    buf.fill(0)
    return buf


def _union(positions: Sequence[np.ndarray]) -> np.ndarray:
    """The sorted union of arrays of unique positions (np.unique hashes since numpy 2: 50x slower here)."""
    if len(positions) == 1:
        return positions[0]
    x = np.sort(np.concatenate(positions), kind="stable")  # a radix sort for integers
    return x[np.concatenate(([True], x[1:] != x[:-1]))]
