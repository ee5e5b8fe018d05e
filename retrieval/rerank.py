"""Rerankers: reorder the fused candidates of a hybrid search (see `search(..., reranker=)`).

Three kinds, all satisfying `archivist.retrieval.search.Reranker` (`.name`, `.rerank(query, hits)`):

  - `CrossEncoderReranker(path)`: a sentence-transformers CrossEncoder read from a local folder
    (for example a copy of cross-encoder/ms-marco-MiniLM-L-6-v2); it reads query and passage
    together, the strongest kind, at one model call per candidate.
  - `CoverageReranker(ws, embedder)`: no extra model. Each candidate's new score mixes its cosine
    similarity to the query (the stored chunk vector, read from SQLite, so nothing is re-embedded)
    with how much of the query's IDF weight its text covers. It lifts passages that hold all the
    rare query terms and are semantically close over ones that only ranked well on one side.

  - `LearnedReranker(weights)`: a linear model over a few exact signals of each candidate
    (`FEATURES`: cosine, BM25 over the query's ceiling, the query's IDF weight the text and the
    heading path hold), its weights learned from the workspace's own synthetic questions
    (finetune/reranker.py, `archivist finetune --target reranker`) and registered with the
    lineage of what it learned from. Microseconds per candidate: no model call.

`load_reranker(spec, ws, user=)` picks one from a CLI value: "none", "coverage", the name of a
learned reranker (only for a user who may read everything it learned from), or a folder path.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from archivist import files
from archivist.records import Hit

log = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.8  # weight of cosine similarity against term coverage (0.6-0.9 tried on the public set; see bench/RESULTS.md)


def _idf_of(n: int, df: int) -> float:
    """BM25's idf of a word that `df` of `n` chunks hold (Lucene's form: never negative)."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


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

    def _idf(self, term: str, collections: Sequence[int] | None = None) -> float:
        """BM25's idf of a term over all chunks (document frequency from FTS5, cached), or over the
        chunks of `collections` (the lexical index's counts of its stem: no score depends on a
        collection the search did not look in, docs/access.md); a Chinese or Japanese bigram's and a
        word beyond ASCII's always from the lexical index, and a word FTS5 holds in no chunk too."""
        from archivist.retrieval import folding, lexicon, lexicon_store

        # A CJK bigram is a term of the lexical index only: FTS5's unicode61 holds the whole run of
        # characters around it as one token, so its prefix query would count almost no chunk.
        # Nor does unicode61 fold ł, ø or æ, as the index does (`folding.PLAIN_LETTERS`): "łódź"
        # is in no FTS5 token of "Lodz", nor "soren" of "Søren".
        if collections is not None or folding.is_cjk(term) or not term.isascii():
            index = lexicon_store.current(self.ws)
            stats = index.statistics(collections)
            df = stats.df(index, lexicon.stem(term))
            return _idf_of(stats.n, df)
        if self._n is None:
            self._n = int(self.ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        if term not in self._df:
            phrase = '"' + term.replace('"', '""') + '"*'
            try:
                self._df[term] = int(self.ws.db.execute(
                    "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,)).fetchone()[0])
            except Exception:  # an odd term FTS5 cannot parse: treat it as rare
                self._df[term] = 0
            if self._df[term] == 0:  # "soren": the index's count. ASCII text is tokenized alike by both: still 0
                index = lexicon_store.current(self.ws)
                self._df[term] = index.statistics(None).df(index, lexicon.stem(term))
        return _idf_of(self._n, self._df[term])

    def _vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        marks = ",".join("?" * len(ids))
        rows = self.ws.db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({marks}) AND embedding IS NOT NULL",
                                  list(ids)).fetchall()
        return {int(r[0]): np.frombuffer(r[1], dtype=np.float32) for r in rows}

    def rerank(self, query: str, hits: list[Hit], collections: Sequence[int] | None = None) -> list[Hit]:
        """The same hits, best first, `score` replaced by the mixed score (0..1); term weights over
        the chunks of `collections` (None: every chunk)."""
        from archivist.retrieval import folding
        from archivist.retrieval.query import query_terms

        if not hits:
            return []
        qvec = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        vecs = self._vectors([h.chunk_id for h in hits])
        terms = query_terms(query)
        weights = {t: self._idf(t, collections) for t in terms}
        total = sum(weights.values()) or 1.0
        for h in hits:
            v = vecs.get(h.chunk_id)
            cos = float(v @ qvec) if v is not None else (h.dense_score or 0.0)
            low = folding.searchable(h.text.lower())  # as the index folds: "muller" and "mueller" are in "Müller"
            present = h.matched_terms or [t for t in terms if re.search(r"\b" + re.escape(folding.comparable(t)), low)]
            coverage = sum(weights.get(t, 0.0) for t in present) / total if terms else 0.0
            h.score = self.alpha * max(cos, 0.0) + (1.0 - self.alpha) * coverage
        return sorted(hits, key=lambda h: -h.score)


FEATURES = ("cosine", "bm25", "coverage", "heading")


def features(ws, query: str, hits: list[Hit], qvec: np.ndarray, collections: Sequence[int] | None = None) -> np.ndarray:
    """[len(hits), len(FEATURES)] float32, each in [0, 1] or near it: the cosine of the chunk's stored
    vector with `qvec` (the hit's dense score when no vector is stored), its BM25 over the query's
    ceiling (retrieval/lexicon.py, exact for any chunk), and the share of the query terms' IDF
    weight that its text (with heading) and its heading path alone hold. The statistics are over the
    chunks of `collections` (None: every chunk), as the search's own."""
    from archivist.retrieval import lexicon, lexicon_store
    from archivist.retrieval.fusion import stored_vectors
    from archivist.retrieval.query import stopwords_of

    if not hits:
        return np.zeros((0, len(FEATURES)), np.float32)
    ids = [h.chunk_id for h in hits]
    index = lexicon_store.current(ws)
    units = lexicon.query_units(query, stopwords_of(query))  # as the search read it
    ranking = index.rank(units, 1, collections) if units else lexicon.Ranking([], 0.0)
    bm = ranking.scores_of(ids)
    vecs = stored_vectors(ws, ids, index)
    q = np.asarray(qvec, np.float32)
    stems = list(dict.fromkeys(s for u in units for s in u))
    stats = index.statistics(collections)
    n = max(stats.n, 1)
    dfs = [stats.df(index, s) for s in stems]
    idf = np.array([_idf_of(n, df) for df in dfs], np.float32)
    total = float(idf.sum()) or 1.0
    held = index.holding(stems, ids)[0] if stems else np.zeros((0, len(ids)), bool)
    out = np.zeros((len(hits), len(FEATURES)), np.float32)
    for j, h in enumerate(hits):
        v = vecs.get(h.chunk_id)
        out[j, 0] = float(v @ q) if v is not None else (h.dense_score or 0.0)
        out[j, 1] = bm.get(h.chunk_id, 0.0) / ranking.ceiling if ranking.ceiling > 0 else 0.0
        out[j, 2] = float(idf @ held[:, j]) / total if stems else 0.0
        heading = set(lexicon.tokens(" ".join(h.heading)) + lexicon.umlaut_twins(" ".join(h.heading))) if h.heading else set()
        out[j, 3] = float(sum(w for s, w in zip(stems, idf) if s in heading)) / total if stems else 0.0
    return out


class LearnedReranker:
    """Re-score candidates by `features(...) @ weights` (weights learned by finetune/reranker.py).

    ws: the workspace the hits came from; weights: one per FEATURES name; embedder: embeds the
    query (the workspace's; a search's QueryCache serves it without a second model call)."""

    def __init__(self, ws, weights: dict[str, float], embedder=None, name: str = "learned"):
        missing = [f for f in FEATURES if f not in weights]
        if missing:
            raise ValueError(f"reranker {name!r}: weights lack {', '.join(missing)}")
        self.ws, self.name, self._embedder = ws, f"learned:{name}", embedder
        self.weights = np.array([weights[f] for f in FEATURES], np.float32)

    def rerank(self, query: str, hits: list[Hit], collections: Sequence[int] | None = None) -> list[Hit]:
        """The same hits, best first, `score` replaced by the learned score (statistics over `collections`)."""
        if not hits:
            return []
        if self._embedder is None:
            from archivist.models import embedder_for

            self._embedder = embedder_for(self.ws.settings)
        qvec = self._embedder.embed([query])[0]
        for h, s in zip(hits, features(self.ws, query, hits, qvec, collections) @ self.weights):
            h.score = float(s)
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

    def rerank(self, query: str, hits: list[Hit], collections: Sequence[int] | None = None) -> list[Hit]:
        """The same hits, best first, scored by the model (it reads only the hits: no statistics)."""
        if not hits:
            return []
        scores = self.model.predict([(query, h.text) for h in hits], batch_size=self.batch_size, show_progress_bar=False)
        for h, s in zip(hits, np.asarray(scores, dtype=np.float32).reshape(len(hits), -1)[:, -1]):
            h.score = float(s)
        return sorted(hits, key=lambda h: -h.score)


def load_reranker(spec: str | None, ws, embedder=None, user: str | None = None):
    """A reranker from a CLI value: None/"none" → None, "coverage" → CoverageReranker, the name of
    a learned reranker (finetune/reranker.py) → LearnedReranker, a folder → CrossEncoderReranker.

    A learned reranker is used for `user`'s queries only when they may read every collection it
    learned from (its lineage), as adapters and adapted embedders are listed. Raises AccessDenied
    for one they may not, in the words of FileNotFoundError for a path that does not exist (so the
    CLI says the same for both), and for a damaged one; to an admin a damaged one is a ValueError
    naming its manifest."""
    if spec is None or spec == "none":
        return None
    from archivist import access

    if spec == "coverage":
        return CoverageReranker(ws, embedder)
    # only a name is looked up under rerankers/: `../embedders/X` would say whether embedder X exists
    if _is_name(spec) and (ws.home / FOLDER / spec / MANIFEST).is_file():
        try:
            return load_learned(ws, spec, user, embedder)
        except (access.AccessDenied, ValueError) as e:
            # a member gets the words of a name that is not there: a guess confirms no name, nor that
            # one is damaged; an admin is told which file to repair (the ValueError names it)
            if isinstance(e, ValueError) and access.is_admin(ws, access.current_user(ws, user)):
                raise
            raise access.AccessDenied(f"reranker model folder {Path(spec).expanduser()} does not exist") from None
    return CrossEncoderReranker(spec, device=ws.settings.device)


def _is_name(spec: str) -> bool:
    from archivist import access

    try:
        access.check_name(spec, "reranker")
    except ValueError:
        return False
    return True


# -- the registry of learned rerankers: rerankers/<name>/archivist.json under the workspace ---------

FOLDER = "rerankers"
MANIFEST = "archivist.json"


def save_learned(ws, name: str, manifest: dict) -> Path:
    """Register a learned reranker: its manifest (weights, lineage, evaluation) written atomically
    to rerankers/<name>/archivist.json. Raises FileExistsError for a name in use."""
    from archivist import access

    target = ws.home / FOLDER / access.check_name(name, "reranker name")
    if target.exists():
        raise FileExistsError(_taken(name, target))
    tmp = target.with_name(f".{name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / MANIFEST).write_text(json.dumps({**manifest, "name": name}, indent=1))
    files.publish(tmp, target)
    return target


def check_free(ws, name: str, user: str | None = None) -> None:
    """Raise FileExistsError when a learned reranker `user` may use has `name`: the recipe asks before
    it works (`save_learned` alone found it taken at the end, the work lost). One hidden from them
    (learned from a collection they may not read; damaged, to a member) passes here and is refused by
    `save_learned` at the end: a refusal at once would answer a guess that `--reranker NAME` does not."""
    from archivist import access

    target = ws.home / FOLDER / access.check_name(name, "reranker name")
    if not target.exists():
        return
    try:
        seen = may_use(ws, user, files.read_manifest(target / MANIFEST, "reranker"))
    except (ValueError, OSError):  # damaged or half written: whose it is cannot be told
        seen = access.is_admin(ws, access.current_user(ws, user))
    if seen:
        raise FileExistsError(_taken(name, target))


def _taken(name: str, target: Path) -> str:
    return (f"a reranker named {name!r} exists already ({target}); choose another --name, or delete it "
            f"(`archivist rerankers delete {name}`)")


def delete_learned(ws, name: str, user: str | None = None) -> dict:
    """Delete learned reranker `name` (`archivist rerankers delete`): its folder rerankers/<name>/, with
    a `reranker.delete` audit record. Nothing serves it from memory (each search reads its manifest,
    `load_learned`), so a name registered again never reranks with the deleted weights, and no run
    holds it (a search or an evaluation names it when it starts). Returns its manifest. Raises
    AccessDenied for a member (before the name is looked up, so it confirms no name), LookupError for
    an unknown reranker."""
    import shutil

    from archivist import access, audit
    from archivist.workspace import transaction

    actor = access.require_admin(ws, user, "delete a learned reranker")
    try:
        manifest = learned_manifest(ws, name)
    except ValueError as e:  # a damaged one is deleted too: that is how an admin removes it
        log.warning("%s", e)
        manifest = {}
    with transaction(ws.db):
        audit.record(ws, "reranker.delete", user=actor, target=name, detail={"collections": manifest.get("collections")})
        gone = files.set_aside(ws.home / FOLDER / name)
    shutil.rmtree(gone)
    return manifest


def learned_manifest(ws, name: str) -> dict:
    """Learned reranker `name`'s manifest. Raises LookupError when there is none, ValueError naming
    the file when it does not parse."""
    from archivist import access

    path = ws.home / FOLDER / access.check_name(name, "reranker name") / MANIFEST
    if not path.is_file():
        raise LookupError(f"no learned reranker named {name!r} ({FOLDER}/{name}/{MANIFEST} is missing)")
    return files.read_manifest(path, "reranker")


def may_use(ws, user: str | None, manifest: dict) -> bool:
    """Whether `user` may read every collection the reranker learned from: only then is it listed
    to them or used on their queries (its weights are a function of those collections' text)."""
    from archivist import access

    return access.may_read_all(ws, user, manifest.get("collections", []))


def list_learned(ws, user: str | None = None) -> list[dict]:
    """The learned rerankers `user` may use, oldest first. A damaged manifest is logged, naming its
    file, and left out (as adapted embedders are listed): one broken folder does not break the list."""
    root = ws.home / FOLDER
    found = sorted((p for p in (root.iterdir() if root.exists() else []) if not p.name.startswith(".")
                    and (p / MANIFEST).is_file()), key=lambda p: p.stat().st_mtime)
    out = []
    for p in found:
        try:
            m = files.read_manifest(p / MANIFEST, "reranker")
        except ValueError as e:
            log.warning("skipping learned reranker: %s", e)
            continue
        if may_use(ws, user, m):
            out.append(m)
    return out


def load_learned(ws, name: str, user: str | None = None, embedder=None) -> LearnedReranker:
    """The learned reranker `name` for `user`'s queries. Raises AccessDenied when the user may not
    read a collection it learned from, LookupError when there is none of that name, ValueError
    naming the file when its manifest is damaged."""
    from archivist import access

    m = learned_manifest(ws, name)
    if not may_use(ws, user, m):
        raise access.AccessDenied(f"reranker {name!r} learned from collections {access.current_user(ws, user)!r} may not read")
    return LearnedReranker(ws, m["weights"], embedder, name)
