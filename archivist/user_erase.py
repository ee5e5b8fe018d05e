"""`archivist users erase NAME`: erase a person (GDPR art. 17), not only their account.

`users delete` removes the account with its grants, keys and sessions, and keeps what the person
wrote (feedback rows lose their user, datasets and jobs pass to `NAME#deleted-N`). Erasing also
removes what they wrote and were shown, each through the module that owns it:

    conversations and their messages (questions, answers shown)   deleted
    feedback and corrections                                     deleted (found by user, or for a user
                                                                 deleted before, by the `NAME#deleted-ID` that
                                                                 `users delete` left on them, or their feedback.given records)
    dataset examples built from that feedback                    dropped (finetune/dataset_store.py), the
                                                                 adapters trained on those datasets marked stale
    API keys, sessions, grants, the account                      deleted
    stored evaluations they ran                                  deleted (by user, or `NAME#deleted-ID` as feedback)
    their name in jobs, datasets' and adapters' lineage          replaced by "[erased]"
    their records in the audit log (REDACTED_KINDS)              redacted (archivist/audit.py `redact`)

in one transaction with the `user.erased` record (who erased whom, when, the counts; never the
text), with secure_delete on (workspace.connect), then VACUUM and a truncated WAL, and a scan of every file of the
workspace for the longer things they typed (`leftovers`). What it cannot remove: what an adapter
trained on their feedback learned (named in `adapters`, marked stale), and their name on their acts
on the company's data (ingests, grants they gave, fine-tunes, erasures), which the log keeps.

A deleted account is erased by name while no user has the name since and no other deleted account
had it; otherwise by the name `users delete` left (`NAME#deleted-ID`): erasing NAME would erase two
people. The log records names only, so an account's records are told apart by when they were made:
after its `user.add` (or the `user.delete` of the holder before it), and before its own `user.delete`
record, ID (`_in_log`). A label whose `user.delete` record the log does not hold
(`NAME#deleted` from migration 13, or one numbered by a user id before labels took the record's id)
redacts no record: the report names the accounts whose records it could not tell from theirs (`untold`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field

from archivist import access, adapters, audit, audit_refusals, files
from archivist.files import files_holding
from archivist.workspace import Workspace, compact, transaction

ERASED = audit.REDACTED  # what stands for the person's name where a record must keep an owner
MIN_TEXT = 24  # characters: shorter things typed ("thanks", "yes") are no evidence of a leftover


@dataclass
class UserEraseReport:
    """What `erase_user` removed (counts per place) and what it could not."""

    user: str
    account: bool = False  # the account still existed (False: it was deleted before)
    conversations: int = 0
    messages: int = 0
    feedback: int = 0
    keys: int = 0
    grants: int = 0
    evaluations: int = 0
    jobs: int = 0  # jobs whose owner and spec no longer name them
    dataset_examples: dict[str, int] = field(default_factory=dict)
    datasets_disowned: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)  # learned from their feedback: marked stale
    audit_redacted: int = 0
    audit_kept: dict[str, int] = field(default_factory=dict)  # their acts on the company's data, kept by kind
    unknown: dict[str, int] = field(default_factory=dict)  # rows of users deleted before schema 13 whose owner nothing names
    untold: dict[str, int] = field(default_factory=dict)  # records maybe theirs, not redacted, by account (`_in_log`)
    record: int = 0  # the user.erased record
    wal_truncated: bool = True
    leftovers: list[str] = field(default_factory=list)  # files still holding something they typed


def erase_user(ws: Workspace, name: str, by: str | None = None) -> UserEraseReport:
    """Erase person `name` everywhere (see the module's docstring); returns the report. Needs the
    admin role. Works for a user deleted before (found through the owner `users delete` left on their
    feedback, evaluations, jobs and datasets, and the log).
    Raises AccessDenied (not an admin), LookupError (nothing anywhere names them), ValueError
    (erasing yourself, the last admin, or a name that more than one person had)."""
    from archivist.finetune import dataset_store

    actor = access.require_admin(ws, by, "erase users")
    if name == actor:
        raise ValueError(f"{name!r} cannot erase themselves: another admin must do it (the record says who erased whom)")
    row = ws.db.execute("SELECT id, role FROM users WHERE name = ?", (name,)).fetchone()
    if row and row["role"] == "admin" and ws.db.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0] <= 1:
        raise ValueError(f"{name!r} is the last admin and cannot be erased")
    uid = row["id"] if row else None
    report = UserEraseReport(user=name, account=row is not None)
    formers = _formers(ws, name, actor)
    if row and len(formers) > 1:  # a new employee given a former one's name is another person
        raise ValueError(f"{name!r} is a current user, and deleted accounts had that name before ({', '.join(formers[1:])}): "
                         "erasing by the name would erase both people. Erase a deleted account by the name `users delete` "
                         f"left for it (archivist users erase '{formers[1]}'), then {name!r} if that is wanted too")
    # two former employees who had one name are two people as well: those the rows name, and those
    # that left only log records (`NAME#deleted`, which the migration to schema 13 gave rows of any
    # account deleted before, names no one in particular: the same person's jobs may have NAME#deleted-ID)
    accounts = [] if row or "#deleted" in name else sorted(
        {f for f in formers if f.startswith(f"{name}#deleted-")} | set(_log_accounts(ws, name)))
    if len(accounts) > 1:
        raise ValueError(f"no current user is named {name!r}, and {len(accounts)} deleted accounts had that name "
                         f"({', '.join(accounts)}): erasing by the name would erase all of them. Erase each by the "
                         f"name `users delete` left for it (archivist users erase '{accounts[0]}')")
    logged, after, before = _in_log(ws, name)
    fids = set(audit.feedback_ids(ws, logged, before, after)) | {
        r[0] for r in _in(ws, "SELECT id FROM feedback WHERE former_owner IN ({})", formers)}
    if uid is not None:
        fids |= {r[0] for r in ws.db.execute("SELECT id FROM feedback WHERE user_id = ?", (uid,))}
    fids = {f for f in fids if ws.db.execute(  # a deleted user's rows have no user left, and another's deleted name on them
        f"SELECT 1 FROM feedback WHERE id = ? AND (user_id IS NULL OR user_id = ?) AND (former_owner IS NULL OR former_owner "
        f"IN ({','.join('?' * len(formers))}))", (f, uid, *formers)).fetchone()}
    typed = _typed(ws, uid, fids, logged, after, before)
    # a deleted account named by its label (bob#deleted-9) may own rows under that label alone
    owns = len(formers) > 1 or (not row and name in _owners_left(ws, _like(name), actor))
    if not row and not fids and not owns and not audit.redactable(ws, logged, before, after):
        done = ws.db.execute("SELECT id FROM audit WHERE action = 'user.erased' AND target = ? ORDER BY id DESC LIMIT 1",
                             (name,)).fetchone()
        raise LookupError(f"{name!r} was already erased (audit record {done[0]})" if done else
                          f"no user {name!r}, and nothing in the workspace names them")

    # files first (they cannot join the transaction); each step is safe to repeat
    questions = {r[0] for r in _in(ws, "SELECT question FROM feedback WHERE id IN ({})", fids)}
    report.dataset_examples, touched, report.datasets_disowned = dataset_store.erase_feedback(ws, fids, questions, formers, ERASED)
    report.adapters = _trained_on(ws, touched)
    for a in report.adapters:
        adapters.scrub_metrics(ws, a, lambda s: any(t in s for t in typed))
    _rename_in_files(ws, formers)

    eids = {r[0] for r in _in(ws, "SELECT id FROM evaluations WHERE former_owner IN ({})", formers)}
    if uid is not None:
        eids |= {r[0] for r in ws.db.execute("SELECT id FROM evaluations WHERE user_id = ?", (uid,))}
    with transaction(ws.db):
        if uid is not None:
            report.conversations = ws.db.execute("SELECT COUNT(*) FROM conversations WHERE user_id = ?", (uid,)).fetchone()[0]
            report.messages = ws.db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id IN "
                                            "(SELECT id FROM conversations WHERE user_id = ?)", (uid,)).fetchone()[0]
            report.keys = ws.db.execute("SELECT COUNT(*) FROM api_keys WHERE user_id = ?", (uid,)).fetchone()[0]
            report.grants = ws.db.execute("SELECT COUNT(*) FROM grants WHERE user_id = ?", (uid,)).fetchone()[0]
            ws.db.execute("DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE user_id = ?)", (uid,))
            ws.db.execute("DELETE FROM conversations WHERE user_id = ?", (uid,))
        report.evaluations = sum(ws.db.execute("DELETE FROM evaluations WHERE id = ?", (e,)).rowcount for e in eids)
        report.feedback = sum(ws.db.execute("DELETE FROM feedback WHERE id = ?", (f,)).rowcount for f in fids)
        report.jobs = _rename_jobs(ws, formers)
        # looked up again inside the transaction that deletes the feedback: a run that registered
        # since the first look (before the scrub of files above) is found here; one registering
        # after it finds its dataset's feedback gone (adapters.register)
        late = [n for n in _trained_on(ws, touched) if n not in report.adapters]
        report.adapters += late
        adapters.mark_stale(ws, report.adapters, f"trained on feedback of an erased user ({name})")
        for a in report.adapters:
            lin = _loads(ws.db.execute("SELECT lineage FROM adapters WHERE name = ?", (a,)).fetchone()[0])
            ws.db.execute("UPDATE adapters SET lineage = ? WHERE name = ?", (json.dumps(_renamed(lin, formers)), a))
        if uid is not None:
            ws.db.execute("DELETE FROM users WHERE id = ?", (uid,))  # keys, sessions, grants cascade
        audit_refusals.close(ws)  # refusals counted so far are written before the erasure, not after it naming her
        report.audit_redacted = audit.redactable(ws, logged, before, after)
        if before <= after:  # a label the log has no end for: whose records might be theirs, none redacted
            report.untold = {a: _left(ws, a) for a in _log_accounts(ws, logged)}
        report.unknown = {t: n for t in ("feedback", "evaluations") if (n := ws.db.execute(
            f"SELECT COUNT(*) FROM {t} WHERE user_id IS NULL AND former_owner IS NULL").fetchone()[0])}
        report.audit_kept = {r[0]: r[1] for r in ws.db.execute(
            "SELECT action, COUNT(*) FROM audit WHERE user = ? AND redacted_by IS NULL AND id > ? AND id < ? GROUP BY action",
            (logged, after, before))
            if r[0] not in audit.REDACTED_KINDS}
        report.record = audit.record(ws, "user.erased", user=actor, target=name, detail={
            "account": report.account, "conversations": report.conversations, "messages": report.messages,
            "feedback": report.feedback, "keys": report.keys, "grants": report.grants,
            "evaluations": report.evaluations, "jobs": report.jobs, "dataset_examples": report.dataset_examples,
            "datasets_disowned": report.datasets_disowned, "stale_adapters": report.adapters,
            "redacted": report.audit_redacted, "kept": report.audit_kept, "unknown": report.unknown,
            **({"untold": report.untold} if report.untold else {})})
        n = audit.redact(ws, logged, report.record, before, after)
        assert n == report.audit_redacted, (n, report.audit_redacted)  # the same transaction: cannot differ
    for a in late:  # files: after the transaction, as for the others before it
        adapters.scrub_metrics(ws, a, lambda s: any(t in s for t in typed))
    report.wal_truncated = compact(ws.db)  # no freed page keeps their words; the leftover scan below checks
    report.leftovers = _leftovers(ws, typed)
    return report


def deleted_accounts(ws: Workspace, by: str | None = None) -> list[str]:
    """The deleted accounts left to erase, by the names `erase_user` takes (`NAME#deleted-ID`, or
    `NAME#deleted`), sorted: the owners `users delete` left on rows, and the accounts a `user.delete`
    record names whose records before it are still to redact. A deleted account is in no list of users:
    the Admin page offers these, where its name had to be known and typed. Needs the admin role."""
    actor = access.require_admin(ws, by, "list deleted accounts")
    found = {o for o in _owners_left(ws, "%#deleted%", actor) if isinstance(o, str) and re.fullmatch(r".+#deleted(-\d+)?", o)}
    return sorted(found.union(*(_log_accounts(ws, t) for (t,) in ws.db.execute(
        "SELECT DISTINCT target FROM audit WHERE action = 'user.delete' AND target IS NOT NULL"))))


def _log_accounts(ws: Workspace, name: str) -> list[str]:
    """The deleted accounts of `name` that have records still to redact, by their labels
    (`NAME#deleted-ID`, ID their `user.delete` record), oldest first."""
    return [label for (rid,) in ws.db.execute("SELECT id FROM audit WHERE action = 'user.delete' AND target = ? ORDER BY id",
                                              (name,)).fetchall()
            if _left(ws, label := access.former_owner(name, rid))]


def _left(ws: Workspace, label: str) -> int:
    """How many records of the account `label` (`_in_log`) are still to redact."""
    logged, after, before = _in_log(ws, label)
    return audit.redactable(ws, logged, before, after)


def _owners_left(ws: Workspace, like: str, actor: str) -> set:
    """The owners (LIKE `like`, which ignores ASCII case) of jobs, feedback and evaluations, and those of
    the saved datasets `actor` sees: where `users delete` leaves a deleted person's name."""
    from archivist.finetune import dataset_store

    found = {r[0] for t, col in (("jobs", "owner"), ("feedback", "former_owner"), ("evaluations", "former_owner"))
             for r in ws.db.execute(f"SELECT DISTINCT {col} FROM {t} WHERE {col} LIKE ? ESCAPE '\\'", (like,))}
    return found | {d["owner"] for d in dataset_store.list_datasets(ws, actor)}


def _formers(ws: Workspace, name: str, actor: str) -> list[str]:
    """`name` and the owners `users delete` left for the person (`NAME#deleted-ID`, or `NAME#deleted`
    where migration 13 read it from the log) on jobs, feedback, evaluations and saved datasets: erase
    finds what a deleted person left by these once the log records naming them are purged."""
    found = _owners_left(ws, _like(name) + "#deleted%", actor)  # the exact prefix is checked below
    return [name] + sorted(o for o in found if isinstance(o, str) and (
        o == name + "#deleted" or (o.startswith(name + "#deleted-") and o[len(name) + 9:].isdigit())))


def _trained_on(ws: Workspace, datasets: set[str]) -> list[str]:
    """The adapters whose lineage names one of `datasets`, by name."""
    return [n for n, lin in ws.db.execute("SELECT name, lineage FROM adapters ORDER BY name")
            if _loads(lin).get("dataset") in datasets]


def _in_log(ws: Workspace, name: str) -> tuple[str, int, int]:
    """(the name the audit log knows the person by, after, before): their records are those made under
    that name between records `after` and `before`. A deleted account named as `users delete` left it
    (`mara#deleted-7`) made its records as "mara" before its own `user.delete` record 7 and after the
    `user.add` (or an earlier mara's `user.delete`) before that; a current user, after its own
    `user.add` (or the last `user.delete` of its name; none are left when retention purged them, nor
    any record older). A plain name with no current user is the one deleted account of that name
    (`erase_user` refuses it for several). A label whose `user.delete` record is not in the log
    (`mara#deleted`, or numbered by a user id before labels took the record's id) gives no records."""
    logged = name.split("#deleted", 1)[0]
    if logged == name:
        current = ws.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
        return logged, _start(ws, logged, sys.maxsize) if current else 0, sys.maxsize
    if (m := re.fullmatch(r".+#deleted-(\d+)", name)) and ws.db.execute(
            "SELECT 1 FROM audit WHERE id = ? AND action = 'user.delete' AND target = ?", (int(m[1]), logged)).fetchone():
        return logged, _start(ws, logged, int(m[1])), int(m[1])
    return logged, 0, 0


def _start(ws: Workspace, name: str, end: int) -> int:
    """The record before which an account of `name` that ended at record `end` made none: the latest
    creation of a user `name`, or deletion of an earlier one, before `end` (0: none in the log)."""
    return ws.db.execute("SELECT MAX(id) FROM audit WHERE action IN ('user.add', 'auth.first_admin', 'user.delete') "
                         "AND target = ? AND id < ?", (name, end)).fetchone()[0] or 0


def _typed(ws: Workspace, uid: int | None, fids: set[int], name: str, after: int, before: int) -> list[str]:
    """The longer things the person typed (questions, searches, corrections, chat messages), for the
    leftover scan and the adapters' metrics; read before they are removed. `name`, `after`, `before`:
    their records in the log (`_in_log`)."""
    out = set()
    if uid is not None:
        out |= {r[0] for r in ws.db.execute("SELECT m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                                            "WHERE c.user_id = ? AND m.role = 'user'", (uid,))}
    for r in _in(ws, "SELECT question, correction FROM feedback WHERE id IN ({})", fids):
        out |= {r[0], r[1] or ""}
    for r in ws.db.execute("SELECT detail FROM audit WHERE user = ? AND action IN ('question', 'question.started', 'search') "
                           "AND redacted_by IS NULL AND id > ? AND id < ?", (name, after, before)):
        d = json.loads(r[0])
        out |= {d.get("question") or "", d.get("query") or ""}
    return sorted(t for t in out if isinstance(t, str) and len(t.strip()) >= MIN_TEXT)


def _leftovers(ws: Workspace, typed: list[str]) -> list[str]:
    """Files under the workspace that still hold something the person typed. The database is not a
    leftover for a text that a remaining row holds (a document's sentence they quoted, the same
    question another user asked): that row is someone else's. Only the texts the scan found in the
    database files are looked up (each lookup reads whole tables)."""
    found = files_holding(ws.home, [t.encode("utf-8") for t in typed])
    in_db = set().union(*(held for f, held in found.items() if f.startswith("archivist.db")))
    held_by_others = {n for n in in_db if _someone_elses(ws, n.decode("utf-8"))}
    return [f for f, held in found.items() if not f.startswith("archivist.db") or held - held_by_others]


def _someone_elses(ws: Workspace, text: str) -> bool:
    """Whether a remaining row (`_HELD`) or another's audit record (`audit.quotes`) holds `text`."""
    return any(ws.db.execute(sql + " LIMIT 1", (text,)).fetchone() for sql in _HELD) or audit.quotes(ws, [text])


_HELD = (  # the rows that may hold a text the person typed once theirs are gone: someone else's
    "SELECT 1 FROM chunks WHERE instr(text, ?1) > 0",
    "SELECT 1 FROM documents WHERE instr(text, ?1) > 0",
    "SELECT 1 FROM messages WHERE instr(content, ?1) > 0",
    "SELECT 1 FROM feedback WHERE instr(question, ?1) > 0 OR instr(COALESCE(correction, ''), ?1) > 0",
)


def _rename_jobs(ws: Workspace, formers: list[str]) -> int:
    """Jobs owned by the person (or by `NAME#deleted-N`, left by `users delete`): owner and every
    string of spec and result that is their name become "[erased]". Returns how many jobs."""
    n = 0
    for r in ws.db.execute(f"SELECT id, spec, result FROM jobs WHERE owner IN ({','.join('?' * len(formers))})",
                           formers).fetchall():
        ws.db.execute("UPDATE jobs SET owner = ?, spec = ?, result = ? WHERE id = ?",
                      (ERASED, json.dumps(_renamed(_loads(r["spec"]), formers)),
                       None if r["result"] is None else json.dumps(_renamed(_loads(r["result"]), formers)), r["id"]))
        n += 1
    return n


def _rename_in_files(ws: Workspace, formers: list[str]) -> None:
    """Their name in the JSON a fine-tune wrote (runs/<id>/*.json, adapters/<name>/lineage.json
    hold the run's config: `user`, and the dataset's manifest: `owner`) becomes "[erased]"."""
    for f in list(ws.home.glob("runs/*/*.json")) + list(ws.home.glob("adapters/*/lineage.json")):
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
            renamed = _renamed(obj, formers)  # compared as JSON: a name's bytes depend on how it was escaped
            if renamed != obj:  # replaced whole: a crash mid-write must not leave an adapter without its lineage
                files.replace(f, json.dumps(renamed, indent=2, ensure_ascii=False))
        except (OSError, ValueError):
            continue  # unreadable: named by the leftover scan if it holds their words


def _renamed(obj, formers: list[str]):
    if isinstance(obj, str):
        return ERASED if obj in formers else obj
    if isinstance(obj, list):
        return [_renamed(v, formers) for v in obj]
    if isinstance(obj, dict):
        return {k: _renamed(v, formers) for k, v in obj.items()}
    return obj


def _loads(text) -> dict:
    try:
        v = json.loads(text) if text else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _in(ws: Workspace, sql: str, ids):
    ids = sorted(ids)
    return ws.db.execute(sql.format(",".join("?" * len(ids))), ids).fetchall() if ids else []


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def as_lines(r: UserEraseReport) -> list[str]:
    """The report as the CLI prints it."""
    lines = [f"erased user {r.user}" + ("" if r.account else " (the account was deleted before)"),
             f"  conversations {r.conversations} ({r.messages} messages), feedback {r.feedback}, API keys {r.keys}, "
             f"grants {r.grants}, evaluations {r.evaluations}, jobs renamed {r.jobs}"]
    for d, n in sorted(r.dataset_examples.items()):
        lines.append(f"  dataset {d}: {n} examples from their feedback dropped")
    if r.datasets_disowned:
        lines.append(f"  datasets they built, owner now {ERASED}: {', '.join(r.datasets_disowned)}")
    for a in r.adapters:
        lines.append(f"  adapter {a} learned from their feedback: marked stale (retrain: archivist finetune --retrain {a})")
    lines.append(f"  audit log: {r.audit_redacted} of their records redacted (record {r.record} says who erased whom)")
    if r.audit_kept:
        lines.append("  kept with their name (their acts on the company's data): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(r.audit_kept.items())))
    return lines + open_ends(r)


def open_ends(r: UserEraseReport) -> list[str]:
    """What the erasure left for an admin to act on (the end of `as_lines`; the Admin page shows
    these as a warning, its toast passing too quickly for them)."""
    lines = []
    if r.untold:
        lines.append("  not redacted, the log names people by name only and has no end for this account: "
                     + ", ".join(f"{n} records of {a}" for a, n in sorted(r.untold.items()))
                     + " may be theirs; if one is, erase it by that name (archivist users erase 'NAME#deleted-ID')")
    if r.unknown:
        lines.append("  not erased, nothing says whose they are: " + ", ".join(f"{k} {v}" for k, v in sorted(r.unknown.items()))
                     + " rows of users deleted before archivist kept a deleted user's name on them, whose log records "
                     "were purged since; review them (docs/governance.md)")
    if not r.wal_truncated:
        lines.append("  the WAL is held by another process: it is emptied at that process's next checkpoint")
    if r.leftovers:
        lines.append("WARNING: something they typed is still found in: " + ", ".join(r.leftovers))
    return lines

