"""The read stage of ingestion: each file hashed, compared with what the collection holds, and
read and chunked when it changed (`Pending`), or said unchanged or failed (`FileResult`).

`read_ahead` runs it in a thread of this process, a few files ahead of the embedder; ray_ingest
runs `compare` and `read_file` on a Ray cluster instead. Both are a `Prepare`: what
`pipeline.ingest_paths` embeds and commits comes from one of them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from archivist.ingest import chunking
from archivist.ingest.folders import FileResult
from archivist.ingest.readers import ReadError, read, read_stream, reader_version
from archivist.records import Chunk
from archivist.workspace import Workspace, connect

log = logging.getLogger(__name__)

READ_AHEAD = 8  # files read ahead of the embedder


@dataclass
class Pending:
    name: str
    source: str
    digest: str
    size: int
    kind: str
    pages: int | None
    title: str | None
    text: str  # "" for a document read as a stream (`groups`): its text is its chunks
    chunks: list[Chunk]
    t0: float
    replaces: int | None  # id of the document row this one updates
    result: FileResult = field(default=None)
    ocr: dict[int, float] = field(default_factory=dict)  # page -> mean OCR confidence
    vectors: np.ndarray | None = None  # one row per chunk when computed elsewhere (ray_ingest's embed actors)
    # A big CSV (readers.read_stream): its chunks a group at a time, read and chunked as they are
    # asked for; `chunks` stays empty and the document is committed group by group (writing.stream_and_commit).
    groups: Iterator[list[Chunk]] | None = None
    read_seconds: float = 0.0  # reading and chunking it took (measured where it was read: here or on a Ray worker)
    reread: str | None = None  # FileResult.reread: set by writing._recheck, which compares it with the stored row


# Where read and chunked documents come from: (workspace, collection id, [(path, stored name)])
# -> each file's Pending or FileResult, in any order. `read_ahead` (this process) by default;
# ray_ingest.prepare_on_ray runs the same reading on a Ray cluster.
Prepare = Callable[[Workspace, int, list[tuple[Path, str]]], Iterator["Pending | FileResult"]]


def sha256_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def read_ahead(ws: Workspace, cid: int, files: list[tuple[Path, str]]) -> Iterator[Pending | FileResult]:
    """The local Prepare: each file hashed, compared and read in a thread while the caller embeds,
    at most READ_AHEAD files ahead (extracted text of files not yet embedded never piles up in memory).
    The reader thread has its own connection."""
    with closing(connect(ws.home / "archivist.db")) as reader_db, ThreadPoolExecutor(max_workers=1) as pool:
        queue = iter(files)
        futures = deque(pool.submit(_prepare, ws.settings, reader_db, cid, p, n) for p, n in islice(queue, READ_AHEAD))
        try:
            while futures:
                item = futures.popleft().result()
                for p, n in islice(queue, 1):
                    futures.append(pool.submit(_prepare, ws.settings, reader_db, cid, p, n))
                yield item
        finally:  # closed early (a cancel): files not started are not read
            for f in futures:
                f.cancel()


def _prepare(s, db, cid: int, path: Path, name: str) -> Pending | FileResult:
    """Hash, compare and read one file (runs in the reader thread). Never raises."""
    t0 = time.monotonic()
    try:
        known = compare(db, cid, path, name)
    except Exception as e:  # one broken file never stops a batch
        log.exception("unexpected error comparing %s", name)
        return FileResult(name, "failed", reason=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)
    if isinstance(known, FileResult):
        return known
    return read_file(s, path, name, *known, t0=t0, stream=True)


def unchanged(row, digest: str, name: str, t0: float) -> FileResult | None:
    """The `unchanged` FileResult when document row `row` (`existing`) already holds these bytes,
    ready and read by the current reader; else None (the file needs reading)."""
    if row is not None and row["content_hash"] == digest and row["status"] == "ready" \
            and row["reader"] >= reader_version(row["kind"]):
        return FileResult(name, "unchanged", chunks=row["n"], document_id=row["id"], seconds=time.monotonic() - t0)
    return None


def compare(db, cid: int, path: Path, name: str) -> tuple[str, int, int | None] | FileResult:
    """Hash `path` and look up `name` in collection `cid`: (digest, size, id of the document row it
    updates or None) when it needs reading, else its FileResult (unchanged, or failed: cannot open).
    Raises sqlite3.Error only."""
    t0 = time.monotonic()
    try:
        digest, size = sha256_file(path)
    except OSError as e:
        return FileResult(name, "failed", reason=f"cannot open: {e.strerror or e}", seconds=time.monotonic() - t0)
    row = existing(db, cid, name)
    if (same := unchanged(row, digest, name, t0)) is not None:
        return same
    return digest, size, row["id"] if row is not None else None


def read_file(s, path: Path, name: str, digest: str, size: int, replaces: int | None,
              t0: float | None = None, stream: bool = False) -> Pending | FileResult:
    """Read and chunk one file (its `digest` and `size` from `compare`) with settings `s`: its
    Pending, or a failed FileResult naming the reason; `t0` is when its work began (default now).
    `stream`: a big CSV comes back unread, its chunks a generator (`Pending.groups`), for this
    process only (a generator does not travel to or from a Ray worker).
    Never raises; needs no workspace, so it also runs on a Ray worker."""
    t0 = time.monotonic() if t0 is None else t0
    try:
        from archivist.models import embedder_for

        spans = chunking.hf_token_spans(embedder_for(s).tokenizer)
        groups = read_stream(path, max_mb=s.max_file_mb) if stream else None
        if groups is not None:  # a big CSV: read, chunked and committed a group of rows at a time
            return Pending(name, str(path.resolve()), digest, size, "csv", None, None, "", [], t0, replaces,
                            groups=chunking.chunk_groups(groups, spans, s.chunk_tokens, s.chunk_overlap))
        extracted = read(path, max_mb=s.max_file_mb, max_unzipped_mb=s.max_unzipped_mb, timeout=s.reader_timeout,
                         ocr=s.ocr, page_timeout=s.ocr_page_timeout, max_pages=s.max_pages)
        text, chunks = chunking.chunk_blocks(extracted.blocks, spans, s.chunk_tokens, s.chunk_overlap)
        if not chunks:
            raise ReadError("no text found")
        return Pending(name, str(path.resolve()), digest, size, extracted.kind, extracted.pages, extracted.title,
                        text, chunks, t0, replaces, ocr=extracted.ocr, read_seconds=time.monotonic() - t0)
    except ReadError as e:
        return FileResult(name, "failed", reason=str(e), seconds=time.monotonic() - t0)
    except Exception as e:  # one broken file never stops a batch
        log.exception("unexpected error reading %s", name)
        return FileResult(name, "failed", reason=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)


def existing(db, cid: int, name: str):
    return db.execute(
        "SELECT d.id, d.content_hash, d.status, d.kind, d.reader, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS n "
        "FROM documents d WHERE d.collection_id = ? AND d.path = ?", (cid, name)).fetchone()
