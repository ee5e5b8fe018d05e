"""A member trying what they should not, second round: choosing the chat's adapter for everyone,
retraining an adapter as the user who trained it first, confirming the name of a learned reranker or
an adapted embedder trained on collections they cannot read. Each test runs the real functions and
CLI on a real workspace (SQLite, FAISS, the small embedder)."""

from __future__ import annotations

import json

import pytest
from conftest import adapted_embedder, bob_reads_public_not_secret

from archivist import access, adapters, feedback
from archivist.access import AccessDenied


@pytest.fixture
def crew(ws, tmp_path):
    """admin (local); rita reads `hr` and writes `eng`; bob reads `finance`. Two adapters registered
    by the admin: `fin-v1` (finance, active) and `hr-v1` (hr, not active)."""
    access.add_user(ws, "rita", "member")
    access.add_user(ws, "bob", "member")
    for c in ("hr", "eng", "finance"):
        access.create_collection(ws, c)
    access.grant(ws, "rita", "hr", "read")
    access.grant(ws, "rita", "eng", "write")
    access.grant(ws, "bob", "finance", "read")
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    for name, coll, active in (("fin-v1", "finance", True), ("hr-v1", "hr", False)):
        adapters.register(ws, name, folder, ws.settings.llm, {"better": True, "reason": "test"},
                          {"dataset": {"name": "d"}, "collections": [coll], "documents": [{"collection": coll}],
                           "settings": {"user": "admin", "collections": [coll], "data": ["feedback"], "eval_fraction": 0.0}},
                          activate=active)
    ws.folder = folder
    return ws


def _active(ws) -> str | None:
    row = ws.db.execute("SELECT name FROM adapters WHERE active = 1").fetchone()
    return row[0] if row else None


def test_a_member_cannot_choose_the_adapter_every_chat_uses(crew, cli):
    """`archivist activate` changed the adapter of every user's chat for anyone who ran it, and told
    a member which adapter names exist (an adapter trained on finance activated for rita)."""
    assert _active(crew) == "fin-v1"
    for name in ("hr-v1", "fin-v1", "no-such-adapter", "none"):
        r = cli("activate", name, env={"ARCHIVIST_USER": "rita"})
        assert r.returncode != 0, (name, r.stdout)
        assert "needs the admin role" in r.stderr and name not in r.stderr.replace("rita", "")
    assert _active(crew) == "fin-v1"
    with pytest.raises(AccessDenied):
        adapters.activate(crew, "hr-v1", user="rita")
    with pytest.raises(AccessDenied):
        adapters.deactivate(crew, "rita")
    assert _active(crew) == "fin-v1"
    # the admin still chooses; the audit log names who did
    assert cli("activate", "hr-v1").returncode == 0 and _active(crew) == "hr-v1"
    from archivist import audit

    assert audit.read(crew, by="admin", action="adapter.activated")[-1]["user"] == "admin"


def test_an_adapter_a_member_trains_is_registered_but_not_activated(crew):
    """Training registers the adapter with the trainer as `user`: a member's better adapter used to
    become the active one, answering every user's chat."""
    rec = adapters.register(crew, "rita-v1", crew.folder, crew.settings.llm, {"better": True, "reason": "better"},
                            {"dataset": {"name": "d"}, "collections": ["hr"], "documents": []}, user="rita")
    assert not rec["active"] and "admin role" in rec["note"]
    assert _active(crew) == "fin-v1"
    rec = adapters.register(crew, "admin-v2", crew.folder, crew.settings.llm, {"better": True, "reason": "better"},
                            {"dataset": {"name": "d"}, "collections": ["hr"], "documents": []}, user="admin")
    assert rec["active"] and _active(crew) == "admin-v2"


