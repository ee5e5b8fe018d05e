"""The audit log (archivist/audit.py): every action kind writes its record in the action's own
transaction, the hash chain catches edited, deleted and reordered records, members read nothing,
retention leaves a verifiable checkpoint, and a killed ingest leaves actions and records in step."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archivist import access, audit, audit_retention, auth, keys
from archivist.workspace import open_workspace

REPO = Path(__file__).resolve().parent.parent


def actions(ws, kind=None, since: int = 0) -> list[dict]:
    """The audit records (of `kind`) after record id `since`."""
    return [r for r in audit.read(ws, by="admin", action=kind) if r["id"] > since]


def copy_of_samples(sample_home, home) -> int:
    """Copy the session's sample workspace to `home` (it stays untouched); returns its last record id:
    tests that ran before may have asked questions in it (with pytest-xdist, any test before on the worker)."""
    import shutil

    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    shutil.copytree(sample_home, home)
    with open_checked(Settings.from_env(home=home)) as w:
        return max((r["id"] for r in actions(w)), default=0)


def kinds(ws) -> list[str]:
    return [r["action"] for r in actions(ws)]


# -- every action kind ---------------------------------------------------------------------------------


def test_users_roles_grants_keys_and_sign_ins_are_recorded(ws):
    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "finance", "read", by="admin")
    access.set_role(ws, "rita", "admin", by="admin")
    access.set_role(ws, "rita", "member", by="admin")
    access.revoke(ws, "rita", "finance", by="admin")
    auth.set_password(ws, "rita", "correct horse", by="admin")
    auth.sign_in(ws, "rita", "correct horse")
    with pytest.raises(auth.AuthError):
        auth.sign_in(ws, "rita", "wrong password")
    key = keys.create_key(ws, "rita")
    assert keys.user_for_key(ws, key) == "rita"
    assert keys.user_for_key(ws, key) == "rita"  # the second use the same day writes nothing
    keys.revoke_key(ws, key)
    access.delete_user(ws, "rita", by="admin")

    prefix = key[:11]  # ak-<8 hex>
    assert kinds(ws) == ["user.add", "collection.create", "access.grant", "user.role", "user.role", "access.revoke",
                         "auth.password", "auth.sign_in", "auth.sign_in_failed", "key.create", "key.use",
                         "key.revoke", "user.delete"]
    by_kind = {r["action"]: r for r in actions(ws)}
    assert by_kind["access.grant"]["user"] == "admin" and by_kind["access.grant"]["target"] == "rita"
    assert by_kind["access.grant"]["detail"] == {"collection": "finance", "level": "read"}
    assert by_kind["auth.sign_in"]["user"] == "rita"
    assert by_kind["auth.sign_in_failed"]["user"] is None and by_kind["auth.sign_in_failed"]["target"] == "rita"
    assert by_kind["key.use"]["target"] == prefix and by_kind["key.use"]["user"] == "rita"
    assert by_kind["key.create"]["detail"] == {"owner": "rita"}
    assert audit.verify(ws).ok


def test_first_use_of_a_key_is_recorded_once_a_day_across_processes(ws):
    key = keys.create_key(ws, "admin")
    keys.user_for_key(ws, key)
    audit._KEY_DAYS.clear()  # what a second server process knows: nothing
    keys.user_for_key(ws, key)
    assert kinds(ws).count("key.use") == 1


def test_a_refused_action_writes_no_record(ws):
    access.add_user(ws, "rita", by="admin")
    before = len(actions(ws))
    with pytest.raises(access.AccessDenied):
        access.grant(ws, "rita", "finance", "read", by="rita")
    with pytest.raises(ValueError):
        access.set_role(ws, "admin", "member", by="admin")  # the last admin
    assert len(actions(ws)) == before


def test_documents_added_updated_deleted_are_recorded(ws, embedder, tmp_path):
    from archivist.ingest.pipeline import delete_document, ingest_paths

    doc = tmp_path / "policy.txt"
    doc.write_text("Travel is reimbursed within thirty days of the trip.\n")
    [r] = ingest_paths(ws, [doc], embedder=embedder, progress=False)
    doc.write_text("Travel is reimbursed within sixty days of the trip.\n")
    ingest_paths(ws, [doc], embedder=embedder, progress=False)
    ingest_paths(ws, [doc], embedder=embedder, progress=False)  # unchanged: no record
    delete_document(ws, r.document_id)
    recs = actions(ws, "document.")
    assert [x["action"] for x in recs] == ["document.added", "document.updated", "document.deleted"]
    assert {x["detail"]["document_id"] for x in recs} == {r.document_id}
    assert all(x["user"] == "admin" and x["target"] == "policy.txt" for x in recs)
    assert recs[0]["detail"]["sha256"] != recs[1]["detail"]["sha256"]


def test_a_collection_its_first_ingest_creates_feedback_and_evaluations_are_recorded(ws, embedder, tmp_path):
    """An engineer found these missing from the trail: a collection made by its first ingest, a
    rating or correction (what was given, not its words), and a stored evaluation run."""
    from archivist import conversations, feedback
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.evaluation import store_evaluation

    doc = tmp_path / "policy.txt"
    doc.write_text("Travel is reimbursed within thirty days of the trip.\n")
    ingest_paths(ws, [doc], collection="travel", embedder=embedder, progress=False)
    assert [(r["action"], r["user"], r["target"]) for r in actions(ws, "collection.")] == [("collection.create", "admin", "travel")]
    access.add_user(ws, "rita", by="admin")
    conv = conversations.start_conversation(ws, "rita")
    message = conversations.add_message(ws, conv, "rita", "assistant", "Within thirty days.")
    fid = feedback.record_feedback(ws, "rita", "When is travel paid?", "Within thirty days.", rating=-1,
                                   correction="Within 30 days of the trip.", collection="travel", message_id=message)
    feedback.update_feedback(ws, fid, "rita", rating=1)
    given, changed = actions(ws, "feedback.given"), actions(ws, "feedback.changed")
    assert [(r["user"], r["target"]) for r in given + changed] == [("rita", str(fid))] * 2
    assert given[0]["detail"] == {"rating": -1, "correction": True, "collection": "travel", "message_id": message}
    assert changed[0]["detail"] == {"rating": 1, "correction": True}
    assert "30 days" not in json.dumps(given + changed)  # the words stay in the feedback table
    eid = store_evaluation(ws, "retrieval", "travel.jsonl", {"n": 1}, user="rita")
    [stored] = actions(ws, "evaluation.stored")
    assert (stored["user"], stored["target"], stored["detail"]) == ("rita", str(eid), {"kind": "retrieval", "set": "travel.jsonl"})
    assert audit.verify(ws).ok


def test_every_question_is_recorded_with_what_it_showed(sample_home, llm, embedder, monkeypatch, tmp_path):
    from archivist.retrieval.answer import ask
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = tmp_path / "copy"
    since = copy_of_samples(sample_home, home)
    with open_checked(Settings.from_env(home=home)) as w:
        a = ask(w, "How many days of annual leave do employees get?", llm=llm, embedder=embedder,
                mode="extractive", surface="api")
        [r] = actions(w, "question", since)
        d = r["detail"]
        assert r["user"] == "admin" and d["surface"] == "api"
        assert d["question"] == "How many days of annual leave do employees get?"
        assert d["collections"] == ["default"]
        assert [s["chunk_id"] for s in d["shown"]] == [p.chunk_id for p in a.passages] and d["shown"]
        versions = dict(w.db.execute("SELECT id, content_hash FROM documents").fetchall())
        assert all(s["version"] == versions[s["document_id"]] for s in d["shown"])
        assert d["mode"] == a.mode and d["status"] == a.status and d["model"] == a.model
        import hashlib

        assert d["answer_sha256"] == hashlib.sha256(a.answer.encode()).hexdigest()
        assert [c["chunk_id"] for c in d["citations"]] == [c.chunk_id for c in a.citations]
        # a question nothing answers is recorded too (the early return)
        ask(w, "zzqx flurbo wibble?", llm=llm, embedder=embedder, mode="extractive")
        last = actions(w, "question")[-1]
        assert last["detail"]["question"] == "zzqx flurbo wibble?" and last["detail"]["surface"] == "cli"
        assert audit.verify(w).ok


_STREAM_KILLED = """
import os, signal, sys
from archivist.retrieval.answer import ask
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings

