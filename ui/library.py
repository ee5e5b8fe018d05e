"""Uploads and background ingestion for the browser app, on top of `archivist.ingest.pipeline`.

An upload is saved under the workspace's `uploads/<content hash>/<clean name>`
(`archivist.ingest.uploads.save_upload`) and ingested by `pipeline.run_job` in a thread of the
server process, so the page stays usable. Each ingestion is a job in the `jobs` table
(archivist/jobs.py), so it stays visible when the user navigates away, reloads the page or the
server restarts, and the same job shows in `archivist jobs` and `GET /v1/jobs`. A job that a crash
or a restart cut short resumes when the server starts again (`resume_interrupted`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archivist import access, job_files, jobs
from archivist.ingest import pipeline
from archivist.ingest.pipeline import create_job, find_document, run_job
from archivist.settings import Settings
from archivist.workspace import Workspace, open_workspace

SHOWN = 20  # newest jobs a user's Documents page lists
OPEN = 100  # a job of up to this many files lists them on the page; a larger one when opened (`job`)


@dataclass
class FileStatus:
    name: str
    status: str = "waiting"  # waiting | added | updated | unchanged | failed | cancelled
    chunks: int = 0
    seconds: float = 0.0
    reason: str | None = None
    reread: str | None = None  # FileResult.reread: an updated file read again only for its newer reader


@dataclass
class IngestJob:
    """What the Documents page shows of one ingestion job: a snapshot of its row, per file."""

    id: str
    user: str
    collection: str
    files: list[FileStatus]
    state: str  # see jobs.STATES
    started_at: float
    finished_at: float | None = None
    error: str | None = None  # the whole batch failed (no access, embedder mismatch …)
    resumed: int = 0  # times a restart (or its owner) resumed it
    counts: dict[str, int] = field(default_factory=dict)  # {status: files}, whether `files` was read or not
    settings: Settings | None = field(default=None, repr=False, compare=False)

    @property
    def listed(self) -> bool:
        """Whether `files` holds the job's files: a job of more than OPEN files lists them when opened (`job`)."""
        return bool(self.files) or not self.total

    @property
    def done(self) -> int:
        return self.total - self.counts.get("waiting", 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def running(self) -> bool:
        return self.state in jobs.LIVE

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


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
                 refused: Sequence[tuple[str, str]] = (), kind: str = "upload") -> IngestJob:
    """Ingest `paths` (stored as `names`) into `collection` as a background job of `user`; returns
    the job at once.

    `refused` (name, reason) are files that never got this far (refused at upload); the job lists
    them as failed with their reason, so the page shows the whole batch in one place.
    """
    with open_workspace(settings) as ws:
        job = create_job(ws, kind, user, collection, zip(paths, names), refused)
        if not paths:
            jobs.start(ws, job.id)
            jobs.finish(ws, job.id, result={"counts": {}, "files": []},  # its spec lists the refused files
                        message=f"{len(refused)} files refused")
        view = _view(settings, jobs.get(ws, job.id, user))
    if paths:
        _thread(settings, job.id)
    return view


def _thread(settings: Settings, job_id: str) -> None:
    threading.Thread(target=_run, args=(settings, job_id), name=f"ingest-{job_id}", daemon=True).start()


def _run(settings: Settings, job_id: str) -> None:
    """A background thread: run the queued job to its end (the pipeline records how it went)."""
    try:
        from archivist.ui import models

        embedder = models.embedder(settings)  # through the server's model lock (ui/models.py)
        with open_workspace(settings) as ws:
            run_job(ws, job_id, embedder=embedder)
    except jobs.JobError:
        pass  # cancelled before it started, or another process took it
    except Exception as e:  # the embedder did not load, the disk is full …: the job says so
        with open_workspace(settings) as ws:
            jobs.fail(ws, job_id, str(e) or type(e).__name__)


def resume_interrupted(settings: Settings) -> list[IngestJob]:
    """Start again, as background jobs, the ingest jobs a crash or restart cut short (the server calls
    this once when it starts). Each keeps its id and owner and shows on its owner's Documents page;
    what the cut-short job had committed comes back unchanged."""
    from archivist.ingest.pipeline import INGEST_KINDS

    with open_workspace(settings) as ws:
        claimed = [_view(settings, job) for job in jobs.claim_interrupted(ws, INGEST_KINDS)]
    for job in claimed:
        _thread(settings, job.id)
    return claimed


def jobs_for(ws: Workspace, user: str) -> list[IngestJob]:
    """`user`'s own ingestion jobs (not dismissed), newest first: what their Documents page lists. Read without
    their file lists, then those of up to OPEN files whole: the page read every job's (20 jobs of a
    3,000-file folder: 60,000 rows built each second while one runs)."""
    from archivist.ingest.pipeline import INGEST_KINDS

    mine = [j for j in jobs.list_jobs(ws, user, INGEST_KINDS, include_dismissed=False, limit=SHOWN * 5, files=False)
            if j.owner == user][:SHOWN]
    return [_view(ws.settings, jobs.get(ws, j.id, user)) if sum(job_files.counts(j).values()) <= OPEN
            else _view(ws.settings, j, listed=False) for j in mine]


def job(ws: Workspace, user: str, job_id: str) -> IngestJob:
    """One ingestion job of `user` with all its files (a job the page lists without them, opened).
    Raises LookupError for another user's job or one that does not exist."""
    return _view(ws.settings, jobs.get(ws, job_id, user))


def cancel(ws: Workspace, user: str, job_id: str) -> IngestJob:
    """Stop `user`'s ingestion after the file at hand (the files it did not reach show `cancelled`)."""
    return _view(ws.settings, jobs.cancel(ws, job_id, user, wait=0))


def dismiss(ws: Workspace, user: str, job_id: str) -> None:
    """Hide a finished job of `user` from the Documents page (it stays in `archivist jobs`)."""
    jobs.dismiss(ws, job_id, user)


def wait(job: IngestJob, timeout: float = 60.0) -> IngestJob:
    """Block until `job` finishes or `timeout` passes (tests and scripts); returns it as it is then."""
    deadline = time.monotonic() + timeout
    with open_workspace(job.settings) as ws:
        while True:
            job = _view(job.settings, jobs.get(ws, job.id, job.user))
            if not job.running or time.monotonic() >= deadline:
                return job
            time.sleep(0.05)


def _view(settings: Settings, job: jobs.Job, listed: bool = True) -> IngestJob:
    """The page's view of an ingestion job: its counts by status, and with `listed` (a job read with its
    files) every file of the batch with its status so far (`job_files.statuses`)."""
    files = [FileStatus(**f) for f in job_files.statuses(job)] if listed else []
    return IngestJob(id=job.id, user=job.owner, collection=job.spec.get("collection", ""), files=files, state=job.state,
                     started_at=job.created_at, finished_at=job.finished_at, error=job.error, resumed=job.resumed,
                     counts=job_files.counts(job), settings=settings)


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
        source = pipeline.document_source(ws, doc["id"], user)
        if source is None:
            raise FileNotFoundError(f"{doc['name']}: the file it was ingested from is gone; upload it again")
        groups.setdefault(doc["collection"], []).append({**doc, "source": source})
    started = []
    for collection, docs in groups.items():
        pipeline.mark_queued(ws, [d["id"] for d in docs])
        started.append(start_ingest(settings, user, collection, [Path(d["source"]) for d in docs], [d["name"] for d in docs],
                                    kind="ingest"))
    return started
