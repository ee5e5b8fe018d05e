"""Uploads and background ingestion for the browser app, on top of `archivist.ingest.pipeline`.

An upload is saved under the workspace's `uploads/<content hash>/<clean name>`
(`archivist.ingest.uploads.save_upload`) and ingested by
`ingest_paths` in a thread of the server process, so the page stays usable. Jobs live in this
module (one registry per server process), so they keep running and stay visible when the user
navigates away or reloads the page; the `ingest_jobs` table keeps their summaries for good, and the
files of each job, so a job that a crash or a restart cut short resumes when the server starts again
(`resume_interrupted`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archivist import access
from archivist.ingest.pipeline import FileResult, find_document, ingest_paths
from archivist.settings import Settings
from archivist.workspace import Workspace, open_workspace, transaction

KEEP_FINISHED = 20  # finished jobs kept in memory per server, newest first


@dataclass
class FileStatus:
    name: str
    status: str = "waiting"  # waiting | added | updated | unchanged | failed
    chunks: int = 0
    seconds: float = 0.0
    reason: str | None = None


@dataclass
class IngestJob:
    id: str
    user: str
    collection: str
    files: list[FileStatus]
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None  # the whole batch failed (no access, embedder mismatch …)
    resumed_from: int | None = None  # the ingest_jobs row of the job a crash or restart cut short

    @property
    def done(self) -> int:
        return sum(f.status != "waiting" for f in self.files)

    @property
    def total(self) -> int:
        return len(self.files)

    @property
    def running(self) -> bool:
        return self.finished_at is None

    @property
    def failed(self) -> int:
        return sum(f.status == "failed" for f in self.files)


_jobs: dict[str, IngestJob] = {}
_lock = threading.Lock()


def save_uploads(ws: Workspace, user: str, collection: str,
                 files: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Write uploaded files (name, bytes) with `archivist.ingest.uploads.save_upload`.

    Returns ([(path, stored name)], [(name, reason)] of the files refused). The upload hardening
    cleans names, decides the type from the bytes, enforces size and zip-bomb limits and stores
    each file under uploads/<content hash>/, so no upload overwrites another; one refused file
    does not stop the others. Checks write access first, so nothing is saved for a user who may
    not add to the collection (AccessDenied).
    """
    from archivist.ingest.uploads import save_upload

    access.require(ws, user, collection, "write")
    saved, refused = [], []
    for name, data in files:
        try:
            saved.append(save_upload(ws, name, data, ws.settings.max_file_mb))
        except ValueError as e:  # UploadError: empty, too large, unsupported type, zip bomb
            refused.append((name, str(e)))
    return saved, refused


def start_ingest(settings: Settings, user: str, collection: str, paths: Sequence[Path], names: Sequence[str],
                 refused: Sequence[tuple[str, str]] = (), resumed_from: int | None = None) -> IngestJob:
    """Ingest `paths` (stored as `names`) into `collection` in a background thread; returns the job at once.

    `refused` (name, reason) are files that never got this far (refused at upload); the job lists
    them as failed with their reason, so the page shows the whole batch in one place.
    """
    files = [FileStatus(n) for n in names] + [FileStatus(n, "failed", reason=r) for n, r in refused]
    job = IngestJob(id=uuid.uuid4().hex[:12], user=user, collection=collection, files=files, resumed_from=resumed_from)
    with _lock:
        _jobs[job.id] = job
    if paths:
        threading.Thread(target=_run, args=(settings, job, list(paths), list(names)), name=f"ingest-{job.id}", daemon=True).start()
    else:
        job.finished_at = time.time()
    return job


