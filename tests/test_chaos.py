"""Several people on one workspace doing conflicting things at the same moment: an erase while a
fine-tune trains on the document, a job cancelled twice, a grant revoked while its holder waits for an
answer. Each race is reproduced in the order that went wrong (the earlier step done, then the later),
through the same functions and HTTP routes the product uses."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import ingest_texts

SECRET = {"hr": {"bonus.md": "# Bonus codes\n\nThe secret bonus code for region 2 is ZEBRA-222. It is paid in March.\n"},
          "public": {"canteen.md": "# Canteen\n\nThe canteen in building 2 opens at 9 am and closes at 3 pm.\n"}}


def _audit(ws, action: str) -> list[dict]:
    from archivist import audit

    return audit.read(ws, by="admin", action=action)


def test_an_adapter_whose_run_trained_on_a_document_erased_meanwhile_is_registered_stale(ws, embedder, tmp_path):
    """A fine-tune builds its dataset from bonus.md, an admin erases bonus.md while it trains, then the
    run registers its adapter. The erase marked the adapters that existed then; the new one learned
    the erased text too and was registered (and activated) as if nothing had happened."""
    from archivist import adapters
    from archivist.ingest.erase import erase

    ingest_texts(ws, embedder, tmp_path / "docs", SECRET)
    doc = ws.db.execute("SELECT id, path FROM documents WHERE path = 'bonus.md'").fetchone()
    # what the run's dataset recorded before the erase (finetune/datasets.py: lineage["documents"])
    lineage = {"dataset": {"name": "d"}, "documents": [{"id": doc["id"], "path": doc["path"], "collection": "hr"}],
               "collections": ["hr"]}
    saved = tmp_path / "lora"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    adapters.register(ws, "before", saved, ws.settings.llm, {"better": False, "reason": "t"}, lineage)
    report = erase(ws, "bonus.md")  # while the second run trains
    assert report.adapters == ["before"]
    rec = adapters.register(ws, "during", saved, ws.settings.llm, {"better": True, "reason": "t"}, lineage)
    assert rec["stale"] == "trained on a deleted document: bonus.md"
    assert not rec["active"] and "not activated" in rec["note"]
    assert adapters.get(ws, "before")["stale"] == "trained on a deleted document: bonus.md"
    # an adapter whose documents are all still there is not stale
    keep = ws.db.execute("SELECT id, path FROM documents WHERE path = 'canteen.md'").fetchone()
    fresh = adapters.register(ws, "fresh", saved, ws.settings.llm, {"better": True, "reason": "t"},
                              {"dataset": {"name": "d"}, "documents": [dict(keep) | {"collection": "public"}],
                               "collections": ["public"]})
    assert fresh["stale"] is None and fresh["active"]


def test_an_embedder_adapted_on_a_document_erased_meanwhile_is_saved_stale(ws, embedder, tmp_path):
    """The same race for `finetune --target retriever`: its training pairs came from bonus.md, which
    an admin erased before the adapted embedder was saved; the erase could not mark it."""
    from sentence_transformers import SentenceTransformer

    from archivist.catalog import resolve_embedder
    from archivist.finetune import embedders
    from archivist.ingest.erase import erase

    ingest_texts(ws, embedder, tmp_path / "docs", SECRET)
    ids = {r["path"]: r["id"] for r in ws.db.execute("SELECT id, path FROM documents")}
    manifest = {"kind": "retriever", "collections": ["hr", "public"],  # as finetune/retriever.py writes it
                "documents": {"train": [ids["bonus.md"]], "held_out": [ids["canteen.md"]], "hashes": {}}}
    assert erase(ws, "bonus.md").embedders == []  # nothing to mark yet: the run still trains
    model = SentenceTransformer(str(resolve_embedder(ws.settings.embedder)), device="cpu")
    embedders.save(ws, "retriever-1", model, manifest)
    assert embedders.load_manifest(ws, "retriever-1").get("stale") == "trained on a deleted document: bonus.md"
    # and it is never switched to (finetune --target retriever activated a better one anyway: found on re-reading)
    with pytest.raises(ValueError, match="is stale"):
        embedders.activate(ws, "retriever-1", "admin", progress=False)


def test_a_running_job_cancelled_twice_is_recorded_once(ws):
    """Two admins press cancel on the same running ingestion: one cancel happened, and the log must
    say one, not two (nor one for a job that had already ended)."""
    from archivist import access, jobs

    access.add_user(ws, "admin2", "admin")
    job = jobs.create(ws, "ingest", "admin", spec={"paths": []})
    jobs.start(ws, job.id)  # running, in this process: the cancel sets its flag and returns
    jobs.cancel(ws, job.id, "admin", wait=0)
    jobs.cancel(ws, job.id, "admin2", wait=0)
    now = jobs.get(ws, job.id)
    assert now.cancel_requested and now.state == "running"  # its worker stops at the next file
    assert [(r["user"], r["target"]) for r in _audit(ws, "job.cancel")] == [("admin", job.id)]
    jobs.end(ws, job.id, "cancelled")
    assert jobs.cancel(ws, job.id, "admin2", wait=0).state == "cancelled"
    assert len(_audit(ws, "job.cancel")) == 1
    # a job that ended on its own is not cancelled afterwards, and no cancel is recorded for it
    done = jobs.create(ws, "ingest", "admin", spec={"paths": []})
    jobs.start(ws, done.id)
    jobs.finish(ws, done.id, {"files": 0})
    assert not jobs._flag(ws, done.id)
    assert not jobs.get(ws, done.id).cancel_requested


def _held_llm(text: str):
    """An OpenAI-compatible completion server (the `ARCHIVIST_LLM_URL` kind) that answers `text` to
    each streamed completion, but only after the test says go: the moment between a question's
    retrieval and its answer, held open. Returns (app, asked, go): `asked` is set when a generation
    request arrives, and the answer is sent when `go` is set."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app, asked, go = FastAPI(), threading.Event(), threading.Event()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "base-model", "object": "model", "max_model_len": 2048, "parent": None}]}

    @app.post("/v1/completions")
    def completions(body: dict):
        if body.get("prompt_logprobs") is not None:  # no log-probabilities from this server
            return {"id": "c", "object": "text_completion", "model": "base-model",
                    "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        asked.set()
        go.wait(120)

        def events():
            yield f"data: {json.dumps({'choices': [{'index': 0, 'text': text, 'finish_reason': None}]})}\n\n"
            yield f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': 1, 'completion_tokens': 12}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app, asked, go


def test_a_grant_revoked_while_the_answer_is_generated_withholds_it(ws, embedder, tmp_path, short_answers):
    """alice asks about the bonus code (hr); while the model writes the answer an admin revokes her hr
    grant. The reply (whole or streamed), sent after the revocation, must not carry the hr passage
    she lost, nor be saved in her conversation; the log says the answer was refused."""
    import dataclasses

    import httpx

    from archivist import access, conversations
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key

    ingest_texts(ws, embedder, tmp_path / "docs", SECRET)
    access.add_user(ws, "alice")
    for c in ("hr", "public"):
        access.grant(ws, "alice", c, "read")
    key = create_key(ws, "alice")
    app, asked, go = _held_llm("The secret bonus code for region 2 is ZEBRA-222 [1].")
    llm = serve_in_thread(app)
    api = serve_in_thread(create_app(dataclasses.replace(ws.settings, llm_url=llm.url)))
    try:
        for stream in (False, True):
            got = {}

            def ask():
                with httpx.stream("POST", api.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  timeout=120, json={"model": "archivist", "stream": stream, "conversation": "new",
                                                     "answer_mode": "generate", "messages": [
                                                         {"role": "user", "content": "What is the secret bonus code for region 2?"}]}) as r:
                    got["status"], got["text"] = r.status_code, r.read().decode()

            t = threading.Thread(target=ask)
            t.start()
            assert asked.wait(120), "the question never reached the model"
            access.revoke(ws, "alice", "hr")  # the passages were retrieved with it; the answer is not out yet
            go.set()
            t.join(120)
            assert not t.is_alive()
            assert "ZEBRA" not in got["text"] and "bonus.md" not in got["text"], got
            if stream:
                assert got["status"] == 200
                [error] = [json.loads(line[6:]) for line in got["text"].splitlines() if line.startswith("data: {\"error\"")]
            else:
                assert got["status"] == 403
                error = json.loads(got["text"])
            assert error["error"]["code"] == "permission_denied" and "hr" in error["error"]["message"]
            assert conversations.list_conversations(ws, "alice") == []
            access.grant(ws, "alice", "hr", "read")
            asked.clear()
            go.clear()
    finally:
        go.set()
        api.stop()
        llm.stop()
    refused = _audit(ws, "access.denied")
    assert [(r["user"], r["target"]) for r in refused] == [("alice", "POST /v1/chat/completions")] * 2


def test_a_new_version_ingested_while_the_document_is_erased_is_not_deleted_unseen(ws, embedder, tmp_path):
    """bob ingests a new version of plan.md while an admin's erase of plan.md is between its two steps
    (the copies of the version it read scrubbed, the document not yet deleted). The erase is held
    there by a real file it reads: the metrics.json of an adapter that learned plan.md, a FIFO here,
    so the erase waits until the test writes it."""
    import errno
    import hashlib
    import os
    import time

    from archivist import adapters
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import ingest_paths
    from archivist.workspace import open_workspace

    folder = tmp_path / "docs"
    ingest_texts(ws, embedder, folder, {"hr": {"plan.md": "# Plan\n\nVersion one: the vault code is ALPHA-1.\n"}})
    doc = ws.db.execute("SELECT id, path FROM documents").fetchone()
    saved = tmp_path / "lora"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    adapters.register(ws, "plan-v1", saved, ws.settings.llm, {"better": False, "reason": "t"},
                      {"dataset": {"name": "d"}, "documents": [{"id": doc["id"], "path": "plan.md", "collection": "hr"}],
                       "collections": ["hr"]})
    metrics = adapters.path(ws, "plan-v1") / "metrics.json"
    metrics.unlink()
    os.mkfifo(metrics)
    got = {}

    def erasing():
        with open_workspace(ws.settings) as w:
            try:
                got["erase"] = erase(w, "plan.md")
            except Exception as e:  # noqa: BLE001 - a refusal naming the change is a right outcome
                got["erase"] = e

    t = threading.Thread(target=erasing)
    t.start()
    deadline = time.monotonic() + 60
    while True:  # until the erase is waiting on the FIFO (a writer opens without blocking only then)
        try:
            fd = os.open(metrics, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            assert e.errno == errno.ENXIO and time.monotonic() < deadline and t.is_alive(), (e, got)
            time.sleep(0.05)
    v2 = "# Plan\n\nVersion two: the vault code is OMEGA-2.\n"
    (folder / "plan.md").write_text(v2)
    [res] = ingest_paths(ws, [folder / "plan.md"], collection="hr", embedder=embedder, progress=False)
    assert res.status == "updated"
    os.write(fd, json.dumps({"better": False, "examples": []}).encode())  # the erase goes on
    os.close(fd)
    deadline = time.monotonic() + 60
    while t.is_alive() and time.monotonic() < deadline:  # an erase that reads it again (the new version's turn)
        try:
            fd = os.open(metrics, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            assert e.errno == errno.ENXIO, e
            time.sleep(0.05)
            continue
        try:
            os.write(fd, json.dumps({"better": False, "examples": []}).encode())
        except BrokenPipeError:  # the first read's end, closing as this opened: the next open is the new one
            pass
        os.close(fd)
    t.join(5)
    assert not t.is_alive()
    row = ws.db.execute("SELECT content_hash, text FROM documents WHERE path = 'plan.md'").fetchone()
    erased = _audit(ws, "document.erased")
    v2_hash = hashlib.sha256(v2.encode()).hexdigest()
    # either the new version is still there, or the erase covered the version it deleted
    assert (row is not None and "OMEGA-2" in row["text"]) or (
        [r["detail"]["sha256"] for r in erased] == [v2_hash]), (row and dict(row), erased, got)


def test_a_person_erased_while_their_answer_is_generated_stays_off_the_log(ws, embedder, tmp_path, short_answers):
    """erin's key asks (whole, then streamed); an admin erases erin (`users erase`) while the model
    writes. Her request is refused with a clear 403, and nothing written after the `user.erased`
    record names her: the refusal's record says [erased], not who claimed to ask."""
    import dataclasses

    import httpx

    from archivist import access
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key
    from archivist.user_erase import erase_user

    ingest_texts(ws, embedder, tmp_path / "docs", SECRET)
    app, asked, go = _held_llm("The canteen in building 2 opens at 9 am [1].")
    llm = serve_in_thread(app)
    api = serve_in_thread(create_app(dataclasses.replace(ws.settings, llm_url=llm.url)))
    try:
        for stream in (False, True):
            access.add_user(ws, "erin")
            access.grant(ws, "erin", "public", "read")
            key, got = create_key(ws, "erin"), {}

            def ask():
                with httpx.stream("POST", api.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  timeout=120, json={"model": "archivist", "stream": stream, "answer_mode": "generate",
                                                     "messages": [{"role": "user", "content": "When does the canteen open?"}]}) as r:
                    got["status"], got["text"] = r.status_code, r.read().decode()

            t = threading.Thread(target=ask)
            t.start()
            assert asked.wait(120), "the question never reached the model"
            record = erase_user(ws, "erin", by="admin").record
            go.set()
            t.join(120)
            assert not t.is_alive()
            assert got["status"] == (200 if stream else 403) and "permission_denied" in got["text"], got
            after = ws.db.execute("SELECT action, user, target, detail FROM audit WHERE id > ?", (record,)).fetchall()
            assert after and not [tuple(r) for r in after if "erin" in json.dumps(tuple(r))], [tuple(r) for r in after]
            assert [r["action"] for r in after] == ["access.denied"]
            asked.clear()
            go.clear()
    finally:
        go.set()
        api.stop()
        llm.stop()
