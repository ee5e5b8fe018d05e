"""A ninth hostile member (a member account with an API key) against the API's scope arguments, jobs,
keys and the OpenAI-compatible routes, over a real `archivist serve` app (HTTP, SQLite, FAISS, the
shipped embedder).

Found: an empty collection name (`"collection": ""`, `?collection=`: an unset variable in a client's
script) meant two opposite things: search and chat answered from every collection the caller may read,
while the document listing read it as a collection holding nothing (200, no documents) and a document
asked for by name there was "no document": a sync script concluded the collection was empty.
"""

from __future__ import annotations

import httpx

from archivist import access
from archivist.keys import create_key
from archivist.workspace import open_workspace


def test_an_empty_collection_name_is_refused_not_read_as_every_collection_or_none(settings, tmp_path):
    """Before: search with `"collection": ""` ranked both collections' passages (200), and
    `GET /v1/documents?collection=` answered 200 with no documents; now each is 422 naming the field."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.ingest.pipeline import ingest_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "handbook.md").write_text("# Handbook\n\nThe office opens at eight in the morning on weekdays.\n")
    (docs / "leave.md").write_text("# Leave\n\nThe office grants twenty-five days of annual leave.\n")
    with open_workspace(settings) as ws:
        for name, collection in (("handbook.md", "team"), ("leave.md", "hr")):
            access.create_collection(ws, collection)
            assert [r.status for r in ingest_paths(ws, [docs / name], collection=collection, progress=False)] == ["added"]
        access.add_user(ws, "eve", "member")
        access.grant(ws, "eve", "team", "read")
        access.grant(ws, "eve", "hr", "read")
        key = create_key(ws, "eve")
    server = serve_in_thread(create_app(settings))
    try:
        with httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
            scoped = c.post("/v1/search", json={"query": "office", "collection": "hr", "k": 5})
            assert scoped.status_code == 200 and {h["document"] for h in scoped.json()["data"]} == {"leave.md"}, scoped.text
            for body, param in (({"collection": ""}, "collection"), ({"collection": "  "}, "collection"),
                                ({"collections": ["hr", ""]}, "collections")):
                r = c.post("/v1/search", json={"query": "office", "k": 5, **body})
                assert r.status_code == 422, (body, r.text)  # before: 200, with handbook.md and leave.md
                assert r.json()["error"] == {
                    "message": f"{param}: a collection name is empty: name a collection or leave the field out",
                    "type": "invalid_request_error", "code": "invalid_parameter", "param": param}
            for path in ("/v1/documents?collection=", "/v1/documents/leave.md?collection="):
                r = c.get(path)
                assert r.status_code == 422 and r.json()["error"]["param"] == "collection", (path, r.text)  # before: 200 / 404
            listed = c.get("/v1/documents")
            assert sorted(d["name"] for d in listed.json()["data"]) == ["handbook.md", "leave.md"]
            assert c.get("/v1/documents/leave.md?collection=hr").json()["collection"] == "hr"
    finally:
        server.stop()
