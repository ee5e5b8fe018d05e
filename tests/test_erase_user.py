"""A data-protection officer's checks of `archivist users erase NAME` (GDPR art. 17): a former
employee's questions, chats, feedback, corrections, keys, grants, jobs and the dataset examples
made of their feedback leave every file of the workspace (bytes grepped, WAL included), the audit
log redacts their records and still verifies (and still catches tampering), an old log is
re-hashed by the migration without hiding a break, and the actions an auditor found unrecorded
(deleting a chat, reindex, resuming a job) are on the record."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest

from archivist import access, audit, auth, conversations, feedback, jobs, keys

ASKED = "Is my glimmerwortosis diagnosis visible to my manager Quentaro?"
SEARCHED = "sick leave rules for glimmerwortosis patients in Quentaro team"
CORRECTED = "No: I have had glimmerwortosis since May and Quentaro must not know."
CHATTED = "Please keep my zephyrquill medical note out of the team folder."
MARKERS = [b"glimmerwortosis", b"zephyrquill", b"Quentaro"]
DOC = ("# Leave policy\n\nEmployees on medical leave report to human resources within three days. "
       "Managers never see a diagnosis; they only see the dates of the leave.\n")


def _grep(home) -> dict[str, list[bytes]]:
    """{file: [markers it holds]} over every byte of every file of the workspace."""
    out = {}
    for p in sorted(home.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            hit = [m for m in MARKERS if m in data]
            if hit:
                out[str(p.relative_to(home))] = hit
    return out


def _mara(ws, embedder, tmp_path) -> dict:
    """Mara (member, read on hr) searched, asked, chatted, rated with a correction, has an API key, a
    session, a job; admin built a dataset from the feedback and registered an adapter trained on it."""
    from archivist.finetune import datasets
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.search import search

    (tmp_path / "leave.md").write_text(DOC)
    ingest_paths(ws, [tmp_path / "leave.md"], collection="hr", embedder=embedder, progress=False)
    auth.create_user(ws, "mara", "mara-pass-12", by="admin")
    access.grant(ws, "mara", "hr", "read", by="admin")
    key = keys.create_key(ws, "mara")
    auth.sign_in(ws, "mara", "mara-pass-12")
    hits = search(ws, SEARCHED, user="mara", embedder=embedder)
    audit.searched(ws, "mara", "cli", SEARCHED, hits, None)
    hits = search(ws, "who sees a diagnosis", user="mara", embedder=embedder)
    answer = SimpleNamespace(question=ASKED, passages=hits[:1], adapter=None, model="m", mode="extractive",
                             status="ok", answer="Managers never see a diagnosis [1].", citations=[])
    audit.question(ws, answer, "mara", "app", None)
    cid = conversations.start_conversation(ws, "mara")
    conversations.add_message(ws, cid, "mara", "user", ASKED)
    cits = [{"n": 1, "chunk_id": hits[0].chunk_id, "document": hits[0].document, "collection": "hr", "text": hits[0].text}]
    mid = conversations.add_message(ws, cid, "mara", "assistant", "Managers never see a diagnosis [1].", citations=cits)
    fid = feedback.record_feedback(ws, "mara", ASKED, "Managers never see a diagnosis [1].", rating=-1,
                                   correction=CORRECTED, citations=cits, collection="hr", message_id=mid)
    feedback.review_correction(ws, None, fid, approve=True)  # a member's correction is learned once an admin approved it
    cid2 = conversations.start_conversation(ws, "mara")
    conversations.add_message(ws, cid2, "mara", "user", CHATTED)
    job = jobs.create(ws, "upload", "mara", spec={"collection": "hr", "user": "mara"})
    ds = datasets.build_dataset(ws, ["feedback"], user="admin", embedder=embedder, progress=False, name="fb")
    assert fid in ds.manifest["feedback"]["used"]
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    from archivist import adapters

    adapters.register(ws, "hr-v1", folder, ws.settings.llm, {"better": False, "examples": [{"question": ASKED, "gold": CORRECTED}]},
                      {"dataset": {"name": "fb", "manifest": ds.manifest}, "documents": ds.manifest["documents"],
                       "collections": ["hr"], "settings": {"user": "admin"}}, activate=False)
    return {"key": key, "job": job.id, "fid": fid}


def test_erasing_a_person_leaves_none_of_their_words_in_any_file_and_the_log_verifies(ws, embedder, tmp_path, cli):
    """`users delete` kept mara's feedback, correction and every question in the log; `users erase`
    leaves none of them in any byte of the workspace, the log verifies and says how many records it
    redacted, the erasure itself is on the record (who erased whom, never the words), and the
    adapter trained on her feedback is named and marked stale."""
    got = _mara(ws, embedder, tmp_path)
    before = _grep(ws.home)
    assert {f for f in before if f.startswith("archivist.db")} and {f for f in before if f.startswith("datasets/fb/")}
    assert "adapters/hr-v1/metrics.json" in before and "adapters/hr-v1/lineage.json" not in before

    r = cli("users", "erase", "mara", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["account"] and rep["conversations"] == 2 and rep["messages"] == 3 and rep["feedback"] == 1
    assert rep["keys"] == 1 and rep["grants"] == 1 and rep["jobs"] == 1 and rep["leftovers"] == []
    assert rep["dataset_examples"] == {"fb": 1} and rep["adapters"] == ["hr-v1"]
    assert rep["audit_redacted"] >= 4  # sign-in, search, question, feedback.given, key.use ...
    assert _grep(ws.home) == {}  # not one marker in any file: db, WAL, datasets, adapters

    # the account and what hung on it are gone; the job is no one's
    assert [u["name"] for u in access.list_users(ws, by="admin")] == ["admin"]
    assert keys.user_for_key(ws, got["key"]) is None
    assert jobs.get(ws, got["job"], "admin").owner == "[erased]"
    from archivist import adapters

    assert "erased user" in adapters.get(ws, "hr-v1")["stale"]

    v = audit.verify(ws)
    assert v.ok and v.redacted == rep["audit_redacted"], v.problems
    r = cli("audit", "verify")
    assert r.returncode == 0 and f"{v.redacted} redacted" in r.stdout, r.stdout
    rows = audit.read(ws, by="admin")
    erased = [x for x in rows if x["action"] == "user.erased"]
    assert len(erased) == 1 and erased[0]["user"] == "admin" and erased[0]["target"] == "mara"
    assert not any(m.decode() in json.dumps(erased[0]) for m in MARKERS)
    assert not [x for x in rows if x["user"] == "mara" and x["action"] in audit.REDACTED_KINDS]
    # her account's history stays as the admins' acts: created, granted (the names, no words)
    assert [x["action"] for x in rows if x["target"] == "mara"][:2] == ["user.add", "auth.password"]


def test_a_redacted_log_still_catches_tampering(ws, embedder, tmp_path):
    """Redaction must not become a way to edit the log unseen: emptying a record by hand (its digest
    kept, pointed at the erasure) and editing a kept record are both named by verify."""
    from archivist.user_erase import erase_user

    _mara(ws, embedder, tmp_path)
    rep = erase_user(ws, "mara", by="admin")
    assert audit.verify(ws).ok
    raw = sqlite3.connect(ws.home / "archivist.db")
    victim = raw.execute("SELECT id FROM audit WHERE action = 'grant' OR action = 'access.grant' ORDER BY id LIMIT 1").fetchone()[0]
    raw.execute("UPDATE audit SET user = '[erased]', target = NULL, detail = '{}', salt = NULL, redacted_by = ? WHERE id = ?",
                (rep.record, victim))
    raw.commit()
    v = audit.verify(ws)
    assert not v.ok and any(f"marked redacted by record {rep.record}" in p for p in v.problems), v.problems
    raw.execute("UPDATE audit SET redacted_by = NULL WHERE id = ?", (victim,))
    raw.commit()
    assert any(f"record {victim} (access.grant): its content was changed" in p for p in audit.verify(ws).problems)
    # a redacted record's action or time is still covered by the chain
    red = raw.execute("SELECT id FROM audit WHERE redacted_by IS NOT NULL LIMIT 1").fetchone()[0]
    raw.execute("UPDATE audit SET user = 'bob' WHERE id = ?", (red,))  # a name put on an emptied record
    raw.commit()
    assert any(f"record {red} " in p and "redacted, but something was written" in p for p in audit.verify(ws).problems)
    raw.execute("UPDATE audit SET user = '[erased]', ts = ts + 1 WHERE id = ?", (red,))
    raw.commit()
    assert any(f"record {red} " in p and "changed" in p for p in audit.verify(ws).problems)


def test_an_old_log_is_rehashed_by_the_migration_and_a_break_in_it_stays_reported(tmp_path):
    """A workspace made before schema 12 holds records hashed over their content: opening it re-hashes
    them (verify passes, the old head is kept in an `audit.rechained` record), and an edit made to
    the old log before the upgrade is still named afterwards: the migration launders nothing."""
    from archivist.settings import Settings
    from archivist.workspace import MIGRATIONS, _split_sql, connect, open_workspace

    def old_workspace(home, tamper: bool):
        home.mkdir(parents=True)
        db = connect(home / "archivist.db")
        for script in MIGRATIONS[:11]:
            for st in _split_sql(script):
                db.execute(st)
        db.execute("PRAGMA user_version = 11")
        prev = audit.GENESIS
        for rid, (action, detail) in enumerate([("user.add", {"role": "member"}),
                                                ("search", {"query": "old question of bob"}),
                                                ("access.grant", {"collection": "hr"})], start=1):
            text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
            h = audit._digest_v1(prev, rid, 1000.0 + rid, "admin", action, "bob", text)
            db.execute("INSERT INTO audit(id, ts, user, action, target, detail, prev, hash) VALUES (?,?,?,?,?,?,?,?)",
                       (rid, 1000.0 + rid, "admin", action, "bob", text, prev, h))
            prev = h
        db.execute("INSERT INTO audit_state(key, value) VALUES ('head', ?)", (f"3:{prev}",))
        if tamper:
            db.execute("UPDATE audit SET detail = '{\"query\":\"something else\"}' WHERE id = 2")
        db.commit()
        db.close()
        return open_workspace(Settings.from_env(home=home))

    ws = old_workspace(tmp_path / "a", tamper=False)
    v = audit.verify(ws)
    assert v.ok and v.records == 4, v.problems
    [r] = audit.read(ws, by="admin", action="audit.rechained")
    assert r["detail"]["records"] == 3 and r["detail"]["v1_problems"] == [] and r["detail"]["v1_head"].startswith("3:")
    assert ws.db.execute("SELECT COUNT(*) FROM audit WHERE salt IS NULL OR digest IS NULL").fetchone()[0] == 0
    ws.close()

    ws = old_workspace(tmp_path / "b", tamper=True)
    v = audit.verify(ws)
    assert not v.ok and v.problems == ["before the re-hashing (record 4): record 2 (search): its content was changed "
                                       "after it was written"], v.problems
    ws.close()


def test_a_user_deleted_before_can_still_be_erased(ws, embedder, tmp_path, cli):
    """The usual case: the employee left and `users delete` ran months ago. Their feedback row had
    lost its user (user_id NULL) and their job passed to `mara#deleted-N`; erase finds both through
    the log and the job, and removes the correction."""
    got = _mara(ws, embedder, tmp_path)
    assert cli("users", "delete", "mara").returncode == 0
    assert ws.db.execute("SELECT user_id FROM feedback WHERE id = ?", (got["fid"],)).fetchone()[0] is None
    r = cli("users", "erase", "mara")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the account was deleted before" in r.stdout and "feedback 1" in r.stdout
    assert ws.db.execute("SELECT 1 FROM feedback WHERE id = ?", (got["fid"],)).fetchone() is None
    assert jobs.get(ws, got["job"], "admin").owner == "[erased]"
    assert _grep(ws.home) == {}
    assert audit.verify(ws).ok
    assert cli("users", "erase", "nobody-ever").returncode == 2  # nothing names them: a clear refusal


def test_only_an_admin_erases_and_not_themselves(ws, cli):
    access.add_user(ws, "rita", by="admin")
    access.add_user(ws, "boss", "admin", by="admin")
    r = cli("--user", "rita", "users", "erase", "boss")
    assert r.returncode == 2 and "admin role" in r.stderr
    r = cli("--user", "boss", "users", "erase", "boss")
    assert r.returncode == 2 and "another admin" in r.stderr
    assert [u["name"] for u in access.list_users(ws, by="admin")] == ["admin", "boss", "rita"]


def test_deleting_a_chat_reindexing_and_resuming_a_job_are_recorded(ws, embedder, tmp_path, cli):
    """An auditor found these three actions left no record: a user deleting a conversation, an
    admin rebuilding the index (`archivist reindex`), anyone resuming a cut-short job."""
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "leave.md").write_text(DOC)
    ingest_paths(ws, [tmp_path / "leave.md"], collection="hr", embedder=embedder, progress=False)
    access.add_user(ws, "rita", by="admin")
    cid = conversations.start_conversation(ws, "rita")
    conversations.add_message(ws, cid, "rita", "user", "a question about leave days for my team")
    conversations.delete_conversation(ws, cid, "rita")
    [d] = audit.read(ws, by="admin", action="conversation.deleted")
    assert (d["user"], d["target"], d["detail"]) == ("rita", str(cid), {"messages": 1})

    assert cli("reindex").returncode == 0
    [x] = audit.read(ws, by="admin", action="index.rebuilt")
    assert x["user"] == "admin" and x["detail"]["reembed"] is False and x["detail"]["vectors"]

    job = jobs.create(ws, "upload", "rita", spec={"collection": "hr"})
    jobs.start(ws, job.id)
    jobs.end(ws, job.id, "interrupted", error="killed")
    jobs.requeue(ws, job.id, "admin")
    [j] = audit.read(ws, by="admin", action="job.resume")
    assert (j["user"], j["target"], j["detail"]) == ("admin", job.id, {"kind": "upload", "owner": "rita", "state": "interrupted"})
    assert audit.verify(ws).ok


@pytest.mark.parametrize("kind", ["conversation.deleted"])
def test_a_deleted_chat_record_is_redacted_with_its_owner(ws, kind):
    """What a person did to their own chats is theirs: erasing them redacts it too."""
    from archivist.user_erase import erase_user

    access.add_user(ws, "rita", by="admin")
    cid = conversations.start_conversation(ws, "rita")
    conversations.delete_conversation(ws, cid, "rita")
    rep = erase_user(ws, "rita", by="admin")
    assert rep.audit_redacted == 1
    [r] = audit.read(ws, by="admin", action=kind)
    assert r["user"] == "[erased]" and r["target"] is None and r["detail"] == {"erased_by": rep.record}
    assert audit.verify(ws).ok


def test_the_admin_page_erases_a_person_after_asking(ws):
    """Users are managed on the app's Admin page: erasing is there too, behind a confirmation."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "dave", "dave-pass-12", by="alice")
    cid = conversations.start_conversation(ws, "dave")
    conversations.add_message(ws, cid, "dave", "user", CHATTED)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/admin.py").run()
    at.selectbox(key="edit-user").set_value("dave").run()
    at.button(key="erase-user").click().run()
    assert "dave" in [u["name"] for u in access.list_users(ws, by="alice")]  # not on the first click
    (warning,) = at.warning
    assert warning.value.startswith("Erase dave? Besides the account")
    at.button(key="erase-user-yes").click().run()
    assert not at.exception and "dave" not in [u["name"] for u in access.list_users(ws, by="alice")]
    [r] = audit.read(ws, by="alice", action="user.erased")
    assert (r["user"], r["target"], r["detail"]["messages"]) == ("alice", "dave", 1)
    assert _grep(ws.home) == {}


