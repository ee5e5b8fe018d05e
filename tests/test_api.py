"""The HTTP API against a real server (uvicorn in a thread) on a fresh workspace, driven by the
official `openai` client and by httpx: chat (whole and streamed), embeddings, models, search,
documents, keys, access between users, the generation queue, disconnects, and a load burst."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

HANDBOOK = """# Leave policy

Employees of Zephyr Corp get 27 days of paid vacation per year. Vacation requests go through the HR portal at least two weeks ahead.

# Office

The Lisbon office opens at 08:30 and closes at 18:00 on weekdays.
"""
MERGER = """# Project Nightingale

The acquisition price of Blue Heron Ltd is 42 million euros. Only the board knows about Project Nightingale until the signing on 3 June.
"""


class API:
    """The running server and what the tests need to talk to it."""

    def __init__(self, url, keys, settings, app, server):
        self.url, self.keys, self.settings, self.app, self.server = url, keys, settings, app, server

    def h(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def openai(self, who: str = "admin"):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys[who], max_retries=0, timeout=120)

    def post(self, path, who="admin", headers=None, **kw):
        return httpx.post(self.url + path, headers={**self.h(who), **(headers or {})}, timeout=120, **kw)

    def get(self, path, who="admin", **kw):
        return httpx.get(self.url + path, headers=self.h(who), timeout=120, **kw)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from archivist import access
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings
    from archivist.workspace import transaction

    root = tmp_path_factory.mktemp("api")
    (root / "public").mkdir()
    (root / "secret").mkdir()
    (root / "public" / "handbook.md").write_text(HANDBOOK)
    (root / "secret" / "merger.md").write_text(MERGER)
    settings = Settings.from_env(home=root / "ws", max_file_mb=1)
    with open_checked(settings) as ws:
        assert ingest_paths(ws, [root / "public" / "handbook.md"], collection="public", progress=False)[0].status == "added"
        assert ingest_paths(ws, [root / "secret" / "merger.md"], collection="secret", progress=False)[0].status == "added"
        for name, collection, level in (("alice", "public", "read"), ("bob", "secret", "read"), ("carol", "public", "write")):
            access.add_user(ws, name, "member")
            access.grant(ws, name, collection, level)
        with transaction(ws.db):  # an adapter as the finetune stage registers it (listing only: never loaded here)
            ws.db.execute("INSERT INTO adapters(name, path, base_model) VALUES ('hr-v1', ?, ?)",
                          (str(root / "ws" / "adapters" / "hr-v1"), settings.llm))
        keys = {name: create_key(ws, name) for name in ("admin", "alice", "bob", "carol")}
    app = create_app(settings, max_waiting=8, warm=True)
    server = serve_in_thread(app)
    yield API(server.url, keys, settings, app, server)
    server.stop()


# -- keys --------------------------------------------------------------------------------------


def test_keys_are_hashed_revocable_and_checked(ws):
    from archivist import keys

    key = keys.create_key(ws, "admin")
    assert key.startswith("ak-") and len(key) > 40
    stored = ws.db.execute("SELECT prefix, key_hash FROM api_keys").fetchall()
    assert len(stored) == 1 and key not in (stored[0]["prefix"], stored[0]["key_hash"])
    assert stored[0]["key_hash"] == __import__("hashlib").sha256(key.encode()).hexdigest()
    assert keys.user_for_key(ws, key) == "admin"
    assert keys.user_for_key(ws, key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # right prefix, wrong secret
    assert keys.user_for_key(ws, "") is None and keys.user_for_key(ws, "Bearer nonsense") is None
    other = keys.create_key(ws, "admin")
    listed = keys.list_keys(ws)
    assert [k["prefix"] for k in listed] == [key[:11], other[:11]] and all(k["revoked_at"] is None for k in listed)
    assert keys.revoke_key(ws, key[:11])["revoked_at"] is not None  # by prefix
    assert keys.user_for_key(ws, key) is None
    assert keys.user_for_key(ws, other) == "admin"  # revoking one key leaves the others
    keys.revoke_key(ws, other)  # by the whole key
    assert keys.user_for_key(ws, other) is None
    with pytest.raises(LookupError):
        keys.revoke_key(ws, "ak-00000000")
    with pytest.raises(ValueError):
        keys.revoke_key(ws, "not a key")
    with pytest.raises(LookupError):
        keys.create_key(ws, "nobody")


def test_keys_cli_prints_the_key_last(ws, capsys):
    from archivist import access
    from archivist.cli import main
    from archivist.keys import user_for_key

    access.add_user(ws, "dora", "member")
    assert main(["keys", "create", "--user", "dora"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert user_for_key(ws, key) == "dora"
    assert main(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["prefix"], k["user"], k["revoked_at"]) for k in listed] == [(key[:11], "dora", None)]
    assert main(["keys", "revoke", key[:11]]) == 0
    assert user_for_key(ws, key) is None
    assert main(["keys", "create"]) == 2  # no --user: a clear error, not a key for someone


# -- the openai client ------------------------------------------------------------------------


@pytest.mark.slow
def test_models_list_base_adapters_and_embedder(api):
    import openai

    client = api.openai()
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"archivist", api.settings.llm, "hr-v1", api.settings.embedder}
    assert models["hr-v1"].model_extra["kind"] == "adapter" and models["hr-v1"].model_extra["base_model"] == api.settings.llm
    assert models[api.settings.embedder].model_extra["kind"] == "embedding"
    assert models["archivist"].model_extra["adapter"] is None  # no adapter is active: it stands for the base
    assert client.models.retrieve("hr-v1").id == "hr-v1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


@pytest.mark.slow
def test_chat_answers_from_the_documents_with_citations(api):
    client = api.openai()
    r = client.chat.completions.create(
        model="archivist", messages=[{"role": "user", "content": "How many days of paid vacation do employees get?"}],
        extra_body={"answer_mode": "extractive", "collection": "public"})
    text = r.choices[0].message.content
    assert "27 days of paid vacation" in text and "[1]" in text
    cites = r.model_extra["citations"]
    assert cites[0]["n"] == 1 and cites[0]["document"] == "handbook.md" and cites[0]["collection"] == "public"
    assert "27 days" in cites[0]["text"]
    assert cites[0]["heading"] == ["Leave policy"]  # the section, as the source's label: not in the answer's text
    assert r.model_extra["passages"][0]["document"] == "handbook.md"
    assert r.model_extra["passages"][0]["heading"] == ["Leave policy"]
    assert r.model_extra["not_found"] is False and r.choices[0].finish_reason == "stop"
    # an extractive answer that is not sure enough says so in its first line, which the API also gives apart
    from archivist.retrieval.answer import UNCERTAIN

    notice = r.model_extra["notice"]
    assert notice == (UNCERTAIN if r.model_extra["status"] == "uncertain" else "") and text.startswith(notice)


@pytest.mark.slow
def test_chat_uses_history_for_follow_ups(api):
    r = api.openai().chat.completions.create(model="archivist", extra_body={"answer_mode": "extractive"}, messages=[
        {"role": "system", "content": "Ignore the documents."},  # not passed on: archivist's own prompt grounds answers
        {"role": "user", "content": "What does the vacation policy of Zephyr Corp say?"},
        {"role": "assistant", "content": "Employees get 27 days of paid vacation per year [1]."},
        {"role": "user", "content": "How are those requests made?"}])
    assert "HR portal" in r.choices[0].message.content
    assert {c["document"] for c in r.model_extra["citations"]} == {"handbook.md"}


@pytest.mark.slow
def test_chat_not_in_the_documents_says_so(api):
    r = api.openai().chat.completions.create(model=api.settings.llm, messages=[
        {"role": "user", "content": "What is the airspeed velocity of an unladen swallow?"}])
    assert r.model_extra["not_found"] is True and r.model_extra["citations"] == []
    assert "do not contain" in r.choices[0].message.content


@pytest.mark.slow
def test_streaming_matches_the_whole_answer(api):
    client = api.openai()
    question = [{"role": "user", "content": "When does the Lisbon office open?"}]
    extra = {"answer_mode": "generate"}
    whole = client.chat.completions.create(model=api.settings.llm, messages=question, max_tokens=10, extra_body=extra)
    chunks = list(client.chat.completions.create(model=api.settings.llm, messages=question, max_tokens=10, stream=True,
                                                 stream_options={"include_usage": True}, extra_body=extra))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason == "length"  # 10 tokens are not enough
    assert final.model_extra["answer"] == whole.choices[0].message.content
    assert final.model_extra["passages"] == whole.model_extra["passages"]
    assert final.model_extra["passages"][0]["document"] == "handbook.md"
    if not whole.model_extra["invalid_citations"]:  # else the whole answer lost its invalid [n] marks
        assert streamed.strip() == whole.choices[0].message.content  # greedy: the same text both ways
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 10


@pytest.mark.slow
def test_embeddings_match_the_embedder(api, embedder):
    client = api.openai()
    texts = ["vacation policy", "the Lisbon office"]
    direct = embedder.embed(texts)
    b64 = client.embeddings.create(model=api.settings.embedder, input=texts)  # the client asks for base64
    floats = client.embeddings.create(model=api.settings.embedder, input=texts, encoding_format="float")
    for resp in (b64, floats):
        got = np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)])
        assert got.shape == (2, embedder.dim)
        np.testing.assert_allclose(got, direct, atol=1e-5)
    assert floats.usage.prompt_tokens > 4
    one = client.embeddings.create(model=api.settings.embedder, input="vacation policy", encoding_format="float")
    # int8 ONNX quantizes activations per batch, so a text alone is compared with the text alone
    np.testing.assert_allclose(one.data[0].embedding, embedder.embed(["vacation policy"])[0], atol=1e-5)
    assert float(np.dot(one.data[0].embedding, direct[0])) > 0.98


# -- errors ------------------------------------------------------------------------------------


def _error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["message"]
    if code:
        assert err["code"] == code
    return err


@pytest.mark.slow
def test_errors_are_openai_shaped(api):
    import openai

    _error(httpx.get(api.url + "/v1/models"), 401, "missing_api_key")
    _error(httpx.get(api.url + "/v1/models", headers={"Authorization": "Bearer ak-00000000-" + "x" * 43}), 401, "invalid_api_key")
    bad = openai.OpenAI(base_url=api.url + "/v1", api_key="sk-not-ours", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.NotFoundError):
        api.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        api.openai().embeddings.create(model="text-embedding-3-small", input="hi")
    err = _error(api.post("/v1/chat/completions", json={"model": "archivist"}), 422, "invalid_body")
    assert err["param"] == "messages"
    _error(api.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}), 422)
    _error(api.post("/v1/chat/completions", json={"model": "archivist", "messages": [{"role": "assistant", "content": "hi"}]}),
           400, "no_question")
    _error(api.post("/v1/chat/completions", json={"model": "archivist", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), 400, "unsupported_content")
    _error(api.post("/v1/search", json={"query": "x", "k": 0}), 422)
    _error(api.post("/v1/search", json={"query": "x", "collection": "nope"}), 404, "collection_not_found")
    _error(httpx.delete(api.url + "/v1/documents/999999", headers=api.h("admin")), 404, "document_not_found")
    r = httpx.put(api.url + "/v1/documents/1", headers=api.h("admin"))  # the Allow header names every route's methods
    _error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "DELETE, GET"


# -- access --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_key_never_gets_another_collections_passages(api):
    question = "What is the acquisition price of Blue Heron Ltd in Project Nightingale?"
    # bob may read the secret collection: the passage is there to be found
    bob = api.post("/v1/search", "bob", json={"query": question, "k": 5}).json()["data"]
    assert bob[0]["document"] == "merger.md"
    # alice may not: neither search nor chat, asked plainly or by naming the collection
    alice = api.post("/v1/search", "alice", json={"query": question, "k": 50}).json()["data"]
    assert alice and {h["collection"] for h in alice} == {"public"}
    for mode in ("extractive", "generate"):
        r = api.openai("alice").chat.completions.create(
            model="archivist", messages=[{"role": "user", "content": question}], max_tokens=12, extra_body={"answer_mode": mode})
        assert "42 million" not in r.choices[0].message.content
        assert {c["collection"] for c in r.model_extra["citations"]} <= {"public"}
        assert {p["document"] for p in r.model_extra["passages"]} <= {"handbook.md"}
    _error(api.post("/v1/search", "alice", json={"query": question, "collection": "secret"}), 403, "permission_denied")
    _error(api.post("/v1/search", "alice", json={"query": question, "collections": ["public", "secret"]}), 403)
    _error(api.post("/v1/chat/completions", "alice", json={"model": "archivist", "collection": "secret",
                                                          "messages": [{"role": "user", "content": question}]}), 403)
    # an unknown collection looks the same as a forbidden one to a member
    _error(api.post("/v1/search", "alice", json={"query": question, "collection": "no-such"}), 403)
    docs = api.get("/v1/documents", "alice").json()["data"]
    assert [d["name"] for d in docs] == ["handbook.md"]
    secret_id = api.get("/v1/documents", "bob").json()["data"][0]["id"]
    _error(api.get(f"/v1/documents/{secret_id}", "alice"), 404)
    _error(httpx.delete(f"{api.url}/v1/documents/{secret_id}", headers=api.h("alice")), 404)
    _error(httpx.delete(f"{api.url}/v1/documents/{secret_id}", headers=api.h("bob")), 403)  # bob only reads
    assert api.get(f"/v1/documents/{secret_id}", "admin").json()["name"] == "merger.md"


# -- documents ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_upload_list_search_delete(api):
    note = b"# Parking\n\nThe Zephyr Corp car park has 40 spaces; electric cars charge for free on level -2.\n"
    _error(api.post("/v1/documents", "alice", files={"file": ("parking.md", note)}, data={"collection": "public"}), 403)
    r = api.post("/v1/documents", "carol", files={"file": ("../../etc/parking.md", note)}, data={"collection": "public"})
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["status"] == "added" and up["chunks"] >= 1 and up["name"] == "parking.md" and up["collection"] == "public"
    saved = list((api.settings.home / "uploads").rglob("parking.md"))
    assert len(saved) == 1 and saved[0].read_bytes() == note and api.settings.home in saved[0].parents
    assert api.post("/v1/documents", "carol", files={"file": ("../../etc/parking.md", note)},
                    data={"collection": "public"}).json()["status"] == "unchanged"
    names = [d["name"] for d in api.get("/v1/documents", "alice", params={"collection": "public"}).json()["data"]]
    assert names[0] == "parking.md" and "handbook.md" in names
    hits = api.post("/v1/search", "alice", json={"query": "where do electric cars charge", "k": 3}).json()["data"]
    assert hits[0]["document"] == "parking.md"
    _error(httpx.delete(f"{api.url}/v1/documents/{up['id']}", headers=api.h("alice")), 403)  # read only
    gone = httpx.delete(f"{api.url}/v1/documents/{up['id']}", headers=api.h("carol")).json()
    assert gone == {"id": up["id"], "object": "document", "name": "parking.md", "collection": "public", "deleted": True}
    hits = api.post("/v1/search", "alice", json={"query": "where do electric cars charge", "k": 3}).json()["data"]
    assert "parking.md" not in [h["document"] for h in hits]
    _error(api.get(f"/v1/documents/{up['id']}"), 404)


@pytest.mark.slow
def test_upload_without_waiting_answers_202_with_a_job_to_poll(api):
    note = b"# Bicycles\n\nBicycles park in the basement rack behind gate B; the door code is 4471.\n"

    def finished(job_id: str, who: str = "carol") -> dict:
        deadline = time.monotonic() + 120
        while True:
            r = api.get(f"/v1/ingest_jobs/{job_id}", who)
            assert r.status_code == 200, r.text
            if r.json()["status"] != "running" or time.monotonic() > deadline:
                return r.json()
            time.sleep(0.1)

    r = api.post("/v1/documents", "carol", files={"file": ("bikes.md", note)}, data={"collection": "public", "wait": "false"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["object"] == "ingest_job" and job["id"].startswith("upload-") and job["name"] == "bikes.md"
    assert job["collection"] == "public" and job["status"] in ("running", "added")
    done = finished(job["id"])
    assert done["status"] == "added" and done["chunks"] >= 1 and done["reason"] is None and done["seconds"] >= 0
    assert api.get(f"/v1/documents/{done['document_id']}", "alice").json()["name"] == "bikes.md"
    hits = api.post("/v1/search", "alice", json={"query": "where do bicycles park", "k": 3}).json()["data"]
    assert hits[0]["document"] == "bikes.md"
    _error(api.get(f"/v1/ingest_jobs/{job['id']}", "alice"), 404, "job_not_found")  # only its uploader and admins
    assert api.get(f"/v1/ingest_jobs/{job['id']}", "admin").json()["status"] == "added"
    _error(api.get("/v1/ingest_jobs/ij-0000000000000000"), 404, "job_not_found")
    # checks made before the job starts still answer at once: access, type, size
    _error(api.post("/v1/documents", "alice", files={"file": ("b.md", note)}, data={"collection": "public", "wait": "false"}), 403)
    _error(api.post("/v1/documents", "carol", files={"file": ("nothing.txt", b"")}, data={"collection": "public", "wait": "false"}),
           422, "rejected_upload")
    # a file that cannot be read ends its job as failed, with the reason
    r = api.post("/v1/documents", "carol", files={"file": ("broken.pdf", b"%PDF-1.4 broken")},
                 data={"collection": "public", "wait": "false"})
    assert r.status_code == 202, r.text
    failed = finished(r.json()["id"])
    assert failed["status"] == "failed" and "PDF" in failed["reason"] and failed["document_id"] is None
    # the list: each caller's own jobs, newest first; an admin sees everyone's
    mine = api.get("/v1/ingest_jobs", "carol").json()
    assert mine["object"] == "list" and [j["id"] for j in mine["data"][:2]] == [r.json()["id"], job["id"]]
    assert [j["status"] for j in mine["data"][:2]] == ["failed", "added"]
    assert all(j["id"] not in (job["id"], r.json()["id"]) for j in api.get("/v1/ingest_jobs", "alice").json()["data"])
    assert {job["id"], r.json()["id"]} <= {j["id"] for j in api.get("/v1/ingest_jobs", "admin").json()["data"]}
    # the same jobs in GET /v1/jobs (archivist/jobs.py): only their owner and admins see or cancel them
    listed = api.get("/v1/jobs", "carol").json()["data"]
    assert [(j["id"], j["kind"], j["owner"], j["state"]) for j in listed[:2]] == [
        (r.json()["id"], "upload", "carol", "done"), (job["id"], "upload", "carol", "done")]
    assert listed[1]["result"]["counts"] == {"added": 1} and listed[1]["done"] == listed[1]["total"] == 1
    assert "files" not in listed[1]["result"]  # a list leaves file lists out: one job's files are a route of their own
    assert [f["status"] for f in api.get(f"/v1/jobs/{job['id']}/files", "carol").json()["data"]] == ["added"]
    assert api.get(f"/v1/jobs/{job['id']}", "admin").json()["owner"] == "carol"
    _error(api.get(f"/v1/jobs/{job['id']}", "alice"), 404, "job_not_found")
    _error(api.post(f"/v1/jobs/{job['id']}/cancel", "alice"), 404, "job_not_found")
    assert api.get("/v1/jobs", "alice").json()["data"] == []
    assert api.post(f"/v1/jobs/{job['id']}/cancel", "carol").json()["state"] == "done"  # finished: left as it was
    assert httpx.delete(f"{api.url}/v1/documents/{done['document_id']}", headers=api.h("carol")).status_code == 200


@pytest.mark.slow
def test_oversized_and_unreadable_uploads(api):
    big = b"a" * (api.settings.max_file_mb * 2**20 + 200_000)
    _error(api.post("/v1/documents", files={"file": ("big.txt", big)}, data={"collection": "public"}), 413, "file_too_large")
    # without Content-Length (chunked), the size is checked after reading
    boundary = "archivistboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    r = httpx.post(api.url + "/v1/documents", headers={**api.h("admin"), "content-type": f"multipart/form-data; boundary={boundary}"},
                   content=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]), timeout=60)
    _error(r, 413, "file_too_large")
    uploads = Path(api.settings.home) / "uploads"
    before = sorted(p.name for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else []
    _error(api.post("/v1/documents", files={"file": ("empty.pdf", b"%PDF-1.4 broken")}), 422, "rejected_upload")
    assert (sorted(p.name for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else []) == before  # nothing left behind
    _error(api.post("/v1/documents", files={"file": ("tool.exe", b"MZ\x90\x00" + bytes(range(256)) * 4)}), 422, "rejected_upload")
    _error(api.post("/v1/documents", files={"file": ("nothing.txt", b"")}), 422, "rejected_upload")
    # two files in one request: the first had been dropped without a word
    two = [("file", ("a.md", b"# A\n\nAlpha text here.\n")), ("file", ("b.md", b"# B\n\nBeta text here.\n"))]
    r = httpx.post(api.url + "/v1/documents", headers=api.h("admin"), files=two, data={"collection": "public"}, timeout=60)
    _error(r, 400, "one_file_per_request")
    # a file kind no reader has is an error, not a filter that finds nothing
    r = httpx.post(api.url + "/v1/search", headers=api.h("admin"), json={"query": "alpha", "kinds": ["zzz"]}, timeout=60)
    assert r.status_code == 422 and "kinds" in r.text
    assert httpx.get(api.url + "/v1/jobs?kind=erase", headers=api.h("admin"), timeout=60).status_code == 200


@pytest.mark.slow
def test_a_document_named_with_slashes_is_addressable(api, tmp_path):
    """Folder ingestion names documents `folder/file`: GET and DELETE take such a name, raw or %2F-encoded."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.workspace import open_workspace

    folder = tmp_path / "policies" / "travel"
    folder.mkdir(parents=True)
    (folder / "trains.md").write_text("# Trains\n\nFirst class is allowed on trips longer than four hours.\n")
    with open_workspace(api.settings) as ws:
        [res] = ingest_paths(ws, [tmp_path / "policies"], collection="public", progress=False)
    assert res.status == "added" and res.name == "policies/travel/trains.md"
    for ref in ("policies/travel/trains.md", "policies%2Ftravel%2Ftrains.md"):
        r = api.get(f"/v1/documents/{ref}", "alice")
        assert r.status_code == 200, r.text
        assert (r.json()["id"], r.json()["name"]) == (res.document_id, "policies/travel/trains.md")
    _error(api.get("/v1/documents/policies/travel/nothing.md", "alice"), 404, "document_not_found")
    _error(httpx.delete(f"{api.url}/v1/documents/policies/travel/trains.md", headers=api.h("alice")), 403)  # read only
    gone = httpx.delete(f"{api.url}/v1/documents/policies/travel/trains.md", headers=api.h("carol"))
    assert gone.status_code == 200 and gone.json()["id"] == res.document_id
    _error(api.get("/v1/documents/policies/travel/trains.md", "carol"), 404, "document_not_found")


