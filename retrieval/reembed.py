"""Re-embed every chunk with another embedder while the current vectors keep serving, then switch
in one step.

    stage   chunks in id order, STEP at a time, into index/reembed.db (this module's own SQLite
            file: the target, and chunk id -> key, vector). Each step commits on its own, so a kill
            loses at most the step in progress; the next run goes on after the last committed chunk
            with the same step boundaries, hence the same batches and bit-identical vectors. A chunk
            deleted meanwhile (a delete, an erase, a re-ingest replacing it) leaves the staging too
            (`forget_deleted`; a step drops those deleted while it embedded them), not at the switch.
    switch  under SQLite's write lock (ingestion waits): chunks added or changed since they were
            staged are embedded now, the new generation's FAISS files are written beside the
            current ones, chunks.embedding/hash and the workspace's embedder record are updated in
            one transaction; then index/embedder.json is replaced (one rename: the query embedder,
            `archivist.models.embedder_for`, and the FAISS files, `vectors.generation`, both follow
            it), and the old generation's files are removed.

Until the rename, searches embed queries with the old embedder and read the old files; after it,
the new ones. A kill between the commit and the rename leaves SQLite ahead of the pointer: searches
still use the old pair (consistent), ingestion refuses (the recorded embedder differs), and running
`reembed` again (`archivist finetune --target retriever --resume NAME`) finishes the switch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archivist import files
from archivist.models import ACTIVE_EMBEDDER, active_embedder
from archivist.workspace import Workspace, transaction, truncate_wal
from archivist.retrieval import vectors

log = logging.getLogger(__name__)

STEP = 256  # chunks embedded and committed together (as ingestion's BATCH_CHUNKS)


@dataclass
class Target:
    """What to re-embed into: an embedder, its generation name ("" = the base embedder) and, for
    an adapted one, its folder relative to the workspace and the embedder it was adapted from."""

    embedder: object
    generation: str
    path: str | None = None
    base: str | None = None


@dataclass
class Result:
    chunks: int          # chunks in the new index
    embedded: int        # embedded by this call (the rest were staged by an earlier, killed run)
    seconds: float       # this call's time
    encode_seconds: float  # of which inside embedder.embed
    switched: bool


def identity_of(embedder) -> str:
    from archivist import models

    if hasattr(models, "embedder_identity"):
        return models.embedder_identity(embedder)
    return getattr(embedder, "model_id", None) or f"{embedder.name}:{embedder.dim}"


def embed_input(text: str, heading: str) -> str:
    """What is embedded for a chunk (as ingestion embeds it: heading path, then text)."""
    return f"{heading}\n{text}" if heading else text


def vector_key(identity: str, text: str) -> str:
    """A chunk's `hash` column for `text` embedded by `identity` (ingestion's definition where it
    has one, else the text's hash as before identities)."""
    try:
        from archivist.ingest.writing import vector_key as key
    except ImportError:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return key(identity, text)


def _staging(ws: Workspace) -> sqlite3.Connection:
    """The staging file, opened; a damaged one (truncated, overwritten: SQLite says "not a database" or
    "malformed", or its quick_check fails) holds nothing that cannot be embedded again, so it is
    removed and staging starts over, with a warning naming it."""
    ws.index_dir.mkdir(parents=True, exist_ok=True)
    path = ws.index_dir / "reembed.db"
    try:
        return _open_staging(path)
    except sqlite3.OperationalError:  # locked, a full disk: not damage, and nothing to remove
        raise
    except sqlite3.DatabaseError as e:
        log.warning("%s is damaged (%s): removed; the re-embedding starts over", path, e)
        for p in (path, path.with_name("reembed.db-wal"), path.with_name("reembed.db-shm")):
            p.unlink(missing_ok=True)
        return _open_staging(path)


def _open_staging(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA secure_delete=ON")  # a vector dropped (`forget_deleted`, `_claim`) is zeroed, whatever the build's default
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        db.execute("CREATE TABLE IF NOT EXISTS target (k TEXT PRIMARY KEY, v TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS vectors (chunk_id INTEGER PRIMARY KEY, key TEXT NOT NULL, embedding BLOB NOT NULL)")
    except BaseException:
        db.close()
        raise
    return db


def _claim(db: sqlite3.Connection, identity: str, generation: str) -> None:
    """Keep what an earlier run staged for the same target; start over for another."""
    want = json.dumps({"identity": identity, "generation": generation})
    row = db.execute("SELECT v FROM target WHERE k = 'target'").fetchone()
    if row is None or row[0] != want:
        with closing(db.cursor()) as c:
            c.execute("BEGIN IMMEDIATE")
            c.execute("DELETE FROM vectors")
            c.execute("INSERT OR REPLACE INTO target VALUES ('target', ?)", (want,))
            c.execute("COMMIT")


def staged_count(ws: Workspace) -> int:
    """Chunks staged by a re-embed in progress (0 when none)."""
    if not (ws.index_dir / "reembed.db").exists():
        return 0
    with closing(_staging(ws)) as db:
        return db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]


