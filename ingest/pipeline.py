"""The incremental ingestion pipeline: files → read → chunk → embed → SQLite + FTS5 + FAISS.

A document is its collection + name + content hash. Unchanged files are skipped; a changed file
replaces its chunks; chunks whose text was embedded before (in any document) reuse that vector,
so the same content under two names is embedded once. Work is committed in small batches of
whole documents, so a kill at any moment leaves a consistent workspace, and running the same
command again finishes only what is missing. FAISS is synced from SQLite at the end (and
periodically), and repaired from it on the next open if a crash came in between.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import unicodedata
from collections import deque
from contextlib import closing
from itertools import islice
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from archivist import access
from archivist.ingest import chunking
from archivist.ingest.readers import ReadError, read
from archivist.records import Chunk
from archivist.retrieval import lexicon, vectors
from archivist.ingest.shingles import shingles
from archivist.workspace import Workspace, WorkspaceError, connect, transaction

log = logging.getLogger(__name__)

FLUSH_SECONDS = 60.0  # sync FAISS at least this often during a long ingest
READ_AHEAD = 8  # files read ahead of the embedder
BATCH_CHUNKS = 256  # embed this many chunks at once (across documents) before committing them


@dataclass
class FileResult:
    name: str
    status: str  # added | updated | unchanged | failed
    chunks: int = 0
    seconds: float = 0.0
    reason: str | None = None
    document_id: int | None = None
    embedded: int = 0  # chunks actually embedded (the rest reused a stored vector)


@dataclass
class _Pending:
    name: str
    source: str
    digest: str
    size: int
    kind: str
    pages: int | None
    title: str | None
    text: str
    chunks: list[Chunk]
    t0: float
    replaces: int | None  # id of the document row this one updates
    result: FileResult = field(default=None)
    ocr: dict[int, float] = field(default_factory=dict)  # page -> mean OCR confidence


def clean_name(name: str) -> str:
    """A document name safe to store and show: no control characters, no absolute or parent parts."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    parts = [p for p in name.split("/") if p not in ("", ".", "..")]
    return "/".join(parts)[:400] or "unnamed"


def expand(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Files to ingest with the name each is stored under: a file by its own name,
    a folder's files by their path below the folder's parent (hidden files skipped)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p.parent)
                if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                    out.append((f, clean_name(rel.as_posix())))
        else:
            out.append((p, clean_name(p.name)))
    return out


def sha256_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def embed_text(chunk_text: str, heading: tuple[str, ...] | str) -> str:
    """What is embedded for a chunk: its heading path as context, then its text."""
    head = heading if isinstance(heading, str) else " > ".join(heading)
    return f"{head}\n{chunk_text}" if head else chunk_text


