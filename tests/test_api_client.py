"""The HTTP API as a developer's client meets it: a real server (uvicorn in a thread) on a fresh
workspace, driven by httpx and, where it is installed, the official `openai` client. What is checked
here are things a client acts on: the status and exception type of an error, the field its message
and `param` name, and a completion's `finish_reason`."""

from __future__ import annotations

import json

import httpx
import pytest

HANDBOOK = """# Working hours

The core working hours at Zephyr Corp are from 10:00 to 15:00 on weekdays. Outside the core hours employees
choose when to work.

# Vacation

Employees of Zephyr Corp get 27 days of paid vacation per year. Requests go through the HR portal.
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    root = tmp_path_factory.mktemp("apiclient")
    (root / "handbook.md").write_text(HANDBOOK)
    settings = Settings.from_env(home=root / "ws")
    with open_checked(settings) as ws:
        assert ingest_paths(ws, [root / "handbook.md"], collection="hr", progress=False)[0].status == "added"
        key = create_key(ws, "admin")
    server = serve_in_thread(create_app(settings))  # not warm: the validation tests load no model
    yield server.url, key, settings.home
    server.stop()


def _post(api, path, **kw) -> httpx.Response:
    url, key, _ = api
    return httpx.post(url + path, headers={"Authorization": f"Bearer {key}", **kw.pop("headers", {})}, timeout=120, **kw)


def _error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"} and err["code"] == code, err
    return err


# A lone surrogate: valid JSON (RFC 8259 allows the escape), but not Unicode text. The bytes are
# written by hand because json.dumps would write the same escape and httpx would refuse the str.
LONE = b'"\\ud800 core hours"'


def test_text_with_a_lone_surrogate_is_refused_with_422_not_a_500(api):
    """Before: chat (whole and streamed) and embeddings answered 500 `internal_error` with the tokenizer's
    TypeError; search said `body: ... unable to parse raw data` without naming its field."""
    chat = b'{"model": "archivist", "messages": [{"role": "user", "content": %s}]}' % LONE
    parts = b'{"model": "archivist", "messages": [{"role": "user", "content": [{"type": "text", "text": %s}]}]}' % LONE
    streamed = b'{"model": "archivist", "stream": true, "messages": [{"role": "user", "content": %s}]}' % LONE
    for path, body, param in (("/v1/chat/completions", chat, "messages"), ("/v1/chat/completions", parts, "messages"),
                              ("/v1/chat/completions", streamed, "messages"),
                              ("/v1/embeddings", b'{"model": "all-minilm-l6-v2", "input": ["fine", %s]}' % LONE, "input"),
                              ("/v1/search", b'{"query": %s}' % LONE, "query")):
        err = _error(_post(api, path, content=body, headers={"content-type": "application/json"}), 422, "invalid_body")
        assert err["param"] == param, (path, err)
        assert "lone surrogate" in err["message"] and err["message"].startswith(f"{param}: "), err
    # the same text without the surrogate is served (the check refuses the surrogate, not the request), and
    # so is a surrogate *pair* escaped in JSON (\ud83d\ude00 is one character, 😀)
    r = _post(api, "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["fine", " core hours", "é 😀"]})
    assert r.status_code == 200 and len(r.json()["data"]) == 3
    r = _post(api, "/v1/embeddings", content=b'{"model": "all-minilm-l6-v2", "input": "smile \\ud83d\\ude00"}',
              headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["data"]) == 1, r.text


def test_a_validation_error_names_the_body_field_even_when_it_is_called_query(api):
    """Before: search's `query` field was dropped from the location as if it were the query string's
    marker, so a missing or mistyped query came back as `body: Field required` with param `body`."""
    err = _error(_post(api, "/v1/search", json={"k": 3}), 422, "invalid_body")
    assert err["param"] == "query" and err["message"] == "query: Field required", err
    err = _error(_post(api, "/v1/search", json={"query": 5}), 422, "invalid_body")
    assert err["param"] == "query" and err["message"].startswith("query: Input should be a valid string"), err
    err = _error(_post(api, "/v1/search", json={"query": "x", "k": 500}), 422, "invalid_body")  # unchanged
    assert err["param"] == "k", err
    # a query-string parameter is still named without its location
    url, key, _ = api
    err = _error(httpx.get(url + "/v1/jobs", params={"kind": "bogus"}, headers={"Authorization": f"Bearer {key}"}),
                 422, "invalid_body")
    assert err["param"] == "kind", err


def test_a_body_that_is_not_json_says_so(api):
    """Before: `{"error": {"message": "64: JSON decode error", "param": "64"}}`: a character offset as the
    field, and no word of what was wrong; a JSON body sent without its Content-Type got `body: Input should
    be a valid dictionary or object to extract fields from`."""
    body = b'{"model": "archivist", "messages": [{"role": "user", "content": "hi"}]'  # the closing brace missing
    err = _error(_post(api, "/v1/chat/completions", content=body, headers={"content-type": "application/json"}),
                 422, "invalid_json")
    assert err["param"] is None, err
    assert err["message"].startswith("the body is not valid JSON: ") and f"at character {len(body)}" in err["message"], err
    good = json.dumps({"query": "core hours"}).encode()
    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {"content-type": "text/plain"}):
        err = _error(_post(api, "/v1/search", content=good, headers=headers), 422, "invalid_body")
        assert "Content-Type: application/json" in err["message"] and headers["content-type"] in err["message"], err
    assert _post(api, "/v1/search", content=good, headers={"content-type": "application/json"}).status_code == 200


@pytest.mark.slow
def test_a_whole_quoted_answer_is_not_reported_cut_at_max_tokens(api):
    """In `auto` mode a draft the check cannot support is replaced by quoted passages. Before: the
    finish_reason was `length` whenever the *draft* used every token, though the text the client got was
    the whole quote, so a client that asks again with more tokens on `length` waited for the same quote.
    A generated answer cut at max_tokens is still `length`."""
    question = [{"role": "user", "content": "What are the core working hours?"}]
    r = _post(api, "/v1/chat/completions", json={"model": "archivist", "messages": question, "max_tokens": 4})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["usage"]["completion_tokens"] == 4  # the draft was cut ...
    assert j["answer_mode"] == "extractive" and j["status"] == "answered"  # ... and replaced by the quote
    assert "10:00 to 15:00" in j["choices"][0]["message"]["content"]
    assert j["choices"][0]["finish_reason"] == "stop"

    # streamed: the final chunk says the same
    with httpx.stream("POST", api[0] + "/v1/chat/completions", headers={"Authorization": f"Bearer {api[1]}"}, timeout=120,
                      json={"model": "archivist", "messages": question, "max_tokens": 4, "stream": True}) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    final = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["answer_mode"] == "extractive" and final[0]["choices"][0]["finish_reason"] == "stop"

    # the model's own text, cut at 4 tokens: `length`, as OpenAI says it
    r = _post(api, "/v1/chat/completions", json={"model": "archivist", "messages": question, "max_tokens": 4,
                                                  "answer_mode": "generate"})
    j = r.json()
    assert j["answer_mode"] == "generated" and j["usage"]["completion_tokens"] == 4
    assert j["choices"][0]["finish_reason"] == "length"


def _uploads(api_home) -> list[str]:
    return sorted(p.name for p in (api_home / "uploads").rglob("*") if p.is_file())


def test_a_background_upload_that_cannot_be_read_is_not_kept(api, tmp_path):
    """With wait=true a file that cannot be read gets 422 and is removed from uploads/; with wait=false the
    job said `failed` but the bytes stayed under uploads/ for good, a file no document, delete or erase
    reaches. A readable background upload keeps its file (its document is read from it)."""
    import time

    url, key, home = api
    auth = {"Authorization": f"Bearer {key}"}

    def upload_in_background(name: str, data: bytes) -> dict:
        r = httpx.post(url + "/v1/documents", headers=auth, files={"file": (name, data)},
                       data={"collection": "hr", "wait": "false"}, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = httpx.get(url + f"/v1/ingest_jobs/{job_id}", headers=auth, timeout=60).json()
            if job["status"] != "running":
                return job
            time.sleep(0.2)
        raise AssertionError(f"upload {name} still running: {job}")

    job = upload_in_background("broken.pdf", b"%PDF-1.4\n1 0 obj garbage\n")
    assert job["status"] == "failed" and "corrupt PDF" in job["reason"], job
    job = upload_in_background("parking.txt", b"Employees park in garage B, level 3.\n")
    assert job["status"] == "added", job
    stored = _uploads(home)
    assert "broken.pdf" not in stored, stored  # before: still there
    assert "parking.txt" in stored, stored


def test_concurrent_uploads_of_one_name_all_succeed_and_leave_one_consistent_document(api):
    """Several clients uploading new versions of one document at once. Before: one of them now and then got a
    500 `KeyError: chunks without a vector in SQLite` from the FAISS sync (another upload had replaced the
    chunk between the sync reading the collection's chunk ids and reading their vectors), though its
    version had been stored. Each answers 200 now; the document left is one of the versions, and search
    finds exactly its one chunk."""
    from concurrent.futures import ThreadPoolExecutor

    url, key, _ = api
    auth = {"Authorization": f"Bearer {key}"}
    versions = {f"Canteen menu version {i}: soup number {i} is served on weekdays." for i in range(8)}

    def upload(text: str) -> httpx.Response:
        return httpx.post(url + "/v1/documents", headers=auth, files={"file": ("canteen.txt", text.encode())},
                          data={"collection": "hr"}, timeout=120)

    for _ in range(3):
        with ThreadPoolExecutor(len(versions)) as pool:
            replies = list(pool.map(upload, sorted(versions)))
        assert [r.status_code for r in replies] == [200] * len(versions), [r.text for r in replies if r.status_code != 200]
        assert {r.json()["id"] for r in replies} == {replies[0].json()["id"]}  # one document, replaced
        hits = _post(api, "/v1/search", json={"query": "canteen soup weekdays", "k": 10, "documents": ["canteen.txt"]}).json()["data"]
        assert len(hits) == 1 and hits[0]["text"] in versions, hits
        assert _post(api, "/v1/search", json={"query": "canteen soup weekdays", "k": 10, "mode": "dense",
                                               "documents": ["canteen.txt"]}).json()["data"][0]["chunk_id"] == hits[0]["chunk_id"]


def test_a_faiss_sync_reads_one_state_of_sqlite_while_another_connection_replaces_chunks(ws, tmp_path):
    """What made the concurrent uploads above answer 500, made to happen every time: a second connection
    deletes a document's chunks (as another upload replacing it does) just as sync starts reading the
    vectors of the chunk ids it read a moment before. Before: KeyError `chunks without a vector in SQLite`.
    Now sync reads ids and vectors in one snapshot, and the next sync (the deleting writer's own, after
    its commit) removes what was deleted."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval import vectors
    from archivist.workspace import connect

    for name, text in (("keep.txt", "The cafeteria opens at noon on weekdays."),
                       ("gone.txt", "Badges must be worn visibly at all times in the warehouse.")):
        (tmp_path / name).write_text(text)
        assert ingest_paths(ws, [tmp_path / name], collection="c", progress=False)[0].status == "added"
    cid = ws.collection_id("c")
    gone = [r[0] for r in ws.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                        "WHERE d.path = 'gone.txt'")]
    other = connect(ws.settings.home / "archivist.db")
    fired = []

    def replace_meanwhile(statement: str) -> None:  # SQLite's own hook: runs as a statement starts
        if statement.startswith("SELECT id, embedding FROM chunks") and not fired:
            fired.append(statement)
            other.execute("DELETE FROM chunks WHERE id IN (%s)" % ",".join("?" * len(gone)), gone)  # autocommit

    ws.db.set_trace_callback(replace_meanwhile)
    try:
        first = vectors.sync(ws, cid, rebuild=True)  # rebuilt: every vector is read back from SQLite
    finally:
        ws.db.set_trace_callback(None)
        other.close()
    assert fired, "sync read no vectors from SQLite: the test did not exercise the race"
    assert first["total"] == 2  # the state it read: both documents' chunks
    assert vectors.sync(ws, cid) == {"added": 0, "removed": len(gone), "total": 1, "rebuilt": False}


def test_a_500_does_not_tell_the_client_server_paths(api):
    """A server fault under a member's request: here the folder an upload's bytes go to is taken by a file.
    Before: `internal error: FileExistsError: [Errno 17] File exists: '/…/ws/uploads/5b97…'`, the
    workspace's path on the server in the client's hands. Now the type only; the log has the rest."""
    import hashlib

    url, key, home = api
    data = b"Blocked content for the server path test.\n"
    blocker = home / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_bytes(b"")  # where save_upload makes the upload's folder
    try:
        r = httpx.post(url + "/v1/documents", headers={"Authorization": f"Bearer {key}"},
                       files={"file": ("blocked.txt", data)}, data={"collection": "hr"}, timeout=60)
    finally:
        blocker.unlink()
    err = _error(r, 500, "internal_error")
    assert str(home) not in err["message"] and "uploads" not in err["message"], err
    assert err["message"] == "internal error: FileExistsError (the server's log has the details)", err