def forget_deleted(ws: Workspace) -> None:
    """Drop from a re-embed's staging file (one in progress, or stopped and waiting to be resumed) the
    vectors of chunks SQLite no longer holds: a delete, an erase or a re-ingest replacing a document's
    chunks leaves no vector of their text there (an embedding can be inverted to approximate text),
    rather than until the switch. Nothing when there is no staging file."""
    if not (ws.index_dir / "reembed.db").exists():
        return
    with closing(_staging(ws)) as db:
        _drop_gone(ws, db, [r[0] for r in db.execute("SELECT chunk_id FROM vectors")])


def _drop_gone(ws: Workspace, db: sqlite3.Connection, ids: list[int]) -> None:
    """Delete from the staging `db` the vectors of those chunk `ids` SQLite no longer holds, then empty
    its WAL, which keeps the pages as they were (secure_delete zeroes them in the file)."""
    gone = []
    for at in range(0, len(ids), 900):  # SQLite's parameter limit
        part = ids[at:at + 900]
        live = {r[0] for r in ws.db.execute(f"SELECT id FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)}
        gone += [i for i in part if i not in live]
    if gone:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM vectors WHERE chunk_id = ?", [(i,) for i in gone])
        db.execute("COMMIT")
        truncate_wal(db, wait_ms=2000)


def reembed(ws: Workspace, target: Target, progress: bool = True, stop_after: int | None = None,
            on_step: Callable[[int, int], bool] | None = None) -> Result:
    """Re-embed every chunk of the workspace into `target` and switch to it (see the module doc).

    Resumable: a killed run's committed steps are kept and the next call goes on from them.
    `stop_after` (tests, benchmarks) stops after staging that many chunks in this call, without
    switching. `on_step(staged, total)` is called after each committed step (the job's progress,
    finetune/retriever.py); when it returns True the call stops there, without switching, as with
    `stop_after`. Raises WorkspaceError when a FAISS file cannot be written (nothing is switched then),
    ChunkLimitError before any work when the target reads fewer tokens than the settings' chunks hold.
    """
    from tqdm import tqdm

    from archivist.models import check_chunk_tokens

    check_chunk_tokens(ws.settings.chunk_tokens, target.embedder)
    t0 = time.perf_counter()
    identity = identity_of(target.embedder)
    if ws.meta("embedder_generation", "") == target.generation and _pointer_generation(ws) != target.generation \
            and ws.meta("embedder_identity_staged") == identity:
        _write_pointer(ws, target, identity)  # a kill after the commit, before the rename: finish it
        return Result(_count(ws), 0, time.perf_counter() - t0, 0.0, True)
    encode = 0.0
    embedded = 0
    with closing(_staging(ws)) as db:
        _claim(db, identity, target.generation)
        last = db.execute("SELECT COALESCE(MAX(chunk_id), -1) FROM vectors").fetchone()[0]
        total = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        staged = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        bar = tqdm(total=total, initial=staged, unit="chunk", desc="re-embed", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        stopped = False
        while (stop_after is None or embedded < stop_after) and not stopped:
            rows = ws.db.execute("SELECT id, text, heading FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                                 (last, STEP)).fetchall()
            if not rows:
                break
            inputs = [embed_input(r["text"], r["heading"]) for r in rows]
            t1 = time.perf_counter()
            vecs = np.asarray(target.embedder.embed(inputs, batch_size=ws.settings.embed_batch), np.float32)
            encode += time.perf_counter() - t1
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                           [(r["id"], vector_key(identity, t), v.tobytes()) for r, t, v in zip(rows, inputs, vecs)])
            db.execute("COMMIT")
            # a delete that committed while these were embedded found them not staged yet (`forget_deleted`)
            _drop_gone(ws, db, [r["id"] for r in rows])
            last = rows[-1]["id"]
            embedded += len(rows)
            bar.update(len(rows))
            staged += len(rows)
            if on_step is not None:
                stopped = bool(on_step(staged, total))
        bar.close()
        if stopped or (stop_after is not None and embedded >= stop_after):
            return Result(_count(ws), embedded, time.perf_counter() - t0, encode, False)
        extra, extra_seconds = _switch(ws, db, target, identity)
    (ws.index_dir / "reembed.db").unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        (ws.index_dir / f"reembed.db{suffix}").unlink(missing_ok=True)
    return Result(_count(ws), embedded + extra, time.perf_counter() - t0, encode + extra_seconds, True)


def _count(ws: Workspace) -> int:
    return ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def _switch(ws: Workspace, db: sqlite3.Connection, target: Target, identity: str) -> tuple[int, float]:
    """Catch up, write the new generation's FAISS files, commit the vectors, rename the pointer.
    Returns (chunks embedded while catching up, seconds spent encoding them)."""
    old = vectors.generation(ws)
    with transaction(ws.db):  # BEGIN IMMEDIATE: no chunk is added or changed until the commit
        rows = ws.db.execute("SELECT c.id, c.text, c.heading, d.collection_id FROM chunks c "
                             "JOIN documents d ON d.id = c.document_id ORDER BY c.id").fetchall()
        staged = dict(db.execute("SELECT chunk_id, key FROM vectors").fetchall())
        inputs = {r["id"]: embed_input(r["text"], r["heading"]) for r in rows}
        keys = {i: vector_key(identity, t) for i, t in inputs.items()}
        todo = [i for i in inputs if staged.get(i) != keys[i]]  # added or changed since staged
        t1 = time.perf_counter()
        if todo:
            vecs = np.asarray(target.embedder.embed([inputs[i] for i in todo], batch_size=ws.settings.embed_batch), np.float32)
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                           [(i, keys[i], v.tobytes()) for i, v in zip(todo, vecs)])
            db.execute("COMMIT")
        seconds = time.perf_counter() - t1
        blobs = dict(db.execute("SELECT chunk_id, embedding FROM vectors").fetchall())
        by_collection: dict[int, list[int]] = {}
        for r in rows:
            by_collection.setdefault(r["collection_id"], []).append(r["id"])
        dim = int(target.embedder.dim)
        for cid in [r[0] for r in ws.db.execute("SELECT id FROM collections")]:
            ids = np.array(by_collection.get(cid, []), np.int64)
            vecs = np.stack([np.frombuffer(blobs[i], np.float32) for i in ids.tolist()]) if len(ids) else np.zeros((0, dim), np.float32)
            vectors.write_generation(ws, cid, target.generation, ids, vecs)
        ws.db.executemany("UPDATE chunks SET embedding = ?, hash = ? WHERE id = ?",
                          [(blobs[i], keys[i], i) for i in inputs])
        _record(ws, target, identity)
    _write_pointer(ws, target, identity)
    if old != target.generation:
        for cid in [r[0] for r in ws.db.execute("SELECT id FROM collections")]:
            for p in vectors.paths_for(ws, cid, old):
                p.unlink(missing_ok=True)
    return len(todo), seconds


def _record(ws: Workspace, target: Target, identity: str) -> None:
    """The workspace's record of its embedder (inside the switch's transaction)."""
    e = target.embedder
    values = {"embedder": getattr(e, "model_id", f"{e.name}:{e.dim}"), "embedding_dim": str(e.dim),
              "embedder_generation": target.generation, "embedder_identity_staged": identity,
              "embedder_pointer": json.dumps(_pointer(target, identity))}  # index/embedder.json is rebuilt from it
    values["embedder_identity"] = identity
    for k, v in values.items():
        ws.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, v))