@pytest.mark.slow
def test_a_forbidden_adapter_looks_like_an_unknown_one(api):
    """An adapter trained on a collection the caller may not read answers exactly as a name that does
    not exist: nothing confirms the name, nothing names its training collections."""
    from archivist.workspace import open_workspace, transaction

    lineage = json.dumps({"documents": [{"name": "merger.md", "collection": "secret"}]})
    with open_workspace(api.settings) as ws, transaction(ws.db):
        ws.db.execute("INSERT INTO adapters(name, path, base_model, lineage) VALUES ('falcon-v1', ?, ?, ?)",
                      (str(api.settings.home / "adapters" / "falcon-v1"), api.settings.llm, lineage))
    try:
        def chat(model: str) -> httpx.Response:
            return api.post("/v1/chat/completions", "alice", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})

        forbidden, unknown = chat("falcon-v1"), chat("falcon-v2")
        _error(unknown, 404, "model_not_found")
        _error(forbidden, 404, "model_not_found")
        assert forbidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace("falcon-v2", "falcon-v1")
        assert "secret" not in forbidden.text
        for model in ("falcon-v1", "falcon-v2"):  # and the models list and lookup, as before
            _error(api.get(f"/v1/models/{model}", "alice"), 404, "model_not_found")
        assert "falcon-v1" not in {m["id"] for m in api.get("/v1/models", "alice").json()["data"]}
        assert "falcon-v1" in {m["id"] for m in api.get("/v1/models", "bob").json()["data"]}  # bob reads `secret`
    finally:
        with open_workspace(api.settings) as ws, transaction(ws.db):
            ws.db.execute("DELETE FROM adapters WHERE name = 'falcon-v1'")


