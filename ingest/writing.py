"""The write stage of ingestion: embed the chunks of the documents read (`ingest/reading.py`) and
commit them to SQLite, a few documents per transaction (`embed_and_commit`), or a big streamed file
group by group (`stream_and_commit`). `ingest/pipeline.py` runs the job around them and syncs the
indexes.

A chunk's vector depends on the embedder identity and the text embedded (`embed_text`: its heading
path, then its text); `vector_key` hashes both into the chunk's `hash`, so a stored vector with the
same key (in a collection the job's owner may read) is reused, never embedded again. Each document's
row is compared again inside the commit's transaction (`_recheck`), so two ingests of one folder, or
a delete beside an ingest, never leave two rows for one name nor update a row deleted meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from itertools import islice

import numpy as np

from archivist import audit
from archivist.ingest.folders import FileResult
from archivist.ingest.readers import ReadError, reader_version
from archivist.ingest.reading import Pending, existing, unchanged
from archivist.ingest.shingles import shingles
from archivist.records import Chunk
from archivist.workspace import Workspace, transaction

EMBED_CHUNKS = 256  # the most chunks embedded in one call, across documents (pipeline.BATCH_CHUNKS commits as many)


def embed_text(chunk_text: str, heading: tuple[str, ...] | str) -> str:
    """What is embedded for a chunk: its heading path as context, then its text."""
    head = heading if isinstance(heading, str) else " > ".join(heading)
    return f"{head}\n{chunk_text}" if head else chunk_text


def vector_key(identity: str, text: str) -> str:
    """A chunk's `hash`: what its vector depends on, the embedder identity and the embedded text.
    A stored vector is reused for another chunk only when the keys are equal."""
    return hashlib.sha256(f"{identity}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()


def embed_and_commit(ws: Workspace, cid: int, batch: list[Pending], embedder, fresh: dict,
                     reuse_from: list[int] | None = None, user: str | None = None) -> list[FileResult]:
    """Embed the chunks of several documents at once, reusing stored vectors (of chunks in the
    collections `reuse_from`, default any, that `embedder`'s identity made), then commit them."""
    from archivist.models import embedder_identity

    started = time.monotonic()
    hashes, blobs, new = _embed(ws, batch, embedder, embedder_identity(embedder), reuse_from)
    embed_seconds, results, k = time.monotonic() - started, [], 0
    total = sum(len(p.chunks) for p in batch) or 1
    with transaction(ws.db):
        for p in batch:
            n = len(p.chunks)
            p_hashes = hashes[k:k + n]
            embedded = sum(1 for h in set(p_hashes) if h in new)
            k += n
            current = _recheck(ws, cid, p)
            if isinstance(current, FileResult):  # another process committed the same file meanwhile
                results.append(current)
                continue
            doc_id, status = _write_document(ws, cid, current)
            _insert_chunks(ws, doc_id, p.chunks, p_hashes, blobs, fresh)
            audit.document_written(ws, status, user, p.name, doc_id, cid, p.digest, n)
            # its own time: reading it, and its share of the batch's embedding (by chunks), not the whole batch's
            results.append(FileResult(p.name, status, chunks=n, document_id=doc_id, embedded=embedded,
                                      seconds=p.read_seconds + embed_seconds * n / total, reread=current.reread))
    return results


def stream_and_commit(ws: Workspace, cid: int, p: Pending, embedder, fresh: dict, reuse_from: list[int] | None,
                      user: str | None, between: Callable[[], bool]) -> FileResult | None:
    """Commit a document read as a stream of chunk groups (`p.groups`, a big CSV), holding one group
    at a time: its row first, marked 'ingesting', then each group embedded and committed in a
    transaction of its own, then, in one transaction, the chunks of the version it replaces (and of an
    earlier cut-short run) deleted and the row marked 'ready'. Until then search finds the old
    version's rows and the new ones committed so far; their vectors are reused, not embedded again.
    `between()` runs after each group; when it returns True (the job was cancelled) this stops and
    returns None.

    A kill, a cancel or a file that changed under the reader leaves the document 'ingesting' with
    part of its chunks: not 'ready', so the next run (or `archivist jobs resume`) reads it again.
    Its text is not stored whole (documents.text is ""): it is its chunks, joined by BLOCK_SEP.
    """
    from archivist.models import embedder_identity

    identity = embedder_identity(embedder)
    with transaction(ws.db):
        current = _recheck(ws, cid, p)
        if isinstance(current, FileResult):  # another process committed the same file meanwhile
            return current
        p = current
        doc_id, status = _write_document(ws, cid, p, state="ingesting", keep_chunks=True)
        older = ws.db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0]  # ids only grow (AUTOINCREMENT)
    n = embedded = 0

    def deleted() -> FileResult | None:  # a delete or erase from another process while it streamed in
        if ws.db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone():
            return None
        return FileResult(p.name, "failed", reason="deleted by another process while it was being ingested; "
                          "ingest it again to add it", seconds=time.monotonic() - p.t0)

    try:
        for chunks in p.groups:
            hashes, blobs, new = _embed(ws, [replace(p, chunks=chunks, groups=None)], embedder, identity, reuse_from)
            with transaction(ws.db):
                if gone := deleted():
                    return gone
                _insert_chunks(ws, doc_id, chunks, hashes, blobs, fresh)
            n += len(chunks)
            embedded += sum(1 for h in set(hashes) if h in new)
            if between():
                return None
    except ReadError as e:  # checked before the first group; the file changed while it was read
        return FileResult(p.name, "failed", chunks=n, document_id=doc_id, reason=str(e), seconds=time.monotonic() - p.t0)
    with transaction(ws.db):
        if gone := deleted():
            return gone
        ws.db.execute("DELETE FROM chunks WHERE document_id = ? AND id <= ?", (doc_id, older))
        ws.db.execute("UPDATE documents SET status = 'ready' WHERE id = ?", (doc_id,))
        audit.document_written(ws, status, user, p.name, doc_id, cid, p.digest, n)
    return FileResult(p.name, status, chunks=n, document_id=doc_id, embedded=embedded, seconds=time.monotonic() - p.t0,
                      reread=p.reread)


