"""Chunk vectors in FAISS: one index per collection, keyed by chunk id, under index/: an
`IndexIDMap2(IndexFlatIP)` (exact search), or past `settings.ann_threshold` vectors an
`IndexIVFFlat` that holds the chunk ids itself, with a hashtable direct map (to reconstruct and
remove by id). An IVF index is never wrapped in `IndexIDMap2`: that wrapper's removal assumes the
inner index renumbers what is left, as a flat index does and an IVF index does not, so after a
document was deleted, searches returned the ids of other chunks. Files in that old form are
rebuilt from SQLite when the workspace opens (sidecar `format` 2 marks the new one).

SQLite holds every chunk's normalized embedding and is the source of truth; a FAISS file is a
cache of it. `sync` makes a collection's FAISS index equal to SQLite (adding what is missing,
removing what is gone) under a file lock, so several processes can ingest at once and a crash
between a SQLite commit and a FAISS save is repaired on the next open. Exact inner-product
search by default; an IVF index once a collection passes `settings.ann_threshold` vectors.
An ingesting process past pipeline.HOLD_INDEXES_UP_TO chunks does not load the index (it grows with
every chunk): `note_changed` leaves a mark beside it (`c<id>.pending`), and the next search syncs it.

Past `settings.compress_above` vectors the index is compressed: an `IndexIVFPQ` (one byte per 8
dimensions, 48 bytes for a 384-dimension vector instead of 1,536; chunk ids and a hashtable direct
map as in the IVF index) whose quantizer is trained when the collection crosses the threshold (at
ingest or `archivist reindex`). Its scores are approximate, so a search takes `rescore_depth(k)`
candidates from it and re-scores them with their exact vectors, read from SQLite for those ids
only; vectors are never read back from it (`stored` says None and callers read SQLite).

The three kinds, and building one, are retrieval/index_kinds.py's; this module keeps the files.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archivist import files
from archivist.retrieval.index_kinds import RANK, index_ids, kind_for, kind_of, new_index, outdated, train_size
from archivist.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)


def _faiss():
    import faiss  # lazy: faiss-cpu or faiss-gpu, whichever is installed

    return faiss


@dataclass
class _Loaded:
    index: object
    mtime: float
    kind: str


class _SharedLock:
    """Reads of the indexes (searches, reading vectors back) share them; a change (sync) waits for
    the reads in progress, holds new ones off, and may itself read. FAISS indexes are safe for
    concurrent reads, not for a read during a change."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = self._waiting = self._depth = 0
        self._writer: int | None = None
        self._shared = _Shared(self)

    def shared(self) -> _Shared:
        return self._shared

    @contextmanager
    def exclusive(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._waiting += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._waiting -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()


class _Shared:
    """`_SharedLock.shared()` as a plain context manager, made once: every search takes it twice, and
    a generator-based one costs several times more."""

    def __init__(self, lock: _SharedLock):
        self.lock = lock

    def __enter__(self):
        lock, me = self.lock, threading.get_ident()
        with lock._cond:
            while lock._writer not in (None, me) or (lock._waiting and lock._writer != me):
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc):
        lock = self.lock
        with lock._cond:
            lock._readers -= 1
            if not lock._readers:
                lock._cond.notify_all()


_cache: dict[tuple[str, int, str], _Loaded] = {}
_lock = _SharedLock()


def generation(ws: Workspace) -> str:
    """The embedder generation the index files belong to: "" for the base embedder, else the
    adapted one's (archivist.models.active_embedder; switched by archivist.retrieval.reembed)."""
    from archivist.models import active_embedder

    active = active_embedder(ws.home)
    return active["generation"] if active else ""


def paths_for(ws: Workspace, cid: int, gen: str) -> tuple[Path, Path]:
    """Collection `cid`'s FAISS file and sidecar in embedder generation `gen`."""
    stem = f"c{cid}.{gen}" if gen else f"c{cid}"
    return ws.index_dir / f"{stem}.faiss", ws.index_dir / f"{stem}.json"


def _paths(ws: Workspace, cid: int) -> tuple[Path, Path]:
    return paths_for(ws, cid, generation(ws))


