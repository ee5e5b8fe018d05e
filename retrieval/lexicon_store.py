"""The lexical index on disk: `index/lexical.npz`, its pending segments, and the copy in memory.

    index = lexicon_store.current(ws)        # what a search uses: loaded once, reloaded when the file changes
    lexicon_store.sync(ws)                   # add the chunks SQLite holds and the index lacks, drop the gone (every word too)
    lexicon_store.append(ws)                 # an ingest into a big workspace: pending segments, no load
    lexicon_store.check_and_repair(ws)       # on open: a torn or stale file is rebuilt from SQLite

SQLite is the source of truth and `index/lexical.npz` a cache of it, kept in step like the FAISS
indexes: `sync` adds the chunks the index lacks and drops the ones SQLite no longer holds, under
a file lock, and saves; other processes reload the file when its mtime changes. An ingesting
process past pipeline.HOLD_INDEXES_UP_TO chunks does not load it: `append` writes its new chunks'
postings as pending segments, which the next search folds in (`sync`). `sync` builds a new
`lexicon.Index` and swaps it in, so a search running in another thread keeps a consistent one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from archivist.retrieval.lexicon import TOKENIZER, Fields, Index, fields_of
from archivist.retrieval.vectors import fresh_sidecar, save_with_sidecar
from archivist.workspace import Workspace

log = logging.getLogger(__name__)

_cache: dict[str, Index] = {}
_lock = threading.RLock()
_ARRAYS = ("indptr", "post_pos", "post_f", "ids", "docs", "colls", "length", "live")


def _path(ws: Workspace) -> Path:
    return ws.index_dir / "lexical.npz"


def _tmp(ws: Workspace) -> Path:
    """Where `_save` writes the file before renaming it into place."""
    return ws.index_dir / "lexical.tmp.npz"


_files: dict[str, tuple[str, str]] = {}


def _names(ws: Workspace) -> tuple[str, str]:
    """The index file's path and its pending segments' folder, as strings made once (building the
    paths cost three times the stat, as in vectors._load)."""
    home = str(ws.home)
    names = _files.get(home)
    if names is None:
        names = _files[home] = (str(_path(ws)), str(ws.index_dir / "lexical.pending"))
    return names


def _read(path: Path, mtime: float = 0.0) -> Index:
    """The index a file holds (the index file or a pending segment); raises on a torn or corrupt one."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in _ARRAYS}
        words = bytes(z["terms"]).decode("utf-8").split("\n") if len(z["terms"]) else []
        fields = Fields.from_json(bytes(z["fields"]).decode("utf-8")) if "fields" in z.files else Fields()
        tokenizer = int(z["tokenizer"]) if "tokenizer" in z.files else 1  # saved since the tokenizer's version 2
    index = Index(dict(zip(words, range(len(words)))), **arrays, mtime=mtime, fields=fields, tokenizer=tokenizer)
    if len(index.indptr) != len(words) + 1:
        raise ValueError("term table and matrix disagree")
    return index


def _load(ws: Workspace) -> Index | None:
    """The index as on disk, read again only when the file changed."""
    home = str(ws.home)
    name = _names(ws)[0]
    try:
        mtime = os.stat(name).st_mtime
    except FileNotFoundError:
        return None
    hit = _cache.get(home)
    if hit is not None and hit.mtime == mtime:
        return hit
    try:
        index = _read(Path(name), mtime)
    except Exception as e:  # a torn or corrupt file: rebuilt from SQLite by sync
        log.warning("lexical index %s unreadable (%s); it will be rebuilt from SQLite", os.path.basename(name), e)
        return None
    _cache[home] = index
    return index


def _write(f, index: Index, removed: np.ndarray | None = None) -> None:
    words = "\n".join(sorted(index.terms, key=index.terms.get)).encode("utf-8")
    extra = {} if removed is None else {"removed": np.asarray(removed, np.int64)}
    np.savez(f, terms=np.frombuffer(words, np.uint8), fields=np.frombuffer(index.fields.to_json().encode(), np.uint8),
             tokenizer=np.int64(index.tokenizer), **{k: getattr(index, k) for k in _ARRAYS}, **extra)


def _save(ws: Workspace, index: Index) -> Index:
    path = _path(ws)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            _write(f, index)

    meta = {"chunks": index.n_live, "id_sum": int(index.ids[index.live].sum())}
    index = replace(index, mtime=save_with_sidecar(path, _tmp(ws), write, meta, "lexical index"))
    _cache[str(ws.home)] = index
    return index