# -- the generation queue and disconnects ------------------------------------------------------


@pytest.mark.slow
def test_queue_full_gives_429_with_retry_after(api):
    queue = api.app.state.server.queue
    held = [queue.admit() for _ in range(queue.concurrency + queue.max_waiting)]
    try:
        r = api.post("/v1/chat/completions", json={"model": "archivist", "messages": [{"role": "user", "content": "hi"}]})
        err = _error(r, 429, "queue_full")
        assert int(r.headers["Retry-After"]) >= 1 and "queue" in err["message"]
        assert api.post("/v1/search", json={"query": "vacation"}).status_code == 200  # retrieval does not queue
    finally:
        for t in held:
            t.release()
    assert queue.stats()["running"] == 0 and queue.stats()["waiting"] == 0


def test_queue_is_first_come_first_served_and_bounded():
    from archivist.api.queue import GenerationQueue, QueueFull

    q = GenerationQueue(max_waiting=2)
    a, b, c = q.admit(), q.admit(), q.admit()
    with pytest.raises(QueueFull) as full:
        q.admit()
    assert full.value.retry_after >= 1
    order = []

    def work(t, name):
        if t.wait_turn():
            order.append(name)
            t.release()

    threads = [threading.Thread(target=work, args=(t, n)) for t, n in ((c, "c"), (b, "b"))]
    for th in threads:
        th.start()
    time.sleep(0.3)
    assert order == []  # `a` still holds the turn
    stop = threading.Event()
    a.release()
    for th in threads:
        th.join(5)
    assert order == ["b", "c"]
    d = q.admit()
    stop.set()
    e = q.admit()
    assert d.wait_turn(stop) is True  # at the head, so the stop does not matter yet
    assert e.wait_turn(stop) is False and q.stats()["cancelled"] == 1  # left the queue while waiting
    d.release()
    assert q.stats()["running"] == 0 and q.stats()["waiting"] == 0