def _key(ws: Workspace, cid: int) -> tuple[str, int, str]:
    return str(ws.home), cid, generation(ws)


_files: dict[tuple[str, int, str], tuple[str, str, str]] = {}


def _file_names(key: tuple[str, int, str], ws: Workspace) -> tuple[str, str, str]:
    """`_paths` and the pending mark (`note_changed`) as strings, made once per collection and
    generation: every search stats the index file, and building the paths cost three times the stat
    itself (bench/RESULTS.md, finding 2d)."""
    names = _files.get(key)
    if names is None:
        path, sidecar = paths_for(ws, key[1], key[2])
        names = _files[key] = (str(path), str(sidecar), str(path.with_suffix(".pending")))
    return names


def _sqlite_ids(ws: Workspace, cid: int) -> np.ndarray:
    rows = ws.db.execute(
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
        "WHERE d.collection_id = ? AND c.embedding IS NOT NULL", (cid,)).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def _vectors(ws: Workspace, ids: np.ndarray, dim: int) -> np.ndarray:
    """The vectors of `ids`, in order, read into one array (no copy of them as bytes on the side:
    a search that syncs a big index reads tens of thousands); raises KeyError when SQLite lacks one."""
    out = np.empty((len(ids), dim), np.float32)
    at = {int(i): k for k, i in enumerate(ids.tolist())}
    got = set()
    for i, emb in _vector_rows(ws, ids.tolist()):
        out[at[i]] = np.frombuffer(emb, dtype=np.float32)
        got.add(i)
    if len(got) != len(at):
        raise KeyError(f"chunks without a vector in SQLite: {sorted(set(at) - got)[:5]}")
    return out


def dimension(ws: Workspace) -> int | None:
    value = ws.meta("embedding_dim")
    return int(value) if value else None


# -- the embedder the vectors came from ---------------------------------------------------------
# meta "embedder_identity": model + dimension + backend + weights (models.embedder_identity); meta
# "embedder" (name:dim) and "embedding_dim" for display and FAISS. Workspaces made before the
# identity was recorded have only the latter two: they take the identity of the first embedder of
# the same name and dimension that writes to them.


class EmbedderMismatch(WorkspaceError):
    """Vectors of another embedder identity would be mixed into the workspace's index."""


def recorded_embedder(ws: Workspace) -> str | None:
    """The identity of the embedder the workspace's vectors came from (None: no vectors yet)."""
    return ws.meta("embedder_identity")


def check_embedder(ws: Workspace, embedder) -> str:
    """The identity of `embedder`, recorded as the workspace's when it has none yet.

    Raises EmbedderMismatch naming both identities and `archivist reindex --reembed` when the
    workspace's vectors came from another identity (another model, dimension, backend or weights),
    and ChunkLimitError when the settings' chunks are longer than it reads (`models.check_chunk_tokens`)."""
    from archivist.models import check_chunk_tokens, embedder_identity, same_embedder

    check_chunk_tokens(ws.settings.chunk_tokens, embedder)
    identity = embedder_identity(embedder)
    stored, legacy = ws.meta("embedder_identity"), ws.meta("embedder")
    if stored is None and legacy is not None:  # recorded before identities: name and dimension only
        model_id = getattr(embedder, "model_id", f"{embedder.name}:{embedder.dim}")
        if legacy.split(":")[0] == model_id.split(":")[0] and ws.meta("embedding_dim") == str(embedder.dim):
            stored = identity
            ws.set_meta("embedder_identity", identity)
        else:
            stored = legacy
    if stored is None:
        record_embedder(ws, embedder)
    elif stored != identity and same_embedder(stored, identity):  # the same weights at another path: a moved workspace
        ws.set_meta("embedder_identity", identity)
    elif stored != identity:
        raise EmbedderMismatch(
            f"this workspace's vectors come from embedder {stored}, not {identity}: mixing them would "
            "spoil search; run `archivist reindex --reembed` to embed everything again with the new one, "
            "or go back to the settings it was made with (ARCHIVIST_EMBEDDER, ARCHIVIST_EMBED_BACKEND)")
    return identity


