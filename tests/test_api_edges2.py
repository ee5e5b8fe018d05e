"""More of an integrator's edges of the API, over a real server (uvicorn in a thread) with the real default
models and a real workspace.

Found: the correction limit held over HTTP only (the chat page stored a pasted book); a chunk size the
embedder cannot read, or vectors of another embedder, were a 503 with `Retry-After: 5` that no retry
clears; `input: ""` got a vector and a blank search query 200 with no hits; `GET /v1/keys?user=` gave an
unknown user's (empty) list and a member their own keys under another's name; a key revoked while its
non-streamed answer waited got a 401 without `WWW-Authenticate`.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import serve_documents

from test_api_edges import API as EdgesAPI
from test_api_edges import PRICING, QUESTION


class API(EdgesAPI):
    def post(self, path: str, who: str, **kw) -> httpx.Response:
        return httpx.post(self.url + path, headers=self.h(who), timeout=300, **kw)

    def get(self, path: str, who: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.h(who), timeout=60)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server, keys, settings = serve_documents(tmp_path_factory.mktemp("edges2"), {"pricing.md": PRICING}, "sales",
                                             {"bob": "write", "carol": "write"}, max_waiting=8, warm=True)
    yield API(server.url, keys, settings)
    server.stop()


def _error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text[:500]
    error = r.json()["error"]
    assert error["code"] == code, error
    return error


# -- 1. the correction limit is archivist.feedback's --------------------------------------------------------


def test_a_correction_too_long_is_refused_wherever_it_comes_from(ws):
    """Before: only the API's body model capped a correction; feedback.record_feedback and update_feedback
    (the chat page's rate_message) stored 3 MB. Now ValueError naming the limit, nothing stored or changed."""
    from archivist import feedback

    long = "42 euros. " * 300_000
    with pytest.raises(ValueError, match=f"at most {feedback.MAX_CORRECTION} characters"):
        feedback.record_feedback(ws, "admin", QUESTION, "It costs 40 euros.", rating=-1, correction=long)
    assert ws.db.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0
    fid = feedback.record_feedback(ws, "admin", QUESTION, "It costs 40 euros.", rating=-1, correction="42 euros")
    with pytest.raises(ValueError, match=f"at most {feedback.MAX_CORRECTION} characters"):
        feedback.update_feedback(ws, fid, "admin", correction=long)
    with pytest.raises(ValueError, match=f"at most {feedback.MAX_CORRECTION} characters"):
        feedback.update_feedback(ws, fid, "admin", rating=1, correction=long)
    assert ws.db.execute("SELECT rating, correction FROM feedback WHERE id = ?", (fid,)).fetchone()[:] == (-1, "42 euros")
    feedback.update_feedback(ws, fid, "admin", correction="x" * feedback.MAX_CORRECTION)  # exactly the limit is taken
    assert len(ws.db.execute("SELECT correction FROM feedback WHERE id = ?", (fid,)).fetchone()[0]) == feedback.MAX_CORRECTION


def test_the_api_refuses_a_long_correction_in_feedback_s_words(api):
    """The API's 422 names `correction` and says what archivist.feedback says (one rule, one message)."""
    from archivist import feedback

    r = api.post("/v1/chat/completions", "bob", json={"model": api.settings.llm, "answer_mode": "extractive",
                                                      "conversation": "new",
                                                      "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    long = "x" * (feedback.MAX_CORRECTION + 1)
    error = _error(api.post("/v1/feedback", "bob", json={"message_id": r.json()["message_id"], "rating": -1,
                                                          "correction": long}), 422, "invalid_body")
    with pytest.raises(ValueError) as said:
        feedback.check_correction(long)
    assert error["param"] == "correction" and str(said.value) in error["message"]


# -- 2. a configuration error is no transient 503 ---------------------------------------------------------


def test_an_embedder_configuration_error_is_a_500_without_retry_after(api, tmp_path):
    """Before: 503 `workspace_unavailable` with `Retry-After: 5` for vectors of another embedder, and for
    chunks longer than the embedder reads; no retry clears either. Now 500 `embedder_misconfigured` with
    no Retry-After, the message saying what to change, and nothing stored."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key
    from archivist.workspace import open_workspace

    note = b"# Parking\n\nThe car park opens at seven.\n"
    with open_workspace(api.settings) as ws:
        identity = ws.meta("embedder_identity")
        ws.set_meta("embedder_identity", "some-other-model:768 backend=torch")
    try:
        r = api.post("/v1/documents", "carol", files={"file": ("parking.md", note)}, data={"collection": "sales"})
    finally:
        with open_workspace(api.settings) as ws:
            ws.set_meta("embedder_identity", identity)
    error = _error(r, 500, "embedder_misconfigured")
    assert "Retry-After" not in r.headers and "archivist reindex --reembed" in error["message"]

    settings = api.settings.__class__.from_env(home=tmp_path / "ws", chunk_tokens=512)
    with open_workspace(settings) as ws:
        admin = {"Authorization": f"Bearer {create_key(ws, 'admin')}"}
    server = serve_in_thread(create_app(settings, max_waiting=2))
    try:
        r = httpx.post(server.url + "/v1/documents", headers=admin, files={"file": ("parking.md", note)}, timeout=300)
        error = _error(r, 500, "embedder_misconfigured")
        assert "Retry-After" not in r.headers and "ARCHIVIST_CHUNK_TOKENS=512" in error["message"]
        assert httpx.get(server.url + "/v1/documents", headers=admin, timeout=60).json()["data"] == []
    finally:
        server.stop()
    assert api.post("/v1/documents", "carol", files={"file": ("parking.md", note)},
                    data={"collection": "sales"}).status_code == 200  # the same upload, once the settings are right


# -- 3. edges decided as OpenAI and docs/api.md decide them --------------------------------------------------


@pytest.mark.parametrize("value, index", [("", 0), (["a price", "  \n"], 1)])
def test_a_blank_embedding_input_is_refused(api, value, index):
    """Before: `input: ""` got the embedder's vector of no words (OpenAI answers 400). Now 400 naming it."""
    error = _error(api.post("/v1/embeddings", "bob", json={"model": api.settings.embedder, "input": value}),
                   400, "empty_input")
    assert error["param"] == "input" and f"input[{index}] is blank" in error["message"]


def test_a_blank_search_query_is_refused(api):
    """Before: `"query": "  "` was 200 with no hits, read as "nothing in the documents"; "" was already 422."""
    error = _error(api.post("/v1/search", "bob", json={"query": " \n\t "}), 422, "invalid_body")
    assert error["param"] == "query" and "blank" in error["message"]
    assert api.post("/v1/search", "bob", json={"query": "Blue Heron price"}).json()["data"]


def test_listing_the_keys_of_another_or_unknown_user(api):
    """Before: an admin's `?user=nobody` was 200 with an empty list (as a user without keys), and a member's
    `?user=carol` listed the member's own keys. Now 404 naming the user, and 403 for the member (docs/api.md:
    another user's name is 403 before it is looked up)."""
    error = _error(api.get("/v1/keys?user=nobody", "admin"), 404, "not_found")
    assert "'nobody'" in error["message"]
    _error(api.get("/v1/keys?user=carol", "bob"), 403, "permission_denied")
    _error(api.get("/v1/keys?user=nobody", "bob"), 403, "permission_denied")  # no user name confirmed
    mine = api.get("/v1/keys?user=bob", "bob").json()["data"]
    assert mine and {k["user"] for k in mine} == {"bob"}
    assert {k["user"] for k in api.get("/v1/keys?user=carol", "admin").json()["data"]} == {"carol"}


def test_a_key_revoked_while_its_answer_waits_gets_www_authenticate(api):
    """carol's non-streamed question waits behind bob's streamed answer; her key is revoked meanwhile. Before:
    401 `invalid_api_key` without `WWW-Authenticate` (every other 401 has it, RFC 9110). Now with it."""
    from archivist.keys import create_key, revoke_key
    from archivist.workspace import open_workspace

    with open_workspace(api.settings) as ws:
        key = create_key(ws, "carol", by="admin")
    got = {}

    def ask():
        got["r"] = httpx.post(api.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=300,
                              json={"model": api.settings.llm, "answer_mode": "extractive",
                                    "messages": [{"role": "user", "content": QUESTION}]})

    body = {"model": api.settings.llm, "stream": True, "max_tokens": 200, "answer_mode": "generate",
            "verified_only": False, "messages": [{"role": "user", "content": "How are Blue Heron seats billed?"}]}
    with httpx.stream("POST", api.url + "/v1/chat/completions", json=body, headers=api.h("bob"), timeout=300) as s:
        assert s.status_code == 200
        next(s.iter_lines())  # bob's answer holds the model
        waiter = threading.Thread(target=ask)
        waiter.start()
        deadline = time.monotonic() + 60
        while api.get("/health", "admin").json()["generation"]["waiting"] < 1:
            assert time.monotonic() < deadline and waiter.is_alive()
            time.sleep(0.1)
        with open_workspace(api.settings) as ws:
            revoke_key(ws, key, by="admin")
    waiter.join(300)  # bob's stream closed: his answer stops, carol's turn comes
    r = got["r"]
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
    assert r.headers.get("WWW-Authenticate") == "Bearer"


@pytest.mark.slow  # the chat model generates
def test_the_chat_page_refuses_a_long_correction_in_the_same_words(ws, embedder, tmp_path, monkeypatch):
    """Before: the correction box stored a 20,000-character paste (the limit was the API's only). Now the
    page says why it was not saved, in archivist.feedback's words, and stores nothing."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth, feedback
    from archivist.ui import core
    from conftest import ingest_texts

    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "24")
    monkeypatch.setenv("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    ingest_texts(ws, embedder, tmp_path, {"sales": {"pricing.md": PRICING}}, "alice")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at.chat_input(key="chat-input").set_value(QUESTION).run()
    assert not at.exception, [e.value for e in at.exception]
    box = next(t for t in at.text_area if t.key.startswith("fix-text-"))
    long = "42 euros. " * 2_000
    box.set_value(long)
    next(b for b in at.button if b.label == "Save").click().run()
    assert ws.db.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0
    with pytest.raises(ValueError) as said:
        feedback.check_correction(long)
    assert any(core.md_escape(said.value) in t.value for t in at.toast), [t.value for t in at.toast]
