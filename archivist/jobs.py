"""Background jobs: ingestion, uploads, fine-tuning runs, erasures and re-embeds, in the `jobs` table. This module is the
only code that touches that table, with archivist/job_files.py for an ingestion's file lists (read apart, on demand).

    job = jobs.create(ws, "ingest", owner, spec={...}, total=12)   # queued
    jobs.start(ws, job.id)                                          # running, in this process
    with jobs.keep_alive(ws, job.id):                               # a heartbeat while it works
        ...
        if jobs.progress(ws, job.id, done, total, "3 of 12 files"):  # True: someone asked it to stop
            ...
    jobs.finish(ws, job.id, result={...})                           # done (or fail / end as cancelled)

States: queued -> running -> done | failed | cancelled, and `interrupted` for a job whose process
ended without saying how it went (kill -9, a crash, a power cut, a server restart): `reconcile`
finds those (the process is gone, or its heartbeat is stale) and the message says how to resume.
`requeue` takes an interrupted, failed or cancelled job back to queued for whoever resumes it; the
job keeps its id, owner and spec, so resuming never changes whose job it is or what it does.

Every read and every user action takes the user: a member sees, cancels and resumes only their
own jobs; an admin every job. Another user's job and a job that does not exist give the same
LookupError, so job ids cannot be probed. The work itself (what a kind's spec means, how to resume
it) lives with the stage: `ingest/pipeline.py` for ingest and upload, `finetune/runs.py` for train,
`ingest/erase.py` for erase, `finetune/retriever.py` for reembed (switching the workspace's embedder) and
retriever (adapting it, started from the app).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from archivist import access, audit, job_files, processes
from archivist.workspace import Workspace, WorkspaceError, connect, transaction

KINDS = ("ingest", "upload", "train", "erase", "reembed", "retriever")
OWN_PROCESS = ("train", "retriever")  # kinds run in a process of their own: `cancel` sends it SIGTERM
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
LIVE = ("queued", "running")
RESUMABLE = ("interrupted", "failed", "cancelled")
HEARTBEAT_S = 15.0  # a running job's process writes its heartbeat this often (`keep_alive`)
STALE_S = 180.0  # a running job whose heartbeat is older than this has stopped, wherever it ran
PROGRESS_S = 1.0  # progress is written at most this often (and always on the last step)

RESUME_HINT = {"ingest": "archivist jobs resume {id}", "upload": "archivist jobs resume {id}",
               "train": "archivist jobs resume {id}` or `archivist finetune --resume {id}",
               "erase": "archivist jobs resume {id}` or `archivist erase DOCUMENT",
               "reembed": "archivist jobs resume {id}", "retriever": "archivist jobs resume {id}"}


class JobError(RuntimeError):
    """A job cannot do what was asked: resume a running or finished job, start one another process
    took over. The message names the job and its state."""


@dataclass
class Job:
    id: str
    kind: str  # ingest | upload | train | erase | reembed | retriever
    owner: str  # the user it runs as
    state: str  # see STATES
    done: int = 0
    total: int | None = None
    message: str | None = None
    spec: dict = field(default_factory=dict)  # what the stage needs to run (or resume) it
    result: dict | None = None  # the summary the stage left (per-file results, the adapter …)
    error: str | None = None
    pid: int | None = None
    heartbeat: float | None = None
    cancel_requested: bool = False
    resumed: int = 0  # how many times it was resumed
    dismissed: bool = False  # hidden from the app's list by its owner
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def as_dict(self) -> dict:
        """A JSON-ready dict of the job (what `archivist jobs --json` prints)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# -- the worker's side: create, start, heartbeat, progress, finish ------------------------------