def record_embedder(ws: Workspace, embedder) -> None:
    """Record `embedder` as the one the workspace's vectors come from (after a full re-embed)."""
    from archivist.models import embedder_identity

    ws.set_meta("embedder_identity", embedder_identity(embedder))
    ws.set_meta("embedder", getattr(embedder, "model_id", f"{embedder.name}:{embedder.dim}"))
    ws.set_meta("embedding_dim", str(embedder.dim))


def _wanted_kind(ws: Workspace, n: int) -> str:
    return kind_for(n, ws.settings.ann_threshold, ws.settings.compress_above)


FORMAT = 2  # sidecar `format`: 2 = IVF indexes hold chunk ids themselves (no IndexIDMap2 around them)


def _load(ws: Workspace, cid: int, fold: bool = False) -> _Loaded | None:
    """The collection's index as on disk, reloaded only when the file changed; with `fold` (a search),
    synced first when an ingesting process marked it behind SQLite (`note_changed`)."""
    key = _key(ws, cid)
    path, _, pending = _file_names(key, ws)
    if fold and os.path.exists(pending):
        try:
            sync(ws, cid)
        except WorkspaceError as e:  # a full disk: search what the file holds
            log.warning("%s; searching the index as it was", e)
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        _cache.pop(key, None)
        return None
    hit = _cache.get(key)
    if hit and hit.mtime == mtime:
        return hit
    name = os.path.basename(path)
    try:
        index = _faiss().read_index(path)
    except Exception as e:  # a torn or corrupt file: rebuilt from SQLite by sync
        log.warning("FAISS index %s unreadable (%s); it will be rebuilt from SQLite", name, e)
        _cache.pop(key, None)
        return None
    if outdated(index):
        log.warning("FAISS index %s is in a form whose deletions mixed up chunk ids; it will be rebuilt from SQLite",
                    name)
        _cache.pop(key, None)
        return None
    _cache[key] = _Loaded(index, mtime, kind_of(index))
    return _cache[key]


def save_with_sidecar(path: Path, tmp: Path, write, meta: dict, what: str) -> float:
    """Write an index file that caches SQLite: `write(tmp)`, then rename it over `path` (readers see
    the old or the new file, never half of one), then the sidecar `path.json` with `meta` and the
    file's size and mtime, which tell whether the sidecar still describes the file (a crash between
    the two writes, or a file copied in from elsewhere, makes them disagree: see `fresh_sidecar`).
    Returns the file's mtime. A full disk or read-only folder raises WorkspaceError naming `what`."""
    try:
        write(tmp)
        os.replace(tmp, path)
        st = path.stat()
        # renamed into place: another process checking it on open (`fresh_sidecar`) never reads half
        # of one; a cache of SQLite, so not synced (archivist/files.py)
        files.replace(path.with_suffix(".json"), json.dumps({**meta, "size": st.st_size, "mtime": st.st_mtime}), sync=False)
    except (RuntimeError, OSError) as e:  # SQLite is intact; the index is rebuilt from it on open
        tmp.unlink(missing_ok=True)
        from archivist.workspace import WorkspaceError

        full = "No space left" in str(e) or getattr(e, "errno", None) == 28
        raise WorkspaceError(f"cannot save the {what} {path.name}: {'the disk is full' if full else e}; "
                             "what SQLite holds is intact and the index is rebuilt from it on the next open") from e
    return st.st_mtime


def _tmp(path: Path) -> Path:
    """Where a save writes index `path` before renaming it into place (a save cut short leaves it)."""
    return path.with_suffix(".faiss.tmp")


def _save(ws: Workspace, cid: int, loaded: _Loaded) -> None:
    faiss = _faiss()
    path, _ = _paths(ws, cid)
    ids = index_ids(loaded.index)
    meta = {"ntotal": int(loaded.index.ntotal), "id_sum": int(ids.sum()) if len(ids) else 0, "kind": loaded.kind,
            "dim": loaded.index.d, "format": FORMAT}
    loaded.mtime = save_with_sidecar(path, _tmp(path), lambda tmp: faiss.write_index(loaded.index, str(tmp)),
                                     meta, "vector index")
    _cache[_key(ws, cid)] = loaded


