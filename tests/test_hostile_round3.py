"""A hostile member against the HTTP surface added this session (/v1/keys, /v1/feedback,
/v1/conversations, list cursors), on a real server (uvicorn in a thread) over a real workspace:
admin, alice (reads `hr`, later revoked) and bob (reads `secret`), each with an API key.

Found: a member whose read grant on a collection was revoked still read that collection's answers
and passages through `GET /v1/feedback` (her own earlier feedback), though the same answer is
withheld in her conversation (archivist/conversations.py) on every other surface."""

from __future__ import annotations

import httpx
import pytest

from conftest import members_with_keys


@pytest.fixture()
def api(tmp_path):
    from archivist import access
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    settings = Settings.from_env(home=tmp_path / "ws")
    with open_workspace(settings) as ws:
        for c in ("hr", "secret"):
            access.create_collection(ws, c)
        keys = members_with_keys(ws, {"alice": ("hr", "read"), "bob": ("secret", "read")})
    server = serve_in_thread(create_app(settings))
    yield server.url, keys, settings
    server.stop()


def _call(api, method: str, path: str, who: str, **kw) -> httpx.Response:
    url, keys, _ = api
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {keys[who]}"}, timeout=60, **kw)


def _answer(settings, user: str, question: str, answer: str, collection: str, document: str) -> int:
    """An exchange of `user`'s as the chat page stores it; returns the answer's message id."""
    from archivist import conversations
    from archivist.workspace import open_workspace

    with open_workspace(settings) as ws:
        conv = conversations.start_conversation(ws, user)
        conversations.add_message(ws, conv, user, "user", question)
        cites = [{"n": 1, "document": document, "page": None, "chunk_id": 1, "score": 0.9, "text": answer,
                  "collection": collection}]
        return conversations.add_message(ws, conv, user, "assistant", answer + " [1]", citations=cites,
                                         meta={"question": question, "collection": collection, "status": "answered"})


def test_feedback_from_a_collection_no_longer_readable_is_withheld_as_in_the_conversation(api):
    """Before: after `archivist revoke alice hr`, GET /v1/feedback still gave alice the hr answer, its
    passage text and her correction quoting it; her conversation withheld the same answer."""
    _, _, settings = api
    answered = _answer(settings, "alice", "What is the night shift bonus?", "The night shift bonus is 17.5 percent.",
                       "hr", "bonus.md")
    r = _call(api, "POST", "/v1/feedback", "alice", json={"message_id": answered, "rating": 1,
                                                          "correction": "It is 17.5 percent of base pay."})
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    mine = _call(api, "GET", "/v1/feedback", "alice").json()["data"]
    assert [(f["id"], f["answer"], f["citations"][0]["text"]) for f in mine] == \
        [(fid, "The night shift bonus is 17.5 percent. [1]", "The night shift bonus is 17.5 percent.")]

    from archivist import access
    from archivist.workspace import open_workspace

    with open_workspace(settings) as ws:
        assert access.revoke(ws, "alice", "hr")

    conv = _call(api, "GET", "/v1/conversations", "alice").json()["data"][0]["id"]
    shown = _call(api, "GET", f"/v1/conversations/{conv}", "alice").json()["data"][-1]
    assert shown["withheld"] == ["hr"] and "17.5" not in shown["content"]

    r = _call(api, "GET", "/v1/feedback", "alice")
    assert r.status_code == 200, r.text
    [row] = r.json()["data"]
    assert (row["id"], row["rating"], row["message_id"], row["question"]) == \
        (fid, 1, answered, "What is the night shift bonus?")  # hers: what she asked and how she rated
    assert "17.5" not in r.text, r.text  # the answer, the passage and the correction quoting it are hr's
    assert row["withheld"] == ["hr"] and row["citations"] == [] and row["correction"] is None
    # bob never read hr and learns nothing either; the admin (who may read hr) still sees it whole
    assert _call(api, "GET", "/v1/feedback", "bob").json()["data"] == []
    whole = [f for f in _call(api, "GET", "/v1/feedback", "admin").json()["data"] if f["id"] == fid]
    assert [(f["answer"], f["correction"], f.get("withheld")) for f in whole] == \
        [("The night shift bonus is 17.5 percent. [1]", "It is 17.5 percent of base pay.", None)]
    # granted again, it is hers to read again: nothing was lost
    with open_workspace(settings) as ws:
        access.grant(ws, "alice", "hr", "read")
    [row] = _call(api, "GET", "/v1/feedback", "alice").json()["data"]
    assert (row["answer"], row["correction"], row.get("withheld")) == \
        ("The night shift bonus is 17.5 percent. [1]", "It is 17.5 percent of base pay.", None)