def _pointer_generation(ws: Workspace) -> str:
    active = active_embedder(ws.home)
    return active["generation"] if active else ""


def _write_pointer(ws: Workspace, target: Target, identity: str) -> None:
    """The switch: index/embedder.json replaced in one rename (removed for the base embedder), with
    what the switch's transaction recorded (`check_pointer` compares the two)."""
    recorded = ws.meta("embedder_pointer")
    pointer = json.loads(recorded) if recorded is not None else _pointer(target, identity)
    if (pointer or {}).get("generation", "") != target.generation:
        pointer = _pointer(target, identity)
    _put_pointer(ws, pointer)


def _pointer(target: Target, identity: str) -> dict | None:
    """What index/embedder.json holds for `target` (None: no file, the base embedder)."""
    if not target.generation:
        return None
    return {"generation": target.generation, "path": target.path, "base": target.base, "identity": identity,
            "switched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _put_pointer(ws: Workspace, pointer: dict | None) -> None:
    path = Path(ws.home) / ACTIVE_EMBEDDER
    if pointer is None:
        path.unlink(missing_ok=True)
        return
    files.replace(path, json.dumps(pointer))


def check_pointer(ws: Workspace) -> list[str]:
    """index/embedder.json compared with the switch SQLite recorded (meta `embedder_pointer`, written
    in the switch's transaction), and rewritten from it when they disagree: a damaged or deleted file
    would have queries embedded by the base embedder and searched against the adapted one's vectors
    (a FAISS error when their dimensions differ, wrong passages when not); a kill between the commit
    and the rename is finished. Workspaces switched before the record was kept are left as they are."""
    recorded = ws.meta("embedder_pointer")
    if recorded is None:
        return []
    want = json.loads(recorded)
    path = Path(ws.home) / ACTIVE_EMBEDDER
    try:
        have = json.loads(path.read_text())
    except FileNotFoundError:
        have = None
    except (OSError, ValueError) as e:
        have = f"unreadable ({e})"
    same = (have is None) if want is None else (isinstance(have, dict) and have.get("generation") == want["generation"])
    if same:
        return []
    what = "missing" if have is None else have if isinstance(have, str) else f"generation {have.get('generation')!r}"
    log.warning("%s is %s; the workspace database says %s: rewritten from it", path,
                what, f"generation {want['generation']!r}" if want else "the base embedder")
    _put_pointer(ws, want)
    return [f"{ACTIVE_EMBEDDER}: rewritten ({what})"]