def write_generation(ws: Workspace, cid: int, gen: str, ids: np.ndarray, vecs: np.ndarray) -> Path:
    """Write collection `cid`'s FAISS file of embedder generation `gen` holding `vecs` under chunk
    `ids` (a re-embed, before it switches to `gen`; the current generation's files keep serving).
    Returns the file's path."""
    path, _ = paths_for(ws, cid, gen)
    ids = np.ascontiguousarray(ids, np.int64)
    vecs = np.ascontiguousarray(vecs, np.float32)
    kind = _wanted_kind(ws, len(ids))
    train = vecs[np.random.default_rng(0).permutation(len(vecs))[:train_size(kind, len(vecs))]] if kind != "flat" else None
    index, kind = new_index(vecs.shape[1], len(ids), kind, train)
    if len(ids):
        index.add_with_ids(vecs, ids)
    faiss = _faiss()
    meta = {"ntotal": int(index.ntotal), "id_sum": int(ids.sum()) if len(ids) else 0, "kind": kind,
            "dim": int(vecs.shape[1]), "format": FORMAT}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_with_sidecar(path, _tmp(path), lambda tmp: faiss.write_index(index, str(tmp)), meta, "vector index")
    return path


def note_changed(ws: Workspace, cid: int) -> None:
    """Mark collection `cid`'s FAISS index as behind SQLite without loading it (a file beside it,
    `c<id>.pending`): what an ingesting process does past pipeline.HOLD_INDEXES_UP_TO chunks, so that
    its memory does not grow with the index (bench/RESULTS.md, finding 17). The next search syncs
    the index (`_load`), reading the new vectors from SQLite, and removes the mark."""
    from filelock import FileLock

    path, _ = _paths(ws, cid)
    with FileLock(str(path) + ".lock"):  # not while a sync is between reading SQLite and removing the mark
        try:
            path.with_suffix(".pending").touch()
        except OSError as e:
            raise WorkspaceError(f"cannot mark the vector index {path.name} as behind: {e}; what SQLite holds "
                                 "is intact and the index is repaired from it on the next open") from e


ADD_BATCH = 20000  # vectors read back from SQLite and added at once (30 MB at 384 dimensions)


def sync(ws: Workspace, cid: int, fresh: dict[int, np.ndarray] | None = None, rebuild: bool = False) -> dict:
    """Make collection `cid`'s FAISS index hold exactly its chunks in SQLite, and remove its pending
    mark (`note_changed`).

    `fresh` may carry vectors just computed (chunk id -> vector) to spare reading them back.
    Returns {"added", "removed", "total", "rebuilt"}.
    """
    from filelock import FileLock

    dim = dimension(ws)
    path, _ = _paths(ws, cid)
    with _lock.exclusive(), FileLock(str(path) + ".lock"), _snapshot(ws.db):
        want = _sqlite_ids(ws, cid)
        loaded = None if rebuild else _load(ws, cid)
        if dim is None:
            return {"added": 0, "removed": 0, "total": 0, "rebuilt": False}
        rebuilt = False
        kind = _wanted_kind(ws, len(want))
        # Past a threshold the index is rebuilt as the larger kind (training its quantizer on what
        # SQLite holds); it never shrinks back on its own (deletions around a threshold would
        # rebuild it again and again): `archivist reindex` rebuilds it for the size it has.
        outgrown = loaded is not None and RANK[loaded.kind] < RANK[kind]
        if loaded is None or loaded.index.d != dim or outgrown:
            train = _vectors(ws, want[np.random.default_rng(0).permutation(len(want))[:train_size(kind, len(want))]], dim) if kind != "flat" else None
            index, kind = new_index(dim, len(want), kind, train)
            loaded, rebuilt = _Loaded(index, 0.0, kind), True
        have = index_ids(loaded.index)
        missing = np.setdiff1d(want, have, assume_unique=False)
        extra = np.setdiff1d(have, want, assume_unique=False)
        if len(extra):
            faiss = _faiss()  # an IVF index's hashtable direct map removes only from an explicit array
            extra = np.ascontiguousarray(extra, dtype=np.int64)
            loaded.index.remove_ids(faiss.IDSelectorArray(len(extra), faiss.swig_ptr(extra))
                                    if loaded.kind != "flat" else faiss.IDSelectorBatch(extra))
        if len(missing):
            fresh = fresh or {}
            known = [i for i in missing.tolist() if i in fresh]
            unknown = np.array([i for i in missing.tolist() if i not in fresh], dtype=np.int64)
            if known:
                loaded.index.add_with_ids(np.stack([fresh[i] for i in known]).astype(np.float32), np.array(known, dtype=np.int64))
            for start in range(0, len(unknown), ADD_BATCH):  # a batch at a time: never all of SQLite's vectors at once
                part = unknown[start:start + ADD_BATCH]
                loaded.index.add_with_ids(_vectors(ws, part, dim), part)
        pending = path.with_suffix(".pending")
        if rebuilt or len(missing) or len(extra) or fresh_sidecar(path) is None:
            _save(ws, cid, loaded)
        pending.unlink(missing_ok=True)
        # a save cut short between its write and its rename left a copy of the index as it was then,
        # vectors of chunks deleted since included (a save renames it away; unsaved, it stayed)
        _tmp(path).unlink(missing_ok=True)
        return {"added": int(len(missing)), "removed": int(len(extra)), "total": int(loaded.index.ntotal), "rebuilt": rebuilt}