def test_an_id_or_cursor_past_sqlites_integers_is_a_clear_422_not_a_500(api):
    """Before: `?after=99999999999999999999`, `/v1/conversations/99999999999999999999`, a feedback
    `message_id` or a chat `conversation` of that size reached SQLite and answered 500 internal_error
    (OverflowError). Now each is refused as the bad parameter it is, and one within range still answers."""
    huge = 99999999999999999999
    calls = [("GET", f"/v1/documents?after={huge}", {}, "after"),
             ("GET", f"/v1/conversations/{huge}", {}, "conversation_id"),
             ("POST", "/v1/feedback", {"json": {"message_id": huge, "rating": 1}}, "message_id"),
             ("POST", "/v1/chat/completions", {"json": {"model": "archivist", "conversation": huge,
                                                        "messages": [{"role": "user", "content": "night shift bonus?"}]}},
              "conversation")]
    for method, path, kw, param in calls:
        r = _call(api, method, path, "alice", **kw)
        assert r.status_code == 422, (path, r.status_code, r.text)
        err = r.json()["error"]
        assert (err["code"], err["param"]) == ("invalid_body", param), (path, err)
    big = 2**53 - 1  # the largest id taken (exact in JSON): an unknown one, answered as such
    assert _call(api, "GET", f"/v1/documents?after={big}", "alice").json()["data"] == []
    assert _call(api, "GET", f"/v1/conversations/{big}", "alice").json()["error"]["code"] == "conversation_not_found"
    r = _call(api, "POST", "/v1/feedback", "alice", json={"message_id": big, "rating": 1})
    assert r.json()["error"]["code"] == "message_not_found", r.text


def test_a_cursor_naming_a_document_one_cannot_read_tells_nothing_of_it(api, tmp_path):
    """Before: `GET /v1/documents?after=ID` took the added_at of document ID wherever it was, so a
    member paging with the id of a `secret` document saw where it fell among their own (when it was
    added); ids and added_at agree only while the clock never steps back. Now such an id marks its
    place as a deleted one does: by id alone, the same page a missing id gives."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.workspace import open_workspace

    _, _, settings = api
    ids = {}
    with open_workspace(settings) as ws:
        for name, collection in (("rota-1.md", "hr"), ("rota-2.md", "hr"), ("merger.md", "secret"), ("rota-3.md", "hr")):
            (tmp_path / name).write_text(f"# {name}\n\nThe {name} text for the {collection} collection.\n")
            assert ingest_paths(ws, [tmp_path / name], collection=collection, progress=False)[0].status == "added"
            ids[name] = ws.db.execute("SELECT id FROM documents WHERE path = ?", (name,)).fetchone()[0]
        # the clock was set back before the secret document was added: it reads as older than all of hr's
        first = ws.db.execute("SELECT added_at FROM documents WHERE id = ?", (ids["rota-1.md"],)).fetchone()[0]
        with ws.db:
            ws.db.execute("UPDATE documents SET added_at = ? WHERE id = ?", (first - 3600, ids["merger.md"]))
    assert ids["merger.md"] == ids["rota-2.md"] + 1

    def page(after: int) -> list[str]:
        r = _call(api, "GET", f"/v1/documents?after={after}", "alice")
        assert r.status_code == 200, r.text
        return [d["name"] for d in r.json()["data"]]

    assert page(ids["rota-3.md"]) == ["rota-2.md", "rota-1.md"]
    assert page(ids["merger.md"]) == ["rota-2.md", "rota-1.md"]  # before: [] (it sorts before all of hr)
    assert page(ids["rota-3.md"] + 1000) == ["rota-3.md", "rota-2.md", "rota-1.md"]  # a missing id: by id too
    # bob, who reads secret, pages by it as before
    r = _call(api, "GET", f"/v1/documents?after={ids['merger.md']}", "bob")
    assert r.status_code == 200 and r.json()["data"] == [], r.text