def _recheck(ws: Workspace, cid: int, p: Pending) -> Pending | FileResult:
    """`p` compared again with the row its name has now, inside the commit's transaction (the write
    lock): since `compare` looked, another process may have committed the same name (two ingests of
    one folder at once) or deleted the row `p` replaces (a delete or erase beside an ingest). Returns
    the `unchanged` FileResult when that row already holds these bytes, else `p` updating that row
    (with `reread` naming the reader versions when its bytes are the same: read again for a newer
    reader), or adding a new one when there is none."""
    row = existing(ws.db, cid, p.name)
    if row is None:
        return p if p.replaces is None else replace(p, replaces=None)
    if (same := unchanged(row, p.digest, p.name, p.t0)) is not None:
        return same
    if twin := _accent_twin(ws, row["id"], p.source):
        return FileResult(p.name, "failed", seconds=time.monotonic() - p.t0, reason=(
            f"{ascii(p.source)} would replace the stored document {p.name}, read from {ascii(twin)}, which is "
            "still there: their names differ only in how accented letters are encoded (composed and decomposed: "
            "NFC and NFD); the stored document is kept and this file not ingested (rename one of them)"))
    if row["content_hash"] == p.digest and row["status"] == "ready":  # same bytes: read again only for its newer reader
        return replace(p, replaces=row["id"], reread=f"{row['kind']} reader {row['reader']} -> {reader_version(p.kind)}")
    return p if p.replaces == row["id"] else replace(p, replaces=row["id"])