def _rows(ws: Workspace, ids: np.ndarray) -> list[tuple]:
    out = []
    for start in range(0, len(ids), 900):  # SQLite's parameter limit
        part = ids[start:start + 900].tolist()
        out += ws.db.execute(
            f"SELECT c.id, c.document_id, d.collection_id, c.text, c.heading, COALESCE(d.title, '') FROM chunks c "
            f"JOIN documents d ON d.id = c.document_id WHERE c.id IN ({','.join('?' * len(part))}) ORDER BY c.id",
            part).fetchall()
    return [tuple(r) for r in out]


def _sqlite_ids(ws: Workspace) -> np.ndarray:
    return np.fromiter((r[0] for r in ws.db.execute("SELECT id FROM chunks")), np.int64)


# -- pending segments: what an ingesting process adds without holding the index ---------------------
# A process that ingests into a big workspace does not load the index (it grows with every chunk:
# bench/RESULTS.md, finding 17): `append` writes the chunks the index lacks, tokenized, and the ids it
# holds that SQLite no longer does, as segment files under index/lexical.pending/ (named by the time
# they were written, folded in that order). A search sees the folder (`current`) and `sync` folds them
# into lexical.npz, then deletes them; both hold the index's file lock.

SEGMENT_CHUNKS = 10_000  # chunks per pending segment: what `append` holds at once


def _segments(ws: Workspace) -> list[Path]:
    folder = Path(_names(ws)[1])
    try:
        return sorted(folder.glob("*.npz"))
    except FileNotFoundError:
        return []


def _read_segment(path: Path) -> Index | None:
    """The chunks a segment adds (its removals are read by `_fold` on their own); None for an
    unreadable one, which `sync` then repairs from SQLite."""
    try:
        return _read(path)
    except Exception as e:
        log.warning("pending lexical segment %s unreadable (%s); its chunks are read again from SQLite", path.name, e)
        return None


def _covered(ws: Workspace) -> np.ndarray:
    """The chunk ids the index file and its pending segments hold together, read without the postings."""
    ids = np.zeros(0, np.int64)
    try:
        with np.load(_names(ws)[0], allow_pickle=False) as z:
            ids = z["ids"][z["live"]]
    except Exception:  # missing, or unreadable: `sync` rebuilds it from SQLite, so the segments need not cover it
        pass
    for seg in _segments(ws):
        try:
            with np.load(seg, allow_pickle=False) as z:
                ids = np.concatenate([np.setdiff1d(ids, z["removed"]), z["ids"][z["live"]]])
        except Exception:  # read again from SQLite by `sync`
            continue
    return ids


def append(ws: Workspace) -> dict:
    """Bring the lexical index in step with SQLite without loading it: the chunks it lacks are
    tokenized, SEGMENT_CHUNKS at a time, and written with the ids of the chunks SQLite no longer
    holds as pending segments, which the next search folds in (`sync`). Memory: every chunk's id
    (16 bytes) and one segment, however big the index. Returns {"added", "removed", "segments"}."""
    from filelock import FileLock

    from archivist.workspace import WorkspaceError

    fields = fields_of(ws)
    path, folder = _names(ws)
    with _lock, FileLock(path + ".lock"):
        have, want = _covered(ws), _sqlite_ids(ws)
        missing, extra = np.setdiff1d(want, have), np.setdiff1d(have, want)
        segments = 0
        for start in range(0, len(missing), SEGMENT_CHUNKS) if len(missing) else ([0] if len(extra) else []):
            part = Index.empty(fields).with_chunks(_rows(ws, missing[start:start + SEGMENT_CHUNKS]))
            name = Path(folder) / f"{time.time_ns():020d}.npz"
            tmp = name.with_suffix(".tmp")
            try:
                name.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as f:
                    _write(f, part, extra if start == 0 else None)
                os.replace(tmp, name)  # a search sees the whole segment or none of it
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise WorkspaceError(f"cannot write the pending lexical segment {name.name}: {e}; what SQLite "
                                     "holds is intact and the index is repaired from it") from e
            segments += 1
        return {"added": int(len(missing)), "removed": int(len(extra)), "segments": segments}


def _fold(index: Index, segments: list[Path]) -> Index:
    """`index` with the pending segments applied in order: their removals, then their chunks (those
    it does not hold already: a segment folded before a crash kept it from being deleted). A chunk
    a later segment removes that an earlier one added is left to `sync`'s comparison with SQLite."""
    for seg in segments:  # the removals first: only ids, cheap to read
        try:
            with np.load(seg, allow_pickle=False) as z:
                removed = z["removed"]
        except Exception:
            continue
        if len(removed):
            index = index.without(removed)
    held = index.ids[index.live]

    def parts() -> Iterator[Index]:  # one segment in memory at a time
        for seg in segments:
            part = _read_segment(seg)
            # a segment weighted or tokenized otherwise is left out: `sync` reads its chunks from SQLite
            if part is not None and part.fields == index.fields and part.tokenizer == index.tokenizer and len(part.ids):
                there = np.isin(part.ids, held)
                yield part.without(part.ids[there], min_dead=len(part.ids) + 1) if there.any() else part

    return index.merged(parts())


