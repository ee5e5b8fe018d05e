"""Deleting an adapter (`archivist adapters delete NAME`, DELETE /v1/models/{id}, the Fine-tune page):
before, nothing in archivist removed one, so a bad fine-tune or one trained on a collection that must
go could only be deleted by hand in SQLite, leaving its weights on disk and no audit record. Now an
admin deletes its row and its folder in one call (adapters.delete), recorded as `adapter.delete`; the
active adapter only with --force (the chat then uses the base model), never one a run is retraining,
never by a member; and what it learned outlives it, so its old answers stay withheld. A name deleted and
registered again answers with its own weights, not the deleted ones a long-lived process loaded."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from conftest import adapter_trained_on, board_tuned, mallory_reads

from archivist import access, adapters, audit, auth, conversations

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _deletes(ws, name: str) -> list[dict]:
    return [r for r in audit.read(ws, "admin", action="adapter.delete") if r["target"] == name]


def test_the_cli_deletes_the_row_and_folder_and_its_old_answer_stays_withheld(ws, embedder, tmp_path, cli):
    team, secret = board_tuned(ws, embedder, tmp_path)
    conv = conversations.start_conversation(ws, "mallory")
    cite = {"n": 1, "document": "board.md", "collection": "secret", "chunk_id": secret[0], "text": secret[1]}
    mid = conversations.add_message(ws, conv, "mallory", "assistant", "Bluefinch closes on March 3 [1].",
                                    citations=[cite], adapter="board-tuned")
    folder = ws.home / "adapters" / "board-tuned"
    assert (folder / "lineage.json").exists()

    r = cli("adapters", "delete", "board-tuned")
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "deleted adapter board-tuned", ""), r
    assert not folder.exists()
    assert ws.db.execute("SELECT COUNT(*) FROM adapters WHERE name = 'board-tuned'").fetchone()[0] == 0
    assert "board-tuned" not in cli("adapters", "--json").stdout
    [record] = _deletes(ws, "board-tuned")
    assert record["user"] == "admin" and record["detail"]["was_active"] is False

    # what it learned outlives it: mallory, who lost `secret`, is not shown what it wrote
    assert adapters.answered_from(adapters.registrations(ws, "board-tuned"), None) == {"secret"}
    access.revoke(ws, "mallory", "secret")
    [m] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
    assert (m["content"], m["adapter"]) == (conversations.WITHHELD.format("secret"), None)
    assert cli("adapters", "delete", "board-tuned").returncode == 2  # gone: an unknown name now


def test_a_member_may_not_delete_and_the_active_one_needs_force(ws, tmp_path, cli):
    mallory_reads(ws, ["team"])
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    adapters.activate(ws, "team-tuned")
    folder = ws.home / "adapters" / "team-tuned"

    r = cli("adapters", "delete", "team-tuned", "--force", "--user", "mallory")
    assert r.returncode == 2 and "user 'mallory' may not delete an adapter: it needs the admin role" in r.stderr, r
    r = cli("adapters", "delete", "no-such", "--user", "mallory")  # refused before the name is looked up
    assert r.returncode == 2 and "may not delete an adapter" in r.stderr and "no-such" not in r.stderr, r
    r = cli("adapters", "delete", "team-tuned")
    assert r.returncode == 2 and "'team-tuned' is the active adapter" in r.stderr and "--force" in r.stderr, r
    assert folder.exists() and adapters.get(ws, "team-tuned")["active"] and not _deletes(ws, "team-tuned")

    r = cli("adapters", "delete", "team-tuned", "--force", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"name": "team-tuned", "deleted": True, "was_active": True,
                                                          "notes": []}, r
    assert not folder.exists() and adapters.active(ws, "admin") is None  # the base model, not a guess
    assert adapters.resolve(ws, "mallory", "active") is None
    assert _deletes(ws, "team-tuned")[0]["detail"]["was_active"] is True


def test_a_retrained_adapter_is_refused_and_an_llm_server_or_a_folder_left_is_told(ws, tmp_path, cli):
    from archivist.finetune import runs

    mallory_reads(ws, ["team"])
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    run_id = runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "team-tuned", "admin")))
    r = cli("adapters", "delete", "team-tuned")
    assert r.returncode == 2 and f"'team-tuned' is being retrained by run {run_id} (queued, as admin)" in r.stderr, r
    assert (ws.home / "adapters" / "team-tuned").exists()

    adapter_trained_on(ws, tmp_path / "saved2", "other", ["team"])
    r = cli("adapters", "delete", "other", env={"ARCHIVIST_LLM_URL": "http://127.0.0.1:9/v1"})
    assert r.returncode == 0, r
    assert r.stderr.startswith("note: the LLM server at http://127.0.0.1:9/v1 may still hold 'other' loaded"), r

    # adapters/<name> a link to weights kept elsewhere: the row goes, the admin is told what is left and why
    adapter_trained_on(ws, tmp_path / "saved3", "linked", ["team"])
    elsewhere = tmp_path / "big-disk" / "linked"
    (ws.home / "adapters" / "linked").rename(elsewhere.parent.mkdir() or elsewhere)
    (ws.home / "adapters" / "linked").symlink_to(elsewhere)
    r = cli("adapters", "delete", "linked")
    assert r.returncode == 0 and "linked" not in cli("adapters", "--json").stdout, r
    assert r.stderr == (f"note: its folder {ws.home / 'adapters' / 'linked'} could not be removed (Cannot call rmtree "
                        "on a symbolic link); remove it by hand\n"), r


def test_delete_v1_models_is_for_admins_and_lists_its_errors(ws, tmp_path):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.keys import create_key

    mallory_reads(ws, ["team"])
    adapter_trained_on(ws, tmp_path / "a", "team-tuned", ["team"])
    adapter_trained_on(ws, tmp_path / "b", "spare", ["team"])
    adapters.activate(ws, "team-tuned")
    keys = {u: {"Authorization": f"Bearer {create_key(ws, u)}"} for u in ("admin", "mallory")}
    app = create_app(ws.settings)
    with TestClient(app) as client:
        r = client.delete("/v1/models/spare", headers=keys["mallory"])
        assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied"), r.text
        r = client.delete("/v1/models/nope", headers=keys["admin"])
        assert r.status_code == 404, r.text
        r = client.delete("/v1/models/team-tuned", headers=keys["admin"])
        assert r.status_code == 400 and "is the active adapter" in r.json()["error"]["message"], r.text
        r = client.delete("/v1/models/spare", headers=keys["admin"])
        assert (r.status_code, r.json()) == (200, {"id": "spare", "object": "model", "deleted": True,
                                                   "was_active": False, "notes": []}), r.text
        assert client.get("/v1/models/spare", headers=keys["admin"]).status_code == 404
        r = client.delete("/v1/models/team-tuned?force=true", headers=keys["admin"])
        assert r.status_code == 200 and r.json()["was_active"] is True, r.text
        listed = app.openapi()["paths"]["/v1/models/{model_id}"]["delete"]["responses"]
    assert {"200", "400", "403", "404"} <= set(listed)
    assert ws.db.execute("SELECT COUNT(*) FROM adapters").fetchone()[0] == 0
    assert {r["target"] for r in audit.read(ws, "admin", action="adapter.delete")} == {"spare", "team-tuned"}


def test_the_fine_tune_page_deletes_after_a_confirmation_for_admins_only(ws, tmp_path):
    from streamlit.testing.v1 import AppTest

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    access.create_collection(ws, "team", by="alice")
    access.grant(ws, "bob", "team", "read", by="alice")
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    adapters.activate(ws, "team-tuned", user="alice")

    def page(user: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["_token"] = auth.create_session(ws, user)
        at.run()
        at.switch_page("views/finetune.py")
        return at.run()

    at = page("bob")
    assert not at.exception and not [b for b in at.button if b.key == "ft-delete-go"]
    at = page("alice")
    assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="ft-delete-go").disabled  # not before the confirmation
    sure = at.checkbox(key="ft-delete-sure-team-tuned")
    assert "it is the active adapter, so the chat then uses the base model" in sure.label
    sure.check().run()
    at.button(key="ft-delete-go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Deleted adapter team\\-tuned." in [s.value for s in at.success]  # the name markdown-escaped
    assert not (ws.home / "adapters" / "team-tuned").exists() and adapters.active(ws, "alice") is None
    assert [r["user"] for r in audit.read(ws, "alice", action="adapter.delete")] == ["alice"]


def test_a_name_registered_again_after_a_delete_answers_with_its_new_weights(ws, llm, tmp_path):
    """Before: a process that had answered with adapter `x` (the API server, the app) kept it loaded under
    its name and folder (retrieval/llm.py), and an LLM server kept its LoRA under a name made of the same
    (retrieval/llm_remote.py, where the server's "already loaded" was taken as success): after `x` was
    deleted and a new `x` registered in the same folder, both answered with the deleted weights, which
    may have learned a collection the new one's users may not read. Now each registration is loaded anew."""
    from openai_server import create_server_app
    from test_llm_remote import random_adapter

    from archivist.api.serve import serve_in_thread
    from archivist.retrieval.llm_remote import RemoteLLM

    lineage = {"dataset": {"name": "d"}, "collections": ["team"], "documents": []}
    access.create_collection(ws, "team")
    old, new = (random_adapter(llm.path, tmp_path / name, seed) for name, seed in (("old", 1), ("new", 2)))
    running = serve_in_thread(create_server_app(llm.path))
    try:
        remote = RemoteLLM(name=llm.name, url=running.url, tokenizer=llm.tokenizer, config_window=2048,
                           model_path=llm.path)
        messages = [{"role": "user", "content": "Name three colours."}]

        def say(model, name: str) -> str:
            return "".join(model.stream(messages, max_new_tokens=10, adapter=adapters.resolve(ws, "admin", name)))

        adapters.register(ws, "x", old, ws.settings.llm, {"better": False}, lineage, activate=False)
        before = [say(m, "x") for m in (llm, remote)]
        adapters.delete(ws, "x")
        adapters.register(ws, "x", new, ws.settings.llm, {"better": False}, lineage, activate=False)
        adapters.register(ws, "new-weights", new, ws.settings.llm, {"better": False}, lineage, activate=False)
        for m, old_answer in zip((llm, remote), before):
            expected = say(m, "new-weights")  # the new weights, loaded under another name
            assert expected != old_answer and say(m, "x") == expected, type(m).__name__
    finally:
        running.stop()
