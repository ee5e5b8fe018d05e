"""The API as an integrator meets it: a finished answer is checked by the one function the chat page
calls, every error a route answers is listed in its OpenAPI, a failed generation has one code streamed
or not, and a file that cannot be read as given gets one code at upload whichever check refused it.

A real workspace, the real default models, the real app (starlette's TestClient) and, for a model
that fails mid-answer, a real OpenAI-compatible server (uvicorn in a thread) that sends what no
model should."""

from __future__ import annotations

import dataclasses
import json

from conftest import ingest_texts, members_with_keys

PARKING = ("# Visitor parking\n\nVisitors park in lot C behind the warehouse. The gate code for lot C is 4417. "
           "Parking in lot A is reserved for delivery trucks.\n")
QUESTION = "What is the gate code for visitor parking in lot C?"
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # how a password-protected .docx starts


def _ask(conversation=None, mode="extractive", stream=False) -> dict:
    body = {"model": "archivist", "answer_mode": mode, "stream": stream, "messages": [{"role": "user", "content": QUESTION}]}
    return {**body, "conversation": conversation} if conversation else body


def _listed(app, method: str, path: str) -> set[int]:
    return {int(s) for s in app.openapi()["paths"][path][method.lower()]["responses"]}


def test_the_api_checks_a_finished_answer_with_the_chat_pages_one_check(ws, embedder, tmp_path, monkeypatch):
    """Before: api/chat.py called withhold_lost and withhold_erased itself, a second copy of the check
    the chat page makes through retrieval.answer.withhold_unsaved; a third rule added there would have
    missed the API. Now the API calls withhold_unsaved, in the transaction that saves the answer: bob's
    grant revoked while his answer is checked is a 403 with nothing saved, and with it the answer is saved."""
    from starlette.testclient import TestClient

    from archivist import access, conversations
    from archivist.api.app import create_app
    from archivist.retrieval import answer as answer_module

    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": PARKING}})
    keys = members_with_keys(ws, {"bob": ("facilities", "read")})
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    checked = []  # (in the saving transaction, the passages' collections) of each call
    real_check, real_settle = answer_module.withhold_unsaved, answer_module.settle

    def check(ws_, user, passages, adapter=None):
        checked.append((ws_.db.in_transaction, user, sorted({p.collection for p in passages})))
        return real_check(ws_, user, passages, adapter)

    def revoked_while_checking(*args, **kwargs):  # the admin revokes bob's grant once the passages were found
        access.revoke(ws, "bob", "facilities")
        return real_settle(*args, **kwargs)

    monkeypatch.setattr(answer_module, "withhold_unsaved", check)
    monkeypatch.setattr(answer_module, "settle", revoked_while_checking)
    with TestClient(create_app(ws.settings)) as client:
        r = client.post("/v1/chat/completions", json=_ask("new"), headers=bob)
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", r.text
        assert "lost read access to facilities" in r.json()["error"]["message"] and "4417" not in r.text
        assert conversations.list_conversations(ws, "bob") == []
        assert checked == [(True, "bob", ["facilities"])]

        monkeypatch.setattr(answer_module, "settle", real_settle)
        access.grant(ws, "bob", "facilities", "read")
        r = client.post("/v1/chat/completions", json=_ask("new"), headers=bob)
        assert r.status_code == 200 and "4417" in r.json()["choices"][0]["message"]["content"], r.text
        assert checked[1:] == [(True, "bob", ["facilities"])]
        stored = conversations.messages(ws, r.json()["conversation"], "bob")
        assert [(m["id"], m["role"]) for m in stored][-1] == (r.json()["message_id"], "assistant")