def test_retrain_runs_as_whoever_asks_not_as_the_first_trainer(crew, cli):
    """`archivist finetune --retrain hr-v1` as rita (ARCHIVIST_USER) took the user from the adapter's
    lineage: the dataset was built as the admin, from everyone's feedback, and owned by the admin.
    Now a member retrains only the adapters she trained (`runs.may_retrain`), and a retrain runs as
    whoever asks: the admin retraining rita's adapter builds the admin's dataset, not rita's."""
    passage = [{"n": 1, "chunk_id": 1, "document": "hr/layoffs.md", "collection": "hr",
                "text": "The planned layoffs affect 120 people in the Quokka division in March."}]
    feedback.record_feedback(crew, "admin", "How many layoffs are planned?", "120 people [1]", 1,
                             correction="ADMIN-ONLY: the list includes Mr. Smith.", citations=passage, collection="hr")
    fid = feedback.record_feedback(crew, "rita", "Which division has layoffs?", "Quokka [1]", 1,
                                   correction="RITA: the Quokka division.", citations=passage, collection="hr")
    feedback.review_correction(crew, None, fid, approve=True)  # a member's correction is learned once an admin approved it
    r = cli("finetune", "--retrain", "hr-v1", "--prepare-only", "--json", env={"ARCHIVIST_USER": "rita"})
    assert r.returncode == 2 and "rita may not retrain hr-v1" in r.stderr, r.stderr
    lineage = {"dataset": {"name": "d"}, "collections": ["hr"], "documents": [{"collection": "hr"}],
               "settings": {"user": "rita", "collections": ["hr"], "data": ["feedback"], "eval_fraction": 0.0}}
    adapters.register(crew, "hr-rita", crew.folder, crew.settings.llm, {"better": True, "reason": "test"}, lineage,
                      user="rita")
    r = cli("finetune", "--retrain", "hr-rita", "--prepare-only", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    manifest = json.loads((crew.home / "datasets" / out["dataset"] / "manifest.json").read_text())
    text = "".join(p.read_text() for p in (crew.home / "datasets" / out["dataset"]).glob("*.jsonl"))
    assert manifest["owner"] == "admin"
    assert "RITA: the Quokka division." in text and "ADMIN-ONLY" in text
    assert out["train"] + out["eval"] == 2


def test_a_learned_reranker_name_is_not_confirmed_by_guessing(crew):
    """`archivist eval retrieval --reranker NAME` said "reranker NAME learned from collections bob may
    not read" for an existing one and "reranker model folder NAME does not exist" for a guess."""
    from archivist.retrieval.rerank import load_reranker

    folder = crew.home / "rerankers" / "hr-rr"
    folder.mkdir(parents=True)
    (folder / "archivist.json").write_text(json.dumps({"name": "hr-rr", "collections": ["hr"], "weights": {}}))
    with pytest.raises(AccessDenied) as forbidden:
        load_reranker("hr-rr", crew, user="bob")
    with pytest.raises(FileNotFoundError) as unknown:
        load_reranker("hr-rx", crew, user="bob")
    assert str(forbidden.value).replace("hr-rr", "NAME") == str(unknown.value).replace("hr-rx", "NAME")
    # nor, through a path, the name of an adapted embedder (its manifest has the same file name)
    emb = crew.home / "embedders" / "fin-emb"
    emb.mkdir(parents=True)
    (emb / "archivist.json").write_text(json.dumps({"name": "fin-emb", "collections": ["finance"]}))
    for name in ("fin-emb", "no-emb"):
        with pytest.raises(FileNotFoundError, match=f"reranker model folder ../embedders/{name} does not exist"):
            load_reranker(f"../embedders/{name}", crew, user="rita")


def test_a_members_erase_names_no_adapted_embedder_they_may_not_see(crew, embedder, tmp_path):
    """The erase report listed every adapted embedder that learned the document, also one trained on
    finance too, which rita (writer of eng) may not read; it is still marked stale."""
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "note.md").write_text("# Note\n\nThe kafka cluster is restarted every Sunday at 03:00.\n")
    [doc] = ingest_paths(crew, [tmp_path / "note.md"], collection="eng", user="rita", embedder=embedder, progress=False)
    for name, colls in (("fin-eng-emb", ["finance", "eng"]), ("eng-emb", ["eng"])):
        folder = crew.home / "embedders" / name
        folder.mkdir(parents=True)
        (folder / "archivist.json").write_text(json.dumps({"name": name, "collections": colls,
                                                            "documents": {"train": [doc.document_id], "held_out": []}}))
    report = erase(crew, "note.md", user="rita")
    assert report.embedders == ["eng-emb"]
    for name in ("fin-eng-emb", "eng-emb"):
        assert json.loads((crew.home / "embedders" / name / "archivist.json").read_text())["stale"]