def _drop_segments(ws: Workspace, segments: list[Path]) -> None:
    """Delete the folded segments, any `.tmp` a cut-short `append` left (written under the index's
    lock, which the caller holds: one seen here is no one's, and holds its chunks' words), then the
    folder: a search checks for it with one stat, and syncs with SQLite while it is there."""
    folder = Path(_names(ws)[1])
    for f in [*segments, *folder.glob("*.tmp")]:
        f.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # none there
        pass


def sync(ws: Workspace, rebuild: bool = False, fields: Fields | None = None) -> dict:
    """Make the lexical index hold exactly the chunks in SQLite, weighted by `fields` (None: the
    settings'; an index on disk weighted otherwise is rebuilt), folding in the pending segments
    (`append`) and deleting them. Whatever chunk left (a delete, an erase, a changed document's
    re-ingest replacing its chunks, here or in a pending segment's removals) the file keeps nothing
    of (`Index.compacted`, paid only when some went). Returns {"added", "removed",
    "total"}: what SQLite brought beyond the segments."""
    from filelock import FileLock

    fields = fields or fields_of(ws)
    path = _path(ws)
    with _lock, FileLock(str(path) + ".lock"):
        loaded = None if rebuild else _load(ws)
        if loaded is not None and loaded.fields != fields:
            log.info("lexical index weighted %s, wanted %s: rebuilding it", loaded.fields, fields)
            loaded = None
        if loaded is not None and loaded.tokenizer != TOKENIZER:  # an older release's terms: a query's would miss them
            log.info("lexical index tokenized by version %s, this release's is %s: rebuilding it",
                     loaded.tokenizer, TOKENIZER)
            loaded = None
        index = loaded or Index.empty(fields)
        segments = _segments(ws)
        if segments and not rebuild:
            index = _fold(index, segments)
        want = _sqlite_ids(ws)
        have = index.ids[index.live]
        missing, extra = np.setdiff1d(want, have), np.setdiff1d(have, want)
        if len(extra):
            index = index.without(extra)
        if len(missing):
            index = index.with_chunks(_rows(ws, missing))
        kept = index
        # however a chunk left (here, or a pending segment's removal past pipeline.HOLD_INDEXES_UP_TO),
        # no posting of it and no word only it held stays in the file
        index = index.compacted()
        _cache[str(ws.home)] = index  # searchable in this process even if saving it fails
        if loaded is None or segments or len(missing) or len(extra) or index is not kept or fresh_sidecar(path) is None:
            index = _save(ws, index)
        _drop_segments(ws, segments)
        # a save cut short between its write and its rename left a copy of the index as it was then,
        # words of chunks deleted since included (a save renames it away; unsaved, it stayed)
        _tmp(ws).unlink(missing_ok=True)
        return {"added": int(len(missing)), "removed": int(len(extra)), "total": index.n_live}


def check_and_repair(ws: Workspace) -> list[str]:
    """Sync the index when its sidecar disagrees with SQLite's chunk count and id sum (cheap when they
    agree). With pending segments it only writes one for what they lack (`append`): the next search
    folds them, and an ingesting process never loads the index."""
    if _segments(ws):
        result = append(ws)
        return [f"lexical index: {result}"] if result["segments"] else []
    n, s = ws.db.execute("SELECT COUNT(*), COALESCE(SUM(id), 0) FROM chunks").fetchone()
    meta = fresh_sidecar(_path(ws))
    if ((meta is not None and meta.get("chunks") == n and meta.get("id_sum") == s) or (n == 0 and meta is None)) \
            and not _tmp(ws).exists():  # a save's leftover: removed by sync
        return []
    result = sync(ws)
    if result["added"] or result["removed"]:
        log.warning("repaired the lexical index from SQLite: %s", result)
        return [f"lexical index: {result}"]
    return []


def current(ws: Workspace) -> Index:
    """The workspace's index, loaded once per process and again when another process saved it;
    built from SQLite the first time; pending segments (`append`) folded in first."""
    index = _load(ws)
    if index is None or index.fields != fields_of(ws) or index.tokenizer != TOKENIZER or os.path.isdir(_names(ws)[1]):
        # none yet, weighted or tokenized otherwise (rebuilt), or segments an ingesting process left (folded in)
        from archivist.workspace import WorkspaceError

        try:
            sync(ws)
        except WorkspaceError as e:
            log.warning("%s; searching the index built in memory", e)
        index = _cache[str(ws.home)]
    return index