def _text_hash(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


def ingest_paths(
    ws: Workspace,
    paths: Iterable[str | os.PathLike],
    collection: str | None = None,
    user: str | None = None,
    embedder=None,
    names: list[str] | None = None,
    progress: bool = True,
    on_file: Callable[[FileResult, int, int], None] | None = None,
) -> list[FileResult]:
    """Ingest files and folders into `collection`; returns one FileResult per file, in order.

    `names` (same length as `paths`, files only) overrides the stored names, e.g. for uploads.
    `on_file(result, done, total)` is called as each file finishes (the UI's progress bar).
    Raises AccessDenied when `user` may not write to the collection; per-file problems never
    raise, they become failed results.
    """
    from tqdm import tqdm

    from archivist.models import embedder_for

    collection = collection or ws.settings.collection
    access.require(ws, user, collection, "write")
    cid = ws.collection_id(collection, create=True)
    # Reuse stored vectors only from collections this user may read: `embedded` (and the time an
    # ingest takes) would otherwise tell a writer whether a guessed text exists in another collection.
    reuse_from = [ws.collection_id(c) for c in access.readable_collections(ws, user)] + [cid]
    embedder = embedder or embedder_for(ws.settings)
    _check_embedder(ws, embedder)
    files = expand(paths) if names is None else [(Path(p), clean_name(n)) for p, n in zip(paths, names)]
    job = _start_job(ws, collection, user, files)
    results: list[FileResult] = []
    pending: list[_Pending] = []
    fresh: dict[int, np.ndarray] = {}
    last_flush = time.monotonic()
    bar = tqdm(total=len(files), unit="file", desc=f"ingest → {collection}", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def finish(res: FileResult):
        results.append(res)
        bar.update(1)
        bar.set_postfix(chunks=sum(r.chunks for r in results), failed=sum(r.status == "failed" for r in results))
        if on_file:
            on_file(res, len(results), len(files))

    def flush_pending():
        nonlocal pending
        if pending:
            for res in _embed_and_commit(ws, cid, pending, embedder, fresh, reuse_from):
                finish(res)
            pending = []

    try:
        # Read the next files while the current batch embeds; the reader thread has its own connection.
        with closing(connect(ws.home / "archivist.db")) as reader_db, ThreadPoolExecutor(max_workers=1) as pool:
            # A bounded read-ahead: extracted text of files not yet embedded never piles up in memory.
            queue = iter(files)
            futures = deque(pool.submit(_prepare, ws.settings, reader_db, cid, p, n) for p, n in islice(queue, READ_AHEAD))
            while futures:
                item = futures.popleft().result()
                for p, n in islice(queue, 1):
                    futures.append(pool.submit(_prepare, ws.settings, reader_db, cid, p, n))
                if isinstance(item, FileResult):
                    finish(item)
                    continue
                pending.append(item)
                if sum(len(p.chunks) for p in pending) >= BATCH_CHUNKS:
                    flush_pending()
                if time.monotonic() - last_flush > FLUSH_SECONDS:
                    flush_pending()
                    sync_indexes(ws, cid, fresh)
                    fresh.clear()
                    last_flush = time.monotonic()
            flush_pending()
        sync_indexes(ws, cid, fresh)
    finally:
        bar.close()
        _finish_job(ws, job, results)
    order = {name: i for i, (_, name) in enumerate(files)}
    results.sort(key=lambda r: order.get(r.name, 0))
    return results


def _check_embedder(ws: Workspace, embedder) -> None:
    model_id = getattr(embedder, "model_id", f"{embedder.name}:{embedder.dim}")
    stored = ws.meta("embedder")
    if stored is None:
        ws.set_meta("embedder", model_id)
        ws.set_meta("embedding_dim", str(embedder.dim))
    elif stored.split(":")[0] != model_id.split(":")[0] or ws.meta("embedding_dim") != str(embedder.dim):
        raise WorkspaceError(f"this workspace was indexed with embedder {stored}, not {model_id}; "
                             "run `archivist reindex --reembed` to switch")


def _prepare(s, db, cid: int, path: Path, name: str) -> _Pending | FileResult:
    """Hash, compare and read one file (runs in the reader thread). Never raises."""
    t0 = time.monotonic()
    try:
        try:
            digest, size = sha256_file(path)
        except OSError as e:
            return FileResult(name, "failed", reason=f"cannot open: {e.strerror or e}", seconds=time.monotonic() - t0)
        row = _existing(db, cid, name)
        if row is not None and row["content_hash"] == digest and row["status"] == "ready":
            return FileResult(name, "unchanged", chunks=row["n"], document_id=row["id"], seconds=time.monotonic() - t0)
        extracted = read(path, max_mb=s.max_file_mb, max_unzipped_mb=s.max_unzipped_mb, timeout=s.reader_timeout,
                         ocr=s.ocr, page_timeout=s.ocr_page_timeout, max_pages=s.max_pages)
        from archivist.models import embedder_for

        spans = chunking.hf_token_spans(embedder_for(s).tokenizer)
        text, chunks = chunking.chunk_blocks(extracted.blocks, spans, s.chunk_tokens, s.chunk_overlap)
        if not chunks:
            raise ReadError("no text found")
        return _Pending(name, str(path.resolve()), digest, size, extracted.kind, extracted.pages, extracted.title,
                        text, chunks, t0, row["id"] if row is not None else None, ocr=extracted.ocr)
    except ReadError as e:
        return FileResult(name, "failed", reason=str(e), seconds=time.monotonic() - t0)
    except Exception as e:  # one broken file never stops a batch
        log.exception("unexpected error reading %s", name)
        return FileResult(name, "failed", reason=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)


def _existing(db, cid: int, name: str):
    return db.execute(
        "SELECT d.id, d.content_hash, d.status, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS n "
        "FROM documents d WHERE d.collection_id = ? AND d.path = ?", (cid, name)).fetchone()


def _known_vectors(ws: Workspace, hashes: list[str], collection_ids: list[int] | None = None) -> dict[str, bytes]:
    out = {}
    scope = ""
    if collection_ids is not None:  # only vectors of chunks in these collections
        scope = f" AND document_id IN (SELECT id FROM documents WHERE collection_id IN ({','.join(str(int(c)) for c in collection_ids)}))"
    unique = list(dict.fromkeys(hashes))
    for i in range(0, len(unique), 900):
        part = unique[i:i + 900]
        marks = ",".join("?" * len(part))
        for h, emb in ws.db.execute(f"SELECT hash, embedding FROM chunks WHERE hash IN ({marks}) AND embedding IS NOT NULL{scope}", part):
            out.setdefault(h, emb)
    return out


def _embed_and_commit(ws: Workspace, cid: int, batch: list[_Pending], embedder, fresh: dict,
                      reuse_from: list[int] | None = None) -> list[FileResult]:
    """Embed the chunks of several documents at once, reusing stored vectors (of chunks in the
    collections `reuse_from`, default any), then commit them."""
    inputs = [embed_text(c.text, c.heading) for p in batch for c in p.chunks]
    hashes = [_text_hash(t) for t in inputs]
    known = _known_vectors(ws, hashes, reuse_from)
    todo = [i for i, h in enumerate(hashes) if h not in known]
    todo_unique = list(dict.fromkeys(hashes[i] for i in todo))
    first = {}
    for i in todo:
        first.setdefault(hashes[i], i)
    vecs = embedder.embed([inputs[first[h]] for h in todo_unique], batch_size=ws.settings.embed_batch) if todo_unique else []
    blobs = dict(known)
    for h, v in zip(todo_unique, vecs):
        blobs[h] = np.asarray(v, dtype=np.float32).tobytes()
    results, k = [], 0
    with transaction(ws.db):
        for p in batch:
            n = len(p.chunks)
            p_hashes = hashes[k:k + n]
            embedded = sum(1 for h in set(p_hashes) if h not in known)
            k += n
            if p.replaces is not None:
                ws.db.execute("DELETE FROM chunks WHERE document_id = ?", (p.replaces,))
                ws.db.execute(
                    "UPDATE documents SET source=?, content_hash=?, kind=?, size=?, pages=?, title=?, text=?, ocr=?, status='ready', "
                    "updated_at=((julianday('now') - 2440587.5) * 86400.0) WHERE id=?",
                    (p.source, p.digest, p.kind, p.size, p.pages, p.title, p.text, _ocr_json(p.ocr), p.replaces))
                doc_id, status = p.replaces, "updated"
            else:
                doc_id = ws.db.execute(
                    "INSERT INTO documents(collection_id, path, source, content_hash, kind, size, pages, title, text, ocr) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (cid, p.name, p.source, p.digest, p.kind, p.size, p.pages, p.title, p.text, _ocr_json(p.ocr))).lastrowid
                status = "added"
            for c, h in zip(p.chunks, p_hashes):
                chunk_id = ws.db.execute(
                    "INSERT INTO chunks(document_id, seq, text, heading, page, start, end, n_tokens, hash, embedding, shingles, boxes) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (doc_id, c.seq, c.text, " > ".join(c.heading), c.page, c.start, c.end, c.n_tokens, h, blobs[h],
                     shingles(c.text), json.dumps(c.boxes) if c.boxes else None)).lastrowid
                fresh[chunk_id] = np.frombuffer(blobs[h], dtype=np.float32)
            results.append(FileResult(p.name, status, chunks=n, document_id=doc_id, embedded=embedded,
                                      seconds=time.monotonic() - p.t0))
    return results


def _ocr_json(confidence: dict[int, float]) -> str | None:
    return json.dumps({str(page): conf for page, conf in sorted(confidence.items())}) if confidence else None


def _start_job(ws: Workspace, collection: str, user: str | None, files: list[tuple[Path, str]]) -> int:
    listing = json.dumps([[str(Path(p).absolute()), name] for p, name in files])
    with transaction(ws.db):
        return ws.db.execute("INSERT INTO ingest_jobs(collection, user, files, pid) VALUES (?, ?, ?, ?)",
                             (collection, user, listing, os.getpid())).lastrowid


def _process_gone(pid: int | None, since: float) -> bool:
    """Whether the process that started a job at `since` has ended (a new process under the same
    pid, started later, does not count as it)."""
    import psutil

    if pid is None:
        return True
    try:
        return psutil.Process(pid).create_time() > since + 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.Error:  # cannot tell (another user's process): assume it still runs
        return False


def interrupted_jobs(ws: Workspace, user: str | None = None) -> list[dict]:
    """Ingest jobs recorded as running whose process has ended: a crash, kill -9 or a restart cut them
    short. Each: {id, collection, user, paths, names, started_at}, oldest first. With `user`, only
    that user's jobs, unless the user is an admin."""
    rows = ws.db.execute("SELECT id, collection, user, files, pid, started_at FROM ingest_jobs "
                         "WHERE status = 'running' AND files IS NOT NULL ORDER BY id").fetchall()
    if user is not None:
        user = access.current_user(ws, user)
        if not access.is_admin(ws, user):
            rows = [r for r in rows if r["user"] == user]
    jobs = []
    for r in rows:
        if _process_gone(r["pid"], r["started_at"]):
            files = json.loads(r["files"])
            jobs.append({"id": r["id"], "collection": r["collection"], "user": r["user"], "started_at": r["started_at"],
                         "paths": [Path(p) for p, _ in files], "names": [n for _, n in files]})
    return jobs


def claim_interrupted(ws: Workspace, user: str | None = None) -> Iterator[dict]:
    """The interrupted jobs (`interrupted_jobs`), each marked as taken over just before it is
    yielded, so that only one process resumes it; a job another process claimed first is skipped."""
    for job in interrupted_jobs(ws, user):
        with transaction(ws.db):
            cur = ws.db.execute("UPDATE ingest_jobs SET status = 'interrupted', finished_at = ((julianday('now') - "
                                "2440587.5) * 86400.0), pid = ? WHERE id = ? AND status = 'running'", (os.getpid(), job["id"]))
        if cur.rowcount == 1:
            yield job


def resume_interrupted(ws: Workspace, user: str | None = None, embedder=None, progress: bool = False,
                       on_file: Callable[[FileResult, int, int], None] | None = None) -> list[tuple[dict, list[FileResult]]]:
    """Finish the interrupted ingest jobs (`claim_interrupted(ws, user)`): the files of each are
    ingested again, as the user who started it, in a new job (what it had committed comes back
    `unchanged`; a file since removed fails with its reason). Returns (job, results) per resumed job;
    the files of a job whose user may no longer write come back failed with the reason."""
    out = []
    for job in claim_interrupted(ws, user):
        try:
            results = ingest_paths(ws, job["paths"], collection=job["collection"], user=job["user"], embedder=embedder,
                                   names=job["names"], progress=progress, on_file=on_file)
        except (access.AccessDenied, WorkspaceError) as e:
            results = [FileResult(n, "failed", reason=f"not resumed: {e}") for n in job["names"]]
        out.append((job, results))
    return out


def _finish_job(ws: Workspace, job: int, results: list[FileResult]) -> None:
    status = "failed" if any(r.status == "failed" for r in results) else "done"
    try:
        with transaction(ws.db):
            ws.db.execute("UPDATE ingest_jobs SET finished_at=((julianday('now') - 2440587.5) * 86400.0), status=?, summary=? WHERE id=?",
                          (status, json.dumps([asdict(r) for r in results]), job))
    except WorkspaceError:
        log.warning("could not record the ingest job summary")


# -- documents: list, delete, reindex --------------------------------------------------------


def list_documents(ws: Workspace, user: str | None = None, collection: str | None = None) -> list[dict]:
    """Documents in the collections `user` may read (optionally one collection), newest first.
    Each has `ocr_pages` (pages read by OCR) and `low_confidence_pages` (those whose mean OCR
    confidence is under ocr.LOW_CONFIDENCE: their text may be wrong)."""
    readable = access.readable_collections(ws, user)
    if collection is not None:
        readable = [c for c in readable if c == collection]
    if not readable:
        return []
    marks = ",".join("?" * len(readable))
    rows = ws.db.execute(
        f"SELECT d.id, d.path AS name, k.name AS collection, d.kind, d.pages, d.size, d.status, d.content_hash, "
        f"d.added_at, d.updated_at, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS chunks, d.ocr "
        f"FROM documents d JOIN collections k ON k.id = d.collection_id WHERE k.name IN ({marks}) "
        f"ORDER BY d.added_at DESC, d.id DESC", readable).fetchall()
    return [_with_ocr(dict(r)) for r in rows]


def _with_ocr(doc: dict) -> dict:
    from archivist.ingest.ocr import LOW_CONFIDENCE

    confidence = {int(page): conf for page, conf in json.loads(doc.pop("ocr") or "{}").items()}
    doc["ocr_pages"] = sorted(confidence)
    doc["low_confidence_pages"] = sorted(page for page, conf in confidence.items() if conf < LOW_CONFIDENCE)
    return doc


def find_document(ws: Workspace, ref: str | int, user: str | None = None, collection: str | None = None) -> dict:
    """One readable document by id or name; raises LookupError when there is none or several."""
    docs = list_documents(ws, user, collection)
    hits = [d for d in docs if str(d["id"]) == str(ref)] or [d for d in docs if d["name"] == ref] \
        or [d for d in docs if d["name"].rsplit("/", 1)[-1] == ref]
    if not hits:
        raise LookupError(f"no document {ref!r}")
    if len(hits) > 1:
        raise LookupError(f"{ref!r} names {len(hits)} documents (in {', '.join(sorted({d['collection'] for d in hits}))}); use its id or --collection")
    return hits[0]


def document_source(ws: Workspace, ref: str | int, user: str | None = None) -> Path | None:
    """The file a readable document was read from, when it is still there (page images of citations);
    raises LookupError like find_document."""
    doc = find_document(ws, ref, user)
    row = ws.db.execute("SELECT source FROM documents WHERE id = ?", (doc["id"],)).fetchone()
    source = Path(row["source"]) if row and row["source"] else None
    return source if source is not None and source.is_file() else None


def sync_indexes(ws: Workspace, cid: int, fresh: dict[int, np.ndarray] | None = None) -> None:
    """Bring collection `cid`'s FAISS index and the lexical index in step with SQLite after chunks
    were written or deleted (`fresh`: vectors just computed, spared a read back)."""
    vectors.sync(ws, cid, fresh)
    lexicon.sync(ws)


def delete_document(ws: Workspace, ref: str | int, user: str | None = None, collection: str | None = None) -> dict:
    """Remove a document from SQLite, FTS5 and FAISS together. Needs write access to its collection."""
    doc = find_document(ws, ref, user, collection)
    access.require(ws, user, doc["collection"], "write")
    cid = ws.collection_id(doc["collection"])
    with transaction(ws.db):
        ws.db.execute("DELETE FROM chunks WHERE document_id = ?", (doc["id"],))
        ws.db.execute("DELETE FROM documents WHERE id = ?", (doc["id"],))
    sync_indexes(ws, cid)
    return doc


def reindex(ws: Workspace, reembed: bool = False, embedder=None, progress: bool = True) -> dict:
    """Rebuild every FAISS index and the lexical index from SQLite; with `reembed`, embed every chunk again first
    (after switching embedders). Returns {collection: total vectors}."""
    if reembed:
        from tqdm import tqdm

        from archivist.models import embedder_for

        embedder = embedder or embedder_for(ws.settings)
        rows = ws.db.execute("SELECT id, text, heading FROM chunks ORDER BY id").fetchall()
        bar = tqdm(total=len(rows), unit="chunk", desc="re-embed", file=sys.stderr, disable=not progress)
        for i in range(0, len(rows), BATCH_CHUNKS):
            part = rows[i:i + BATCH_CHUNKS]
            inputs = [embed_text(r["text"], r["heading"]) for r in part]
            vecs = embedder.embed(inputs, batch_size=ws.settings.embed_batch)
            with transaction(ws.db):
                for r, t, v in zip(part, inputs, vecs):
                    ws.db.execute("UPDATE chunks SET embedding=?, hash=? WHERE id=?", (v.astype(np.float32).tobytes(), _text_hash(t), r["id"]))
            bar.update(len(part))
        bar.close()
        ws.set_meta("embedder", getattr(embedder, "model_id", embedder.name))
        ws.set_meta("embedding_dim", str(embedder.dim))
    out = {}
    for cid, name in ws.db.execute("SELECT id, name FROM collections").fetchall():
        out[name] = vectors.sync(ws, cid, rebuild=True)["total"]
    lexicon.sync(ws, rebuild=True)
    return out
