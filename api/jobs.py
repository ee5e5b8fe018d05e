"""Background jobs over HTTP: the caller's ingestions, uploads and fine-tuning runs (archivist/jobs.py).

    GET  /v1/jobs                  the caller's jobs, newest first (an admin: everyone's); ?kind=ingest|upload|train|erase|reembed|retriever
    GET  /v1/jobs/{id}             one of them
    GET  /v1/jobs/{id}/files       an ingestion's files, each with its status, a page at a time (lists leave them out)
    POST /v1/jobs/{id}/cancel      ask it to stop (an ingestion stops after the file at hand, a run checkpoints)
    GET  /v1/ingest_jobs[/{id}]    the uploads of `POST /v1/documents` with wait=false, in their first shape

An upload with `wait=false` becomes a job of kind `upload` (`start_upload`), ingested in a thread of
the server on its own SQLite connection. Jobs live in the workspace, not in the server: they stay
listed after a restart, and `archivist serve` resumes the ones its last run left unfinished.
Another user's job answers 404 like a job that does not exist.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from archivist import job_files, jobs
from archivist.api import schemas as S
from archivist.api.deps import user, workspace
from archivist.api.errors import APIError, responses, without_paths
from archivist.workspace import Workspace


log = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])


class JobOut(BaseModel):
    object: Literal["job"] = "job"
    id: str
    kind: str = Field(description="ingest | upload | train | erase | reembed | retriever")
    owner: str
    state: str = Field(description="queued | running | done | failed | cancelled | interrupted (its process ended "
                                   "without finishing: resume it with `archivist jobs resume ID`)")
    done: int
    total: int | None = None
    message: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = Field(None, description="an ingestion's counts (and, from `GET /v1/jobs/{id}`, "
                                                             "its per-file results); the adapter of a run")
    cancel_requested: bool = False
    resumed: int = 0
    created: int
    started: int | None = None
    finished: int | None = None


class JobList(S.Page):
    data: list[JobOut]


class JobFile(BaseModel):
    object: Literal["job_file"] = "job_file"
    id: int = Field(description="its place in the job, from 1: `?after=` for the next page")
    name: str = Field(description="the name it is stored under")
    status: str = Field(description="waiting | added | updated | unchanged | failed | cancelled | done (one of the first "
                                    "three: past 2,000 files a job keeps only its failed files' results and its counts)")
    chunks: int = 0
    seconds: float = 0.0
    reason: str | None = None
    reread: str | None = Field(None, description="set, beside status updated, when the file had not changed and was "
                                                  "read again only because its reader is newer (\"html reader 6 -> 7\")")


class JobFileList(S.Page):
    data: list[JobFile]


def job_out(job: jobs.Job, settings=None) -> dict:
    """A job as the API shows it: its spec, which holds server paths, stays on the server, and so do
    the paths in its error, message and result (written `<workspace>/…`, `<server path>`: errors.without_paths;
    `archivist jobs show ID` shows them whole)."""
    return {"object": "job", "id": job.id, "kind": job.kind, "owner": job.owner, "state": job.state, "done": job.done,
            "total": job.total, "message": without_paths(job.message, settings), "error": without_paths(job.error, settings),
            "result": _without_paths(job.result, settings),
            "cancel_requested": job.cancel_requested, "resumed": job.resumed, "created": int(job.created_at),
            "started": _int(job.started_at), "finished": _int(job.finished_at)}


def _without_paths(value, settings):
    """`value` (a job's result: dicts, lists, text) with every string as errors.without_paths writes it."""
    if isinstance(value, str):
        return without_paths(value, settings)
    if isinstance(value, dict):
        return {k: _without_paths(v, settings) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v, settings) for v in value]
    return value


def ingest_job_out(job: jobs.Job, settings=None, head: tuple[list[str], dict | None] | None = None) -> dict:
    """An upload job in the shape of `GET /v1/ingest_jobs` (one document: its status, id, chunks, reason);
    from `head` (its names and first result: `job_files.heads`) for a job listed without its files."""
    names, first = head or ([n for _, n in job.spec.get("files", [])], next(iter((job.result or {}).get("files", [])), None))
    first = first or {}
    if job.state in jobs.LIVE:
        status = "running"
    elif job.state == "done" and first:
        status = first["status"] if len(names) == 1 else "done"
    else:
        status = "failed"
    return {"object": "ingest_job", "id": job.id, "name": ", ".join(names), "collection": job.spec.get("collection"),
            "status": status, "document_id": first.get("document_id"), "chunks": first.get("chunks", 0), "reread": first.get("reread"),
            "reason": without_paths(first.get("reason") or job.error, settings), "created": int(job.created_at), "finished": _int(job.finished_at),
            "seconds": None if job.finished_at is None else round(job.finished_at - job.created_at, 3)}


