"""What a developer integrating archivist over HTTP found missing, against a real server (uvicorn in a
thread) or the app's real ASGI stack (starlette's TestClient, httpx underneath), on real workspaces:
lists that come a page at a time, uploads without a name refused, feedback and a user's own keys
managed over HTTP with the CLI's rules, CORS for listed origins only, and job errors and a damaged
database told to clients without server paths (the server's log has them whole)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from conftest import members_with_keys

DOCS = 7  # documents in the shared workspace's `hr` collection


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A served workspace: DOCS documents in `hr`, one in `secret`; admin, alice (reads/writes hr) and
    bob (reads secret), each with a key."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    root = tmp_path_factory.mktemp("apigaps")
    files = []
    for i in range(DOCS):
        files.append(root / f"policy-{i}.md")
        files[-1].write_text(f"# Policy {i}\n\nRule number {i} says that form F-{i} is filed within {i + 2} days.\n")
    (root / "salaries.md").write_text("# Salaries\n\nThe salary band for engineers is 71,000 to 95,000.\n")
    settings = Settings.from_env(home=root / "ws")
    with open_checked(settings) as ws:
        for f in files:  # one at a time: each its own added_at
            assert ingest_paths(ws, [f], collection="hr", progress=False)[0].status == "added"
        assert ingest_paths(ws, [root / "salaries.md"], collection="secret", progress=False)[0].status == "added"
        keys = members_with_keys(ws, {"alice": ("hr", "write"), "bob": ("secret", "read")})
    server = serve_in_thread(create_app(settings))
    yield server.url, keys, settings
    server.stop()


def _call(api, method: str, path: str, who: str = "admin", **kw) -> httpx.Response:
    url, keys, _ = api
    key = kw.pop("key", None) or keys[who]
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)


def _error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == code, err
    return err


# -- 1. lists a page at a time ------------------------------------------------------------------


def _all_pages(api, path: str, limit: int, who: str = "admin", **params) -> tuple[list, int]:
    seen, after, pages = [], None, 0
    while True:
        r = _call(api, "GET", path, who, params={**params, "limit": limit, **({"after": after} if after is not None else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        assert len(body["data"]) <= limit
        if body["data"]:
            assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
        seen += body["data"]
        if not body["has_more"]:
            return seen, pages
        after = body["last_id"]


def test_documents_and_jobs_come_a_page_at_a_time_in_a_stable_order(api):
    """Before: `?limit=` was refused (422 unknown_parameter) and every document came in one list; the job
    lists stopped at 100 without saying so."""
    from archivist import jobs
    from archivist.ingest.pipeline import create_job, list_documents

    _, _, settings = api
    whole = _call(api, "GET", "/v1/documents", params={"limit": 1000}).json()
    assert [d["name"] for d in whole["data"]][:2] == ["salaries.md", f"policy-{DOCS - 1}.md"]  # newest first
    assert len(whole["data"]) == DOCS + 1 and whole["has_more"] is False
    paged, pages = _all_pages(api, "/v1/documents", 3)
    assert [d["id"] for d in paged] == [d["id"] for d in whole["data"]] and pages == 3  # 3 + 3 + 2, nothing twice
    # a member's pages hold their collections' documents only, and the collection filter pages too
    alice, _ = _all_pages(api, "/v1/documents", 2, "alice")
    assert [d["name"] for d in alice] == [f"policy-{i}.md" for i in reversed(range(DOCS))]
    hr, _ = _all_pages(api, "/v1/documents", 4, collection="hr")
    assert [d["id"] for d in hr] == [d["id"] for d in alice]
    # the default page is 100; limit is 1..1000
    assert _call(api, "GET", "/v1/documents").json()["has_more"] is False
    for bad in (0, 1001, "x"):
        _error(_call(api, "GET", "/v1/documents", params={"limit": bad}), 422, "invalid_body")

    # a page's last document deleted before the next page is asked for still marks its place
    first = _call(api, "GET", "/v1/documents", "alice", params={"limit": 3}).json()
    with jobs_ws(settings) as ws:  # deleted through the library, as another client would through the API
        from archivist.ingest.pipeline import delete_document

        delete_document(ws, first["last_id"], "admin", "hr")
        rest = [d["id"] for d in list_documents(ws, "alice")][2:]
    after = _call(api, "GET", "/v1/documents", "alice", params={"after": first["last_id"], "limit": 100}).json()
    assert [d["id"] for d in after["data"]] == rest and len(rest) == DOCS - 3

    # jobs: alice's own, newest first, in pages; an admin's pages hold everyone's
    with jobs_ws(settings) as ws:
        made = [create_job(ws, "upload", user, "hr", [(f"/nowhere/{i}.md", f"{i}.md")]).id
                for i, user in enumerate(["alice", "bob"] * 4)]
        for job_id in made:  # ended, so no server picks them up
            jobs.end(ws, job_id, "cancelled")
    mine = [j["id"] for j in _call(api, "GET", "/v1/jobs", "alice", params={"limit": 1000}).json()["data"]]
    assert sorted(mine) == sorted(made[0::2])  # created within a millisecond or two: ties ordered by id
    got, pages = _all_pages(api, "/v1/jobs", 3, "alice")
    assert [j["id"] for j in got] == mine and pages == 2
    got, _ = _all_pages(api, "/v1/ingest_jobs", 1, "alice")
    assert [j["id"] for j in got] == mine
    everyone, _ = _all_pages(api, "/v1/jobs", 5, kind="upload")
    assert sorted(j["id"] for j in everyone) == sorted(made) and len(everyone) == 8
    # another user's job is no cursor of alice's: said, not an empty page
    err = _error(_call(api, "GET", "/v1/jobs", "alice", params={"after": made[1]}), 400, "invalid_cursor")
    assert err["param"] == "after"

    # documented in the OpenAPI schema
    schema = httpx.get(api[0] + "/openapi.json").json()
    for path in ("/v1/documents", "/v1/jobs", "/v1/ingest_jobs"):
        params = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert {"limit", "after"} <= params, (path, params)
    assert {"has_more", "last_id", "first_id"} <= set(schema["components"]["schemas"]["DocumentList"]["properties"])


def jobs_ws(settings):
    from archivist.workspace import open_workspace

    return open_workspace(settings)


# -- 2. uploads need a name ---------------------------------------------------------------------


def test_an_upload_without_a_usable_name_is_refused_and_stores_nothing(api):
    """Before: an empty, "." or blank file name was stored as `upload`, and each such upload replaced the
    one before (`status: updated`): the first document was lost without a word."""
    _, _, settings = api
    uploads = settings.home / "uploads"
    before = sorted(p.relative_to(uploads) for p in uploads.rglob("*"))
    count = len(_call(api, "GET", "/v1/documents").json()["data"])
    for name in (".", "   ", "..", "\u200b", ""):
        r = _call(api, "POST", "/v1/documents", "alice", files={"file": (name, b"Visitors sign in at the front desk.\n", "text/plain")},
                  data={"collection": "hr"})
        err = _error(r, 422, "missing_filename")
        assert err["param"] == "file" and "no usable file name" in err["message"], err
    assert sorted(p.relative_to(uploads) for p in uploads.rglob("*")) == before
    assert len(_call(api, "GET", "/v1/documents").json()["data"]) == count
    # a name (even one that is cleaned: a path's last part) is stored as before
    r = _call(api, "POST", "/v1/documents", "alice", files={"file": ("../visitors.txt", b"Visitors sign in at the front desk.\n")},
              data={"collection": "hr"})
    assert r.status_code == 200 and r.json()["name"] == "visitors.txt", r.text


# -- 3. keys and feedback over HTTP -------------------------------------------------------------


def test_a_member_manages_their_own_keys_over_http_and_no_one_elses(api):
    """Before: /v1/keys did not exist (404); keys could only be made with the CLI on the server."""
    r = _call(api, "POST", "/v1/keys", json={"user": "alice"})  # an admin's key; hers may not (test_keymend.py)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["user"] == "alice" and new["key"].startswith(new["prefix"] + "-") and new["revoked_at"] is None
    assert r.headers["cache-control"] == "no-store"
    assert _call(api, "GET", "/v1/models", key=new["key"]).status_code == 200  # the new key works
    listed = _call(api, "GET", "/v1/keys", "alice").json()["data"]
    assert {k["user"] for k in listed} == {"alice"} and new["prefix"] in [k["prefix"] for k in listed]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    # another user's key: 403 before the name is looked up (a made-up name gets the same answer)
    for other in ("bob", "nobody-such"):
        err = _error(_call(api, "POST", "/v1/keys", "alice", json={"user": other}), 403, "permission_denied")
        assert other in err["message"] or "another user" in err["message"]
    _error(_call(api, "POST", "/v1/keys", "alice", json={"usr": "alice"}), 422, "invalid_body")  # a typo is not ignored
    bobs = [k["prefix"] for k in _call(api, "GET", "/v1/keys", "bob").json()["data"]]
    unknown = _error(_call(api, "DELETE", "/v1/keys/ak-00000000", "alice"), 404, "not_found")["message"]
    theirs = _error(_call(api, "DELETE", f"/v1/keys/{bobs[0]}", "alice"), 404, "not_found")["message"]
    assert theirs == unknown.replace("00000000", bobs[0][3:])  # the same words as a key that does not exist
    assert _call(api, "GET", "/v1/models", "bob").status_code == 200  # bob's key still works
    # her new key revoking itself: at once
    r = _call(api, "DELETE", f"/v1/keys/{new['prefix']}", key=new["key"])
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    _error(_call(api, "GET", "/v1/models", key=new["key"]), 401, "invalid_api_key")
    # an admin sees and makes anyone's keys
    assert {"alice", "bob", "admin"} <= {k["user"] for k in _call(api, "GET", "/v1/keys").json()["data"]}
    r = _call(api, "POST", "/v1/keys", json={"user": "bob"})
    assert r.status_code == 201 and r.json()["user"] == "bob"
    _error(_call(api, "POST", "/v1/keys", json={"user": "nobody-such"}), 404, "not_found")


def _conversation(settings, user: str, question: str, answer: str, collection: str, document: str) -> tuple[int, int, int]:
    """A conversation of `user` as the chat page stores it: (conversation id, question's id, answer's id)."""
    from archivist import conversations

    with jobs_ws(settings) as ws:
        conv = conversations.start_conversation(ws, user)
        asked = conversations.add_message(ws, conv, user, "user", question)
        cites = [{"n": 1, "document": document, "page": None, "chunk_id": 1, "score": 0.9, "text": answer, "collection": collection}]
        answered = conversations.add_message(ws, conv, user, "assistant", answer + " [1]", citations=cites, adapter=None,
                                             meta={"question": question, "collection": collection, "status": "answered", "notice": ""})
    return conv, asked, answered


def test_feedback_is_given_over_http_on_ones_own_answers_only(api):
    """Before: /v1/feedback and /v1/conversations did not exist; feedback (what fine-tuning learns from)
    could only be given on the chat page."""
    _, _, settings = api
    conv, asked, answered = _conversation(settings, "alice", "How soon is form F-2 filed?", "Within 4 days.", "hr", "policy-2.md")
    _, _, bobs = _conversation(settings, "bob", "What is the engineers' salary band?", "71,000 to 95,000.", "secret", "salaries.md")

    listed = _call(api, "GET", "/v1/conversations", "alice").json()["data"]
    assert [c["id"] for c in listed] == [conv] and listed[0]["messages"] == 2
    msgs = _call(api, "GET", f"/v1/conversations/{conv}", "alice").json()["data"]
    assert [(m["id"], m["role"]) for m in msgs] == [(asked, "user"), (answered, "assistant")]
    _error(_call(api, "GET", f"/v1/conversations/{conv}", "bob"), 404, "conversation_not_found")

    r = _call(api, "POST", "/v1/feedback", "alice", json={"message_id": answered, "rating": 1})
    assert r.status_code == 201, r.text
    given = r.json()
    # the question, answer and passages are the stored message's, not the client's
    assert (given["question"], given["answer"], given["rating"], given["message_id"], given["collection"]) == \
        ("How soon is form F-2 filed?", "Within 4 days. [1]", 1, answered, "hr")
    assert [c["document"] for c in given["citations"]] == ["policy-2.md"]
    _error(_call(api, "POST", "/v1/feedback", "alice", json={"message_id": answered, "rating": 1,
                                                             "citations": [{"document": "salaries.md", "collection": "secret"}]}),
           422, "invalid_body")
    # a second one on the same answer changes it (the rating stays when only a correction comes)
    r = _call(api, "POST", "/v1/feedback", "alice", json={"message_id": answered, "correction": "Within 4 working days."})
    assert r.status_code == 200 and r.json()["id"] == given["id"], r.text
    assert (r.json()["rating"], r.json()["correction"]) == (1, "Within 4 working days.")
    r = _call(api, "POST", "/v1/feedback", "alice", json={"message_id": answered, "rating": -1})
    assert (r.json()["rating"], r.json()["correction"]) == (-1, "Within 4 working days.")

    # not hers, not an answer, not there: refused, and bob's answer looks like a missing one
    missing = _error(_call(api, "POST", "/v1/feedback", "alice", json={"message_id": 99999, "rating": 1}), 404, "message_not_found")
    other = _error(_call(api, "POST", "/v1/feedback", "alice", json={"message_id": bobs, "rating": 1}), 404, "message_not_found")
    assert other["message"] == missing["message"].replace("99999", str(bobs))
    _error(_call(api, "POST", "/v1/feedback", "alice", json={"message_id": asked, "rating": 1}), 404, "message_not_found")
    _error(_call(api, "POST", "/v1/feedback", "alice", json={"message_id": answered, "rating": 5}), 422, "invalid_body")
    _error(_call(api, "POST", "/v1/feedback", "bob", json={"message_id": bobs}), 400, "invalid_value")  # nothing given

    mine = _call(api, "GET", "/v1/feedback", "alice").json()["data"]
    assert [(f["id"], f["user"], f["rating"]) for f in mine] == [(given["id"], "alice", -1)]
    assert _call(api, "GET", "/v1/feedback", "bob").json()["data"] == []
    assert given["id"] in [f["id"] for f in _call(api, "GET", "/v1/feedback").json()["data"]]  # an admin sees everyone's
    # the library's own record: one row, on alice's message, rated -1 with her correction
    from archivist import feedback

    with jobs_ws(settings) as ws:
        rows = [f for f in feedback.list_feedback(ws, "admin") if f["id"] == given["id"]]
    assert [(f["user"], f["message_id"], f["rating"], f["correction"]) for f in rows] == \
        [("alice", answered, -1, "Within 4 working days.")]


# -- 4. CORS, opt-in ----------------------------------------------------------------------------


def test_cors_answers_listed_origins_only_and_is_off_by_default(tmp_path):
    """Before: no CORS at all (a browser's preflight got 401), and no setting to allow an origin."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    ok = "https://tools.example.com"
    settings = Settings.from_env(home=tmp_path / "ws", cors_origins=f"{ok}, http://localhost:3000/")
    app = create_app(settings)
    with open_workspace(settings) as ws:
        key = create_key(ws, "admin")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    with TestClient(app) as client:
        r = client.options("/v1/search", headers={"Origin": ok, **preflight})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ok
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in r.headers
        r = client.get("/v1/documents", headers={"Origin": "http://localhost:3000", "Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = client.get("/v1/documents", headers={"Origin": ok})  # a keyless call: the 401 is readable by the page
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ok
        for evil in ("https://evil.example.com", "https://tools.example.com.evil.net", "null"):
            r = client.options("/v1/search", headers={"Origin": evil, **preflight})
            assert "access-control-allow-origin" not in r.headers, evil
            r = client.get("/v1/documents", headers={"Origin": evil, "Authorization": f"Bearer {key}"})
            assert "access-control-allow-origin" not in r.headers, evil

    with TestClient(create_app(Settings.from_env(home=tmp_path / "ws"))) as client:  # default: off
        r = client.options("/v1/search", headers={"Origin": ok, **preflight})
        assert "access-control-allow-origin" not in r.headers
    for bad in ("*", "https://*.example.com", "tools.example.com", "https://tools.example.com/app"):
        with pytest.raises(ValueError, match="cors_origins"):
            Settings.from_env(home=tmp_path / "ws", cors_origins=bad)


# -- 5. what a failed job and a damaged database tell a client ----------------------------------


def test_a_failed_background_job_tells_its_owner_no_server_paths(tmp_path, caplog):
    """Before: the job's error was `Path /…/ws/models/missing-embedder not found`, a server path, in
    GET /v1/jobs/{id} and /v1/ingest_jobs/{id}."""
    from starlette.testclient import TestClient

    from archivist import access
    from archivist.api.app import create_app
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    home = tmp_path / "ws"
    missing = home / "models" / "missing-embedder"  # the embedder cannot load: a real failure, with a path in it
    settings = Settings.from_env(home=home, embedder=str(missing))
    app = create_app(settings)
    with open_workspace(settings) as ws:
        access.add_user(ws, "alice", "member")
        access.grant(ws, "alice", "hr", "write")
        key = create_key(ws, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    with caplog.at_level(logging.ERROR), TestClient(app) as client:
        r = client.post("/v1/documents", headers=auth, files={"file": ("notes.txt", b"Some notes.\n")},
                        data={"collection": "hr", "wait": "false"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        for _ in range(600):
            job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        upload = client.get(f"/v1/ingest_jobs/{job_id}", headers=auth).json()
        listed = client.get("/v1/jobs", headers=auth).json()["data"]
    assert job["state"] == "failed" and "missing-embedder" in job["error"], job
    for text in (job["error"], upload["reason"], listed[0]["error"]):
        assert str(tmp_path) not in text and "/models/" not in text.replace("<workspace>/models/", ""), text
        assert "<workspace>/models/missing-embedder" in text, text
    assert str(missing) in caplog.text  # the server's log has it whole
    with open_workspace(settings) as ws:  # and so does the job (`archivist jobs` on the server)
        from archivist import jobs

        assert str(missing) in jobs.get(ws, job_id, "admin").error


def _overwrite(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([0xA5]) * length)


def test_a_damaged_database_is_a_clear_503_without_its_path(tmp_path, caplog):
    """Before: a damaged page gave 500 `internal error: DatabaseError`, and a damaged header 503 with the
    database file's full path in the message."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    (tmp_path / "a.md").write_text("# A\n\nForm A is filed on Mondays.\n")
    settings = Settings.from_env(home=tmp_path / "ws")
    with open_workspace(settings) as ws:
        ingest_paths(ws, [tmp_path / "a.md"], collection="hr", progress=False)
        key = create_key(ws, "admin")
        ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = ws.db.execute("PRAGMA page_size").fetchone()[0]
        root = ws.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'documents'").fetchone()[0]
    db_file = settings.home / "archivist.db"
    app = create_app(settings)
    auth = {"Authorization": f"Bearer {key}"}
    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/documents", headers=auth).status_code == 200
        _overwrite(db_file, (root - 1) * page, page)  # a damaged page: the key check passes, the listing meets it
        r = client.get("/v1/documents", headers=auth)
        err = _error(r, 503, "workspace_damaged")
        assert "damaged (database disk image is malformed)" in err["message"] and "backup" in err["message"], err
        assert str(tmp_path) not in r.text and "retry-after" not in r.headers
        _overwrite(db_file, 0, 100)  # a damaged header: the Guard's key check meets it
        r = client.get("/v1/documents", headers=auth)
        err = _error(r, 503, "workspace_damaged")
        assert "damaged (file is not a database)" in err["message"] and str(tmp_path) not in r.text, err
    assert str(db_file) in caplog.text  # the log names the file


def test_an_api_answer_saved_in_a_conversation_can_be_rated(api):
    """Before: chat completions were saved nowhere, so an HTTP client had no answer to give feedback on
    (`conversation` was ignored as an unknown extra field)."""
    _, _, settings = api
    before = _call(api, "GET", "/v1/conversations", "alice").json()["data"]
    ask = {"model": "archivist", "answer_mode": "extractive", "collection": "hr",
           "messages": [{"role": "user", "content": "Within how many days is form F-3 filed?"}]}
    r = _call(api, "POST", "/v1/chat/completions", "alice", json=ask)  # not saved: no conversation asked for
    assert r.status_code == 200 and r.json().get("message_id") is None, r.text
    assert _call(api, "GET", "/v1/conversations", "alice").json()["data"] == before
    r = _call(api, "POST", "/v1/chat/completions", "alice", json={**ask, "conversation": "new"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["conversation"] not in [c["id"] for c in before] and "policy-3.md" in [c["document"] for c in done["citations"]]
    msgs = _call(api, "GET", f"/v1/conversations/{done['conversation']}", "alice").json()["data"]
    assert [(m["role"], m["content"]) for m in msgs] == [("user", ask["messages"][0]["content"]),
                                                           ("assistant", done["choices"][0]["message"]["content"])]
    assert msgs[1]["id"] == done["message_id"]
    from archivist import conversations
    from archivist.workspace import open_workspace

    with open_workspace(api[2]) as ws:  # stored as the chat page stores an answer, so the page shows it alike
        stored = conversations.messages(ws, done["conversation"], "alice")[1]
    assert {"claims", "generated", "seconds", "status", "passages"} <= set(stored) and stored["collection"] == "hr"
    r = _call(api, "POST", "/v1/feedback", "alice", json={"message_id": done["message_id"], "rating": 1})
    assert r.status_code == 201 and r.json()["question"] == ask["messages"][0]["content"], r.text
    assert [c["document"] for c in r.json()["citations"]] == [c["document"] for c in done["citations"]]
    # the same conversation again, streamed: the final chunk names where it was saved
    with httpx.stream("POST", api[0] + "/v1/chat/completions", headers={"Authorization": f"Bearer {api[1]['alice']}"},
                      json={**ask, "stream": True, "conversation": done["conversation"]}, timeout=60) as s:
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
    import json

    final = json.loads(events[-1])
    assert final["conversation"] == done["conversation"] and final["message_id"] > done["message_id"]
    assert len(_call(api, "GET", f"/v1/conversations/{done['conversation']}", "alice").json()["data"]) == 4
    # another user's conversation is not theirs to write in: refused before anything runs
    _error(_call(api, "POST", "/v1/chat/completions", "bob", json={**ask, "collection": None, "conversation": done["conversation"]}),
           404, "conversation_not_found")
    assert len(_call(api, "GET", f"/v1/conversations/{done['conversation']}", "alice").json()["data"]) == 4