@contextmanager
def _snapshot(db):
    """One read transaction around sync's reads, so the chunk ids it wants and the vectors it reads for
    them come from the same state of SQLite: read apart, a chunk another connection replaced in between
    (two uploads of one name at once) was wanted but had no vector (KeyError, a 500 through the API).
    What changes after the snapshot is synced by the writer that changed it, after its commit."""
    if db.in_transaction:  # the caller's transaction already reads one state
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def fresh_sidecar(path: Path) -> dict | None:
    """The sidecar's record of an index file while it still describes that file (same size and
    mtime), else None."""
    try:
        meta, st = json.loads(path.with_suffix(".json").read_text()), path.stat()
    except (OSError, ValueError):
        return None
    return meta if meta.get("size") == st.st_size and meta.get("mtime") == st.st_mtime else None


def check_and_repair(ws: Workspace) -> list[str]:
    """Compare every collection's FAISS sidecar with SQLite; sync the ones that disagree.

    Cheap when they agree (one COUNT/SUM query and a small JSON read). Returns what was repaired.
    """
    repaired = []
    rows = ws.db.execute(
        "SELECT d.collection_id, COUNT(c.id), COALESCE(SUM(c.id), 0) FROM collections k "
        "JOIN documents d ON d.collection_id = k.id JOIN chunks c ON c.document_id = d.id "
        "WHERE c.embedding IS NOT NULL GROUP BY d.collection_id").fetchall()
    counts = {cid: (n, s) for cid, n, s in rows}
    for cid in [r[0] for r in ws.db.execute("SELECT id FROM collections")]:
        n, s = counts.get(cid, (0, 0))
        path, _ = _paths(ws, cid)
        if path.with_suffix(".pending").exists():  # the next search syncs it (an ingesting process never loads it)
            continue
        meta = fresh_sidecar(path)
        ok = (meta is not None and meta.get("ntotal") == n and meta.get("id_sum") == s
              and (meta.get("kind") != "ivf" or meta.get("format") == FORMAT)) or (n == 0 and not path.exists())
        if not ok or _tmp(path).exists():  # a save's leftover: removed by sync
            result = sync(ws, cid)
            if result["added"] or result["removed"] or result["rebuilt"]:
                log.warning("repaired FAISS index of collection %s from SQLite: %s", cid, result)
                repaired.append(f"collection {cid}: {result}")
    return repaired


def drop(ws: Workspace, cid: int) -> None:
    for p in _paths(ws, cid):
        p.unlink(missing_ok=True)
    _cache.pop(_key(ws, cid), None)