def start_upload(open_ws, user: str, collection: str, path: Path, name: str) -> jobs.Job:
    """Record the upload `path` (stored as `name`) as a queued job of `user` and ingest it in a new
    thread; returns the job at once. `open_ws()` gives a Workspace on a fresh connection."""
    from archivist.ingest.pipeline import create_job

    ws = open_ws()
    try:
        job = create_job(ws, "upload", user, collection, [(path, name)])
    finally:
        ws.close()
    threading.Thread(target=_run, args=(open_ws, job.id), name=f"upload-{job.id}", daemon=True).start()
    return job


def _run(open_ws, job_id: str) -> None:
    """Run the job (an upload it could not read is not kept: `pipeline.run_job`)."""
    from archivist.ingest.pipeline import run_job

    ws = open_ws()
    try:
        try:
            run_job(ws, job_id)
        except jobs.JobError:
            return  # cancelled before it started
        except Exception as e:  # the embedder did not load, the disk is full …: the job says so, the log has it whole
            log.error("background upload %s failed", job_id, exc_info=e)
            jobs.fail(ws, job_id, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            return
    finally:
        ws.close()


def _page(ws: Workspace, who: str, kinds, limit: int, after: str | None, out) -> dict:
    """A page of the jobs `who` may see, as `out(jobs)` shows them; ingestions without their file lists
    (a page of 20 ingests of a 3,000-file folder read and sent 60,000 file results)."""
    try:
        found = jobs.list_jobs(ws, who, kinds, limit=limit + 1, after=after, files=False)
    except LookupError:
        raise APIError(400, f"after: no job {after!r} among yours to list after (pass the `last_id` of a page)",
                       "invalid_cursor", "after") from None
    return S.page(out(found), limit)


LIMIT = Query(S.PAGE_LIMIT, ge=1, le=S.PAGE_MAX, description="jobs per page")
AFTER = Query(None, description="a job id, the `last_id` of the previous page: list the jobs after it")


@router.get("/v1/jobs", response_model=JobList, responses=responses())
def list_route(kind: Literal[jobs.KINDS] | None = Query(None), limit: int = LIMIT, after: str | None = AFTER,
               ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """The caller's background jobs (an admin sees everyone's), newest first, a page at a time."""
    return _page(ws, who, (kind,) if kind else None, limit, after, lambda found: [job_out(j, ws.settings) for j in found])


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=responses(404))
def get_route(job_id: str, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """One job of the caller (an admin: anyone's)."""
    return job_out(_get(ws, job_id, who), ws.settings)


@router.get("/v1/jobs/{job_id}/files", response_model=JobFileList, responses=responses(404))
def files_route(job_id: str, limit: int = Query(S.PAGE_LIMIT, ge=1, le=S.PAGE_MAX, description="files per page"),
                after: int = Query(0, ge=0, description="the `last_id` of the previous page: list the files after it"),
                ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """An ingestion's (or upload's) files in its order, then those refused before it started, each with its
    status so far, a page at a time: `GET /v1/jobs` leaves them out."""
    job = _get(ws, job_id, who)
    if job.kind not in job_files.LISTS:
        raise APIError(400, f"job {job_id} is a {job.kind} job: only an ingestion or upload has files", "no_files", "job_id")
    files = job_files.statuses(job)[after:after + limit + 1]
    return S.page([{"object": "job_file", "id": after + i + 1, **f, "reason": without_paths(f["reason"], ws.settings)}
                   for i, f in enumerate(files)], limit)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, responses=responses(404))
def cancel_route(job_id: str, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Ask the job to stop; answers at once with the job (state `cancelled`, or still `running` with
    `cancel_requested` until it reaches a safe point). A finished job is returned as it is."""
    _get(ws, job_id, who)
    return job_out(jobs.cancel(ws, job_id, who, wait=0), ws.settings)


@router.get("/v1/ingest_jobs", response_model=S.IngestJobList, responses=responses(), tags=["documents"])
def ingest_jobs(limit: int = LIMIT, after: str | None = AFTER, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """The background uploads (`POST /v1/documents` with wait=false) of the caller (an admin:
    everyone's), newest first, a page at a time. The same jobs are in `GET /v1/jobs?kind=upload`."""
    def out(found):  # its first shape names every file: the names and first results come from SQL (`job_files.heads`)
        heads = job_files.heads(ws, [j.id for j in found])
        return [ingest_job_out(j, ws.settings, heads[j.id]) for j in found]
    return _page(ws, who, ("upload",), limit, after, out)


@router.get("/v1/ingest_jobs/{job_id}", response_model=S.IngestJob, responses=responses(404), tags=["documents"])
def ingest_job(job_id: str, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """A background upload: running, or how it ended. Only the uploader (or an admin) sees it."""
    job = _get(ws, job_id, who)
    if job.kind != "upload":
        raise APIError(404, f"no ingestion job {job_id!r}", "job_not_found", "job_id")
    return ingest_job_out(job, ws.settings)


def _get(ws: Workspace, job_id: str, who: str) -> jobs.Job:
    try:
        return jobs.get(ws, job_id, who)
    except LookupError:
        raise APIError(404, f"no job {job_id!r} among yours (see GET /v1/jobs)", "job_not_found", "job_id") from None


def _int(t: float | None) -> int | None:
    return None if t is None else int(t)