def _run(settings: Settings, job: IngestJob, paths: list[Path], names: list[str]) -> None:
    by_name = {f.name: f for f in job.files}

    def on_file(res: FileResult, done: int, total: int) -> None:
        f = by_name.get(res.name)
        if f is not None:
            f.status, f.chunks, f.seconds, f.reason = res.status, res.chunks, res.seconds, res.reason

    try:
        from archivist.ui import models

        embedder = models.embedder(settings)  # through the server's model lock (ui/models.py)
        with open_workspace(settings) as ws:
            ingest_paths(ws, paths, collection=job.collection, user=job.user, names=names, progress=False,
                         on_file=on_file, embedder=embedder)
    except Exception as e:  # the batch as a whole failed: every file still waiting gets the reason
        job.error = str(e) or type(e).__name__
        for f in job.files:
            if f.status == "waiting":
                f.status, f.reason = "failed", job.error
    finally:
        job.finished_at = time.time()
        _forget_old()


def resume_interrupted(settings: Settings) -> list[IngestJob]:
    """Start again, as background jobs, the ingest jobs a crash or restart cut short (the server calls
    this once when it starts). Each shows on its user's Documents page; what the cut-short job had
    committed comes back unchanged."""
    from archivist.ingest.pipeline import claim_interrupted

    with open_workspace(settings) as ws:
        return [start_ingest(settings, job["user"], job["collection"], job["paths"], job["names"], resumed_from=job["id"])
                for job in claim_interrupted(ws)]


def _forget_old() -> None:
    with _lock:
        finished = sorted((j for j in _jobs.values() if not j.running), key=lambda j: j.finished_at or 0, reverse=True)
        for j in finished[KEEP_FINISHED:]:
            _jobs.pop(j.id, None)


def jobs_for(user: str) -> list[IngestJob]:
    """This user's ingestion jobs in this server, newest first."""
    with _lock:
        return sorted((j for j in _jobs.values() if j.user == user), key=lambda j: j.started_at, reverse=True)


def dismiss(user: str, job_id: str) -> None:
    """Forget a finished job of `user` (its summary stays in the ingest_jobs table)."""
    with _lock:
        job = _jobs.get(job_id)
        if job is not None and job.user == user and not job.running:
            del _jobs[job_id]


def wait(job: IngestJob, timeout: float = 60.0) -> IngestJob:
    """Block until `job` finishes or `timeout` passes (tests and scripts); returns it."""
    deadline = time.monotonic() + timeout
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)
    return job


def reingest(settings: Settings, ws: Workspace, user: str, refs: Sequence[str | int]) -> list[IngestJob]:
    """Read, chunk and embed documents again from the files they were ingested from.

    Each document is marked 'queued' (so the pipeline does not skip it as unchanged) and stays
    searchable until its new chunks replace the old ones. One background job per collection.
    Raises AccessDenied without write access, FileNotFoundError when a source file is gone,
    LookupError for an unknown document.
    """
    groups: dict[str, list[dict]] = {}
    for ref in refs:
        doc = find_document(ws, ref, user)
        access.require(ws, user, doc["collection"], "write")
        source = ws.db.execute("SELECT source FROM documents WHERE id = ?", (doc["id"],)).fetchone()[0]
        if not source or not Path(source).is_file():
            raise FileNotFoundError(f"{doc['name']}: the file it was ingested from ({source or 'unknown'}) is gone; upload it again")
        groups.setdefault(doc["collection"], []).append({**doc, "source": source})
    jobs = []
    for collection, docs in groups.items():
        with transaction(ws.db):
            ws.db.executemany("UPDATE documents SET status = 'queued' WHERE id = ?", [(d["id"],) for d in docs])
        jobs.append(start_ingest(settings, user, collection, [Path(d["source"]) for d in docs], [d["name"] for d in docs]))
    return jobs


def document_chunks(ws: Workspace, ref: str | int, user: str) -> tuple[dict, list[dict]]:
    """A readable document and its chunks in order: (document, [{seq, page, heading, text, n_tokens, start, end}]).

    Raises LookupError when the document does not exist or `user` may not read it.
    """
    doc = find_document(ws, ref, user)
    rows = ws.db.execute("SELECT id, seq, page, heading, text, n_tokens, start, end FROM chunks WHERE document_id = ? "
                         "ORDER BY seq", (doc["id"],)).fetchall()
    return doc, [dict(r) for r in rows]
