"""The incremental ingestion pipeline: files → read → chunk → embed → SQLite + FTS5 + FAISS.

A document is its collection + name + content hash. Unchanged files are skipped; a changed file
replaces its chunks; chunks whose text was embedded before (in any document) reuse that vector,
so the same content under two names is embedded once. Work is committed in small batches of
whole documents, so a kill at any moment leaves a consistent workspace, and running the same
command again finishes only what is missing. FAISS is synced from SQLite at the end (and
periodically), and repaired from it on the next open if a crash came in between. Its stages: reading
and chunking (ingest/reading.py), embedding and committing (ingest/writing.py); this module runs them
as a job, and keeps the documents: list, find, delete, reindex.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import unicodedata
from contextlib import closing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from archivist import access, audit, jobs
from archivist.ingest import writing
from archivist.ingest.folders import (FileResult, clean_name, counts_line, expand, job_summary, missing_from,
                                      note_kept_versions, note_same_content, one_per_name, read_from)
from archivist.ingest.reading import Pending, Prepare, read_ahead
from archivist.ingest.uploads import stored_upload, workspace_copy
from archivist.ingest.writing import embed_text, vector_key
from archivist.retrieval import lexicon_store, reembed, vectors
from archivist.workspace import Workspace, WorkspaceError, transaction, truncate_wal

log = logging.getLogger(__name__)

FLUSH_SECONDS = 60.0  # sync FAISS at least this often during a long ingest
FLUSH_CHUNKS = 2000  # ... and after this many new chunks: what it holds for the next sync (`fresh`, a segment) stays bounded
HOLD_INDEXES_UP_TO = 5000  # chunks in the workspace past which an ingest no longer loads the indexes (`sync_indexes`)
BATCH_CHUNKS = 256  # embed this many chunks at once (across documents) before committing them (writing.EMBED_CHUNKS)
MERGE_FTS = "INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')"  # FTS5 keeps a deleted row's words (and its delete marker's) till a merge


def ingest_paths(
    ws: Workspace,
    paths: Iterable[str | os.PathLike],
    collection: str | None = None,
    user: str | None = None,
    embedder=None,
    names: list[str] | None = None,
    progress: bool = True,
    on_file: Callable[[FileResult, int, int], None] | None = None,
    follow_symlinks: bool = False,
    prepare: Prepare | None = None,
    prune: bool = False,
) -> list[FileResult]:
    """Ingest files and folders into `collection`, as a job of `user` (archivist/jobs.py); returns one
    FileResult per file, in order.

    Documents that an earlier ingest read from one of the folders in `paths` and that are no longer
    in it (deleted, renamed or moved away) come last: `missing` (still stored and searchable), or,
    with `prune`, deleted like `delete_document` and `removed` (only when the whole job ran; see
    `missing_from`).

    `names` (same length as `paths`, files only) overrides the stored names, e.g. for uploads.
    `on_file(result, done, total)` is called as each file finishes (the UI's progress bar).
    A folder's symlinks that lead out of it are refused, failed results naming them that come last
    (and are listed with the job), unless `follow_symlinks` (see `expand`).
    Raises AccessDenied when `user` may not write to the collection; per-file problems never
    raise, they become failed results. A cancelled job (`archivist jobs cancel`) stops after the
    file at hand; the files it did not reach come back `cancelled`.
    `prepare` reads and chunks the files (default `read_ahead`, in this process; see ray_ingest).
    """
    from archivist.models import embedder_for

    collection = collection or ws.settings.collection
    access.require(ws, user, collection, "write")
    embedder = embedder or embedder_for(ws.settings)
    vectors.check_embedder(ws, embedder)
    paths = list(paths)  # walked, then looked at again for what went missing from its folders
    if names is None:
        files, refused = expand(paths, follow_symlinks, read_from(ws, collection))
    else:
        files, refused = one_per_name([(Path(p), clean_name(n)) for p, n in zip(paths, names)], [])
    job = create_job(ws, "ingest", user, collection, files, [(r.name, r.reason) for r in refused])
    jobs.start(ws, job.id)
    results = _ingest(ws, job, files, embedder, progress, on_file, prepare or read_ahead, prune)
    _supersede_cut_short(ws, job)
    folders = [Path(p) for p in paths] if names is None else []
    gone = missing_from(ws, collection, [f for f in folders if f.is_dir()], {n for _, n in files}, [r.name for r in refused])
    _name_other_versions(ws, collection, user, results)
    ran = ws.db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
    # a folder that came out empty is more likely an unmounted drive than a folder emptied on purpose
    pruned = [d for d in gone if not d["empty"]] if prune and ran is not None and ran["state"] == "done" else []
    removed = {d["id"] for d in pruned}
    remove_documents(ws, sorted(removed), user, reason="no longer in the folder it was ingested from (--prune)")
    if prune and not removed and any(r.status == "updated" for r in results):  # what `_ingest` left to the prune
        forget(ws, [ws.collection_id(collection)])
    return results + refused + [
        FileResult(d["name"], "removed", chunks=d["chunks"], document_id=d["id"], reason="no longer in the folder: deleted")
        if d["id"] in removed else FileResult(d["name"], "missing", chunks=d["chunks"], document_id=d["id"], reason=(
            "no longer in the folder, which is empty now (an unmounted drive?): still stored and searchable, not "
            "pruned (`archivist delete` removes it)" if d["empty"] and prune else
            "no longer in the folder: still stored and searchable (`archivist ingest --prune` or `archivist delete` removes it)"))
        for d in gone]


def _name_other_versions(ws: Workspace, collection: str, user: str | None, results: list[FileResult]) -> None:
    """A file also ingested into other collections (that `user` may read) whose copy there is another
    version (the file changed and was ingested again here only) gets a reason naming them: search
    in those collections still finds the other text."""
    files = {r.document_id: r for r in results if r.status in ("added", "updated") and r.document_id}
    others = [c for c in access.readable_collections(ws, user) if c != collection]
    if not files or not others:
        return
    here: dict[int, tuple[str, str]] = {}
    ids = list(files)
    for at in range(0, len(ids), 500):
        part = ids[at:at + 500]
        here.update((row[0], (row[1], row[2])) for row in ws.db.execute(
            f"SELECT id, source, content_hash FROM documents WHERE id IN ({','.join('?' * len(part))})", part))
    elsewhere: dict[str, set[tuple[str, str]]] = {}
    sources = sorted({source for source, _ in here.values()})
    for at in range(0, len(sources), 500):
        part = sources[at:at + 500]
        for source, digest, name in ws.db.execute(
                f"SELECT d.source, d.content_hash, k.name FROM documents d JOIN collections k ON k.id = d.collection_id "
                f"WHERE d.source IN ({','.join('?' * len(part))}) AND k.name IN ({','.join('?' * len(others))})",
                part + others):
            elsewhere.setdefault(source, set()).add((digest, name))
    for doc_id, (source, digest) in here.items():
        stale = sorted({name for other, name in elsewhere.get(source, ()) if other != digest})
        if stale and not files[doc_id].reason:
            files[doc_id].reason = (f"another version of this file is still in {', '.join(stale)}: "
                                    "ingest it there too, or delete that copy")


def _supersede_cut_short(ws: Workspace, job: jobs.Job) -> None:
    """A plain rerun of an ingest that a kill cut short finishes its work (what was committed comes
    back unchanged): when this job ended done, the owner's interrupted ingest jobs into the same
    collection whose every file it read are ended done too (`jobs.supersede`), so they are not
    listed as cut short, nor resumed again by the next `archivist serve`."""
    row = ws.db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
    if row is None or row["state"] != "done":
        return
    mine = {tuple(f) for f in job.spec.get("files", [])}
    for old in jobs.interrupted(ws, ("ingest",), job.owner):
        if old.owner == job.owner and old.spec.get("collection") == job.spec.get("collection") \
                and {tuple(f) for f in old.spec.get("files", [])} <= mine:
            jobs.supersede(ws, old.id, job.id)


INGEST_KINDS = ("ingest", "upload")


def create_job(ws: Workspace, kind: str, user: str | None, collection: str,
               files: Iterable[tuple[str | os.PathLike, str]], refused: Iterable[tuple[str, str]] = ()) -> jobs.Job:
    """Record a queued ingestion of `files` ([(path, stored name)]) into `collection` for `user`
    (kind 'ingest', or 'upload' for files saved from a browser or an HTTP client); run it with
    `run_job`. `refused` (name, reason): uploaded files refused before they got this far, kept
    with the job so it shows the whole batch.

    One file per stored name (`folders.one_per_name`, which a folder walk applies already): two
    uploads of one batch named alike (Team A's and Team B's notes.md) would replace each other within
    the job, both reported a success, and the first one's upload kept for nothing. The second is
    refused, and its upload removed unless a document was read from it."""
    from archivist.ingest.uploads import remove_unused_upload

    given = [(Path(p), name) for p, name in files]
    kept, twins = one_per_name(given, [])
    refused = list(refused)
    if twins:
        for path in {p for p, _ in given} - {p for p, _ in kept}:
            if copy := workspace_copy(ws, path):
                remove_unused_upload(ws, copy)
        refused += [(t.name, f"another file of this batch is also named {t.name} and would replace it; not ingested "
                     "(rename one of them)") if kind == "upload" else (t.name, t.reason) for t in twins]
    files = [[str(p.absolute()), name] for p, name in kept]
    spec = {"collection": collection, "files": files, "refused": [list(r) for r in refused]}
    return jobs.create(ws, kind, user, spec, total=len(files))


def job_files(job: jobs.Job) -> list[tuple[Path, str]]:
    """An ingest job's files: [(path, stored name)] (erase finds the jobs naming one file with
    `archivist.job_files.naming`, without loading every list)."""
    return [(Path(p), n) for p, n in job.spec.get("files", [])]


def run_job(ws: Workspace, job_id: str, embedder=None, progress: bool = False,
            on_file: Callable[[FileResult, int, int], None] | None = None, prepare: Prepare | None = None) -> list[FileResult]:
    """Run a queued ingest or upload job (`create_job`, or `jobs.requeue` to resume one) in this
    process, as its owner; returns its FileResults. A job whose owner may no longer write to the
    collection (or whose embedder no longer matches) fails with the reason, and so does each file.
    Raises JobError when the job is not queued (another process took it)."""
    from archivist.models import embedder_for

    job = jobs.start(ws, job_id)
    files = [(stored_upload(ws, p), n) for p, n in job_files(job)]  # uploads of a workspace moved since
    try:
        access.require(ws, job.owner, job.spec["collection"], "write")
        embedder = embedder or embedder_for(ws.settings)
        vectors.check_embedder(ws, embedder)
    except (access.AccessDenied, WorkspaceError) as e:
        jobs.fail(ws, job.id, str(e))
        return [FileResult(n, "failed", reason=f"not ingested: {e}") for _, n in files]
    return _ingest(ws, job, files, embedder, progress, on_file, prepare or read_ahead)


def _drop_refused_uploads(ws: Workspace, files: list[tuple[Path, str]], results: list[FileResult]) -> None:
    """A job that ran to its end keeps no stored upload (a file under the workspace's uploads/) it
    could not read (a file is not kept for nothing, unless a document was read from it before:
    `remove_unused_upload`); one that failed or was cancelled keeps them, to be resumed. Whatever the
    job's kind: the API's upload with wait=true is an "ingest" job (`ingest_paths` with `names`), and a
    restart or `archivist jobs resume` runs it again without the API's thread. Any other file is the
    user's own and is never touched."""
    from archivist.ingest.uploads import remove_unused_upload

    failed = {r.name for r in results if r.status == "failed"}
    for path, name in files:
        if name in failed and (copy := workspace_copy(ws, path)):
            remove_unused_upload(ws, copy)


def _ingest(ws: Workspace, job: jobs.Job, files: list[tuple[Path, str]], embedder, progress: bool,
            on_file: Callable[[FileResult, int, int], None] | None, prepare: Prepare, prune: bool = False) -> list[FileResult]:
    """The work of a started ingest job: read and chunk `files` (`prepare`), embed and commit them,
    with the job's progress, heartbeat and cancel flag; ends the job as done, cancelled, interrupted
    or failed. The chunks an updated file replaced are forgotten (`forget`), unless `prune`: then the
    caller does it with the pruned documents' (one FTS5 merge and one index sync, not two)."""
    from tqdm import tqdm

    collection = job.spec["collection"]
    cid = ws.collection_id(collection)
    if cid is None:  # its first ingest creates it (access.require let only an admin get here)
        cid = access.create_collection(ws, collection, by=job.owner)
    # Reuse stored vectors only from collections this user may read: `embedded` (and the time an
    # ingest takes) would otherwise tell a writer whether a guessed text exists in another collection.
    reuse_from = [ws.collection_id(c) for c in access.readable_collections(ws, job.owner)] + [cid]
    results: list[FileResult] = []
    pending: list[Pending] = []
    fresh: dict[int, np.ndarray] = {}
    last_flush = time.monotonic()
    report = jobs.Reporter(ws, job.id)
    bar = tqdm(total=len(files), unit="file", desc=f"ingest → {collection}", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def tell() -> bool:
        """Write progress when it is due; returns whether the job was cancelled."""
        if report.due(len(results), len(files)):
            report(len(results), len(files), f"{len(results)} of {len(files)} files", result=job_summary(results))
        return report.stop

    tally = {"chunks": 0, "failed": 0}  # the bar's counts, kept as files finish (summing `results` each time was quadratic)

    def finish(res: FileResult):
        results.append(res)
        tally["chunks"] += res.chunks
        tally["failed"] += res.status == "failed"
        bar.update(1)
        bar.set_postfix(tally)
        if on_file:
            on_file(res, len(results), len(files))

    def flush_pending():
        nonlocal pending
        if pending:
            for res in writing.embed_and_commit(ws, cid, pending, embedder, fresh, reuse_from, job.owner):
                finish(res)
            pending = []

    def between_groups() -> bool:
        """Between two committed groups of a streamed file: sync FAISS when due; whether to stop."""
        nonlocal last_flush
        if time.monotonic() - last_flush > FLUSH_SECONDS or len(fresh) >= FLUSH_CHUNKS:
            sync_indexes(ws, cid, fresh)
            fresh.clear()
            last_flush = time.monotonic()
        return tell()

    state, error = "done", None
    try:
        with jobs.keep_alive(ws, job.id), closing(prepare(ws, cid, files)) as items:
            while True:
                if tell():
                    state = "cancelled"
                    break
                item = next(items, None)
                if item is None:
                    break
                if isinstance(item, FileResult):
                    finish(item)
                    continue
                if item.groups is not None:
                    flush_pending()
                    res = writing.stream_and_commit(ws, cid, item, embedder, fresh, reuse_from, job.owner, between_groups)
                    if res is None:
                        state = "cancelled"
                        break
                    finish(res)
                    continue
                pending.append(item)
                if sum(len(p.chunks) for p in pending) >= BATCH_CHUNKS:
                    flush_pending()
                if time.monotonic() - last_flush > FLUSH_SECONDS or len(fresh) >= FLUSH_CHUNKS:
                    flush_pending()
                    sync_indexes(ws, cid, fresh)
                    fresh.clear()
                    last_flush = time.monotonic()
            flush_pending()  # what was read is committed, cancelled or not
        if not prune and any(r.status == "updated" for r in results):  # their old chunks went: as after a delete
            forget(ws, [cid], fresh)
        else:
            sync_indexes(ws, cid, fresh)
        note_same_content(ws, reuse_from, results)
        note_kept_versions(ws.db, cid, results)
        if state == "done":  # before the job says done: an unreadable upload is not kept
            _drop_refused_uploads(ws, files, results)
    except KeyboardInterrupt:
        state, error = "interrupted", f"interrupted (Ctrl-C); resume it with `archivist jobs resume {job.id}`"
        raise
    except BaseException as e:
        state, error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        bar.close()
        if state == "cancelled":
            reached = {r.name for r in results}
            results += [FileResult(n, "cancelled", reason="cancelled before it was ingested") for _, n in files if n not in reached]
        jobs.end(ws, job.id, state, error=error, result=job_summary(results), message=counts_line(results),
                 done=sum(r.status != "cancelled" for r in results))
    _unqueue(ws, cid, [r.name for r in results if r.status in ("failed", "cancelled")])
    order = {name: i for i, (_, name) in enumerate(files)}
    results.sort(key=lambda r: order.get(r.name, 0))
    return results


def _unqueue(ws: Workspace, cid: int, names: list[str]) -> None:
    """Documents `mark_queued` marked for reading again whose file then failed to read (or whose job
    was cancelled first) keep their last version, as it was: 'ready' again, not 'queued' for ever."""
    if not names:
        return
    with transaction(ws.db):
        for at in range(0, len(names), 500):
            part = names[at:at + 500]
            ws.db.execute(f"UPDATE documents SET status = 'ready' WHERE collection_id = ? AND status = 'queued' "
                          f"AND path IN ({','.join('?' * len(part))})", [cid, *part])


def interrupted_jobs(ws: Workspace, user: str | None = None) -> list[jobs.Job]:
    """Ingest and upload jobs a crash, kill -9 or restart cut short (`jobs.reconcile`), that `user`
    may see (their own; an admin: everyone's), oldest first."""
    return jobs.interrupted(ws, INGEST_KINDS, user)


def resume_interrupted(ws: Workspace, user: str | None = None, embedder=None, progress: bool = False,
                       on_file: Callable[[FileResult, int, int], None] | None = None,
                       prepare: Prepare | None = None) -> list[tuple[jobs.Job, list[FileResult]]]:
    """Finish the interrupted ingest jobs `user` may see (None: every user's, for a server starting
    up): each is claimed (`jobs.claim_interrupted`, so only one process resumes it) and run again
    under its own id, as its owner: what it had committed comes back `unchanged`, a file since
    removed fails with its reason. Returns (job, results) per resumed job."""
    return [(job, run_job(ws, job.id, embedder=embedder, progress=progress, on_file=on_file, prepare=prepare))
            for job in jobs.claim_interrupted(ws, INGEST_KINDS, user)]


def resume_job(ws: Workspace, job_id: str, user: str | None = None, embedder=None, progress: bool = False) -> list[FileResult]:
    """Resume `user`'s interrupted, failed or cancelled ingest job `job_id` in this process (as its
    owner, under its id). Raises LookupError (unknown, or another user's), JobError (not resumable)."""
    job = jobs.get(ws, job_id, user)
    if job.kind not in INGEST_KINDS:
        raise jobs.JobError(f"job {job_id} is a {job.kind} job, not an ingestion")
    jobs.requeue(ws, job_id, user)
    return run_job(ws, job_id, embedder=embedder, progress=progress)


# -- documents: list, delete, reindex --------------------------------------------------------


def list_documents(ws: Workspace, user: str | None = None, collection: str | None = None,
                   limit: int | None = None, after: int | None = None) -> list[dict]:
    """Documents in the collections `user` may read (optionally one collection), newest first.
    Each has `ocr_pages` (pages read by OCR) and `low_confidence_pages` (those whose mean OCR
    confidence is under ocr.LOW_CONFIDENCE: their text may be wrong).

    A page of them: at most `limit`, those listed after the document with id `after` (the last of
    the previous page; one deleted since still marks its place: ids grow as documents are added).
    """
    readable = access.readable_collections(ws, user)
    if collection is not None:
        readable = [c for c in readable if c == collection]
    if not readable:
        return []
    marks = ",".join("?" * len(readable))
    where, args = f"k.name IN ({marks})", list(readable)
    if after is not None:  # a document `user` may not read marks its place as a deleted one: its added_at is not theirs to probe
        at = ws.db.execute(f"SELECT d.added_at FROM documents d JOIN collections k ON k.id = d.collection_id "
                           f"WHERE d.id = ? AND {where}", (int(after), *args)).fetchone()
        if at is None:
            where += " AND d.id < ?"
            args.append(int(after))
        else:
            where += " AND (d.added_at < ? OR (d.added_at = ? AND d.id < ?))"
            args += [at[0], at[0], int(after)]
    return _documents(ws, where, args, limit)


def _documents(ws: Workspace, where: str, args: list, limit: int | None = None) -> list[dict]:
    """The document rows (as list_documents gives them) that `where` selects, newest first."""
    rows = ws.db.execute(
        f"SELECT d.id, d.path AS name, k.name AS collection, d.kind, d.pages, d.size, d.status, d.content_hash, "
        f"d.added_at, d.updated_at, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS chunks, d.ocr "
        f"FROM documents d JOIN collections k ON k.id = d.collection_id WHERE {where} "
        f"ORDER BY d.added_at DESC, d.id DESC" + (" LIMIT ?" if limit is not None else ""),
        args + ([int(limit)] if limit is not None else [])).fetchall()
    return [_with_ocr(dict(r)) for r in rows]


def _with_ocr(doc: dict) -> dict:
    from archivist.ingest.ocr import LOW_CONFIDENCE

    confidence = {int(page): conf for page, conf in json.loads(doc.pop("ocr") or "{}").items()}
    doc["ocr_pages"] = sorted(confidence)
    doc["low_confidence_pages"] = sorted(page for page, conf in confidence.items() if conf < LOW_CONFIDENCE)
    return doc


def find_document(ws: Workspace, ref: str | int, user: str | None = None, collection: str | None = None) -> dict:
    """One readable document by id or name; raises LookupError when there is none or several."""
    ref = unicodedata.normalize("NFC", ref) if isinstance(ref, str) else ref  # names are stored NFC (clean_name)
    readable = access.readable_collections(ws, user)
    if collection is not None:
        readable = [c for c in readable if c == collection]
    if not readable:
        raise LookupError(f"no document {ref!r}")
    # Only the rows `ref` can name are read (it once listed every readable document, for each lookup):
    # by id, by whole name (the (collection, name) index), or by the last part of the name.
    cids = [r[0] for r in ws.db.execute(f"SELECT id FROM collections WHERE name IN ({','.join('?' * len(readable))})",
                                        readable)]
    scope, key = f"d.collection_id IN ({','.join('?' * len(cids))})", str(ref)
    hits = _documents(ws, f"{scope} AND d.id = ?", [*cids, int(key)]) if key.isascii() and key.isdigit() \
        and str(int(key)) == key and int(key) <= 2**63 - 1 else []
    hits = hits or _documents(ws, f"{scope} AND d.path = ?", [*cids, key]) or [
        d for d in _documents(ws, f"{scope} AND substr(d.path, -length(?) - 1) = '/' || ?", [*cids, key, key])
        if d["name"].rsplit("/", 1)[-1] == key]
    if not hits:
        raise LookupError(f"no document {ref!r}")
    if len(hits) > 1:  # which ones, and what tells them apart (--collection does not when they share one)
        names, where = sorted({d["name"] for d in hits}), sorted({d["collection"] for d in hits})
        some = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        hint = "use its id" + (" or whole name" if len(names) > 1 else "") + (" or --collection" if len(where) > 1 else "")
        raise LookupError(f"{ref!r} names {len(hits)} documents ({some}; in {', '.join(where)}): {hint}")
    return hits[0]


def document_source(ws: Workspace, ref: str | int, user: str | None = None) -> Path | None:
    """The file a readable document was read from, when it is still there (page images of citations);
    raises LookupError like find_document."""
    doc = find_document(ws, ref, user)
    row = ws.db.execute("SELECT source FROM documents WHERE id = ?", (doc["id"],)).fetchone()
    source = stored_upload(ws, row["source"]) if row and row["source"] else None
    return source if source is not None and source.is_file() else None


def document_chunks(ws: Workspace, ref: str | int, user: str | None) -> tuple[dict, list[dict]]:
    """A readable document and its chunks in order: (document, [{id, seq, page, heading, text,
    n_tokens, start, end}]). Raises LookupError when it does not exist or `user` may not read it."""
    doc = find_document(ws, ref, user)
    rows = ws.db.execute("SELECT id, seq, page, heading, text, n_tokens, start, end FROM chunks WHERE document_id = ? "
                         "ORDER BY seq", (doc["id"],)).fetchall()
    return doc, [dict(r) for r in rows]


def mark_queued(ws: Workspace, ids: Sequence[int]) -> None:
    """Mark documents for reading again: the pipeline then does not skip them as unchanged, and they
    stay searchable until their new chunks replace the old ones."""
    with transaction(ws.db):
        ws.db.executemany("UPDATE documents SET status = 'queued' WHERE id = ?", [(i,) for i in ids])


def sync_indexes(ws: Workspace, cid: int, fresh: dict[int, np.ndarray] | None = None, forget: bool = False) -> None:
    """Bring collection `cid`'s FAISS index and the lexical index in step with SQLite after chunks were
    written or deleted (`fresh`: vectors just computed, spared a read back; `forget`: a delete). Up to
    HOLD_INDEXES_UP_TO chunks this process syncs the files itself (holding them: a few MB). Past it, it
    only tells the searching processes (`vectors.note_changed`, `lexicon_store.append`), in memory that
    does not grow with the index, and the next search syncs (bench/RESULTS.md, finding 17); but a delete
    syncs both itself (1.5 KB a chunk for FAISS), so no word or vector of it waits on disk for a search."""
    n = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    if n <= HOLD_INDEXES_UP_TO or forget:
        vectors.sync(ws, cid, fresh)
        lexicon_store.sync(ws)
    else:
        vectors.note_changed(ws, cid)
        lexicon_store.append(ws)


def remove_documents(ws: Workspace, ids: Sequence[int], user: str | None, reason: str | None = None,
                     versions: dict[int, str] | None = None) -> list[int]:
    """Delete documents `ids` (of collections `user` may write: the caller checked) from SQLite, FTS5
    and FAISS in one transaction, each with its `document.deleted` record (naming `reason`, if any); then
    FTS5 merged, index files synced, WAL emptied: no file keeps their text (`secure_delete` zeroes pages).
    versions: {id: content_hash} of the versions the caller read; a document whose stored version is
    another by now (an ingest updated it meanwhile) is left alone. Returns the ids so left."""
    changed: list[int] = []
    if not ids:
        return changed
    cids = set()
    with transaction(ws.db):
        for doc_id in ids:
            row = ws.db.execute("SELECT d.path, d.content_hash, d.collection_id, k.name FROM documents d "
                                "JOIN collections k ON k.id = d.collection_id WHERE d.id = ?", (doc_id,)).fetchone()
            if row is None:
                continue
            if versions and doc_id in versions and row["content_hash"] != versions[doc_id]:
                changed.append(doc_id)
                continue
            ws.db.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
            ws.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            audit.record(ws, "document.deleted", user=access.current_user(ws, user), target=row["path"],
                         detail={"document_id": doc_id, "collection": row["name"], "sha256": row["content_hash"],
                                 **({"reason": reason} if reason else {})})
            cids.add(row["collection_id"])
        if cids:  # in the delete's own transaction: a kill after its commit leaves no word in FTS5
            ws.db.execute(MERGE_FTS)
    if cids:
        forget(ws, sorted(cids), merged=True)
    return changed


def forget(ws: Workspace, cids: Sequence[int], fresh: dict[int, np.ndarray] | None = None, merged: bool = False) -> None:
    """After chunks of collections `cids` left SQLite (a delete; a re-ingest replacing a document's chunks), no file
    keeps their text or vectors: FTS5 merged (unless `merged` already; it rewrites the whole full-text index), the
    index files synced at any size (`fresh` as for `sync_indexes`), a re-embed's staging rid of them, and the WAL,
    which holds the pages as they were, emptied (waiting 2 s at most: a reader keeps it till the next delete)."""
    if not merged:
        with transaction(ws.db):
            ws.db.execute(MERGE_FTS)
    for cid in cids:
        sync_indexes(ws, cid, fresh, forget=True)
    reembed.forget_deleted(ws)
    truncate_wal(ws.db, wait_ms=2000)


def delete_document(ws: Workspace, ref: str | int, user: str | None = None, collection: str | None = None) -> dict:
    """Remove a document from SQLite, FTS5 and FAISS together. Needs write access to its collection."""
    doc = find_document(ws, ref, user, collection)
    access.require(ws, user, doc["collection"], "write")
    remove_documents(ws, [doc["id"]], user)
    return doc


def delete_documents(ws: Workspace, refs: Sequence[str | int], user: str | None = None) -> tuple[list[dict], list[tuple[str | int, str]]]:
    """Remove several documents (by id or name, each found and checked like `delete_document`) in one
    transaction and one index sync per collection: deleted one at a time, every delete rewrote the
    collection's FAISS file and the lexical index (the app's delete of 300 selected rows of 2,573 took
    17 s). Returns (the documents deleted, [(ref, why not)] for those not found or not writable)."""
    found: dict[int, dict] = {}
    refused: list[tuple[str | int, str]] = []
    for ref in refs:
        try:
            doc = find_document(ws, ref, user)
            access.require(ws, user, doc["collection"], "write")
        except (access.AccessDenied, LookupError) as e:
            refused.append((ref, str(e)))
        else:
            found.setdefault(doc["id"], doc)
    remove_documents(ws, list(found), user)
    return list(found.values()), refused


def reindex(ws: Workspace, reembed: bool = False, embedder=None, progress: bool = True) -> dict:
    """Rebuild every FAISS index and the lexical index from SQLite; with `reembed`, embed every chunk again first
    (after switching embedders). Returns {collection: total vectors}."""
    if reembed:
        from tqdm import tqdm

        from archivist.models import embedder_for, embedder_identity

        embedder = embedder or embedder_for(ws.settings)
        identity = embedder_identity(embedder)
        total = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        bar = tqdm(total=total, unit="chunk", desc="re-embed", file=sys.stderr, disable=not progress)
        last = -1
        # A batch at a time by id: the workspace's chunks are never all in memory at once.
        while part := ws.db.execute("SELECT id, text, heading FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                                    (last, BATCH_CHUNKS)).fetchall():
            last = part[-1]["id"]
            inputs = [embed_text(r["text"], r["heading"]) for r in part]
            vecs = embedder.embed(inputs, batch_size=ws.settings.embed_batch)
            with transaction(ws.db):
                for r, t, v in zip(part, inputs, vecs):
                    ws.db.execute("UPDATE chunks SET embedding=?, hash=? WHERE id=?", (v.astype(np.float32).tobytes(), vector_key(identity, t), r["id"]))
            bar.update(len(part))
        bar.close()
        vectors.record_embedder(ws, embedder)
    out = {}
    for cid, name in ws.db.execute("SELECT id, name FROM collections").fetchall():
        out[name] = vectors.sync(ws, cid, rebuild=True)["total"]
    lexicon_store.sync(ws, rebuild=True)
    return out