def _accent_twin(ws: Workspace, doc_id: int, source: str) -> str | None:
    """The file document `doc_id` was read from, when it is another file than `source` whose path
    differs from it only in Unicode form and still exists: a file named like a stored one but written
    decomposed (or composed) was added beside it, which names are stored alike (`folders.clean_name`).
    It must not replace the stored document; `folders.one_per_name` keeps the stored file when a walk
    finds both (`read_from`), and this catches a twin that gets here anyway (the other stored by
    another ingest since that walk). None when the file was renamed or re-encoded (the old one is
    gone: this is its new version) or is the same file (a file system that normalizes names)."""
    stored = ws.db.execute("SELECT source FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
    if not stored or stored == source or unicodedata.normalize("NFC", stored) != unicodedata.normalize("NFC", source):
        return None
    try:
        return None if os.path.samefile(stored, source) else stored
    except OSError:  # the stored one is gone
        return None


def _write_document(ws: Workspace, cid: int, p: Pending, state: str = "ready", keep_chunks: bool = False) -> tuple[int, str]:
    """Insert `p`'s document row, or update the row it replaces (deleting that one's chunks unless
    `keep_chunks`), with status `state`; returns (document id, "added" | "updated"). Call inside a
    transaction."""
    if p.replaces is not None:
        if not keep_chunks:
            ws.db.execute("DELETE FROM chunks WHERE document_id = ?", (p.replaces,))
        ws.db.execute(
            "UPDATE documents SET source=?, content_hash=?, kind=?, size=?, pages=?, title=?, text=?, ocr=?, status=?, "
            "reader=?, updated_at=((julianday('now') - 2440587.5) * 86400.0) WHERE id=?",
            (p.source, p.digest, p.kind, p.size, p.pages, p.title, p.text, _ocr_json(p.ocr), state,
             reader_version(p.kind), p.replaces))
        return p.replaces, "updated"
    doc_id = ws.db.execute(
        "INSERT INTO documents(collection_id, path, source, content_hash, kind, size, pages, title, text, ocr, status, reader) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (cid, p.name, p.source, p.digest, p.kind, p.size, p.pages, p.title, p.text, _ocr_json(p.ocr), state,
         reader_version(p.kind))).lastrowid
    return doc_id, "added"


def _insert_chunks(ws: Workspace, doc_id: int, chunks: list[Chunk], hashes: list[str], blobs: dict[str, bytes],
                   fresh: dict) -> None:
    """Insert a document's chunks with their vector keys and vectors; `fresh` gets each new chunk id's
    vector for the next FAISS sync. Call inside a transaction."""
    for c, h in zip(chunks, hashes):
        chunk_id = ws.db.execute(
            "INSERT INTO chunks(document_id, seq, text, heading, page, start, end, n_tokens, hash, embedding, shingles, boxes) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (doc_id, c.seq, c.text, " > ".join(c.heading), c.page, c.start, c.end, c.n_tokens, h, blobs[h],
             shingles(c.text), json.dumps(c.boxes) if c.boxes else None)).lastrowid
        fresh[chunk_id] = np.frombuffer(blobs[h], dtype=np.float32)


def _embed(ws: Workspace, batch: list[Pending], embedder, identity: str,
           reuse_from: list[int] | None) -> tuple[list[str], dict[str, bytes], set[str]]:
    """(keys, vectors, new): each chunk's vector key in order, key -> vector bytes, and the keys
    embedded now (the rest reused a stored vector). Works EMBED_CHUNKS chunks at a time, so a
    document of many thousand chunks never has all its embedder inputs in memory at once."""
    keys: list[str] = []
    blobs: dict[str, bytes] = {}
    new: set[str] = set()
    # each chunk with the vector computed for it elsewhere (p.vectors), if any
    chunks = ((c, None if p.vectors is None else p.vectors[i]) for p in batch for i, c in enumerate(p.chunks))
    while part := list(islice(chunks, EMBED_CHUNKS)):
        inputs = [embed_text(c.text, c.heading) for c, _ in part]
        part_keys = [vector_key(identity, t) for t in inputs]
        keys += part_keys
        blobs.update(_known_vectors(ws, [k for k in dict.fromkeys(part_keys) if k not in blobs], reuse_from))
        todo: dict[str, str] = {}
        for key, text, (_, given) in zip(part_keys, inputs, part):
            if key in blobs:
                continue
            if given is not None:
                blobs[key] = np.asarray(given, dtype=np.float32).tobytes()
                new.add(key)
            else:
                todo.setdefault(key, text)
        if todo:
            vecs = embedder.embed(list(todo.values()), batch_size=ws.settings.embed_batch)
            for key, v in zip(todo, vecs):
                blobs[key] = np.asarray(v, dtype=np.float32).tobytes()
            new.update(todo)
    return keys, blobs, new


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


def _ocr_json(confidence: dict[int, float]) -> str | None:
    return json.dumps({str(page): conf for page, conf in sorted(confidence.items())}) if confidence else None
