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
from conftest import eve_reads_team_and_hr


def test_an_empty_collection_name_is_refused_not_read_as_every_collection_or_none(settings, tmp_path):
    """Before: search with `"collection": ""` ranked both collections' passages (200), and
    `GET /v1/documents?collection=` answered 200 with no documents; now each is 422 naming the field."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    key = eve_reads_team_and_hr(settings, tmp_path)
    server = serve_in_thread(create_app(settings))
    try:
        with httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
            scoped = c.post("/v1/search", json={"query": "office", "collection": "hr", "k": 5})
            assert scoped.status_code == 200 and {h["document"] for h in scoped.json()["data"]} == {"leave.md"}, scoped.text
            for body, param, blank in (({"collection": ""}, "collection", ""), ({"collection": "  "}, "collection", "  "),
                                       ({"collections": ["hr", ""]}, "collections", "")):
                r = c.post("/v1/search", json={"query": "office", "k": 5, **body})
                assert r.status_code == 422, (body, r.text)  # before: 200, with handbook.md and leave.md
                assert r.json()["error"] == {
                    "message": f"a collection name is empty ({blank!r}): name a collection or leave the field {param!r} out",
                    "type": "invalid_request_error", "code": "invalid_parameter", "param": param}
            for path in ("/v1/documents?collection=", "/v1/documents/leave.md?collection="):
                r = c.get(path)
                assert r.status_code == 422 and r.json()["error"]["param"] == "collection", (path, r.text)  # before: 200 / 404
            listed = c.get("/v1/documents")
            assert sorted(d["name"] for d in listed.json()["data"]) == ["handbook.md", "leave.md"]
            assert c.get("/v1/documents/leave.md?collection=hr").json()["collection"] == "hr"
    finally:
        server.stop()