def stored(ws: Workspace, ids_by_collection: dict[int, list[int]]) -> dict[int, np.ndarray] | None:
    """The vectors of these chunks as their collections' FAISS indexes hold them (chunk id -> vector),
    or None when an index lacks one of them (out of step with SQLite; read SQLite instead)."""
    out = {}
    with _lock.shared():
        for cid, ids in ids_by_collection.items():
            loaded = _load(ws, cid)
            if loaded is None or loaded.kind == "ivfpq":  # a PQ code gives back an approximation only
                return None
            try:
                vecs = loaded.index.reconstruct_batch(np.asarray(ids, np.int64))
            except RuntimeError:  # an id the index does not hold
                return None
            out.update(zip(ids, vecs))
    return out


def search(ws: Workspace, cid: int, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Top-k (chunk id, cosine score) in one collection; `allowed` restricts the ids inside FAISS.
    A compressed (IVF-PQ) index proposes `rescore_depth(k)` candidates whose exact vectors, read
    from SQLite, give the scores and the order (`_rescore`)."""
    loaded = _load(ws, cid, fold=True)
    if loaded is None or loaded.index.ntotal == 0 or k <= 0:
        return []
    faiss = _faiss()
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    params = None
    if allowed is not None:
        if len(allowed) == 0:
            return []
        params = _selector_params(loaded.index, faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)))
    want = rescore_depth(k) if loaded.kind == "ivfpq" else k
    with _lock.shared():
        scores, ids = loaded.index.search(q, min(want, loaded.index.ntotal), params=params)
    if loaded.kind == "ivfpq" and _exact_match_index(ws):
        return _rescore(ws, q[0], ids[0][ids[0] != -1], k)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1][:k]


def _exact_match_index(ws: Workspace) -> bool:
    """Whether SQLite's vectors are of the embedder generation the index files (and the query
    embedder) follow. A re-embed's switch commits the new vectors to SQLite before it renames the
    pointer to them (retrieval/reembed.py); until then, or after a kill between the two, re-scoring
    would put an old-generation query against new-generation vectors, so the compressed index's
    own scores stand in (approximate, but of one generation)."""
    return (ws.meta("embedder_generation") or "") == generation(ws)


RESCORE_FACTOR, RESCORE_MIN = 10, 100  # candidates per hit wanted, and at least (bench/index.py: recall@10)


def rescore_depth(k: int) -> int:
    """How many candidates a compressed index proposes for a top-k search."""
    return max(RESCORE_MIN, RESCORE_FACTOR * k)


def _selector_params(index, sel):
    """Search parameters restricting `index` to the ids `sel` selects (an OPQ-rotated IVF index
    takes them through its transform's parameters)."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index) if not hasattr(index, "id_map") else None
    if ivf is None:
        return faiss.SearchParameters(sel=sel)
    inner = faiss.SearchParametersIVF(sel=sel, nprobe=ivf.nprobe)
    return faiss.SearchParametersPreTransform(index_params=inner) if isinstance(index, faiss.IndexPreTransform) else inner


def _rescore(ws: Workspace, query: np.ndarray, candidates: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The top k of `candidates` by the cosine of their exact vectors (SQLite's chunks.embedding,
    read for these ids only) with `query`. A candidate SQLite no longer holds (deleted since the
    index was saved) is dropped, never returned."""
    if not len(candidates):
        return []
    ids, vecs = _read_vectors(ws, candidates.tolist())
    if not ids:
        return []
    scores = vecs @ query
    top = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in top]


def _vector_rows(ws: Workspace, ids: list[int]):
    """(chunk id, embedding bytes) from SQLite for those of `ids` that hold a vector, in no order."""
    for start in range(0, len(ids), 900):  # SQLite's parameter limit
        part = ids[start:start + 900]
        yield from ws.db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({','.join('?' * len(part))}) "
                                 "AND embedding IS NOT NULL", part)


def _read_vectors(ws: Workspace, ids: list[int]) -> tuple[list[int], np.ndarray]:
    """(the ids SQLite holds a vector for, in the order given; their vectors)."""
    rows = dict(_vector_rows(ws, ids))
    held = [i for i in ids if i in rows]
    vecs = np.frombuffer(b"".join(rows[i] for i in held), dtype=np.float32).reshape(len(held), -1) if held else np.zeros((0, 0), np.float32)
    return held, vecs