def shown(piece):  # the first token reaches the screen, then the process dies
    sys.stdout.write(piece); sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

with open_checked(Settings.from_env(home=sys.argv[1])) as ws:
    ask(ws, sys.argv[2], mode="generate", on_token=shown, surface="app")
"""


@pytest.mark.slow
def test_a_streamed_answer_is_recorded_before_its_first_token_even_if_killed(sample_home, llm, embedder, tmp_path):
    """A draft reaches the screen token by token; a process killed after the first token still
    leaves its `question.started` record (what was asked and shown), and a finished one both."""
    from archivist.retrieval.answer import ask
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = tmp_path / "copy"
    since = copy_of_samples(sample_home, home)
    q = "How many days of annual leave do employees get?"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHIVIST_USER", None)
    child = subprocess.run([sys.executable, "-c", _STREAM_KILLED, str(home), q], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL and child.stdout, child.stderr[-2000:]  # a token was shown
    with open_checked(Settings.from_env(home=home)) as w:
        assert actions(w, "question", since) == []
        [r] = actions(w, "question.started", since)
        d = r["detail"]
        assert (d["question"], d["surface"], d["mode"]) == (q, "app", "generate") and d["shown"]
        assert "answer_sha256" not in d
        import dataclasses

        w.settings = dataclasses.replace(w.settings, max_new_tokens=8)  # a short draft is enough here
        pieces = []
        a = ask(w, q, llm=llm, embedder=embedder, mode="generate", on_token=pieces.append)
        started, done = actions(w, "question.started", since)[-1], actions(w, "question", since)[-1]
        assert started["id"] < done["id"] and started["detail"]["shown"] == done["detail"]["shown"]
        assert [s["chunk_id"] for s in done["detail"]["shown"]] == [p.chunk_id for p in a.passages]
        ask(w, q, llm=llm, embedder=embedder, mode="extractive")  # nothing streamed: one record
        assert len(actions(w, "question.started", since)) == 2 and len(actions(w, "question", since)) == 2
        assert audit.verify(w).ok


# -- reading is for admins --------------------------------------------------------------------------


def test_a_member_cannot_read_the_audit(ws):
    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "finance", "admin", by="admin")  # even a collection admin
    with pytest.raises(access.AccessDenied):
        audit.read(ws, by="rita")
    with pytest.raises(access.AccessDenied):
        audit_retention.purge(ws, 0, by="rita")


def test_cli_audit_filters_and_formats(ws, capsys):
    from archivist.cli import main

    access.add_user(ws, "rita", by="admin")
    access.add_user(ws, "sam", by="admin")
    access.grant(ws, "rita", "finance", "read", by="admin")
    assert main(["audit", "--action", "user.add", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["target"] for r in rows] == ["rita", "sam"]
    assert main(["audit", "--action", "access.", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "id,time,user,action,target,detail,hash" and len(lines) == 2 and ",access.grant,rita," in lines[1]
    assert main(["audit", "--user", "nobody", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["audit", "--since", "1h", "--until", "2999-01-01", "--json"]) == 0
    assert len([r for r in json.loads(capsys.readouterr().out) if r["action"] != "audit.read"]) == 4  # and the reads before
    assert main(["audit", "--since", "yesterday-ish"]) == 2
    assert "yesterday-ish" in capsys.readouterr().err
    assert main(["--user", "rita", "audit"]) == 2
    err = capsys.readouterr().err
    assert "admin role" in err
    assert main(["--user", "rita", "audit", "verify"]) == 2


# -- the chain ------------------------------------------------------------------------------------------


def _log_of_five(ws):
    for name in ("a1", "a2", "a3", "a4", "a5"):
        access.add_user(ws, name, by="admin")


def _raw(ws) -> sqlite3.Connection:
    return sqlite3.connect(ws.home / "archivist.db", isolation_level=None)


def test_verify_passes_on_an_untouched_log(ws, capsys):
    from archivist.cli import main

    _log_of_five(ws)
    v = audit.verify(ws)
    assert v.ok and v.records == 5 and v.problems == []
    assert main(["audit", "verify"]) == 0
    assert "intact: 5 records" in capsys.readouterr().out


def test_verify_finds_an_edited_record(ws, capsys):
    from archivist.cli import main

    _log_of_five(ws)
    _raw(ws).execute("UPDATE audit SET target = 'mallory' WHERE id = 3")
    v = audit.verify(ws)
    assert not v.ok and v.problems == ["record 3 (user.add): its content was changed after it was written"]
    assert main(["audit", "verify"]) == 1
    assert "record 3" in capsys.readouterr().out


def test_verify_finds_an_edited_record_even_with_its_hash_recomputed(ws):
    _log_of_five(ws)
    r = ws.db.execute("SELECT * FROM audit WHERE id = 3").fetchone()
    personal = audit._personal(r["salt"], r["user"], "mallory", r["detail"])
    forged = audit._digest(r["prev"], 3, r["ts"], r["action"], personal)
    _raw(ws).execute("UPDATE audit SET target = 'mallory', digest = ?, hash = ? WHERE id = 3", (personal, forged))
    v = audit.verify(ws)
    assert not v.ok and v.problems[0].startswith("record 4: does not follow record 3")


def test_verify_finds_a_deleted_record(ws):
    _log_of_five(ws)
    _raw(ws).execute("DELETE FROM audit WHERE id = 2")
    v = audit.verify(ws)
    assert not v.ok and v.problems == ["record 3: does not follow record 1 (a record before it was deleted, inserted or moved)"]


def test_verify_finds_deleted_newest_records(ws):
    _log_of_five(ws)
    _raw(ws).execute("DELETE FROM audit WHERE id >= 4")
    v = audit.verify(ws)
    assert not v.ok and "should be 5 but the log ends at 3" in v.problems[0]


def test_verify_finds_reordered_records(ws):
    _log_of_five(ws)
    db = _raw(ws)
    db.execute("UPDATE audit SET id = -2 WHERE id = 2")
    db.execute("UPDATE audit SET id = 2 WHERE id = 3")
    db.execute("UPDATE audit SET id = 3 WHERE id = -2")
    v = audit.verify(ws)
    assert not v.ok
    assert any(p.startswith("record 2: does not follow record 1") for p in v.problems)
    assert any(p.startswith("record 2 (user.add): its content was changed") for p in v.problems)


# -- retention ------------------------------------------------------------------------------------------


def test_retention_purges_old_records_and_the_chain_still_verifies(ws):
    _log_of_five(ws)
    _raw(ws).execute("UPDATE audit SET ts = ts - 40 * 86400 WHERE id <= 3")  # they are old now...
    # ...which breaks their hashes (ts is hashed): rewrite them as if written 40 days ago
    _rehash(ws)
    assert audit.verify(ws).ok
    out = audit_retention.purge(ws, 30, by="admin")
    assert out == {"purged": 3, "through_id": 3}
    assert [r["id"] for r in actions(ws)] == [4, 5, 6] and actions(ws)[-1]["action"] == "audit.purge"
    assert audit.verify(ws).ok
    access.add_user(ws, "a6", by="admin")
    assert audit.verify(ws).ok and actions(ws)[-1]["id"] == 7
    # the checkpoint is vouched for by the purge record: moving it is caught
    _raw(ws).execute("UPDATE audit_state SET value = '2' WHERE key = 'checkpoint_id'")
    assert not audit.verify(ws).ok


def test_retention_setting_applies_when_the_audit_is_read(ws, capsys, monkeypatch):
    from archivist.cli import main

    _log_of_five(ws)
    _raw(ws).execute("UPDATE audit SET ts = ts - 10 * 86400 WHERE id <= 2")
    _rehash(ws)
    monkeypatch.setenv("ARCHIVIST_AUDIT_DAYS", "7")
    assert main(["audit", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [3, 4, 5, 6] and rows[-1]["action"] == "audit.purge"
    assert main(["audit", "verify"]) == 0


def _rehash(ws) -> None:
    """Recompute the whole chain (what a test needs after moving timestamps back)."""
    db = _raw(ws)
    prev = audit.GENESIS
    for r in db.execute("SELECT id, ts, user, action, target, detail, salt FROM audit ORDER BY id").fetchall():
        h = audit._digest(prev, r[0], r[1], r[3], audit._personal(r[6], r[2], r[4], r[5]))
        db.execute("UPDATE audit SET prev = ?, hash = ? WHERE id = ?", (prev, h, r[0]))
        prev = h
        last = r[0]
    db.execute("UPDATE audit_state SET value = ? WHERE key = 'head'", (f"{last}:{prev}",))


# -- a killed process -------------------------------------------------------------------------------------

_INGEST = """
import sys
from archivist.ingest import pipeline
from archivist.workspace import open_workspace
pipeline.BATCH_CHUNKS = 1  # commit after every document
with open_workspace() as ws:
    pipeline.ingest_paths(ws, [sys.argv[1]], progress=False)