def test_a_member_manages_only_their_own_api_keys(crew, cli):
    """`ARCHIVIST_USER=bob archivist keys create --user admin` printed a working admin key (and the
    API then acted as the admin); `keys list` showed every user's keys and `keys revoke` revoked the
    admin's. The local admin (no ARCHIVIST_USER) still manages everyone's."""
    from archivist.keys import user_for_key

    admin_key = cli("keys", "create", "--user", "admin").stdout.strip().splitlines()[-1]
    assert user_for_key(crew, admin_key) == "admin"
    bob = {"ARCHIVIST_USER": "bob"}
    for owner in ("admin", "rita", "no-such-user"):
        r = cli("keys", "create", "--user", owner, env=bob)
        assert r.returncode != 0 and "ak-" not in r.stdout and "needs the admin role" in r.stderr, r
    own = cli("keys", "create", "--user", "bob", env=bob).stdout.strip().splitlines()[-1]
    assert user_for_key(crew, own) == "bob"
    listed = json.loads(cli("keys", "list", "--json", env=bob).stdout)
    assert [k["user"] for k in listed] == ["bob"]
    prefix = admin_key[:11]
    r = cli("keys", "revoke", prefix, env=bob)
    assert r.returncode != 0 and r.stderr.strip().endswith(f"no API key with prefix {prefix}")
    assert cli("keys", "revoke", "ak-00000000", env=bob).stderr.strip().endswith("no API key with prefix ak-00000000")
    assert user_for_key(crew, admin_key) == "admin"  # still valid
    assert cli("keys", "revoke", own[:11], env=bob).returncode == 0 and user_for_key(crew, own) is None
    assert {k["user"] for k in json.loads(cli("keys", "list", "--json").stdout)} == {"admin", "bob"}
    assert cli("keys", "revoke", prefix).returncode == 0 and user_for_key(crew, admin_key) is None


def test_the_embeddings_api_serves_an_adapted_embedder_only_to_its_readers(tmp_path, monkeypatch):
    """POST /v1/embeddings embedded with whatever the workspace switched to: an adapted embedder
    trained on a collection bob may not read answered bob's texts (its weights' function of that
    collection, queried at will), though it is listed to no one who may not read what it learned."""
    import httpx
    import numpy as np

    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.finetune.embedders import activate, save
    from archivist.keys import create_key
    from archivist.models import load_embedder
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    monkeypatch.setenv("ARCHIVIST_EMBED_BACKEND", "torch")  # no ONNX export of the saved copy in a test
    settings = Settings.from_env(home=tmp_path / "ws2")
    with open_workspace(settings) as ws:
        bob_reads_public_not_secret(ws, tmp_path)
        save(ws, "learned-secret", adapted_embedder(settings, 0), {"kind": "retriever", "base": settings.embedder,
                                                                  "collections": ["public", "secret"]})
        activate(ws, "learned-secret", None, progress=False)
        keys = {u: create_key(ws, u) for u in ("admin", "bob")}
    base = load_embedder(settings.embedder, settings.device, "torch", str(settings.cache))
    adapted = load_embedder(str(settings.home / "embedders" / "learned-secret"), settings.device, "torch", str(settings.cache))
    text = "When does the merger with Acme close?"
    b, a = base.embed([text])[0], adapted.embed([text])[0]
    assert float(b @ a) < 0.999  # the two models differ, so the test can tell which one answered
    server = serve_in_thread(create_app(settings))
    try:
        def served(who):
            r = httpx.post(server.url + "/v1/embeddings", headers={"Authorization": f"Bearer {keys[who]}"},
                           json={"model": settings.embedder, "input": text}, timeout=120)
            assert r.status_code == 200, r.text
            return np.asarray(r.json()["data"][0]["embedding"], dtype=np.float32)

        assert np.allclose(served("bob"), b, atol=1e-5)
        assert np.allclose(served("admin"), a, atol=1e-5)  # its readers get what search embeds with

        def embedders(who):  # the embedding models /v1/models lists to `who`: {id: active}
            r = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {keys[who]}"}, timeout=60)
            assert r.status_code == 200, r.text
            return {m["id"]: m["active"] for m in r.json()["data"] if m["kind"] == "embedding"}

        # bob is told neither the hidden embedder's name nor that one is active: the base is his
        assert embedders("bob") == {settings.embedder: True}
        assert embedders("admin") == {settings.embedder: False, "learned-secret": True}
    finally:
        server.stop()


