"""`archivist erase DOCUMENT`: delete a document and every copy of its text the workspace made.

`archivist delete` removes the document, its chunks, vectors, lexical postings and FTS rows. Erasing
also reaches the copies made from it, each through the module that owns them:

    feedback citing it (or holding its text)     archivist/feedback.py     deleted, or kept as a bare rating
    chat messages citing it                      archivist/conversations.py  text replaced by "[erased]"
    dataset examples built from or showing it    finetune/dataset_store.py dropped from datasets/<name>/
    stored evaluation passages, quotes, answers  retrieval/evaluation.py   replaced by "[erased]"
    its upload                                   ingest/uploads.py         the file under uploads/
    adapters that learned from it                archivist/adapters.py     marked stale; examples in metrics.json dropped

and then leaves no trace in the files: SQLite with secure_delete on (workspace.connect), the FTS index optimized, the
lexical index compacted without its terms, VACUUM, and the WAL checkpointed and truncated. What it cannot remove: what
an adapter's weights learned, until the adapter is retrained (`archivist finetune --retrain NAME`).
The audit log keeps that the document existed and was erased (its name and hash, never its text).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archivist import access, adapters, audit, conversations, feedback
from archivist.files import files_holding
from archivist.needles import Needles
from archivist.workspace import Workspace, compact, transaction

_COUNTS = ("feedback_deleted", "feedback_anonymized", "messages", "evaluations", "adapter_examples", "earlier_uploads")
_VERSIONS = 3  # new versions an erase follows (one ingested while the last one's copies were scrubbed)
MIN_MATCH = 24  # characters: shorter strings ("Introduction", a heading) are too common to call a copy
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class EraseReport:
    """What `erase` removed (counts per place) and which adapters learned from the document."""

    document: str
    collection: str
    document_id: int
    chunks: int
    feedback_deleted: int = 0
    feedback_anonymized: int = 0
    messages: int = 0
    dataset_examples: dict[str, int] = field(default_factory=dict)
    evaluations: int = 0
    upload: str | None = None  # the file removed (a member's erase: its upload, removed or kept for another document)
    earlier_uploads: int = 0  # uploads of its earlier versions (replaced by a new upload under its name) removed
    adapters: list[str] = field(default_factory=list)  # marked stale: their weights learned the document
    embedders: list[str] = field(default_factory=list)  # adapted retrievers marked stale, likewise
    adapter_examples: int = 0
    wal_truncated: bool = True
    leftovers: list[str] = field(default_factory=list)  # files that still hold its text (should stay empty)
    leftovers_checked: bool = True  # False for a member's erase (the files hold others' text too) and a rerun (the text is gone)
    held_elsewhere: list[str] = field(default_factory=list)  # other documents ("name (collection)") holding some of its sentences
    # copies holding its text left because another document holds that text and they were not drawn
    # from this one: {"feedback" | "messages" | "dataset_examples": how many}
    held_copies: dict[str, int] = field(default_factory=dict)
    in_audit_log: bool = False  # a question or search quoted it: the append-only log keeps it as asked
    resumed: bool = False  # finished by a rerun after the document itself was already gone


def _norm(s: str) -> str:
    return " ".join(unicodedata.normalize("NFC", s).split())


def _utf8(s: str) -> bytes:
    """`s` as the bytes `Needles` searches (a text's substrings are its bytes' substrings; a lone
    surrogate, which a stored string may hold, is kept rather than refused)."""
    return s.encode("utf-8", "surrogatepass")


def matcher(text: str, chunks: list[str], others=None):
    """`erased(s) -> bool`: whether `s` holds a sentence of the document (or a chunk), or is itself a
    passage of it (or of a chunk: an earlier version's passages come as chunks) at least MIN_MATCH
    characters long. Whitespace and Unicode forms are normalized.

    `others`: the remaining documents, (label, normalized text) pairs read once (`_other_documents`):
    a sentence, chunk or passage one of them holds is that document's too and does not count (erase
    leaves another document's copies alone). `erased.shared(s)` says whether `s` holds the document's
    text only where another document holds it (a copy erase leaves, and reports); `erased.holders`
    names the documents holding some of it."""
    whole = _norm(text)
    # the chunks (earlier versions' passages among them) as one string; a match across a NUL needs `s` to hold one
    parts = "\0".join(c for c in (_norm(c) for c in chunks) if len(c) >= MIN_MATCH and c not in whole)
    needles = {n for n in (_norm(p) for p in _SENTENCE.split(text) + chunks) if len(n) >= MIN_MATCH}
    holders: dict[str, str] = {}  # the other documents that hold one of its sentences or chunks (a copy of it): label -> text
    shared: set[str] = set()
    search = Needles(_utf8(n) for n in needles)  # each other document read once for all of them
    for label, other in others or ():
        if held := search.found(_utf8(other)):
            shared |= {n.decode("utf-8", "surrogatepass") for n in held}
            holders[label] = other
    own = Needles(_utf8(n) for n in needles - shared)
    in_shared = Needles(_utf8(n) for n in shared)
    held: dict[str, bool] = {}  # passage -> whether another document holds it (asked per stored string)

    def passage(s: str) -> bool:
        if len(s) < MIN_MATCH or not (s in whole or s in parts):
            return False
        if s not in held:
            held[s] = any(s in h for h in holders.values())
        return not held[s]

    def erased(s: str) -> bool:
        if not s or not isinstance(s, str):
            return False
        s = _norm(s)
        return bool(own.found(_utf8(s))) or passage(s)

    def is_shared(s: str) -> bool:
        if not s or not isinstance(s, str):
            return False
        t = _norm(s)
        return (bool(in_shared.found(_utf8(t))) or (len(t) >= MIN_MATCH and (t in whole or t in parts))) and not erased(s)

    erased.shared, erased.holders = is_shared, sorted(holders)
    return erased


def erase(ws: Workspace, ref: str | int, user: str | None = None, collection: str | None = None,
          keep_ratings: bool = False) -> EraseReport:
    """Erase document `ref` (id or name) everywhere; returns the report. Needs write access to its
    collection. Raises LookupError for no such document (or one the user may not read).

    It runs as an `erase` job, in an order that makes a cut-short erase safe to run again: first the
    copies (each step idempotent, while the document still exists), then the document itself, then
    the audit record, the stale marks and the compaction. Rerunning `archivist erase DOCUMENT` (or
    `archivist jobs resume ID`) after a kill finishes it: with the document still there, from the
    start; with the document gone, the remaining steps, found through the interrupted job."""
    from archivist import jobs
    from archivist.ingest.pipeline import find_document

    actor = access.current_user(ws, user)
    try:
        doc = find_document(ws, ref, actor, collection)
    except LookupError:
        job = _interrupted(ws, actor, lambda spec: str(ref) in (spec["document"], str(spec["document_id"]))
                           and collection in (None, spec["collection"]))
        # only a job whose document is gone is finished from here: one the actor can no longer read
        # (access revoked since) stays "no document", where resume() would call back here for ever
        if job is None or ws.db.execute("SELECT 1 FROM documents WHERE id = ?", (job.spec["document_id"],)).fetchone():
            raise
        return resume(ws, job.id, actor)
    access.require(ws, actor, doc["collection"], "write")
    _refuse_live_ingest(ws, doc)
    job = _interrupted(ws, actor, lambda spec: spec["document_id"] == doc["id"])
    if job is not None:
        jobs.start(ws, job.id, resume=True)
    else:
        job = jobs.create(ws, "erase", actor, spec={
            "document": doc["name"], "document_id": doc["id"], "collection": doc["collection"],
            "sha256": doc["content_hash"], "keep_ratings": keep_ratings})
        jobs.start(ws, job.id)
    try:
        for _ in range(_VERSIONS):
            report = _erase_copies(ws, doc, actor, job.spec.get("keep_ratings", keep_ratings))
            job = jobs.get(ws, job.id, actor)
            counts = _merge(job.spec.get("report"), asdict(report))
            jobs.update_spec(ws, job.id, {**job.spec, "report": counts, "sha256": doc["content_hash"]})
            _counted(report, counts)
            if _delete(ws, doc, actor):
                return _finish(ws, jobs.get(ws, job.id, actor), actor, report)
            # an ingest stored a new version while the copies of this one were scrubbed: the new
            # version's copies are scrubbed too before it goes, and the record names the version deleted
            doc = find_document(ws, doc["id"], actor, doc["collection"])
        raise jobs.JobError(f"{doc['name']}: a new version was ingested {_VERSIONS} times while it was erased; "
                         f"run `archivist erase {doc['name']}` again when its ingestion has stopped")
    except BaseException as e:
        if not isinstance(e, (KeyboardInterrupt, SystemExit)):
            jobs.fail(ws, job.id, f"{type(e).__name__}: {e}; run `archivist erase {doc['name']}` again to finish it")
        raise


def resume(ws: Workspace, job_id: str, user: str | None = None) -> EraseReport:
    """Finish an interrupted erase job, as its owner: from the start while its document still
    exists, else its remaining steps (the record, the stale marks, the compaction). Raises LookupError
    for a job `user` may not see, JobError for one that is not resumable, AccessDenied when the owner
    may no longer write to the document's collection."""
    from archivist import jobs

    asker = access.current_user(ws, user)
    job = jobs.get(ws, job_id, asker)
    # as its owner, whoever resumes it (an admin resuming a member's erase would otherwise start a
    # job of their own, with an admin's reach, and leave the member's unfinished); as the asker
    # only when the owner's account is gone
    try:
        actor = access.current_user(ws, job.owner)
    except access.AccessDenied:
        actor = asker
    spec = job.spec
    if ws.db.execute("SELECT 1 FROM documents WHERE id = ?", (spec["document_id"],)).fetchone():
        return erase(ws, spec["document_id"], actor, spec["collection"], spec.get("keep_ratings", False))
    jobs.start(ws, job.id, resume=True)
    prior = spec.get("report") or {}
    report = EraseReport(document=spec["document"], collection=spec["collection"], document_id=spec["document_id"],
                         chunks=prior.get("chunks", 0), resumed=True)
    _counted(report, prior)
    return _finish(ws, jobs.get(ws, job.id, actor), actor, report)


def _interrupted(ws: Workspace, actor: str, match):
    """The oldest interrupted (or failed) erase job of `actor` whose spec `match`es, or None. Only
    those jobs are read (by state, in SQL): reading the newest 1,000 erase jobs missed an older cut-short
    one, and its document, already deleted, was then "no document" for good."""
    from archivist import jobs

    cut = [j for state in jobs.RESUMABLE for j in jobs.list_jobs(ws, actor, ("erase",), limit=10_000, state=state)]
    for job in sorted(cut, key=lambda j: (j.created_at, j.id)):
        if job.owner == actor and match(job.spec):
            return job
    return None


def _erase_copies(ws: Workspace, doc: dict, actor: str, keep_ratings: bool) -> EraseReport:
    """Step 1, while the document exists: every copy of its text, each through its owner."""
    from archivist.finetune import dataset_store
    from archivist.ingest.uploads import workspace_copy
    from archivist.retrieval import evaluation

    row = ws.db.execute("SELECT text, source FROM documents WHERE id = ?", (doc["id"],)).fetchone()
    chunks = {r[0]: r[1] for r in ws.db.execute("SELECT id, text FROM chunks WHERE document_id = ? ORDER BY seq", (doc["id"],))}
    text = _document_text(row["text"], chunks.values())
    # Its earlier versions (a changed file replaces the document in place) are gone from the documents
    # table, but answers and feedback that cited them kept their passages, and datasets built from
    # those hold them: their text is the document's too.
    earlier = [t for t in dict.fromkeys(conversations.passages_of(ws, doc["name"], doc["collection"])
                                        + feedback.passages_of(ws, doc["name"], doc["collection"])) if t not in text]
    # A member's erase looks for the text only in their own data; copies that cite the document go
    # from everyone's. Matching everyone's made erase an oracle: a member ingested a guessed
    # sentence into their collection, erased it, and the counts said whether anyone had it (and
    # that copy was destroyed). An admin's erase reaches every copy.
    owner = None if access.is_admin(ws, actor) else actor
    # Text another remaining document holds (a copy of the file in another collection, a shared
    # paragraph) is that document's as well: a copy found only by such text is left (a dataset built
    # from the other copy lost its examples). For a member, only the documents they may read count:
    # any other would make what erase leaves tell them another collection holds the text.
    readable = None if owner is None else set(access.readable_collections(ws, actor))
    erased = matcher(text, list(chunks.values()) + earlier, _other_documents(ws, doc["id"], readable))
    report = EraseReport(document=doc["name"], collection=doc["collection"], document_id=doc["id"], chunks=len(chunks))
    report.needles = erased_sentences("\n\n".join([text, *earlier]))  # not a field: the text stays out of reports and jobs
    report.held_elsewhere = erased.holders
    left_messages: list[int] = []
    left_examples: dict[str, int] = {}
    fb = feedback.erase_document(ws, doc["name"], doc["collection"], erased, keep_ratings, owner=owner)
    report.feedback_deleted, report.feedback_anonymized = fb["deleted"], fb["anonymized"]
    report.messages = conversations.erase_document(ws, doc["name"], erased, doc["collection"], owner=owner,
                                                   left=left_messages)
    dropped = dataset_store.erase_document(ws, doc["id"], set(chunks), erased, owner=owner, left=left_examples)
    report.dataset_examples = _visible_datasets(ws, actor, dropped) if owner else dropped
    report.held_copies = {k: v for k, v in (("feedback", fb["left"]), ("messages", len(left_messages)),
                                            ("dataset_examples", sum(left_examples.values()))) if v}
    report.evaluations = evaluation.erase_text(ws, erased, owner=owner)
    upload = workspace_copy(ws, row["source"])  # before either removes anything: the mapping needs the file
    if upload is not None:
        removed = _remove_upload(ws, upload, doc["id"])
        # a member is told the file left the document either way: told that it stays (another
        # document read from the same bytes under the same name), they would learn that a
        # collection they cannot read holds that exact file. `_finish` records the truth.
        report.upload = removed if owner is None else str(upload)
    # whether or not this version was uploaded: an earlier one may have been, and a cut-short
    # job holding it would bring it back when resumed
    report.earlier_uploads = _remove_earlier_uploads(ws, upload, doc, member=owner is not None)
    # an adapter's evaluation examples were drawn from the documents its lineage lists: unless one
    # of those holds the text too, the text they show came from this document, shared or not
    plain = matcher(text, list(chunks.values()) + earlier)
    everyone = None  # a member's erase: the holders in every collection, read once if needed
    for name in adapters.learned_from(ws, doc["id"]):
        match, shown = erased, True
        if owner is not None and not adapters.may_use(ws, actor, name):
            # it learned from a collection the member may not read too: a document there holding
            # the text is where those examples may have come from, and it keeps them; how many
            # went is not the member's to know (it would say whether such a document holds it)
            everyone = everyone or matcher(text, list(chunks.values()) + earlier, _other_documents(ws, doc["id"], None))
            match, shown = everyone, False
        n = adapters.scrub_metrics(ws, name, match if _learned_from_holders(ws, name, match.holders) else plain)
        report.adapter_examples += n if shown else 0
    return report


def _delete(ws: Workspace, doc: dict, actor: str) -> bool:
    """Step 2: the document, its chunks, vectors, lexical postings and FTS rows, if it is still the
    version whose copies step 1 scrubbed (`doc`'s content_hash); False, deleting nothing, when an
    ingest stored another version meanwhile (deleted unseen, its copies would stay)."""
    from archivist.ingest.pipeline import remove_documents

    return not remove_documents(ws, [doc["id"]], actor, versions={doc["id"]: doc["content_hash"]})


def _finish(ws: Workspace, job, actor: str, report: EraseReport) -> EraseReport:
    """Step 3, the document gone: mark what learned from it stale and record the erase (one
    transaction, once per job), drop its lexical terms, compact, and end the job."""
    from archivist import jobs
    from archivist.finetune import embedders
    from archivist.retrieval import lexicon_store

    spec = job.spec
    report.embedders = embedders.learned_from(ws, spec["document_id"])
    why = f"trained on a deleted document: {spec['document']}"
    embedders.mark_stale(ws, report.embedders, why)  # files, idempotent: before the record that says so
    with transaction(ws.db):
        # looked up inside the transaction that records the erasure: a run registering meanwhile
        # (adapters.register checks the record in its own transaction) is either found here or
        # finds the record; looked up before, it could do neither and stay fresh
        report.adapters = adapters.learned_from(ws, spec["document_id"])
        adapters.mark_stale(ws, report.adapters, why)
        if not audit.has_job_record(ws, "document.erased", job.id):
            audit.record(ws, "document.erased", user=actor, target=spec["document"], detail={
                "job": job.id, "document_id": spec["document_id"], "collection": spec["collection"],
                "sha256": spec.get("sha256"), "chunks": report.chunks, "feedback_deleted": report.feedback_deleted,
                "feedback_anonymized": report.feedback_anonymized, "messages": report.messages,
                "dataset_examples": report.dataset_examples, "evaluations": report.evaluations,
                "upload": bool(report.upload) and not Path(report.upload).exists(), "earlier_uploads": report.earlier_uploads,
                "adapter_examples": report.adapter_examples, "held_copies": report.held_copies,
                "stale_adapters": report.adapters,
                "stale_embedders": report.embedders})
    # an adapted embedder saved between the scan above and the record checked for the record
    # before it was there (finetune/embedders.py `publish`): the record is committed now, so
    # one saved from here on marks itself, and one saved meanwhile is found by this second scan
    late = [e for e in embedders.learned_from(ws, spec["document_id"]) if e not in report.embedders]
    embedders.mark_stale(ws, late, why)
    report.embedders += late
    lexicon_store.sync(ws)  # the term table then holds no word only this document had
    report.wal_truncated = _compact(ws)
    needles = getattr(report, "needles", None)  # None on a resume: the text was already gone
    if not access.is_admin(ws, actor):
        # what a member is told stays within what they may see: the adapters and adapted embedders
        # they may use (a name is about what it learned), and no scan of files that hold other
        # users' text (which would say whether the text is there)
        report.adapters = [a for a in report.adapters if adapters.may_use(ws, actor, a)]
        report.embedders = [e for e in report.embedders if embedders.may_use(ws, actor, embedders.load_manifest(ws, e))]
        report.leftovers_checked = False
    elif needles is not None:
        found = files_holding(ws.home, needles)
        # a sentence another document also holds is that document's, not a leftover; the scan says
        # which sentences the database files still hold, and only those are looked up
        others = _held_by_others(ws, sorted(set().union(*(held for f, held in found.items() if f.startswith("archivist.db")))))
        report.held_elsewhere = sorted({d for docs in others.values() for d in docs} | set(report.held_elsewhere))
        report.leftovers = [f for f, held in found.items() if held - others.keys()]
        if "archivist.db" in report.leftovers:
            report.in_audit_log = audit.quotes(ws, [n.decode("utf-8") for n in needles])
    else:
        report.leftovers_checked = False  # a rerun: the scan looks for the text, which went with the document
    jobs.finish(ws, job.id, result=asdict(report), message=f"erased {spec['document']}")
    return report


def _learned_from_holders(ws: Workspace, adapter: str, holders: list[str]) -> bool:
    """Whether adapter `adapter`'s lineage lists one of the documents `holders` ("name (collection)")."""
    docs = (adapters.get(ws, adapter)["lineage"] or {}).get("documents") or []
    return any(isinstance(d, dict) and f"{d.get('path')} ({d.get('collection')})" in holders for d in docs)


def _document_text(stored: str | None, chunk_texts) -> str:
    """A document's text: as stored, or for a CSV read as a stream, which stores none, its chunks'
    texts in order (`reading.Pending.text`); `chunk_texts` is read only then."""
    return stored or "\n\n".join(chunk_texts)


def _other_documents(ws: Workspace, document_id: int, collections: set[str] | None):
    """("name (collection)", normalized text) of each remaining document but `document_id`, one at a
    time (only those of `collections`; None: every collection's): `matcher`'s `others`."""
    rows = ws.db.execute("SELECT d.id, d.path, c.name FROM documents d JOIN collections c ON c.id = d.collection_id "
                         "WHERE d.id != ? ORDER BY d.id", (document_id,)).fetchall()
    for other, name, collection in rows:
        if collections is not None and collection not in collections:
            continue
        row = ws.db.execute("SELECT text FROM documents WHERE id = ?", (other,)).fetchone()
        if row is None:  # deleted since the list was read (another process's delete): it holds nothing now
            continue
        text = _document_text(row[0], (r[0] for r in ws.db.execute(
            "SELECT text FROM chunks WHERE document_id = ? ORDER BY seq", (other,))))
        yield f"{name} ({collection})", _norm(text)


def _held_by_others(ws: Workspace, needles: list[bytes]) -> dict[bytes, list[str]]:
    """{sentence: ["name (collection)", ...]} for the erased document's sentences `needles` (those
    the scan found in the database files) that remaining documents also hold (the same text under
    another name or in another collection): erase leaves those documents alone, so their copies
    are not leftovers. Each document is read once for all of them: a search of every document per
    sentence took 82 s for a 5,000-line file whose copy sits in another collection (every sentence found).
    A streamed CSV's text is its chunks' (`_document_text`), joined by a newline, which no sentence holds."""
    out: dict[bytes, list[str]] = {}
    if not needles:
        return out
    search = Needles(needles)
    for did, name, collection, text in ws.db.execute(  # a row at a time: the texts of a workspace are never held at once
            "SELECT d.id, d.path, c.name, d.text FROM documents d JOIN collections c ON c.id = d.collection_id"):
        if not text:
            text = "\n".join(r[0] for r in ws.db.execute("SELECT text FROM chunks WHERE document_id = ?", (did,)))
        for n in search.found(_utf8(text)):
            out.setdefault(n, []).append(f"{name} ({collection})")
    return out


def _merge(old: dict | None, new: dict) -> dict:
    """The counts of a first, cut-short pass added to a rerun's (which finds those copies gone)."""
    if not old:
        return new
    out = {**old, **{k: v for k, v in new.items() if v}}
    for k in _COUNTS:
        out[k] = old.get(k, 0) + new.get(k, 0)
    for k in ("dataset_examples", "held_copies"):  # per place: added, so no pass's count is lost
        a, b = old.get(k) or {}, new.get(k) or {}
        out[k] = {d: a.get(d, 0) + b.get(d, 0) for d in {**a, **b}}
    out["held_elsewhere"] = sorted(set(old.get("held_elsewhere") or []) | set(new.get("held_elsewhere") or []))
    return out


def _counted(report: EraseReport, counts: dict) -> None:
    """Set the report's counts of removed copies from `counts` (a job's spec: every pass so far)."""
    for k in _COUNTS + ("dataset_examples", "upload", "held_elsewhere", "held_copies"):
        if k in counts:
            setattr(report, k, counts[k])


def _remove_upload(ws: Workspace, path: Path, document_id: int) -> str | None:
    """The document's stored upload `path`, removed unless another document was read from it too
    (`uploads.remove_unused_upload`)."""
    from archivist.ingest.uploads import remove_unused_upload

    return str(path) if remove_unused_upload(ws, path, but=document_id) else None


def _remove_earlier_uploads(ws: Workspace, path: Path | None, document: dict, member: bool = False) -> int:
    """Uploads of the document's earlier versions: a new upload under its name is stored in
    uploads/<its sha256 prefix>/<name> and replaces the document, but the earlier version's file
    stayed, with the earlier text, where no leftover check looks (it only knows the current text).
    Found by the versions the audit log recorded and, since retention purges those records, by every
    ingest and upload job into its collection that lists a file under its name. A job cut short
    (interrupted, failed or cancelled) also loses that file (`_drop_from_job`): resumed (`archivist
    serve` resumes interrupted ones at start) it would ingest the erased text again. Each upload is
    removed unless a document reads it. `path`: the current version's upload (None: read from the
    user's own folder). Returns how many were removed; for a `member`, also those a job into its
    collection stored that another document keeps (as `EraseReport.upload`: the count would say
    whether a collection they cannot read holds that exact file)."""
    from archivist import job_files, jobs
    from archivist.ingest.pipeline import INGEST_KINDS
    from archivist.ingest.uploads import remove_unused_upload, workspace_copy

    uploads = (ws.home / "uploads").resolve()
    stem = path.name if path is not None else Path(document["name"]).name
    earlier = {uploads / sha[:16] / stem for sha in audit.versions(ws, document["id"]) if sha != document["content_hash"]}
    uploaded: set[Path] = set()  # the files an ingest or upload into its collection stored under its name
    # the paths each job stores under the name, picked in SQL in one search of the jobs; only a
    # cut-short job, which loses the file, is read whole (by its id)
    for job_id, state, held in job_files.naming(ws, INGEST_KINDS, document["collection"], document["name"], jobs.STATES):
        if state in jobs.LIVE:  # a live one: erase refused to start (`_refuse_live_ingest`); one queued since
            continue  # ingests a newer version, which erase's version loop follows
        if state in jobs.RESUMABLE and ((job := jobs.one(ws, job_id)) is None or job.state not in jobs.RESUMABLE
                                        or not _drop_from_job(ws, job, document["name"])):
            continue  # resumed (or cut short) meanwhile: its upload may be in use
        # only the workspace's own copies: a file ingested from the user's folder is theirs
        uploaded |= {c for p in held if (c := workspace_copy(ws, Path(p)))}
    current = path.resolve() if path is not None else None
    n = 0
    for f in sorted(earlier | uploaded):
        if f != current and f.is_file() and (remove_unused_upload(ws, f, but=document["id"]) or (member and f in uploaded)):
            n += 1
    return n


def _drop_from_job(ws: Workspace, job, name: str) -> bool:
    """Take the files stored as `name` out of the cut-short ingest job `job` (listed among its
    refused files, with why), so resuming it does not ingest the erased document again. Only while
    the job is still in the state it was read in; returns whether it was."""
    from archivist import jobs

    spec = dict(job.spec)
    spec["files"] = [f for f in spec.get("files", []) if f[1] != name]
    spec["refused"] = list(spec.get("refused") or []) + [[name, "erased (archivist erase) before this job finished; not ingested"]]
    # the total is the files to ingest: left as it was, the dropped file counted as waiting and as refused
    return jobs.update_spec(ws, job.id, spec, state=job.state, total=len(spec["files"]))


def _refuse_live_ingest(ws: Workspace, doc: dict) -> None:
    """Raise ValueError when a queued or running ingest or upload job holds a file under the
    document's name in its collection: it would store the document again during or after the erase
    (the erase would follow at most a few new versions, and none stored after it ended). Refused
    rather than cancelled: the job may be another user's batch of many files, and a cancelled job
    stops after the file at hand, which may be this one. A job whose process is gone is marked
    interrupted first (`jobs.reconcile`), and erase then takes the file out of it."""
    from archivist import jobs
    from archivist.ingest.pipeline import INGEST_KINDS

    for job in jobs.every(ws, INGEST_KINDS, doc["collection"], doc["name"], states=jobs.LIVE):
        jobs.reconcile(ws, job.id)
        state = ws.db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if state is not None and state[0] in jobs.LIVE:
            raise ValueError(f"an ingest of {doc['name']} into {doc['collection']} is {state[0]} (job {job.id}): "
                             f"wait for it to end, or cancel it (`archivist jobs cancel {job.id}`), then erase again")


def _visible_datasets(ws: Workspace, actor: str, dropped: dict[str, int]) -> dict[str, int]:
    """{dataset: examples dropped} as a member may be told it: the datasets they may see by name,
    the others' examples together under "other users' datasets"."""
    from archivist.finetune import dataset_store

    mine = {d["name"] for d in dataset_store.list_datasets(ws, actor)}
    out = {name: n for name, n in dropped.items() if name in mine}
    others = sum(n for name, n in dropped.items() if name not in mine)
    return {**out, "other users' datasets": others} if others else out


def _compact(ws: Workspace) -> bool:
    """Rewrite the database without free pages and empty the WAL; returns whether the WAL was
    truncated (another process reading at that moment can hold it; it is emptied on its next checkpoint)."""
    ws.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")  # merge away the deleted entries
    return compact(ws.db)


def erased_sentences(text: str) -> list[bytes]:
    """The document's longer sentences as UTF-8 bytes: what the scan for leftovers (`files_holding`) looks for."""
    return sorted({p.strip().encode("utf-8") for p in _SENTENCE.split(text) if len(p.strip()) >= MIN_MATCH})
