"""Uploads ingested in the background: `POST /v1/documents` with `wait=false` answers 202 with a job at
once, `GET /v1/ingest_jobs/{id}` tells how it went and `GET /v1/ingest_jobs` lists them.

A job is one saved upload ingested by `ingest_paths` in its own thread, on its own SQLite connection
(as a request would be). Jobs live in the server process: the newest KEEP_FINISHED finished ones
stay to be polled. A job the server's death cuts short is recorded in the `ingest_jobs` table as
every ingestion is, and `archivist serve` finishes it when it starts again.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

KEEP_FINISHED = 100


@dataclass
class UploadJob:
    id: str
    user: str
    collection: str
    name: str
    created: float = field(default_factory=time.time)
    status: str = "running"  # running | added | updated | unchanged | failed
    document_id: int | None = None
    chunks: int = 0
    reason: str | None = None
    finished: float | None = None

    def out(self) -> dict:
        d = asdict(self)
        del d["user"]
        d.update(object="ingest_job", created=int(self.created),
                 finished=None if self.finished is None else int(self.finished),
                 seconds=None if self.finished is None else round(self.finished - self.created, 3))
        return d


class UploadJobs:
    """The background ingestions of one server."""

    def __init__(self) -> None:
        self._jobs: dict[str, UploadJob] = {}
        self._lock = threading.Lock()

    def start(self, open_ws, user: str, collection: str, path: Path, name: str) -> UploadJob:
        """Ingest `path` (stored as `name`) into `collection` for `user` in a new thread; returns the job
        at once. `open_ws()` gives a Workspace on a fresh connection, closed by the thread."""
        job = UploadJob(id="ij-" + uuid.uuid4().hex[:16], user=user, collection=collection, name=name)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(open_ws, job, path), name=f"upload-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str, user: str, admin: bool) -> UploadJob | None:
        """The job, if it exists and `user` started it (an admin sees every job)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and (admin or job.user == user) else None

    def visible(self, user: str, admin: bool) -> list[UploadJob]:
        """The jobs `user` started (an admin: every job) that the server still holds, newest first."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if admin or j.user == user]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def _run(self, open_ws, job: UploadJob, path: Path) -> None:
        from archivist.ingest.pipeline import ingest_paths

        try:
            ws = open_ws()
            try:
                [res] = ingest_paths(ws, [path], collection=job.collection, user=job.user, names=[job.name], progress=False)
            finally:
                ws.close()
            job.document_id, job.chunks, job.reason = res.document_id, res.chunks, res.reason
            job.status = res.status
        except Exception as e:  # a failure of the whole ingestion (access revoked meanwhile, embedder mismatch …)
            job.status, job.reason = "failed", str(e) or type(e).__name__
        finally:
            job.finished = time.time()
            self._forget_old()

    def _forget_old(self) -> None:
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished is not None), key=lambda j: j.finished, reverse=True)
            for j in done[KEEP_FINISHED:]:
                del self._jobs[j.id]