def test_an_erase_is_resumed_as_its_owner_and_a_lost_grant_does_not_loop(crew, embedder, tmp_path):
    """rita's erase, cut short: resumed by rita after her grant was revoked, it recursed until Python
    gave up (erase → "no document" → her interrupted job → resume → erase …); resumed by an admin, it
    started an erase job of the admin's own and left rita's failed for ever."""
    from archivist import jobs
    from archivist.ingest.erase import erase, resume
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "note.md").write_text("# Note\n\nThe kafka cluster is restarted every Sunday at 03:00.\n")
    [doc] = ingest_paths(crew, [tmp_path / "note.md"], collection="eng", user="rita", embedder=embedder, progress=False)
    job = jobs.create(crew, "erase", "rita", spec={"document": doc.name, "document_id": doc.document_id,
                                                     "collection": "eng", "sha256": "x", "keep_ratings": False})
    jobs.start(crew, job.id)
    jobs.fail(crew, job.id, "killed")  # as a kill mid-erase leaves it
    access.revoke(crew, "rita", "eng")
    for attempt in (lambda: resume(crew, job.id, "rita"), lambda: erase(crew, doc.name, user="rita")):
        with pytest.raises(LookupError, match="no document"):
            attempt()
    access.grant(crew, "rita", "eng", "write")
    report = resume(crew, job.id, "admin")
    assert report.document == doc.name
    assert [(j.id, j.owner, j.state) for j in jobs.list_jobs(crew, "admin", ("erase",))] == [(job.id, "rita", "done")]
    assert crew.db.execute("SELECT 1 FROM documents WHERE id = ?", (doc.document_id,)).fetchone() is None


def test_feedback_rates_only_a_message_of_ones_own_conversations(crew):
    """No surface passes another user's message id today; the feedback module refuses it anyway,
    in the words it uses for a message that does not exist."""
    from archivist import conversations

    conv = conversations.start_conversation(crew, "bob", "budget")
    conversations.add_message(crew, conv, "bob", "user", "What is the travel budget?")
    answer = conversations.add_message(crew, conv, "bob", "assistant", "The travel budget is 912000.")
    with pytest.raises(LookupError) as foreign:
        feedback.record_feedback(crew, "rita", "What is the travel budget?", "x", rating=-1, message_id=answer)
    with pytest.raises(LookupError) as missing:
        feedback.record_feedback(crew, "rita", "What is the travel budget?", "x", rating=-1, message_id=answer + 999)
    assert str(foreign.value).replace(str(answer), "N") == str(missing.value).replace(str(answer + 999), "N")
    assert crew.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
    fid = feedback.record_feedback(crew, "bob", "What is the travel budget?", "The travel budget is 912000.",
                                   rating=1, message_id=answer)
    assert crew.db.execute("SELECT message_id FROM feedback WHERE id = ?", (fid,)).fetchone()[0] == answer