"""


@pytest.mark.slow
def test_a_killed_ingest_leaves_no_document_without_its_record(ws, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):
        (folder / f"note{i:03}.txt").write_text(f"Note number {i} says the meeting room is R-{i}.\n")
    env = dict(os.environ, ARCHIVIST_HOME=str(ws.home))
    proc = subprocess.Popen([sys.executable, "-c", _INGEST, str(folder)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = sqlite3.connect(ws.home / "archivist.db", timeout=30)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] < 20:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    docs = {r[0] for r in db.execute("SELECT id FROM documents")}
    recorded = {json.loads(r[0])["document_id"] for r in db.execute("SELECT detail FROM audit WHERE action = 'document.added'")}
    assert 20 <= len(docs) < 400, "the kill came mid-ingest"
    assert docs == recorded
    with open_workspace(ws.settings) as w:
        assert audit.verify(w).ok


def test_finetune_started_and_finished_are_recorded_with_the_run(ws):
    from archivist.finetune import runs

    run_id = runs.create_run(ws, {"user": "admin", "base": "smollm2-135m"})
    runs.update_run(ws, run_id, "running", pid=os.getpid())
    runs.update_run(ws, run_id, "done", adapter="ft-1")
    recs = actions(ws, "finetune.")
    assert [(r["action"], r["target"], r["user"]) for r in recs] == [("finetune.started", run_id, "admin"),
                                                                   ("finetune.finished", run_id, "admin")]
    assert recs[1]["detail"] == {"status": "done", "adapter": "ft-1", "error": None}


def test_a_search_from_the_cli_is_recorded_with_what_it_showed(sample_home, tmp_path, monkeypatch, capsys):
    import shutil

    from archivist.cli import main
    from archivist.settings import Settings

    home = tmp_path / "copy"
    shutil.copytree(sample_home, home)
    monkeypatch.setenv("ARCHIVIST_HOME", str(home))
    assert main(["search", "annual leave days", "-k", "3", "--json"]) == 0
    shown = [h["chunk_id"] for h in json.loads(capsys.readouterr().out)["hits"]]
    with open_workspace(Settings.from_env()) as w:
        [r] = actions(w, "search")
        assert r["detail"]["surface"] == "cli" and r["detail"]["query"] == "annual leave days"
        assert [s["chunk_id"] for s in r["detail"]["shown"]] == shown and all(s["version"] for s in r["detail"]["shown"])


def test_adapters_registered_and_activated_are_recorded(ws, tmp_path):
    from archivist import adapters

    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    adapters.register(ws, "hr-v1", folder, ws.settings.llm, {"better": True, "reason": "t"},
                      {"dataset": {"name": "d"}, "documents": [], "collections": []}, run_id="r1")
    adapters.deactivate(ws)
    assert [(r["action"], r["target"]) for r in actions(ws, "adapter.")] == [
        ("adapter.registered", "hr-v1"), ("adapter.activated", "hr-v1"), ("adapter.activated", None)]
    assert actions(ws, "adapter.registered")[0]["detail"] == {"run_id": "r1", "base": ws.settings.llm}


@pytest.mark.slow
def test_an_exported_adapter_is_recorded(ws, tmp_path):
    """A real (untrained) LoRA adapter on the chat model, registered, then merged and exported."""
    from archivist import adapters
    from archivist.catalog import resolve_llm
    from archivist.finetune.registry import export_merged
    from archivist.finetune.lora import add_lora, load_base

    model, _ = load_base(str(resolve_llm(ws.settings.llm, ws.settings.cache)), "lora", "cpu")
    add_lora(model, 2, 4, 0.0, "q_proj,v_proj", False).save_pretrained(str(tmp_path / "lora"))
    adapters.register(ws, "tiny-lora", tmp_path / "lora", ws.settings.llm, {"better": False, "reason": "t"},
                      {"dataset": {"name": "d"}, "documents": [], "collections": []})
    out = export_merged(ws, "tiny-lora", tmp_path / "merged")
    [r] = actions(ws, "adapter.exported")
    assert (r["user"], r["target"], r["detail"]) == ("admin", "tiny-lora", {"to": str(out.resolve())})
    assert (out / "archivist-merged.json").exists()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError):  # the write fails after the record: a second record says so
        export_merged(ws, "tiny-lora", tmp_path / "a-file" / "merged")
    [begun, failed] = [r for r in actions(ws, "adapter.") if r["action"].startswith("adapter.export")][1:]
    assert begun["action"] == "adapter.exported" and failed["action"] == "adapter.export_failed"
    assert failed["detail"]["to"] == begun["detail"]["to"] == str((tmp_path / "a-file" / "merged").resolve())
    assert "NotADirectoryError" in failed["detail"]["error"]
    assert audit.verify(ws).ok
