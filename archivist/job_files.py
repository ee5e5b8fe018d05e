"""An ingest or upload job's files: its spec's [[path, stored name], ...] and its result's per-file
results, thousands of entries for a job that read a large folder. Split from archivist/jobs.py (the
queue and its states), which uses `columns` and `naming_clause`; the table is still only touched there
and here.

Lists of jobs leave the files out (`columns`: `archivist jobs`, `GET /v1/jobs`, the Documents page),
one job's are read when asked for (`statuses`, `counts`), and the jobs that list one stored name are
found in SQL (`naming`), as are a page of uploads' names and first results (`heads`): reading every
job's whole list grew with every nightly ingest of a folder (200 jobs of 3,000 files: 2 s and 160 MB
for each list page, and for each erase).
"""

from __future__ import annotations

import json
import re

from archivist.workspace import Workspace

LISTS = ("ingest", "upload")  # the kinds whose spec and result hold a file list


def columns(files: bool) -> str:
    """The columns a Job is read from; without `files`, ingest and upload jobs' "files" (their spec's [[path,
    name], ...], their result's per-file results) removed in SQL, never parsed (`total` still counts them)."""
    if files:
        return "*"
    lists = f"kind IN ({', '.join(repr(k) for k in LISTS)})"
    return ("id, kind, owner, state, done, total, message, error, pid, heartbeat, cancel_requested, resumed, dismissed, "
            f"created_at, started_at, finished_at, CASE WHEN {lists} THEN json_remove(spec, '$.files') ELSE spec END AS spec, "
            f"CASE WHEN {lists} THEN json_remove(result, '$.files') ELSE result END AS result")


def naming_clause(name: str) -> tuple[str, list]:
    """SQL on `jobs` (and its arguments) true where the spec lists a file stored as `name`: first a search of
    the unparsed text for the name's longest run that JSON writes as it is, then an exact check of the entries."""
    return ("instr(jobs.spec, ?) > 0 AND EXISTS (SELECT 1 FROM json_each(jobs.spec, '$.files') "
            "WHERE json_extract(value, '$[1]') = ?)", [_verbatim(name), name])


def naming(ws: Workspace, kinds: tuple[str, ...], collection: str, name: str,
           states: tuple[str, ...]) -> list[tuple[str, str, list[str]]]:
    """(job id, state, [the paths it stores as `name`]) of every job of `kinds` in `states`, whoever owns it,
    whose spec lists a file stored as `name` in `collection`; oldest first. The paths are picked in SQL: an
    erase needs them for each job listing the document, and parsed each one's whole list to find them
    (200 nightly ingests of one folder: 1.7 s and 160 MB an erase). Only a job the erase must change
    (`jobs.update_spec`) needs reading whole, with `jobs.get`."""
    rows = ws.db.execute(
        "SELECT jobs.id, jobs.state, json_group_array(json_extract(f.value, '$[0]')) AS paths "
        "FROM jobs, json_each(jobs.spec, '$.files') AS f "
        f"WHERE jobs.kind IN ({','.join('?' * len(kinds))}) AND jobs.state IN ({','.join('?' * len(states))}) AND instr(jobs.spec, ?) > 0 "
        "AND json_extract(f.value, '$[1]') = ? AND json_extract(jobs.spec, '$.collection') = ? "
        "GROUP BY jobs.id ORDER BY jobs.created_at, jobs.id",
        (*kinds, *states, _verbatim(name), name, collection)).fetchall()
    return [(r["id"], r["state"], json.loads(r["paths"])) for r in rows]


def heads(ws: Workspace, ids: list[str]) -> dict[str, tuple[list[str], dict | None]]:
    """{job id: ([the names its spec lists], its result's first file result or None)} of the jobs `ids`,
    picked in SQL: a page of upload jobs in `GET /v1/ingest_jobs`' shape needs no more, and parsed
    each one's whole spec and result for it."""
    rows = ws.db.execute(
        "SELECT id, (SELECT json_group_array(json_extract(value, '$[1]')) FROM json_each(jobs.spec, '$.files')) AS names, "
        f"json_extract(result, '$.files[0]') AS first FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
    return {r["id"]: (json.loads(r["names"]), r["first"] and json.loads(r["first"])) for r in rows}


def statuses(job) -> list[dict]:
    """Each file of an ingest or upload job read whole (`jobs.get`), in its order, then the files refused
    before it started: {"name", "status", "chunks", "seconds", "reason", "reread"}. Status: its result's (added,
    updated, unchanged, failed, cancelled); a file not reached is waiting, or cancelled / failed with
    the job. Past MAX_FILES_LISTED results (finished, running or cut short) a job keeps only its failed
    files' results and the counts: the files its counts say were ingested are "done", taken in the job's
    order, which is the order files finish in (give or take the group being embedded); they were shown
    as waiting, or as cancelled / failed with the job."""
    result = job.result or {}
    results = {r["name"]: r for r in result.get("files", [])}
    unreached = {"cancelled": ("cancelled", "cancelled before it was ingested"), "failed": ("failed", job.error)}
    unlisted = sum(n for s, n in (result.get("counts") or {}).items()
                   if s not in ("failed", "cancelled")) if result.get("files_omitted") else 0
    files = []
    for _, name in job.spec.get("files", []):
        r = results.get(name)
        if r is not None:
            files.append({"name": name, "status": r["status"], "chunks": r.get("chunks", 0),
                          "seconds": r.get("seconds", 0.0), "reason": r.get("reason"), "reread": r.get("reread")})
        elif unlisted:
            unlisted -= 1
            files.append({"name": name, "status": "done", "chunks": 0, "seconds": 0.0, "reason": None, "reread": None})
        else:
            status, reason = unreached.get(job.state, ("waiting", None))
            files.append({"name": name, "status": status, "chunks": 0, "seconds": 0.0, "reason": reason, "reread": None})
    return files + [{"name": name, "status": "failed", "chunks": 0, "seconds": 0.0, "reason": reason, "reread": None}
                    for name, reason in job.spec.get("refused", [])]


def counts(job) -> dict[str, int]:
    """{status: files} of an ingest or upload job, from its row alone (read with or without its files):
    its result's counts, the files not reached yet as `statuses` calls them, the refused ones as failed."""
    tally = dict((job.result or {}).get("counts") or {})
    rest = (job.total or 0) - sum(tally.values())
    if rest > 0:
        status = {"cancelled": "cancelled", "failed": "failed"}.get(job.state, "waiting")
        tally[status] = tally.get(status, 0) + rest
    refused = len(job.spec.get("refused") or [])
    if refused:
        tally["failed"] = tally.get("failed", 0) + refused
    return tally


def _verbatim(name: str) -> str:
    """The name's longest run that JSON writes as it is (no quote, backslash or control character)."""
    return max(re.split(r'["\\\x00-\x1f]', name), key=len)
