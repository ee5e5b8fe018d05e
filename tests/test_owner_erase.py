"""A data-protection officer erases a former employee whose account `users delete` removed long ago,
in a workspace whose audit retention has since purged the records that said what they wrote; and
user names that only look like another (mixed scripts, Cyrillic or Greek look-alikes) are refused."""

from __future__ import annotations

import json
import time

import pytest
from test_erase_user import CORRECTED, _grep, _mara

from archivist import audit, feedback


def test_feedback_of_a_user_deleted_before_retention_purged_the_log_is_still_erased(ws, embedder, tmp_path, cli):
    """`users delete`, then retention purged every record (feedback.given among them): erase used to
    find nothing tying the feedback row to mara and left her correction in the database."""
    got = _mara(ws, embedder, tmp_path)
    assert cli("users", "delete", "mara").returncode == 0
    time.sleep(0.2)
    assert cli("audit", "purge", "--days", "0.000001").returncode == 0  # retention: everything older than 0.09 s
    assert audit.feedback_ids(ws, "mara") == []  # the log no longer says whose the row was
    r = cli("users", "erase", "mara", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["feedback"] == 1 and rep["dataset_examples"] == {"fb": 1} and rep["adapters"] == ["hr-v1"], rep
    assert ws.db.execute("SELECT 1 FROM feedback WHERE id = ?", (got["fid"],)).fetchone() is None
    assert not [f for f in feedback.list_feedback(ws, "admin") if f["correction"] == CORRECTED]
    assert _grep(ws.home) == {}
    assert audit.verify(ws).ok


def test_a_deleted_users_stored_evaluation_is_erased_after_retention(ws, embedder, tmp_path, cli):
    """A stored evaluation loses its user at `users delete` as feedback does: erase deleted it only
    while the account existed."""
    from archivist.retrieval.evaluation import store_evaluation

    _mara(ws, embedder, tmp_path)
    eid = store_evaluation(ws, "retrieval", "mara-set.jsonl", {"questions": [CORRECTED]}, user="mara")
    assert cli("users", "delete", "mara").returncode == 0
    time.sleep(0.2)
    assert cli("audit", "purge", "--days", "0.000001").returncode == 0
    rep = json.loads(cli("users", "erase", "mara", "--json").stdout)
    assert rep["evaluations"] == 1 and rep["unknown"] == {}, rep
    assert ws.db.execute("SELECT 1 FROM evaluations WHERE id = ?", (eid,)).fetchone() is None


def test_a_workspace_from_before_keeps_whose_rows_the_log_still_names_and_erase_says_what_it_cannot(
        ws, embedder, tmp_path, cli):
    """A schema-12 workspace where mara was deleted (her feedback row without a user) and another
    deleted user's row whose log record was purged long ago: the migration names mara's row from the
    log before retention purges it, so erase still finds it; the other row is kept (nothing says
    whose it is, and nothing stored is lost) and erase reports it instead of passing over it."""
    got = _mara(ws, embedder, tmp_path)
    other = feedback.record_feedback(ws, "admin", "Who approves carried-over leave days this year?", "The manager.",
                                     rating=1)
    assert cli("users", "delete", "mara").returncode == 0
    ws.db.execute("DELETE FROM audit WHERE action = 'feedback.given' AND target = ?", (str(other),))  # purged long ago
    ws.db.execute("UPDATE feedback SET user_id = NULL WHERE id = ?", (other,))  # its user deleted
    for table in ("feedback", "evaluations"):  # back to schema 12: the column did not exist
        ws.db.execute(f"ALTER TABLE {table} DROP COLUMN former_owner")
    for table in ("sign_in_failures", "setup_code"):  # nor the tables of schema 14
        ws.db.execute(f"DROP TABLE {table}")
    ws.db.execute("PRAGMA user_version = 12")
    ws.db.commit()

    time.sleep(0.2)
    assert cli("audit", "purge", "--days", "0.000001").returncode == 0  # opens (migrates), then purges
    assert audit.feedback_ids(ws, "mara") == []
    rows = dict(ws.db.execute("SELECT id, former_owner FROM feedback").fetchall())
    assert rows == {got["fid"]: "mara#deleted", other: None}
    r = cli("users", "erase", "mara", "--json")
    rep = json.loads(r.stdout)
    assert rep["feedback"] == 1 and rep["unknown"] == {"feedback": 1}, rep
    assert [r[0] for r in ws.db.execute("SELECT id FROM feedback")] == [other]  # kept: not known to be hers
    assert _grep(ws.home) == {} and audit.verify(ws).ok


def test_look_alike_user_names_are_refused_with_the_reason(ws, cli):
    """"аdmin" (a Cyrillic а) could be created beside the admin, and "асе" (all Cyrillic) beside ace:
    each reads as the other in `users list`, the audit log and a sign-in form."""
    from archivist import access, auth

    assert cli("users", "add", "ace").returncode == 0 and cli("users", "add", "kate").returncode == 0
    r = cli("users", "add", "\u0430dmin")
    assert r.returncode == 2 and "mixes Cyrillic and Latin letters" in r.stderr and "'\u0430dmin'" in r.stderr, r.stderr
    for lookalike, twin in (("\u0430\u0441\u0435", "ace"), ("\uff41\uff43\uff45", "ace"),  # Cyrillic асе, fullwidth ａｃｅ
                            ("\u039a\u0391\u03a4\u0395", "kate")):  # Greek ΚΑΤΕ
        r = cli("users", "add", lookalike)
        assert r.returncode == 2 and f"looks like the existing user '{twin}'" in r.stderr, r.stderr
    for fine in ("\u041c\u0430\u0440\u0438\u044f", "\u5c71\u7530\u305f\u308d\u3046", "jos\u00e9", "acer"):  # Мария, 山田たろう
        assert cli("users", "add", fine).returncode == 0, fine
    assert sorted(u["name"] for u in access.list_users(ws, by="admin")) == sorted(
        ["admin", "ace", "kate", "acer", "jos\u00e9", "\u041c\u0430\u0440\u0438\u044f", "\u5c71\u7530\u305f\u308d\u3046"])
    # the first admin of a new workspace is a user name too: not a second "admin" beside the local one
    with pytest.raises(ValueError, match="mixes Cyrillic and Latin"):
        auth.create_first_admin(ws, "\u0430dmin", "a-good-password")
    assert auth.create_first_admin(ws, "admin", "a-good-password") == {"name": "admin", "role": "admin"}


def test_a_failed_write_of_lineage_json_leaves_it_whole(tmp_path):
    """`users erase` rewrote adapters/<name>/lineage.json in place: a disk that fills mid-write (here a
    file-size limit of 64 bytes) left it cut short, an adapter without readable lineage. Now the
    file is replaced whole or not at all."""
    import subprocess
    import sys

    lineage = tmp_path / "adapters" / "a1" / "lineage.json"
    lineage.parent.mkdir(parents=True)
    before = {"settings": {"user": "mara"}, "dataset": {"owner": "mara", "documents": ["leave.md"] * 20}}
    lineage.write_text(json.dumps(before, indent=2), encoding="utf-8")
    code = ("import resource, sys; from pathlib import Path; from types import SimpleNamespace\n"
            "from archivist.user_erase import _rename_in_files\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # Python ignores SIGXFSZ: the write fails with EFBIG\n"
            "_rename_in_files(SimpleNamespace(home=Path(sys.argv[1])), ['mara'])\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert json.loads(lineage.read_text(encoding="utf-8")) == before  # the old content, whole


def test_a_dataset_a_deleted_user_built_loses_their_name_without_a_job_of_theirs(ws, embedder, tmp_path, cli):
    """`users delete` made the owner of carol's saved dataset `carol#deleted-ID`; erase found that
    name only through a job of hers, so a dataset built without one (`finetune --prepare-only`)
    kept her name in its manifest."""
    from archivist import access
    from archivist.finetune import datasets
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "leave.md").write_text("# Leave\n\nEvery employee receives twenty-eight days of paid leave per year.\n")
    ingest_paths(ws, [tmp_path / "leave.md"], collection="hr", embedder=embedder, progress=False)
    access.add_user(ws, "carol", by="admin")
    access.grant(ws, "carol", "hr", "read", by="admin")
    hit = ws.db.execute("SELECT id, text FROM chunks LIMIT 1").fetchone()
    feedback.record_feedback(ws, "carol", "How many leave days do I get?", "Twenty-eight.", rating=1, collection="hr",
                             citations=[{"n": 1, "chunk_id": hit[0], "document": "leave.md", "collection": "hr", "text": hit[1]}])
    datasets.build_dataset(ws, ["feedback"], user="carol", embedder=embedder, name="carols")
    assert not ws.db.execute("SELECT 1 FROM jobs WHERE owner LIKE 'carol%'").fetchone()
    assert cli("users", "delete", "carol").returncode == 0
    rep = json.loads(cli("users", "erase", "carol", "--json").stdout)
    assert rep["datasets_disowned"] == ["carols"] and rep["dataset_examples"] == {"carols": 1}, rep
    manifest = (ws.home / "datasets" / "carols" / "manifest.json").read_text(encoding="utf-8")
    assert "carol" not in manifest.replace('"carols"', "") and json.loads(manifest)["owner"] == "[erased]"


def test_a_new_user_given_a_former_employees_name_is_not_erased_with_them(ws, cli):
    """The old mara left and was deleted; a new employee got the name mara. Erasing "mara" (for the
    old one) erased the new mara too: her account, chats and feedback, without a word. Now erase
    refuses the ambiguous name, erases the old account by the name `users delete` left for it, and
    leaves the new mara, her feedback and her records in the log."""
    from archivist import access

    old_q, new_q = "Old mara asks about her medical leave dates?", "New mara asks about onboarding laptops?"
    access.add_user(ws, "mara", by="admin")
    old = feedback.record_feedback(ws, "mara", old_q, "An answer.", rating=1)
    audit.searched(ws, "mara", "cli", old_q, [], None)
    assert cli("users", "delete", "mara").returncode == 0
    access.add_user(ws, "mara", by="admin")
    new = feedback.record_feedback(ws, "mara", new_q, "An answer.", rating=1)
    audit.searched(ws, "mara", "cli", new_q, [], None)

    r = cli("users", "erase", "mara")
    assert r.returncode == 2 and "is a current user" in r.stderr, r.stdout + r.stderr
    former = ws.db.execute("SELECT former_owner FROM feedback WHERE id = ?", (old,)).fetchone()[0]
    assert f"archivist users erase '{former}'" in r.stderr, r.stderr
    assert [u["name"] for u in access.list_users(ws, by="admin")] == ["admin", "mara"]

    r = cli("users", "erase", former, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert (rep["account"], rep["feedback"], rep["audit_redacted"]) == (False, 1, 2), rep  # her feedback.given and search
    assert [f["id"] for f in feedback.list_feedback(ws, "admin")] == [new]
    searched = [(x["user"], x["detail"].get("query")) for x in audit.read(ws, by="admin") if x["action"] == "search"]
    assert sorted(searched, key=str) == [("[erased]", None), ("mara", new_q)]
    assert [u["name"] for u in access.list_users(ws, by="admin")] == ["admin", "mara"]
    assert audit.verify(ws).ok

    r = cli("users", "erase", "mara", "--json")  # no longer ambiguous: the new mara, if she asks too
    assert r.returncode == 0 and json.loads(r.stdout)["feedback"] == 1, r.stdout + r.stderr
    assert [u["name"] for u in access.list_users(ws, by="admin")] == ["admin"] and audit.verify(ws).ok


def test_the_admin_page_shows_what_an_erasure_left_to_do(ws):
    """The Admin page's *Erase* said only "Erased dave" in a passing toast, where the CLI prints what
    is left for an admin (rows nobody can attribute, files still holding their words) and exits 1."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "dave", "dave-pass-12", by="alice")
    with ws.db:  # a row of a user deleted before schema 13, its log records purged since: nobody's
        ws.db.execute("INSERT INTO feedback(user_id, question, answer, rating) VALUES (NULL, 'Who signs leave?', 'HR.', 1)")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/admin.py").run()
    at.selectbox(key="edit-user").set_value("dave").run()
    at.button(key="erase-user").click().run()
    at.button(key="erase-user-yes").click().run()
    assert not at.exception
    assert [w.value.replace("\\", "") for w in at.warning] == [  # the markdown escapes taken out
        "not erased, nothing says whose they are: feedback 1 rows of users deleted before archivist kept a deleted "
        "user's name on them, whose log records were purged since; review them (docs/governance.md)"]
    at.run()  # shown once, not on every later page run
    assert not at.warning


def test_purging_with_days_0_says_what_0_means(ws, cli):
    """An officer purging before an erasure typed `--days 0` and was told to pass --days."""
    r = cli("audit", "purge", "--days", "0")
    assert r.returncode == 2 and "--days 0 keeps every record" in r.stderr, r.stderr
