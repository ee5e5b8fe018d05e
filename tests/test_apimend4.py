"""The API's models agree with what it serves: POST /v1/embeddings takes each embedding id GET
/v1/models lists to the caller and names the weights that made the vectors; the chat filters by
`documents` and `kinds` as POST /v1/search does. Real workspaces, real embedders (the shipped one
and copies of it with changed weights), the app's ASGI stack through starlette's TestClient."""

from __future__ import annotations

from conftest import adapted_embedder, bob_reads_public_not_secret


def _client(settings):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    return TestClient(create_app(settings))


def test_embeddings_take_every_listed_embedding_model_and_name_the_weights(tmp_path, monkeypatch):
    """Before: GET /v1/models listed the adapted embedders as `kind: "embedding"`, but POST
    /v1/embeddings with one of them was 404 "this server embeds with 'all-minilm-l6-v2'", and its
    response named the base model when the adapted weights made the vectors (for their readers).
    Now each listed id works and `model` names the weights; bob, who may not read `secret`, is
    listed neither embedder trained on it nor served it (404 as for a made-up name: none confirmed)."""
    import numpy as np

    from archivist.finetune.embedders import activate, folder, mark_stale, save
    from archivist.keys import create_key
    from archivist.models import load_embedder
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    monkeypatch.setenv("ARCHIVIST_EMBED_BACKEND", "torch")  # no ONNX export of the saved copies in a test
    settings = Settings.from_env(home=tmp_path / "ws")
    with open_workspace(settings) as ws:
        bob_reads_public_not_secret(ws, tmp_path)
        for name, seed, collections in (("learned-secret", 0, ["public", "secret"]), ("learned-public", 1, ["public"]),
                                        ("old-public", 2, ["public"])):
            save(ws, name, adapted_embedder(settings, seed), {"kind": "retriever", "base": settings.embedder,
                                                      "collections": collections})
        activate(ws, "learned-secret", None, progress=False)
        mark_stale(ws, ["old-public"], "trained on a deleted document: old.md")
        keys = {u: create_key(ws, u) for u in ("admin", "bob")}
        weights = {n: load_embedder(str(folder(ws, n)), settings.device, "torch", str(settings.cache))
                   for n in ("learned-secret", "learned-public")}
    weights[settings.embedder] = load_embedder(settings.embedder, settings.device, "torch", str(settings.cache))
    text = "When does the merger with Acme close?"
    vec = {n: e.embed([text])[0] for n, e in weights.items()}
    assert max(float(vec[a] @ vec[b]) for a in vec for b in vec if a < b) < 0.999  # three different models

    with _client(settings) as client:
        def listed(who):
            r = client.get("/v1/models", headers={"Authorization": f"Bearer {keys[who]}"})
            assert r.status_code == 200, r.text
            return {m["id"]: m["active"] for m in r.json()["data"] if m["kind"] == "embedding"}

        def embed(who, model):
            return client.post("/v1/embeddings", headers={"Authorization": f"Bearer {keys[who]}"},
                               json={"model": model, "input": text})

        assert listed("admin") == {settings.embedder: False, "learned-secret": True, "learned-public": False,
                                   "old-public": False}
        assert listed("bob") == {settings.embedder: True, "learned-public": False, "old-public": False}
        # (who, model asked for) -> the weights that answer: the base's name is the workspace's embedder
        # for a reader of what the active one learned, the base for anyone else
        for who, model, made_by in (("admin", settings.embedder, "learned-secret"),
                                    ("admin", "learned-secret", "learned-secret"),
                                    ("admin", "learned-public", "learned-public"),
                                    ("bob", settings.embedder, settings.embedder),
                                    ("bob", "learned-public", "learned-public")):
            r = embed(who, model)
            assert r.status_code == 200, (who, model, r.text)  # before: 404 for every adapted name
            assert r.json()["model"] == made_by, (who, model)  # before: the base's name for all
            got = np.asarray(r.json()["data"][0]["embedding"], dtype=np.float32)
            assert np.allclose(got, vec[made_by], atol=1e-5), (who, model)
        hidden, unknown = embed("bob", "learned-secret"), embed("bob", "no-such-embedder")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["error"]["code"] == unknown.json()["error"]["code"] == "model_not_found"
        assert "learned-secret" not in str(hidden.json()).replace("'learned-secret'", "", 1)  # only its echo
        stale = embed("admin", "old-public")  # listed, but its weights learned a document erased since
        assert stale.status_code == 400 and stale.json()["error"]["code"] == "model_stale", stale.text
        assert "old-public" in stale.json()["error"]["message"] and "old.md" in stale.json()["error"]["message"]


def test_the_chat_answers_only_from_the_documents_and_kinds_it_is_limited_to(tmp_path, ws, embedder, settings):
    """Before: /v1/chat/completions ignored `documents` and `kinds` (POST /v1/search's filters), so a
    client that limited the chat to one document got passages and citations from every readable
    collection. Now they filter the answer's search as they filter search, with search's checks:
    an unknown or unreadable document is 404 document_not_found, an unknown kind 422."""
    from conftest import ingest_texts, members_with_keys

    ingest_texts(ws, embedder, tmp_path / "docs", {"team": {
        "handbook.md": "# Handbook\n\nThe office opens at eight in the morning on weekdays.\n",
        "leave.txt": "Leave policy\n\nThe office grants twenty-five days of annual leave each year.\n"},
        "board": {"minutes.md": "# Minutes\n\nThe board approved thirty days of leave for directors.\n"}})
    keys = members_with_keys(ws, {"eve": ("team", "read")})
    question = "How many days of annual leave does the office grant?"
    ask = {"model": "archivist", "answer_mode": "extractive", "messages": [{"role": "user", "content": question}]}

    def sources(reply) -> tuple[set, set]:
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return {p["document"] for p in body["passages"]}, {c["document"] for c in body["citations"]}

    with _client(settings) as client:
        def chat(**extra):
            return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {keys['eve']}"},
                               json={**ask, **extra})

        everywhere, cited = sources(chat())
        assert everywhere == {"handbook.md", "leave.txt"} and "leave.txt" in cited  # what a filter must take away
        limited = chat(documents=["handbook.md"])
        passages, cited = sources(limited)
        assert passages <= {"handbook.md"} and cited <= {"handbook.md"}, limited.text  # before: leave.txt too
        assert "twenty-five" not in limited.json()["choices"][0]["message"]["content"]
        passages, cited = sources(chat(documents=["leave.txt"]))
        assert passages == {"leave.txt"} and cited == {"leave.txt"}
        passages, cited = sources(chat(kinds=["text"]))
        assert passages == {"leave.txt"} and cited == {"leave.txt"}
        assert "twenty-five" in chat(kinds=["text"]).json()["choices"][0]["message"]["content"]
        assert sources(chat(documents=["leave.txt"], kinds=["markdown"]))[0] == set()  # both filters apply

        for refs in (["nothing.md"], ["minutes.md"]):  # not there, and in a collection eve may not read: alike
            r = chat(documents=refs)
            assert r.status_code == 404, r.text  # before: 200, answered from every readable document
            assert r.json()["error"] == {"message": f"no document {refs[0]!r} you may read (see GET /v1/documents)",
                                         "type": "not_found_error", "code": "document_not_found",
                                         "param": "documents"}
        r = chat(kinds=["spreadsheet"])
        assert r.status_code == 422 and r.json()["error"]["param"] == "kinds.0", r.text  # as search says it
        r = chat(document=["handbook.md"])  # a near miss of the field is refused, not ignored
        assert r.status_code == 422 and "did you mean 'documents'?" in r.json()["error"]["message"], r.text