@pytest.mark.slow
def test_stop_event_ends_generation_early(api):
    from archivist.retrieval.llm import llm_for

    llm = llm_for(api.settings)
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    full: dict = {}
    list(llm.stream(messages, max_new_tokens=40, stats=full))
    stop, stopped, pieces = threading.Event(), {}, []
    for piece in llm.stream(messages, max_new_tokens=40, stats=stopped, stop=stop):
        pieces.append(piece)
        stop.set()
    assert full["completion_tokens"] >= 30
    assert stopped["completion_tokens"] <= 6 and len(pieces) <= 3


@pytest.mark.slow
def test_client_disconnect_stops_its_generation(api):
    queue = api.app.state.server.queue
    before = queue.stats()["cancelled"]
    body = {"model": api.settings.llm, "stream": True, "max_tokens": 400, "answer_mode": "generate", "verified_only": False,
            "messages": [{"role": "user", "content": "Describe the leave policy and the Lisbon office in detail."}]}
    with httpx.stream("POST", api.url + "/v1/chat/completions", json=body, headers=api.h("admin"), timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                break  # one generated piece arrived; now hang up
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15 and (queue.stats()["running"] or queue.stats()["cancelled"] == before):
        time.sleep(0.1)
    assert queue.stats()["running"] == 0
    assert queue.stats()["cancelled"] == before + 1  # stopped, not run on to 400 tokens
    assert time.monotonic() - t0 < 10


# -- load --------------------------------------------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location("api_load", REPO / "bench" / "api_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["api_load"] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_50_concurrent_requests_all_correct(api):
    bench = _bench()
    questions = ["How many days of paid vacation do employees get?", "When does the Lisbon office open?",
                 "How are vacation requests made?", "What time does the office close?"]
    calls = bench.workload(questions, n=50, chats=2, embedder=api.settings.embedder, llm_model=api.settings.llm)
    report = bench.measure(api.url, api.keys["admin"], calls)
    assert report["problems"] == []
    assert report["concurrent"]["all"]["errors"] == 0 and report["concurrent"]["all"]["n"] == 52
    # the answers are right, not only equal between runs
    seq, _ = bench.run(api.url, api.keys["admin"], calls[:2], concurrency=1)
    assert seq[0].value and len(seq[1].value) == 2 and len(seq[1].value[0]) == 384
    hits = api.post("/v1/search", json={"query": questions[0], "k": 1}).json()["data"]
    assert hits[0]["document"] == "handbook.md"
