"""The audit log: the one module that writes its records (`record`; audit_retention.py purges old ones,
audit_refusals.py counts repeated refusals before they are written, through `record`).

One record per event, appended in the same SQLite transaction as the action it records (the
owning module calls `record` inside its own `with transaction(ws.db):`), so a killed process
leaves neither an action without its record nor a record without its action.

Each record holds the hash of the one before it:

    digest = sha256(salt + canonical JSON of [user, target, detail])    # its personal part
    hash   = sha256(prev_hash + canonical JSON of ["v2", id, ts, action, digest])

so editing a record changes its hash, and deleting or reordering records breaks the link the next
record holds. The chain holds only the digest of who acted, on what, with which words, so a person's
records can be redacted (`redact`, for `archivist users erase`): their user, target and detail go,
the salt with them (the digest can no longer confirm a guessed question), the stored digest keeps
the chain verifiable, and `verify` counts them and checks each is vouched for by the `user.erased`
record that redacted it. `audit_state` keeps the head (the newest id and hash, caught when the newest records
are deleted) and the checkpoint that retention leaves behind: the id and hash of the last purged
record, itself written into the chain by the `audit.purge` record.

    record(ws, "grant", user="ann", target="rita", detail={...})   # inside the action's transaction
    verify(ws) -> Verdict                                            # `archivist audit verify`
    read(ws, by, user=..., since=..., until=..., action=...)         # admins only
    purge(ws, days, by=...)                                          # retention, with a checkpoint

Action kinds are the strings in KINDS. Reading needs the admin role: members see nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from archivist import access
from archivist.audit_kinds import KINDS  # every action a record may name (its own file: one home)
from archivist.needles import Needles
from archivist.workspace import Workspace, transaction

GENESIS = "0" * 64  # the `prev` of the first record ever written
_QUOTE_BATCH = 8 << 20  # characters of records `quotes` searches at once: the log is never held whole

# The records a person's erasure redacts, of those they made: what they asked, searched, looked at,
# rated and wrote, and when they came in. Their acts on the company's data (ingests, grants they
# gave, fine-tunes, erasures) stay with their name: the company must be able to say who did those.
REDACTED_KINDS = ("question", "question.started", "search", "document.viewed", "feedback.given", "feedback.changed",
                  "auth.sign_in", "auth.password", "key.use", "conversation.deleted")
REDACTED = "[erased]"  # what a redacted record's user shows
SURFACES = ("app", "cli", "api")


class AuditError(ValueError):
    """A bad filter (unknown action kind, unreadable time) or a bad retention setting."""


@dataclass
class Verdict:
    """What `verify` found: ok, how many records it checked, and where the chain breaks."""

    ok: bool
    records: int
    head: str  # the hash of the newest record (keep it elsewhere to catch a rewritten log)
    problems: list[str] = field(default_factory=list)
    redacted: int = 0  # records whose personal part was erased (the chain still checks their digest)


# -- writing ----------------------------------------------------------------------------------------


def _digest_v1(prev: str, rid: int, ts: float, user: str | None, action: str, target: str | None, detail: str) -> str:
    """The hash of a record before schema 12 (it covered the personal part itself); `rechain` reads it."""
    body = json.dumps([rid, repr(ts), user, action, target, detail], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode("utf-8")).hexdigest()


def _personal(salt: str, user: str | None, target: str | None, detail: str) -> str:
    """The digest of a record's personal part: who, on what, with which words."""
    body = json.dumps([user, target, detail], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((salt + body).encode("utf-8")).hexdigest()


def _digest(prev: str, rid: int, ts: float, action: str, personal: str) -> str:
    body = json.dumps(["v2", rid, repr(ts), action, personal], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode("utf-8")).hexdigest()


def record(ws: Workspace, action: str, user: str | None = None, target: str | None = None,
           detail: dict | None = None) -> int:
    """Append one record; returns its id. Call it inside the transaction of the action it records
    (it opens one of its own otherwise). `user` is who acted, `target` what it acted on.
    Raises ValueError for an action kind not in KINDS (a typo would hide events from filters)."""
    if action not in KINDS:
        raise ValueError(f"unknown audit action {action!r}")
    with transaction(ws.db):
        return _append(ws.db, action, user, target, detail)


def _append(db, action: str, user: str | None, target: str | None, detail: dict | None) -> int:
    text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    head = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    state = dict(db.execute("SELECT key, value FROM audit_state WHERE key LIKE 'checkpoint_%'").fetchall())
    prev = head[1] if head else state.get("checkpoint_hash") or GENESIS
    rid = (head[0] if head else int(state.get("checkpoint_id") or 0)) + 1
    ts = time.time()
    salt = secrets.token_hex(16)
    personal = _personal(salt, user, target, text)
    h = _digest(prev, rid, ts, action, personal)
    db.execute("INSERT INTO audit(id, ts, user, action, target, detail, prev, hash, salt, digest) VALUES (?,?,?,?,?,?,?,?,?,?)",
               (rid, ts, user, action, target, text, prev, h, salt, personal))
    db.execute("INSERT OR REPLACE INTO audit_state(key, value) VALUES ('head', ?)", (f"{rid}:{h}",))
    return rid


def _state(ws: Workspace, key: str) -> str | None:
    row = ws.db.execute("SELECT value FROM audit_state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


_KEY_DAYS: set[tuple] = set()  # (action, key prefix, UTC day, why) already recorded by this process


def key_used(ws: Workspace, prefix: str, user: str) -> None:
    """Record the first use of API key `prefix` on each UTC day (a cheap set lookup after that)."""
    _once_a_day(ws, "key.use", prefix, user, {})


def key_rejected(ws: Workspace, prefix: str, owner: str, why: str) -> None:
    """Record that key `prefix` of `owner` was refused (`why`: revoked, wrong secret), once per key,
    reason and UTC day: someone still holds a revoked key, or is guessing at a known one. Who
    presented it is unknown, so the record names no user. Keys no one has are not recorded: any
    caller can make up those, and each would cost a write."""
    _once_a_day(ws, "key.rejected", prefix, None, {"owner": owner, "why": why}, why=why)


def _once_a_day(ws: Workspace, action: str, prefix: str, user: str | None, detail: dict, why: str | None = None) -> None:
    """Record `action` on key `prefix` once per UTC day (and per `why`, when given). The log is read
    once per process and day, since another process may have recorded it meanwhile; then a set lookup."""
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    if (action, prefix, day, why) in _KEY_DAYS:
        return
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    same_why, args = ("", ()) if why is None else (" AND json_extract(detail, '$.why') = ?", (why,))
    with transaction(ws.db):
        seen = ws.db.execute(f"SELECT 1 FROM audit WHERE action = ? AND target = ? AND ts >= ?{same_why} LIMIT 1",
                             (action, f"ak-{prefix}", start, *args)).fetchone()
        if not seen:
            record(ws, action, user=user, target=f"ak-{prefix}", detail={**detail, "day": day})
    _KEY_DAYS.add((action, prefix, day, why))


def question(ws: Workspace, answer, user: str | None, surface: str, collections, started: bool = False,
             documents=None, kinds=None) -> int:
    """Record a question and what it was shown: the chunks and document versions, the adapter and
    model, the answer's mode and status, the answer's sha256 and its citations.
    `collections` is the scope asked for (None: every readable one); `documents` and `kinds`, search's
    filters, are recorded where given (`_filters`). With `started`, the record is a
    `question.started`, written before a streamed draft's first token: the passages it draws on are
    known, the answer not yet, so a process killed mid-stream leaves nothing shown unrecorded."""
    user = access.current_user(ws, user)
    scope, refused = _scope(ws, user, collections)
    detail = {
        "surface": surface if surface in SURFACES else str(surface),
        "collections": scope,
        **({"refused": refused} if refused else {}),
        **_filters(documents, kinds),
        "question": answer.question,
        "shown": _shown(ws, answer.passages),
        "adapter": answer.adapter,
        "model": answer.model,
        "mode": answer.mode,
        "status": answer.status,
        "answer_sha256": hashlib.sha256((answer.answer or "").encode("utf-8")).hexdigest(),
        "citations": [{"n": c.n, "chunk_id": c.chunk_id, "document": c.document} for c in answer.citations],
    }
    if started:
        for k in ("status", "answer_sha256", "citations"):
            del detail[k]
        return record(ws, "question.started", user=user, target=None, detail=detail)
    return record(ws, "question", user=user, target=None, detail=detail)


def searched(ws: Workspace, user: str | None, surface: str, query: str, hits, collections,
             documents=None, kinds=None) -> int:
    """Record a search, the filters it ran under (`_filters`) and the passages it showed (chunk ids,
    documents and their versions)."""
    user = access.current_user(ws, user)
    scope, refused = _scope(ws, user, collections)
    return record(ws, "search", user=user, detail={"surface": surface, "collections": scope, "query": query,
                                                   **_filters(documents, kinds), "shown": _shown(ws, hits),
                                                   **({"refused": refused} if refused else {})})


def _filters(documents, kinds) -> dict:
    """The `documents` / `kinds` filters a search or question ran under, those given: without them a
    record of an answer drawn from one document read as if every document in scope was searched."""
    return {k: list(v) for k, v in (("documents", documents), ("kinds", kinds)) if v}


def _scope(ws: Workspace, user: str, collections) -> tuple[list[str], list[str]]:
    """(the collections searched: those asked for that `user` may read, or every readable one for
    None; those asked for that were not searched). A member asking for a collection they may not
    read is told nothing of it (the CLI finds nothing); the record keeps what was asked."""
    scope = sorted(access.readable_collections(ws, user))
    if collections is None:
        return scope, []
    wanted = set(collections)
    scope = [c for c in scope if c in wanted]
    return scope, sorted(wanted - set(scope))


def viewed(ws: Workspace, user: str, surface: str, doc: dict, chunks: int) -> int:
    """Record that `user` was shown document `doc` whole (its chunks, in order), as {"surface",
    "document_id", "collection", "version" (its content sha256), "chunks"}: a search or a question
    records the passages it showed, and so must a page that shows all of them."""
    return record(ws, "document.viewed", user=user, target=doc["name"], detail={
        "surface": surface, "document_id": doc["id"], "collection": doc["collection"],
        "version": doc.get("content_hash"), "chunks": chunks})


def document_written(ws: Workspace, status: str, user: str | None, name: str, document_id: int, collection_id: int,
                     sha256: str, chunks: int) -> int:
    """Record that an ingest added or updated (`status`) document `name`: {"document_id", "collection"
    (its name, as document.deleted and document.viewed name it), "sha256", "chunks"}. Inside the
    ingest's transaction. (Records written before 2026-12-07 hold `collection_id`; `read` names it.)"""
    row = ws.db.execute("SELECT name FROM collections WHERE id = ?", (collection_id,)).fetchone()
    return record(ws, f"document.{status}", user=user, target=name, detail={
        "document_id": document_id, "collection": row[0] if row else None, "sha256": sha256, "chunks": chunks})


def others_read(ws: Workspace, by: str, surface: str, what: str, rows) -> int | None:
    """Record that admin `by` was shown rows other users stored: `what` "feedback" (GET /v1/feedback)
    or "evaluation" (`archivist eval answers --compare RUN`, the Evaluation page), `rows` [(id, owner)] of what was shown.
    Rows of `by`'s own are left out, and nothing is written when no row is another's (a user reading
    their own is not recorded). Detail: {"surface", "ids", "owners" (None: an owner deleted since)};
    the target is the id when one row was read. Returns the record's id, or None."""
    others = [(int(i), o) for i, o in rows if o != by]
    if not others:
        return None
    owners = sorted({o for _, o in others}, key=lambda o: (o is None, o or ""))
    return record(ws, f"{what}.read", user=by, target=str(others[0][0]) if len(others) == 1 else None,
                  detail={"surface": surface, "ids": [i for i, _ in others], "owners": owners})


def denied(ws: Workspace, user: str | None, surface: str, attempt: str, reason: str) -> int:
    """Record a refused attempt (an AccessDenied reaching the CLI or the API): `user` as it acted
    (a name that is no user is kept in the detail as `claimed`, not as the record's user),
    `attempt` what it tried (the CLI command, the API's method and path) as the target, and the
    refusal's message. Written by the surface after the refused action's transaction rolled back,
    so the refusal is on the record though nothing else happened; the same refusal again within a
    minute is counted into a summary record, not written (archivist/audit_refusals.py)."""
    from archivist import audit_refusals  # it writes through `record`
    known = bool(user) and ws.db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is not None
    detail = {"surface": surface, "reason": str(reason)[:500]}
    if user and not known and ws.db.execute("SELECT 1 FROM audit WHERE action = 'user.erased' AND target = ? LIMIT 1",
                                            (user,)).fetchone():
        # a request of a person erased while it ran (an answer in flight): their name stays off the log
        detail["reason"] = re.sub(rf"(?<![\w.-]){re.escape(str(user))}(?![\w.-])", REDACTED, detail["reason"])
        detail["claimed"] = REDACTED
    elif user and not known:
        detail["claimed"] = str(user)[:64]
    return audit_refusals.refused(ws, user if known else None, str(attempt)[:200], detail)


def _shown(ws: Workspace, hits) -> list[dict]:
    """[{"chunk_id", "document", "document_id", "version" (the document's content sha256)}] of the passages shown."""
    ids = [h.chunk_id for h in hits]
    versions = {}
    if ids:
        marks = ",".join("?" * len(ids))
        versions = {r[0]: r[1] for r in ws.db.execute(
            f"SELECT c.id, d.content_hash FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})", ids)}
    return [{"chunk_id": h.chunk_id, "document": h.document, "document_id": h.document_id,
             "version": versions.get(h.chunk_id)} for h in hits]


# -- checking -----------------------------------------------------------------------------------------


def verify(ws: Workspace) -> Verdict:
    """Walk the chain from the checkpoint (or the start) and report every place it breaks: a record
    whose content no longer hashes to its stored hash (edited), one whose `prev` is not the hash of
    the record before it (a record deleted or moved before it), newest records missing (the head
    kept in audit_state is gone), a checkpoint that the purge record does not vouch for."""
    problems: list[str] = []
    prev = _state(ws, "checkpoint_hash") or GENESIS
    last_id = int(_state(ws, "checkpoint_id") or 0)
    n = 0
    redacted: dict[int, int] = {}  # the user.erased record -> how many records it redacted
    for r in ws.db.execute("SELECT id, ts, user, action, target, detail, prev, hash, salt, digest, redacted_by "
                           "FROM audit ORDER BY id"):
        n += 1
        if r["prev"] != prev:
            problems.append(f"record {r['id']}: does not follow record {last_id} "
                            "(a record before it was deleted, inserted or moved)")
        if r["redacted_by"] is not None:  # its personal part is gone: the digest it had stands in for it
            redacted[r["redacted_by"]] = redacted.get(r["redacted_by"], 0) + 1
            personal = r["digest"]
            if (r["user"], r["target"], r["salt"], r["detail"]) != (REDACTED, None, None, _redacted_detail(r["redacted_by"])):
                problems.append(f"record {r['id']} ({r['action']}): redacted, but something was written into it since")
        else:
            personal = _personal(r["salt"] or "", r["user"], r["target"], r["detail"])
        if _digest(r["prev"], r["id"], r["ts"], r["action"], personal or "") != r["hash"]:
            problems.append(f"record {r['id']} ({r['action']}): its content was changed after it was written")
        prev, last_id = r["hash"], r["id"]
    problems += _check_redactions(ws, redacted)
    head = _state(ws, "head")
    if head and head != f"{last_id}:{prev}":
        want = head.split(":", 1)[0]
        problems.append(f"the newest record should be {want} but the log ends at {last_id} "
                        "(records at the end were deleted or changed)")
    elif head is None and n:  # every record writes the head with it: gone, so were the newest records, maybe
        problems.append(f"the head kept beside the log is missing, so records after {last_id} may have been "
                        "deleted with it (compare with a head kept elsewhere)")
    problems += _check_checkpoint(ws)
    for r in ws.db.execute("SELECT id, detail FROM audit WHERE action = 'audit.rechained'"):
        for p in json.loads(r["detail"]).get("v1_problems") or []:  # found when the log was re-hashed: still true
            problems.append(f"before the re-hashing (record {r['id']}): {p}")
    return Verdict(ok=not problems, records=n, head=prev, problems=problems, redacted=sum(redacted.values()))


def _check_redactions(ws: Workspace, redacted: dict[int, int]) -> list[str]:
    """Each redacted record must be vouched for by the `user.erased` record that redacted it, whose
    detail says how many it redacted: a record emptied by hand (its digest kept) is caught."""
    out = []
    for eid, n in sorted(redacted.items()):
        row = ws.db.execute("SELECT action, detail, redacted_by FROM audit WHERE id = ?", (eid,)).fetchone()
        said = json.loads(row["detail"]).get("redacted") if row and row["redacted_by"] is None else None
        if row is None or row["action"] != "user.erased" or said != n:
            out.append(f"{n} record(s) are marked redacted by record {eid}, which "
                       + ("does not exist" if row is None else f"does not vouch for them ({row['action']}, says {said})"))
    return out


def _redacted_detail(erased_by: int) -> str:
    return json.dumps({"erased_by": erased_by})


def redact(ws: Workspace, name: str, erased_by: int, before: int = sys.maxsize, after: int = 0) -> int:
    """Redact the records `name` made of the kinds in REDACTED_KINDS (what they asked, searched,
    looked at, rated): user becomes "[erased]", target none, detail {"erased_by": erased_by}, the
    salt goes; the digest they had keeps the chain whole. Call it inside the transaction that writes
    the `user.erased` record `erased_by`, whose detail must say how many (`verify` checks). Returns
    how many records it redacted. The caller zeroes the freed space (secure_delete, VACUUM).
    `after`, `before`: only records between those two (the log keeps names, not people: one account
    of several that had the name, `user_erase._in_log`)."""
    marks = ",".join("?" * len(REDACTED_KINDS))
    return ws.db.execute(
        f"UPDATE audit SET user = ?, target = NULL, detail = ?, salt = NULL, redacted_by = ? "
        f"WHERE user = ? AND action IN ({marks}) AND redacted_by IS NULL AND id > ? AND id < ?",
        (REDACTED, _redacted_detail(erased_by), erased_by, name, *REDACTED_KINDS, after, before)).rowcount


def redactable(ws: Workspace, name: str, before: int = sys.maxsize, after: int = 0) -> int:
    """How many records `redact` would redact for `name` (for the `user.erased` record it writes first)."""
    marks = ",".join("?" * len(REDACTED_KINDS))
    return ws.db.execute(f"SELECT COUNT(*) FROM audit WHERE user = ? AND action IN ({marks}) AND redacted_by IS NULL "
                         "AND id > ? AND id < ?", (name, *REDACTED_KINDS, after, before)).fetchone()[0]


def feedback_ids(ws: Workspace, name: str, before: int = sys.maxsize, after: int = 0) -> list[int]:
    """The ids of the feedback rows `name` gave (between records `after` and `before`), as the log
    recorded them (`feedback.given`): a user deleted before is no longer on their rows (user_id was
    set NULL), the log still says whose they were."""
    return [int(r[0]) for r in ws.db.execute(
        "SELECT DISTINCT target FROM audit WHERE user = ? AND action = 'feedback.given' AND redacted_by IS NULL "
        "AND id > ? AND id < ?", (name, after, before))
        if str(r[0]).isdigit()]


def rechain(db) -> None:
    """Schema migration 12: re-hash every record as `digest` + chain (see the module's docstring), so
    records can be redacted later. The chain as it was is verified first; the head it had and any
    break found are kept in an `audit.rechained` record, and `verify` keeps naming such a break (a
    migration must not launder tampering). Runs inside the migration's transaction."""
    rows = db.execute("SELECT id, ts, user, action, target, detail, prev, hash FROM audit ORDER BY id").fetchall()
    if not rows:
        return
    state = dict(db.execute("SELECT key, value FROM audit_state").fetchall())
    prev = state.get("checkpoint_hash") or GENESIS
    last, problems = int(state.get("checkpoint_id") or 0), []
    for r in rows:
        if r[6] != prev:
            problems.append(f"record {r[0]}: does not follow record {last}")
        if _digest_v1(r[6], r[0], r[1], r[2], r[3], r[4], r[5]) != r[7]:
            problems.append(f"record {r[0]} ({r[3]}): its content was changed after it was written")
        prev, last = r[7], r[0]
    old_head = f"{last}:{prev}"
    if state.get("head") not in (None, old_head):
        problems.append(f"the newest record should be {state['head'].split(':', 1)[0]} but the log ended at {last}")
    prev = state.get("checkpoint_hash") or GENESIS
    for r in rows:
        salt = secrets.token_hex(16)
        personal = _personal(salt, r[2], r[4], r[5])
        h = _digest(prev, r[0], r[1], r[3], personal)
        db.execute("UPDATE audit SET prev = ?, hash = ?, salt = ?, digest = ? WHERE id = ?", (prev, h, salt, personal, r[0]))
        prev = h
    db.execute("INSERT OR REPLACE INTO audit_state(key, value) VALUES ('head', ?)", (f"{last}:{prev}",))
    _append(db, "audit.rechained", None, None, {"records": len(rows), "v1_head": old_head, "v1_problems": problems})


def _check_checkpoint(ws: Workspace) -> list[str]:
    cid, ch = _state(ws, "checkpoint_id"), _state(ws, "checkpoint_hash")
    if cid is None:
        return []
    rows = ws.db.execute("SELECT id, detail FROM audit WHERE action = 'audit.purge' ORDER BY id DESC").fetchall()
    for r in rows:
        d = json.loads(r["detail"])
        if str(d.get("through_id")) == cid and d.get("through_hash") == ch:
            return []
    return [f"the checkpoint (record {cid}) is vouched for by no audit.purge record"]


# -- reading ------------------------------------------------------------------------------------------


def parse_time(text: str | float | None) -> float | None:
    """A time filter as epoch seconds: ISO 8601 ('2026-12-06', '2026-12-06T10:00', UTC unless it says),
    epoch seconds, or a span back from now ('7d', '12h', '30m'). Raises AuditError for anything else."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    if t[-1:] in units and t[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(t[:-1]) * units[t[-1]]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise AuditError(f"time {text!r}: use ISO 8601 (2026-12-06 or 2026-12-06T10:00), epoch seconds, "
                         "or a span like 7d, 12h, 30m") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def quotes(ws: Workspace, texts: list[str]) -> bool:
    """Whether a record's detail holds one of `texts` (a question or a search that quoted an erased
    document: kept as asked, the log being append-only). For `archivist erase`'s report, which only
    an admin's erase computes; says nothing else of the record.

    One pass over the log for all of them (`Needles`, over batches of records joined by a newline,
    which no JSON-escaped text holds): a search of the log per text read it once per sentence of
    the erased document, thousands of times for a long one."""
    search = Needles(json.dumps(t, ensure_ascii=False)[1:-1].encode() for t in texts)
    batch: list[str] = []
    size = 0
    for (detail,) in ws.db.execute("SELECT detail FROM audit"):
        batch.append(detail)
        size += len(detail)
        if size >= _QUOTE_BATCH:
            if search.found("\n".join(batch).encode()):
                return True
            batch, size = [], 0
    return bool(batch) and bool(search.found("\n".join(batch).encode()))


def versions(ws: Workspace, document_id: int) -> list[str]:
    """The content sha256 of every version of document `document_id` the log recorded (added,
    updated), oldest first: erase finds the uploads of its earlier versions by them. (Hashes of
    one document, which the caller already may erase, so no role is needed.)"""
    rows = ws.db.execute("SELECT DISTINCT json_extract(detail, '$.sha256') FROM audit WHERE action IN "
                         "('document.added', 'document.updated') AND json_extract(detail, '$.document_id') = ? "
                         "ORDER BY id", (document_id,))
    return [r[0] for r in rows if r[0]]


def erased_documents(ws: Workspace, document_ids) -> dict[int, str]:
    """{document id: name} for those of `document_ids` erased or being erased: its erase on record
    (document.erased), or an `erase` job naming it that has not ended done or cancelled (created, and
    committed, before the erase scrubs any copy; a failed or interrupted one is finished by a rerun).
    Every saver of a copy of a document's text (a dataset, an answer, an adapter, an embedder) asks
    this in the transaction that saves it: a copy committed before the erase's job is found by its
    scrub, one after finds the job. The record alone, written last, missed a copy saved between the
    scrub and the record. (Names of documents the caller already holds, so no role is needed.)"""
    from archivist import jobs

    ids = sorted({d for d in document_ids if isinstance(d, int)})
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    unfinished = (*jobs.LIVE, "interrupted", "failed")
    rows = ws.db.execute("SELECT json_extract(detail, '$.document_id'), target FROM audit WHERE action = 'document.erased' "
                         f"AND json_extract(detail, '$.document_id') IN ({marks}) UNION ALL "
                         "SELECT json_extract(spec, '$.document_id'), json_extract(spec, '$.document') FROM jobs "
                         f"WHERE kind = 'erase' AND state IN ({','.join('?' * len(unfinished))}) "
                         f"AND json_extract(spec, '$.document_id') IN ({marks})", [*ids, *unfinished, *ids])
    return {r[0]: r[1] for r in rows}


def has_job_record(ws: Workspace, action: str, job_id: str) -> bool:
    """Whether a record of `action` already names job `job_id` in its detail: a resumed job's step
    records once. (No user's data is returned, so no role is needed.)"""
    return ws.db.execute("SELECT 1 FROM audit WHERE action = ? AND json_extract(detail, '$.job') = ? LIMIT 1",
                         (action, job_id)).fetchone() is not None


def read(ws: Workspace, by: str | None = None, user: str | None = None, since=None, until=None,
         action: str | None = None, limit: int | None = None) -> list[dict]:
    """Records oldest first, filtered: [{"id", "time" (ISO UTC), "ts", "user", "action", "target",
    "detail" (dict), "hash"}]. `action` is a kind or a prefix ending in '.' ("document.").
    A document.added or .updated record written with its collection's id alone (before 2026-12-07)
    reads with that collection's name as well (the stored record is unchanged: the chain holds it).
    Raises AccessDenied unless `by` (None: the acting user) has the admin role; AuditError for a bad filter."""
    access.require_admin(ws, by, "read the audit log")
    from archivist import audit_refusals  # the refusals counted so far are written first, to be read
    audit_refusals.close(ws)
    where, args = [], []
    if user:
        where.append("user = ?")
        args.append(user)
    if action:
        if action.endswith(".") or action.endswith("*"):
            where.append("action LIKE ?")
            args.append(action.rstrip("*") + "%")
        elif action in KINDS:
            where.append("action = ?")
            args.append(action)
        else:
            raise AuditError(f"unknown action {action!r}; kinds: {', '.join(KINDS)}")
    for op, value in ((">=", parse_time(since)), ("<", parse_time(until))):
        if value is not None:
            where.append(f"ts {op} ?")
            args.append(value)
    sql = "SELECT id, ts, user, action, target, detail, hash FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit:
        sql = f"SELECT * FROM ({sql} DESC LIMIT {int(limit)}) ORDER BY id"
    out = [_row(r) for r in ws.db.execute(sql, args)]
    names = None
    for r in out:  # written before the name was kept (document_written): the id's name, while it exists
        d = r["detail"]
        if r["action"] in ("document.added", "document.updated") and "collection" not in d and "collection_id" in d:
            names = names if names is not None else dict(ws.db.execute("SELECT id, name FROM collections").fetchall())
            d["collection"] = names.get(d["collection_id"])
    return out


def was_read(ws: Workspace, by: str, surface: str, filters: dict, records: int, fmt: str) -> int:
    """Record that admin `by` read the log: {"surface", "filters" (those set), "format" (table, json,
    csv), "records"}. Written after the read, so it is in the next read, not this one. Who looked
    at the trail is itself part of the trail (PCI DSS 10.2.1.3: all access to audit logs)."""
    return record(ws, "audit.read", user=by, detail={
        "surface": surface, "filters": {k: v for k, v in filters.items() if v not in (None, "")},
        "format": fmt, "records": records})


def _row(r) -> dict:
    return {"id": r["id"], "time": datetime.fromtimestamp(r["ts"], timezone.utc).isoformat(timespec="seconds"),
            "ts": r["ts"], "user": r["user"], "action": r["action"], "target": r["target"],
            "detail": json.loads(r["detail"]), "hash": r["hash"]}