def new_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def create(ws: Workspace, kind: str, owner: str | None, spec: dict | None = None, total: int | None = None,
           message: str | None = None, job_id: str | None = None) -> Job:
    """Record a queued job of `kind` for `owner` (None: the acting user); returns it.

    The job holds this process as its own until a worker `start`s it, so a job whose creator dies
    before it starts is found interrupted too. Raises ValueError for an unknown kind, AccessDenied
    for an unknown user.
    """
    if kind not in KINDS:
        raise ValueError(f"job kind must be one of {KINDS}, got {kind!r}")
    owner = access.current_user(ws, owner)
    job_id = job_id or new_id(kind)
    pid, born = processes.me()
    with transaction(ws.db):
        ws.db.execute("INSERT INTO jobs(id, kind, owner, state, total, message, spec, pid, pid_started, host) "
                      "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                      (job_id, kind, owner, total, message, _dumps(spec or {}), pid, born, socket.gethostname()))
    return _load(ws, job_id)


def start(ws: Workspace, job_id: str, resume: bool = False) -> Job:
    """Take a queued job (with `resume`, also an interrupted, failed or cancelled one) as this
    process's work: state running, pid, start time, heartbeat. Returns it.

    Raises JobError when the job is in another state (another process took it first, or it was
    cancelled before it started) and LookupError for an unknown id.
    """
    states = ("queued",) + (RESUMABLE if resume else ())
    pid, born = processes.me()
    with transaction(ws.db):
        before = ws.db.execute("SELECT kind, owner, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        cur = ws.db.execute(
            f"UPDATE jobs SET state = 'running', pid = ?, pid_started = ?, host = ?, heartbeat = {_NOW}, "
            f"started_at = {_NOW}, finished_at = NULL, error = NULL, cancel_requested = 0, "
            f"resumed = resumed + (state != 'queued') WHERE id = ? AND state IN ({_marks(states)})",
            (pid, born, socket.gethostname(), job_id, *states))
        if cur.rowcount == 1 and before["state"] != "queued":  # a resume: who took it up again is on the record
            _resumed(ws, job_id, before, access.current_user(ws))
    job = _load(ws, job_id)
    if cur.rowcount != 1:
        raise JobError(f"job {job_id} is {job.state}; it cannot be started")
    return job


def adopt(ws: Workspace, job_id: str, pid: int) -> None:
    """Hand a queued job to process `pid` (a child started for it), so `reconcile` follows that
    process rather than the one that created the job."""
    with transaction(ws.db):
        ws.db.execute("UPDATE jobs SET pid = ?, pid_started = ?, host = ? WHERE id = ?",
                      (pid, processes.born(pid), socket.gethostname(), job_id))


def heartbeat(ws: Workspace, job_id: str) -> None:
    """Say this job's process is still working on it."""
    with transaction(ws.db):
        ws.db.execute(f"UPDATE jobs SET heartbeat = {_NOW} WHERE id = ? AND state = 'running'", (job_id,))


@contextmanager
def keep_alive(ws: Workspace, job_id: str, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Write the job's heartbeat every `every` seconds from a thread (on its own connection) while
    the block runs, so a long step (one large file, a slow training step) never looks stale."""
    stop = threading.Event()

    def beat() -> None:
        db = connect(ws.home / "archivist.db")
        try:
            while not stop.wait(every):
                try:
                    heartbeat(Workspace(ws.settings, db), job_id)
                except (WorkspaceError, OSError):  # a busy or full disk: the next beat tries again
                    pass
        finally:
            db.close()

    t = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)


def progress(ws: Workspace, job_id: str, done: int, total: int | None = None, message: str | None = None,
             result: dict | None = None) -> bool:
    """Record progress (done of total, a message, optionally the result so far) and a heartbeat.
    Returns whether someone asked the job to stop (`cancel`): the worker then stops at the next
    safe point and ends the job as cancelled."""
    sets, args = ["done = ?", f"heartbeat = {_NOW}"], [done]
    for col, value in (("total", total), ("message", message), ("result", None if result is None else _dumps(result))):
        if value is not None:
            sets.append(f"{col} = ?")
            args.append(value)
    with transaction(ws.db):
        ws.db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
    return cancel_requested(ws, job_id)


class Reporter:
    """`progress` for a loop that reports often (each file, step or batch): it writes the first
    call, then at most every PROGRESS_S seconds, and always when done reaches total. A loop that
    ends short of its total (stopped, cancelled, failed) calls `flush`, which writes the last call
    the throttle held back. Calling it returns whether someone asked the job to stop, as of the last write."""

    def __init__(self, ws: Workspace, job_id: str):
        self.ws, self.job_id, self.at, self.stop = ws, job_id, float("-inf"), False
        self.held = None  # the arguments of the last call not written yet

    def due(self, done: int | None = None, total: int | None = None) -> bool:
        """Whether a call now would write (callers that build a costly message or result ask first)."""
        return (total is not None and done == total) or time.monotonic() - self.at >= PROGRESS_S

    def __call__(self, done: int, total: int | None = None, message: str | None = None,
                 result: dict | None = None) -> bool:
        self.held = (done, total, message, result)
        if self.due(done, total):
            self._write()
        return self.stop

    def flush(self) -> bool:
        """Write the last call's progress if the throttle held it back, and return whether someone
        asked the job to stop. For a `finally:` after the loop, so it never raises for a busy
        database: the job then keeps the last progress written."""
        try:
            self._write()
        except WorkspaceError:
            pass
        return self.stop

    def _write(self) -> None:
        if self.held is not None:
            held, self.held, self.at = self.held, None, time.monotonic()
            self.stop = progress(self.ws, self.job_id, *held)


def cancel_requested(ws: Workspace, job_id: str) -> bool:
    """Whether `cancel` asked this job to stop."""
    row = ws.db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


def update_spec(ws: Workspace, job_id: str, spec: dict, state: str | None = None, total: int | None = None) -> bool:
    """Replace the job's spec (a run fills in the dataset it built, so a resume trains on that one),
    and its total when given (an ingestion's is its files: `job_files.counts` reads it); only while
    the job is in `state`, if given. Returns whether it was replaced."""
    with transaction(ws.db):
        return ws.db.execute("UPDATE jobs SET spec = ?, total = COALESCE(?, total) WHERE id = ?"
                             + (" AND state = ?" if state else ""),
                             (_dumps(spec), total, job_id, *([state] if state else []))).rowcount == 1


def finish(ws: Workspace, job_id: str, result: dict | None = None, message: str | None = None) -> None:
    """End the job as done, with its result summary."""
    end(ws, job_id, "done", result=result, message=message)


def fail(ws: Workspace, job_id: str, error: str, result: dict | None = None) -> None:
    """End the job as failed, with the reason."""
    end(ws, job_id, "failed", error=error, result=result)


def end(ws: Workspace, job_id: str, state: str, error: str | None = None, result: dict | None = None,
        message: str | None = None, done: int | None = None) -> None:
    """End the job as `state` (done, failed, cancelled or interrupted). Never raises for a busy
    database: a job that cannot record its end is found by `reconcile` later."""
    if state not in STATES or state in LIVE:
        raise ValueError(f"a job ends as one of {STATES[2:]}, not {state!r}")
    sets, args = ["state = ?", f"finished_at = {_NOW}", "error = ?"], [state, error]
    for col, value in (("result", None if result is None else _dumps(result)), ("message", message), ("done", done)):
        if value is not None:
            sets.append(f"{col} = ?")
            args.append(value)
    try:
        with transaction(ws.db):
            # a job already ended (cancelled before its worker noticed, say) keeps how it ended
            ws.db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND state IN ('queued', 'running', 'interrupted')",
                          (*args, job_id))
    except WorkspaceError:
        pass


# -- the user's side: list, get, cancel, resume -----------------------------------------------


def list_jobs(ws: Workspace, user: str | None = None, kinds: tuple[str, ...] | None = None,
              include_dismissed: bool = True, limit: int = 100, after: str | None = None,
              state: str | None = None, files: bool = True) -> list[Job]:
    """The jobs `user` may see (their own; an admin: everyone's), newest first, after `reconcile`;
    at most `limit`, and with `after` (a job id: the last of the previous page) those listed after it;
    only those in `state`, if given. Raises LookupError when `after` is not a job `user` may see.
    Without `files`, ingest file lists are left out (`job_files.columns`): `archivist jobs` parsed thousands."""
    reconcile(ws)
    user = access.current_user(ws, user)
    where, args = [], []
    if not access.is_admin(ws, user):
        where.append("owner = ?")
        args.append(user)
    if after is not None:
        at = ws.db.execute("SELECT created_at FROM jobs WHERE id = ?" + (" AND owner = ?" if args else ""),
                           (after, *args)).fetchone()
        if at is None:
            raise LookupError(f"no job {after!r} to list after (see `archivist jobs`)")
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        args += [at[0], at[0], after]
    if kinds:
        where.append(f"kind IN ({_marks(kinds)})")
        args += list(kinds)
    if not include_dismissed:
        where.append("dismissed = 0")
    if state is not None:
        where.append("state = ?")
        args.append(state)
    sql = f"SELECT {job_files.columns(files)} FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + \
        " ORDER BY created_at DESC, id DESC LIMIT ?"
    return [_job(r) for r in ws.db.execute(sql, (*args, limit))]


def get(ws: Workspace, job_id: str, user: str | None = None, files: bool = True) -> Job:
    """One job `user` may see, after `reconcile` (without `files`, as `list_jobs` leaves them out). Raises
    LookupError when there is none: another user's job is answered like one that does not exist."""
    reconcile(ws, job_id)
    user = access.current_user(ws, user)
    job = _load(ws, job_id, missing_ok=True, files=files)
    if job is None or not (job.owner == user or access.is_admin(ws, user)):
        raise LookupError(f"no job {job_id!r} (see `archivist jobs`)")
    return job


def get_owner(ws: Workspace, job_id: str) -> str:
    """The owner of a job (for the stage that runs it: the user it acts as). Raises LookupError."""
    return _load(ws, job_id).owner


def cancel(ws: Workspace, job_id: str, user: str | None = None, wait: float = 30.0) -> Job:
    """Ask `user`'s job to stop; returns it as it is then.

    A queued job (or one whose process is gone) is cancelled at once. A running one gets the
    cancel flag, which its worker checks between files or steps; a job in a process of its own
    (a training run, a retriever's adaptation) also gets SIGTERM: a run saves a checkpoint first. Waits up to
    `wait` seconds for it to end; the jobs its own process ran beside it (a retriever's re-embed) end
    cancelled with it. A finished job is returned as it is. Raises LookupError.
    """
    job = get(ws, job_id, user)
    # who stopped it is on the record: a run's own `finetune.finished` names its owner, not an admin who cancelled it
    said = {"kind": job.kind, "owner": job.owner, "state": job.state}
    if job.state in ("queued", "interrupted"):
        # not started yet, or nobody works on it: cancelled at once, a run's own process that started gets SIGTERM
        # (a worker about to start it finds it no longer queued; one that started it since `get` is cancelled as running)
        with transaction(ws.db):
            if took := ws.db.execute(f"UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = {_NOW} "
                                     "WHERE id = ? AND state = ?", (job_id, job.state)).rowcount:
                audit.record(ws, "job.cancel", user=access.current_user(ws, user), target=job_id, detail=said)
        if not took:
            return cancel(ws, job_id, user, wait)
        if job.kind in OWN_PROCESS and job.state == "queued" and job.pid not in (None, os.getpid()) and not _dead(ws, job):
            processes.terminate(job.pid)
        return _load(ws, job_id)
    if job.state != "running":
        return job
    with transaction(ws.db):
        # once: a second cancel of the same run (another admin, a double click) or one that comes
        # after the job ended on its own changes nothing, and the log says only what happened
        if _flag(ws, job_id):
            audit.record(ws, "job.cancel", user=access.current_user(ws, user), target=job_id, detail=said)
    if job.kind in OWN_PROCESS and job.pid and not _dead(ws, job) and job.pid != os.getpid():
        processes.terminate(job.pid)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        processes.reap(job.pid)
        reconcile(ws, job_id)
        job = _load(ws, job_id)
        if job.state != "running":
            break
        time.sleep(0.1)
    if job.state == "interrupted":  # it died on the signal before it could say so
        end(ws, job_id, "cancelled", error=job.error)
        job = _load(ws, job_id)
    if job.state == "cancelled":  # it was running: its pid is the process that took it, not the app that queued it
        _cancel_companions(ws, job, access.current_user(ws, user))
    return job


def _cancel_companions(ws: Workspace, job: Job, by: str) -> None:
    """End as cancelled the jobs that cancelled `job`'s own process ran beside it, once it is gone: a retriever
    run's re-embed, left running or interrupted, would be resumed to finish the embedder switch the admin cancelled."""
    row = ws.db.execute("SELECT pid, pid_started, host FROM jobs WHERE id = ?", (job.id,)).fetchone()
    if job.kind not in OWN_PROCESS or row["pid"] is None or not _dead(ws, job, row["pid_started"], row["host"]):
        return
    with transaction(ws.db):
        for c in ws.db.execute("SELECT id, kind, owner, state FROM jobs WHERE id != ? AND pid = ? AND pid_started IS ? "
                               "AND host IS ? AND state IN ('queued', 'running', 'interrupted')", (job.id, *row)).fetchall():
            ws.db.execute(f"UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = {_NOW}, error = ? "
                          "WHERE id = ?", (f"cancelled with job {job.id}, whose process ran it", c["id"]))
            audit.record(ws, "job.cancel", user=by, target=c["id"], detail={**dict(c), "with": job.id})


def requeue(ws: Workspace, job_id: str, user: str | None = None) -> Job:
    """Take `user`'s interrupted, failed or cancelled job back to queued, to be resumed by the
    caller (`start` from there on). Its id, owner and spec stay as they were.
    Raises LookupError (unknown, or another user's), JobError (running, queued or done)."""
    get(ws, job_id, user)
    return _requeue(ws, job_id, access.current_user(ws, user))


def _requeue(ws: Workspace, job_id: str, by: str | None) -> Job:
    pid, born = processes.me()
    with transaction(ws.db):
        before = ws.db.execute("SELECT kind, owner, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        cur = ws.db.execute(f"UPDATE jobs SET state = 'queued', pid = ?, pid_started = ?, host = ?, error = NULL, "
                            f"cancel_requested = 0, finished_at = NULL, resumed = resumed + 1 "
                            f"WHERE id = ? AND state IN ({_marks(RESUMABLE)})", (pid, born, socket.gethostname(), job_id, *RESUMABLE))
        if cur.rowcount == 1:
            _resumed(ws, job_id, before, by)
    job = _load(ws, job_id)
    if cur.rowcount != 1:
        raise JobError(f"job {job_id} is {job.state}; only an interrupted, failed or cancelled job can be resumed")
    return job


def _resumed(ws: Workspace, job_id: str, before, by: str | None) -> None:
    """Record that `by` (None: a server taking up what its last run left) resumed a job, in its transaction."""
    audit.record(ws, "job.resume", user=by, target=job_id,
                 detail={"kind": before["kind"], "owner": before["owner"], "state": before["state"]})


def claim_interrupted(ws: Workspace, kinds: tuple[str, ...], user: str | None = None) -> Iterator[Job]:
    """The interrupted jobs of `kinds` that `user` may see (None: every user's, for a server that
    resumes what its last run left), each requeued just before it is yielded so that only one
    process resumes it; a job another process claimed first is skipped. Oldest first."""
    reconcile(ws)
    where, args = f"state = 'interrupted' AND kind IN ({_marks(kinds)})", list(kinds)
    if user is not None:
        user = access.current_user(ws, user)
        if not access.is_admin(ws, user):
            where += " AND owner = ?"
            args.append(user)
    for row in ws.db.execute(f"SELECT id FROM jobs WHERE {where} ORDER BY created_at, id", args).fetchall():
        try:
            job = _requeue(ws, row["id"], user)
        except JobError:
            continue
        yield job


def dismiss(ws: Workspace, job_id: str, user: str | None = None) -> None:
    """Hide a finished job of `user` from the app's list (it stays in `archivist jobs`)."""
    job = get(ws, job_id, user)
    if not job.live:
        with transaction(ws.db):
            ws.db.execute("UPDATE jobs SET dismissed = 1 WHERE id = ?", (job_id,))


def supersede(ws: Workspace, job_id: str, by_job: str) -> bool:
    """End the interrupted job `job_id` as done because job `by_job` did its work again (the same
    files ingested again by a plain rerun): it is no longer listed as cut short, and no server
    resumes it. Only while it is still interrupted (a server may have claimed it meanwhile).
    Returns whether it was."""
    with transaction(ws.db):
        return ws.db.execute(f"UPDATE jobs SET state = 'done', finished_at = {_NOW}, error = NULL, message = ? "
                             "WHERE id = ? AND state = 'interrupted'",
                             (f"finished by job {by_job}, which ingested the same files again", job_id)).rowcount == 1


def every(ws: Workspace, kinds: tuple[str, ...], collection: str | None = None, file_name: str | None = None,
          states: tuple[str, ...] = STATES) -> list[Job]:
    """Every job of `kinds`, whoever owns it, oldest first, for a stage's own bookkeeping, never to
    show a user (erase refuses while a live ingest job lists its document). With `collection` and
    `file_name`, only those whose spec ({"collection", "files": [[path, name], ...]}) names both, and in
    `states`, chosen in SQL: each erase parsed every ingest job's whole file list (200 jobs of 3,000
    files: 2.7 s and 160 MB)."""
    where, args = [f"kind IN ({_marks(kinds)})", f"state IN ({_marks(states)})"], [*kinds, *states]
    if file_name is not None:
        clause, more = job_files.naming_clause(file_name)
        where.append(clause)
        args += more
    if collection is not None:
        where.append("json_extract(spec, '$.collection') = ?")
        args.append(collection)
    return [_job(r) for r in ws.db.execute(f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at, id", args)]


def one(ws: Workspace, job_id: str) -> Job | None:
    """Job `job_id` read whole, whoever owns it, or None: as `every`, for a stage's own bookkeeping
    (erase changes a cut-short job `job_files.naming` found), never to show a user (`get` checks who asks)."""
    return _load(ws, job_id, missing_ok=True)


def interrupted(ws: Workspace, kinds: tuple[str, ...], user: str | None = None) -> list[Job]:
    """The interrupted jobs of `kinds` that `user` may see, oldest first (nothing is claimed).
    Selected by state in SQL: every ingest asks (pipeline._supersede_cut_short), and reading every job
    to keep the interrupted ones parsed each one's spec, the whole file list of each earlier ingest
    (300 ingests of a 3,100-file folder: +290 MB for an ingest with nothing to do)."""
    return sorted(list_jobs(ws, user, kinds, limit=10_000, state="interrupted"), key=lambda j: (j.created_at, j.id))


# -- reconcile: a job whose process is gone is not running -------------------------------------


def reconcile(ws: Workspace, job_id: str | None = None) -> list[str]:
    """Mark `interrupted` every queued or running job (or just `job_id`) whose process has ended,
    or whose heartbeat is older than STALE_S; the error says how to resume it. Returns their ids."""
    sql = f"SELECT * FROM jobs WHERE state IN ({_marks(LIVE)})" + (" AND id = ?" if job_id else "")
    gone = []
    for row in ws.db.execute(sql, (*LIVE, *([job_id] if job_id else []))).fetchall():
        job = _job(row)
        if not _dead(ws, job, row["pid_started"], row["host"]):
            continue
        hint = RESUME_HINT[job.kind].format(id=job.id)
        why = (f"interrupted: its process (pid {job.pid}) ended without finishing (killed, crashed or restarted); "
               f"resume it with `{hint}`")
        with transaction(ws.db):
            cur = ws.db.execute(f"UPDATE jobs SET state = 'interrupted', error = ?, finished_at = {_NOW} "
                                f"WHERE id = ? AND state = ? AND pid IS ?", (why, job.id, job.state, job.pid))
        if cur.rowcount:
            gone.append(job.id)
    return gone


def _dead(ws: Workspace, job: Job, born: float | None = None, host: str | None = None) -> bool:
    """Whether nobody works on `job` any more. On this machine the process decides: a live one may
    be in one long step (a huge file, a slow training step), and calling its job interrupted would
    let a resume run it twice at once. Elsewhere (a shared workspace) only the heartbeat can tell."""
    if born is None and host is None:
        row = ws.db.execute("SELECT pid_started, host FROM jobs WHERE id = ?", (job.id,)).fetchone()
        born, host = row["pid_started"], row["host"]
    if job.pid is None or (host is not None and host != socket.gethostname()):
        beat = job.heartbeat or job.started_at or job.created_at
        return time.time() - beat > STALE_S
    return not processes.alive(job.pid, born)




# -- helpers --------------------------------------------------------------------------------------

_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _marks(values) -> str:
    return ",".join("?" * len(values))


def _dumps(obj) -> str:
    return json.dumps(obj, default=str, ensure_ascii=False)


def _flag(ws: Workspace, job_id: str) -> bool:
    """Ask the running job to stop; whether this call did (False: it had ended, or was asked already)."""
    with transaction(ws.db):
        return ws.db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running' "
                             "AND cancel_requested = 0", (job_id,)).rowcount == 1


def _load(ws: Workspace, job_id: str, missing_ok: bool = False, files: bool = True) -> Job | None:
    row = ws.db.execute(f"SELECT {job_files.columns(files)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        if missing_ok:
            return None
        raise LookupError(f"no job {job_id!r} (see `archivist jobs`)")
    return _job(row)


def _job(row) -> Job:
    return Job(id=row["id"], kind=row["kind"], owner=row["owner"], state=row["state"], done=row["done"], total=row["total"],
               message=row["message"], spec=json.loads(row["spec"] or "{}"),
               result=json.loads(row["result"]) if row["result"] else None, error=row["error"], pid=row["pid"],
               heartbeat=row["heartbeat"], cancel_requested=bool(row["cancel_requested"]), resumed=row["resumed"],
               dismissed=bool(row["dismissed"]), created_at=row["created_at"], started_at=row["started_at"],
               finished_at=row["finished_at"])