def _failing_llm(event: str):
    """An OpenAI-compatible completion server (the `ARCHIVIST_LLM_URL` kind) whose every streamed
    completion is the one server-sent `event`, then [DONE]."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "base-model", "object": "model", "max_model_len": 2048, "parent": None}]}

    @app.post("/v1/completions")
    def completions(body: dict):
        return StreamingResponse(iter([f"data: {event}\n\n", "data: [DONE]\n\n"]), media_type="text/event-stream")

    return app


def test_every_error_a_route_answers_is_listed_in_its_openapi(ws, embedder, tmp_path, monkeypatch):
    """Before: POST /v1/feedback answered 413 to a body over max_json_mb, and 403 on an answer from a
    collection the caller can no longer read, and listed neither; every other route answered the Guard's
    413 too and only the ones with a JSON body listed it; POST /v1/chat/completions listed no 500, and
    answered a model that failed mid-answer 500 `generation_failed` when streamed but `internal_error`
    when not. Each status below is answered for real, then looked up in app.openapi(); the 500 by a
    generation that crashes (an event of the wrong shape, which crashed it before, is now a 503:
    test_inputmend.py)."""
    from starlette.testclient import TestClient

    from archivist import access
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.retrieval import llm_remote

    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": PARKING}})
    keys = members_with_keys(ws, {"bob": ("facilities", "read")})
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    llm = serve_in_thread(_failing_llm('{"choices": ["not a choice object"]}'))
    try:
        app = create_app(dataclasses.replace(ws.settings, max_json_mb=1, llm_url=llm.url))
        with TestClient(app, raise_server_exceptions=False) as client:
            # a body over max_json_mb: 413 on every keyed route, whatever its method
            routes = [(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops if p.startswith("/v1/")]
            assert ("POST", "/v1/feedback") in routes and len(routes) >= 20
            big = json.dumps({"message_id": 1, "correction": "x" * (2**20 + 10)}).encode()
            for method, path in routes:
                if path == "/v1/documents" and method == "POST":
                    continue  # an upload's limit is max_file_mb (test_api.py)
                url = path.replace("{doc}", "parking.md").replace("{model_id}", "m").replace("{prefix}", "ak-1").replace(
                    "{job_id}", "1").replace("{conversation_id}", "1")
                r = client.request(method, url, content=big, headers={**bob, "Content-Type": "application/json"})
                assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large"), (method, path, r.text)
                assert 413 in _listed(app, method, path), (method, path)

            # an answer saved, then its collection revoked: rating it is 403
            saved = client.post("/v1/chat/completions", json=_ask("new"), headers=bob)
            assert saved.status_code == 200, saved.text
            access.revoke(ws, "bob", "facilities")
            r = client.post("/v1/feedback", json={"message_id": saved.json()["message_id"], "rating": 1}, headers=bob)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied"), r.text
            assert 403 in _listed(app, "POST", "/v1/feedback")
            access.grant(ws, "bob", "facilities", "read")

            # the model's server sends a completion event of the wrong shape: the server is at fault, 503
            r = client.post("/v1/chat/completions", json=_ask(mode="generate"), headers=bob)
            assert (r.status_code, r.json()["error"]["code"]) == (503, "llm_unavailable"), r.text
            assert 503 in _listed(app, "POST", "/v1/chat/completions")

            # generation crashes: one code, streamed or not
            def crash(*args, **kwargs):
                raise RuntimeError("a bug in generation")
                yield  # a generator, as the one it stands in for

            monkeypatch.setattr(llm_remote.RemoteLLM, "_generate", crash)
            r = client.post("/v1/chat/completions", json=_ask(mode="generate"), headers=bob)
            assert (r.status_code, r.json()["error"]["code"]) == (500, "generation_failed"), r.text
            assert r.json()["error"]["message"] == "generation failed: RuntimeError (the server's log has the details)"
            assert 500 in _listed(app, "POST", "/v1/chat/completions")
            r = client.post("/v1/chat/completions", json=_ask(mode="generate", stream=True), headers=bob)
            [error] = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith('data: {"error"')]
            assert (r.status_code, error["error"]["code"]) == (200, "generation_failed"), r.text
    finally:
        llm.stop()


def test_an_encrypted_pdf_and_an_encrypted_docx_upload_get_one_code(ws, embedder, tmp_path):
    """Before: an encrypted .docx was refused before it was stored (readers.check_kind) with 422
    `rejected_upload`, an encrypted PDF when it was read with 422 `unreadable_document`: a client that
    switched on the code to tell its user "send the file without its password" had to know which check
    catches which format. Now both are `rejected_upload`, each message names the file and the reason,
    nothing refused is kept, and the stored document of the same name is untouched."""
    from fpdf import FPDF
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="The gate code for lot C is 4417.")
    pdf.set_encryption(owner_password="owner", user_password="secret")
    locked = bytes(pdf.output())
    keys = members_with_keys(ws, {"bob": ("facilities", "write")})
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    with TestClient(create_app(ws.settings)) as client:
        kept = client.post("/v1/documents", files={"file": ("parking.md", PARKING.encode())}, headers=bob,
                           data={"collection": "facilities"})
        assert kept.status_code == 200, kept.text
        uploads = sorted(p.name for p in (ws.home / "uploads").rglob("*") if p.is_file())
        refused = {}
        for name, data in (("locked.pdf", locked), ("locked.docx", OLE2 + bytes(4096)), ("parking.md", b"")):
            r = client.post("/v1/documents", files={"file": (name, data)}, data={"collection": "facilities"}, headers=bob)
            refused[name] = (r.status_code, r.json()["error"]["code"], r.json()["error"]["message"])
        assert refused == {
            "locked.pdf": (422, "rejected_upload", "locked.pdf: encrypted PDF (needs a password)"),
            "locked.docx": (422, "rejected_upload", "locked.docx: encrypted or legacy Office file (an OLE2 container: a "
                            "password-protected .docx/.xlsx/.pptx or an old .doc/.xls/.ppt); save it unprotected as "
                            ".docx/.xlsx/.pptx"),
            "parking.md": (422, "rejected_upload", "parking.md: empty file (0 bytes)")}
        assert sorted(p.name for p in (ws.home / "uploads").rglob("*") if p.is_file()) == uploads  # nothing refused kept
        stored = client.get("/v1/documents/parking.md", headers=bob).json()
        assert (stored["id"], stored["chunks"], stored["status"]) == (kept.json()["id"], kept.json()["chunks"], "ready")


def test_a_model_server_that_sends_what_is_not_json_is_a_503_not_the_clients_400(ws, embedder, tmp_path):
    """Before: an event of the LLM server's stream that was not JSON raised json's ValueError, which the API
    answers 400 `invalid_value` ("Expecting property name enclosed in double quotes"): the client was told
    its own request was wrong and not to retry it. Now it is the server's fault, 503 `llm_unavailable`
    with Retry-After, as every other failure of the LLM server, streamed or not."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": PARKING}})
    keys = members_with_keys(ws, {"bob": ("facilities", "read")})
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    llm = serve_in_thread(_failing_llm("{not json"))
    try:
        with TestClient(create_app(dataclasses.replace(ws.settings, llm_url=llm.url))) as client:
            r = client.post("/v1/chat/completions", json=_ask(mode="generate"), headers=bob)
            assert (r.status_code, r.json()["error"]["code"], r.headers.get("retry-after")) == (503, "llm_unavailable", "5"), r.text
            assert r.json()["error"]["message"] == "the LLM server sent an event that is not JSON: '{not json'"
            r = client.post("/v1/chat/completions", json=_ask(mode="generate", stream=True), headers=bob)
            [error] = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith('data: {"error"')]
            assert error["error"]["code"] == "llm_unavailable", r.text
    finally:
        llm.stop()