def test_erasing_twice_says_it_was_done(ws, cli):
    access.add_user(ws, "rita", by="admin")
    assert cli("users", "erase", "rita").returncode == 0
    r = cli("users", "erase", "rita")
    assert r.returncode == 2 and "'rita' was already erased (audit record" in r.stderr, r.stderr


def test_two_processes_opening_an_old_workspace_do_not_both_migrate_it(tmp_path):
    """The re-hashing migration takes a moment on a big log: a second process (the server, the app)
    opening the workspace meanwhile read the old schema version, waited for the lock, then ran the
    same ALTER TABLE again and died ("duplicate column name")."""
    import threading
    import time

    from archivist.workspace import MIGRATIONS, AFTER_MIGRATION, _split_sql, connect, migrate

    path = tmp_path / "archivist.db"
    first = connect(path)
    for script in MIGRATIONS[:11]:
        for st in _split_sql(script):
            first.execute(st)
    first.execute("PRAGMA user_version = 11")
    first.commit()
    first.execute("BEGIN IMMEDIATE")  # the first process is migrating: it holds the lock
    second, errors = connect(path), []

    def open_second():
        try:
            migrate(second)
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    t = threading.Thread(target=open_second)
    t.start()
    time.sleep(0.5)  # the second has read version 11 and waits for the lock
    for st in _split_sql(MIGRATIONS[11]):
        first.execute(st)
    AFTER_MIGRATION[12](first)
    first.execute("PRAGMA user_version = 12")
    first.execute("COMMIT")
    t.join(60)
    assert errors == [], errors
    assert second.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_a_name_beyond_ascii_is_renamed_in_the_files_a_fine_tune_wrote(ws):
    """The lineage files are written with ensure_ascii=False, and the check that a file names the
    person looked for the ASCII-escaped name ("jos\\u00e9"), so "josé" stayed in them."""
    import json

    from archivist.user_erase import ERASED, _rename_in_files

    lineage = ws.home / "adapters" / "a1" / "lineage.json"
    lineage.parent.mkdir(parents=True)
    lineage.write_text(json.dumps({"user": "josé", "dataset": {"owner": "josé", "n": 3}, "other": "ana"},
                                  ensure_ascii=False), encoding="utf-8")
    _rename_in_files(ws, ["josé"])
    assert json.loads(lineage.read_text(encoding="utf-8")) == {"user": ERASED, "dataset": {"owner": ERASED, "n": 3},
                                                                "other": "ana"}
    assert "jos" not in lineage.read_text(encoding="utf-8")
