"""The isolation matrix: every user against every collection through every entry point.

Users: the local admin, rita (reads A), will (writes B), nobody (no grants). Collections A and B
each hold one document with a secret word found nowhere else. For each (user, entry point) the
test computes what the user may see from the grants alone and asserts the entry point shows
exactly that: no more (a leak), no less (a broken grant).
"""

from __future__ import annotations


import pytest

from archivist import access
from archivist.access import AccessDenied
from archivist.ingest.pipeline import delete_document, find_document, ingest_paths, list_documents
from archivist.retrieval.search import search
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings
from archivist.workspace import LOCAL_ADMIN

SECRETS = {"A": "zephyrquail", "B": "bronzewombat"}
TEXTS = {
    "A": "# Alpha project\n\nThe alpha launch code word is zephyrquail. The alpha budget is 4.2 million euros "
         "and the team meets on Tuesdays in room 12.\n",
    "B": "# Bravo payroll\n\nThe bravo payroll password hint is bronzewombat. Salaries are paid on the 25th of "
         "every month by bank transfer.\n",
}
USERS = {LOCAL_ADMIN: None, "rita": ("A", "read"), "will": ("B", "write"), "nobody": None}
READS = {LOCAL_ADMIN: {"A", "B"}, "rita": {"A"}, "will": {"B"}, "nobody": set()}
WRITES = {LOCAL_ADMIN: {"A", "B"}, "rita": set(), "will": {"B"}, "nobody": set()}
MATRIX = [(u, c) for u in USERS for c in ("A", "B")]


def _populate(ws, root, embedder):
    for name, g in USERS.items():
        if name != LOCAL_ADMIN:
            access.add_user(ws, name)
        if g:
            access.grant(ws, name, *g)
    for coll, text in TEXTS.items():
        path = root / f"{coll.lower()}-notes.md"
        path.write_text(text)
        [res] = ingest_paths(ws, [path], collection=coll, embedder=embedder, progress=False)
        assert res.status == "added", res


@pytest.fixture(scope="module")
def shared(tmp_path_factory, embedder):
    """One populated workspace for the read-only entry points (search, documents, find)."""
    root = tmp_path_factory.mktemp("isolation")
    ws = open_checked(Settings.from_env(home=root / "ws", user=""))
    _populate(ws, root, embedder)
    yield ws
    ws.close()


@pytest.fixture
def fresh(tmp_path, ws, embedder):
    """A populated workspace of this test's own, for entry points that change things."""
    _populate(ws, tmp_path, embedder)
    return ws


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
@pytest.mark.parametrize("user,coll", MATRIX)
def test_search(shared, embedder, user, coll, mode):
    hits = search(shared, SECRETS[coll], k=20, user=user, mode=mode, embedder=embedder)
    seen = {h.collection for h in hits}
    if mode == "lexical":  # the secret word occurs in one collection only
        assert seen == ({coll} & READS[user])
    else:  # dense returns every chunk the user may read, and nothing else
        assert seen == READS[user]
    for h in hits:
        for other, word in SECRETS.items():
            if other not in READS[user]:
                assert word not in h.text.lower()


@pytest.mark.parametrize("user,coll", MATRIX)
def test_search_filters_cannot_widen_access(shared, embedder, user, coll):
    """Asking for a collection or a document by name does not reach past the grants."""
    by_coll = search(shared, SECRETS[coll], k=20, user=user, collections=[coll], embedder=embedder)
    by_doc = search(shared, SECRETS[coll], k=20, user=user, documents=[f"{coll.lower()}-notes.md"], embedder=embedder)
    by_id = search(shared, SECRETS[coll], k=20, user=user, documents=[_doc_id(shared, coll)], embedder=embedder)
    for hits in (by_coll, by_doc, by_id):
        assert {h.collection for h in hits} == ({coll} & READS[user])


def _doc_id(ws, coll) -> int:
    return ws.db.execute("SELECT d.id FROM documents d JOIN collections c ON c.id = d.collection_id WHERE c.name = ?",
                         (coll,)).fetchone()[0]


@pytest.mark.parametrize("user,coll", MATRIX)
def test_documents_and_find(shared, user, coll):
    listed = {d["collection"] for d in list_documents(shared, user)}
    assert listed == READS[user]
    assert {d["collection"] for d in list_documents(shared, user, collection=coll)} == ({coll} & READS[user])
    for ref in (f"{coll.lower()}-notes.md", _doc_id(shared, coll)):
        if coll in READS[user]:
            assert find_document(shared, ref, user)["collection"] == coll
        else:  # "no document", the same answer as for a name that does not exist
            with pytest.raises(LookupError, match="no document"):
                find_document(shared, ref, user)


@pytest.mark.parametrize("user", list(USERS))
def test_ingest_and_delete(fresh, tmp_path, embedder, user):
    """Ingest into A, B and a new collection, then delete each collection's document, as `user`;
    then upload and delete through the HTTP API."""
    ws = fresh
    new = tmp_path / "new.md"
    new.write_text("# New\n\nA fresh note about quarterly planning and the office move in June.\n")
    for coll in ("A", "B", "brand-new"):
        if coll in WRITES[user] or (coll == "brand-new" and access.is_admin(ws, user)):
            [res] = ingest_paths(ws, [new], collection=coll, user=user, embedder=embedder, progress=False)
            assert res.status == "added"
        else:
            with pytest.raises(AccessDenied, match=f"no write access to collection '{coll}'"):
                ingest_paths(ws, [new], collection=coll, user=user, embedder=embedder, progress=False)
    assert (ws.collection_id("brand-new") is not None) == access.is_admin(ws, user)
    for coll in ("A", "B"):
        before = _count_chunks(ws, coll)
        assert before > 0
        if coll in WRITES[user]:
            doc = delete_document(ws, f"{coll.lower()}-notes.md", user)
            assert doc["collection"] == coll and _count_chunks(ws, coll) == before - doc["chunks"]
            assert search(ws, SECRETS[coll], k=5, mode="lexical") == []  # gone for everyone
        elif coll in READS[user]:
            with pytest.raises(AccessDenied, match=f"no write access to collection '{coll}'"):
                delete_document(ws, f"{coll.lower()}-notes.md", user)
        else:  # by name or id: "no document", as for one that does not exist
            for ref in (f"{coll.lower()}-notes.md", _doc_id(ws, coll)):
                with pytest.raises(LookupError, match="no document"):
                    delete_document(ws, ref, user)
        if coll not in WRITES[user]:
            assert _count_chunks(ws, coll) == before
    _api_upload_and_delete(ws, user)


def _api_upload_and_delete(ws, user):
    """The same rules through the HTTP API: upload into and delete from A and B as `user`."""
    from fastapi.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.keys import create_key

    h = {"Authorization": f"Bearer {create_key(ws, user)}"}
    with TestClient(create_app(ws.settings)) as c:
        for coll in ("A", "B"):
            r = c.post("/v1/documents", data={"collection": coll}, headers=h,
                       files={"file": ("../../up.md", b"# Upload\n\nA memo about the cafeteria menu for Friday.\n")})
            assert r.status_code == (200 if coll in WRITES[user] else 403), r.text
            if r.status_code == 200:
                assert r.json()["name"] == "up.md" and r.json()["collection"] == coll
            r = c.delete(f"/v1/documents/{_doc_id(ws, coll)}", headers=h)
            assert r.status_code == (200 if coll in WRITES[user] else 403 if coll in READS[user] else 404)


def _count_chunks(ws, coll) -> int:
    return ws.db.execute("SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "JOIN collections k ON k.id = d.collection_id WHERE k.name = ?", (coll,)).fetchone()[0]


def test_grant_and_revoke_take_effect_at_once(shared, embedder):
    ws = shared
    try:
        access.grant(ws, "nobody", "B", "read")
        assert {h.collection for h in search(ws, SECRETS["B"], k=5, user="nobody", mode="lexical")} == {"B"}
        access.revoke(ws, "nobody", "B")
        assert search(ws, SECRETS["B"], k=5, user="nobody", mode="lexical") == []
    finally:
        access.revoke(ws, "nobody", "B")


def test_unknown_user_is_refused_everywhere(shared, embedder):
    for call in (lambda: search(shared, "alpha", user="mallory", embedder=embedder),
                 lambda: list_documents(shared, "mallory"),
                 lambda: find_document(shared, 1, "mallory"),
                 lambda: delete_document(shared, 1, "mallory")):
        with pytest.raises(AccessDenied, match="no such user: 'mallory'"):
            call()


def test_stale_vector_index_cannot_leak_another_collection(fresh, tmp_path, embedder):
    """A FAISS file out of step with SQLite (a crash between the SQLite commit and the index save,
    or a file copied in from elsewhere) may name chunk ids of another collection. Search must not
    return them to a reader of the first collection; the next open repairs the index."""
    import faiss
    import numpy as np

    from archivist.retrieval.vectors import check_and_repair

    ws = fresh
    a_id, b_id = ws.collection_id("A"), ws.collection_id("B")
    # Chunk ids are never reused (AUTOINCREMENT), so a stale index cannot name a new chunk by accident.
    before = max(r[0] for r in ws.db.execute("SELECT id FROM chunks"))
    delete_document(ws, "b-notes.md")
    leak = tmp_path / "leak.md"
    leak.write_text(TEXTS["B"])
    ingest_paths(ws, [leak], collection="B", embedder=embedder, progress=False)
    assert min(r[0] for r in ws.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                            "WHERE d.collection_id = ?", (b_id,))) > before
    # Now make A's index name B's chunks, as a damaged or foreign index file would.
    rows = ws.db.execute("SELECT c.id, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "WHERE d.collection_id = ?", (b_id,)).fetchall()
    path = ws.index_dir / f"c{a_id}.faiss"
    index = faiss.read_index(str(path))
    index.add_with_ids(np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]),
                       np.array([r[0] for r in rows], dtype=np.int64))
    faiss.write_index(index, str(path))
    hits = search(ws, SECRETS["B"], k=20, user="rita", mode="dense", embedder=embedder)
    assert all(h.collection != "B" for h in hits) and not any(SECRETS["B"] in h.text.lower() for h in hits)
    # And the next open finds the damaged index and repairs it from SQLite.
    assert any(f"collection {a_id}" in r for r in check_and_repair(ws))
    assert b_id in {ws.collection_id(h.collection) for h in search(ws, SECRETS["B"], k=5, embedder=embedder)}


def test_ask_cites_only_readable_collections(shared, embedder):
    """One `ask` (quoting mode, so no generation): rita asks for B's secret and gets nothing of B."""
    from archivist.retrieval.answer import ask

    for user, coll in (("rita", "B"), (LOCAL_ADMIN, "B")):
        a = ask(shared, f"What is the bravo payroll password hint {SECRETS[coll]}?", user=user, embedder=embedder,
                mode="extractive", adapter=None)
        sources = {h.collection for h in a.passages} | {c.collection for c in a.citations}
        assert sources <= READS[user]
        if coll in READS[user]:
            assert SECRETS[coll] in a.answer.lower() and "B" in sources
        else:
            assert SECRETS[coll] not in a.answer.lower()


# -- fine-tuning datasets and adapters ----------------------------------------------------------


@pytest.mark.parametrize("user,coll", MATRIX)
def test_dataset_building_reads_only_readable_collections(shared, user, coll):
    from archivist.finetune.datasets import readable_documents

    assert {d["collection"] for d in readable_documents(shared, user)} == READS[user]
    if coll in READS[user]:
        assert {d["collection"] for d in readable_documents(shared, user, [coll])} == {coll}
    else:
        with pytest.raises(AccessDenied):
            readable_documents(shared, user, [coll])
    if user != LOCAL_ADMIN:  # a missing collection looks the same as a forbidden one to a member
        with pytest.raises(AccessDenied, match="or it does not exist"):
            readable_documents(shared, user, ["no-such-collection"])


@pytest.fixture
def trained_on_b(shared):
    """An adapter row whose lineage says it was trained on collection B's document, made active."""
    import json

    from archivist.workspace import transaction

    lineage = {"documents": [{"id": _doc_id(shared, "B"), "path": "b-notes.md", "collection": "B"}]}
    with transaction(shared.db):
        shared.db.execute("INSERT INTO adapters(name, path, base_model, lineage, active) VALUES ('ft-b', '/nonexistent', "
                          "'smollm2-135m', ?, 1)", (json.dumps(lineage),))
    yield "ft-b"
    with transaction(shared.db):
        shared.db.execute("DELETE FROM adapters WHERE name = 'ft-b'")


@pytest.mark.parametrize("user", list(USERS))
def test_adapter_trained_on_a_collection_serves_only_its_readers(shared, trained_on_b, user):
    from archivist import adapters

    assert adapters.trained_on(shared, trained_on_b) == {"B"}
    assert adapters.may_use(shared, user, trained_on_b) == ("B" in READS[user])
    assert not adapters.may_use(shared, user, "no-such-adapter")


@pytest.mark.parametrize("user", list(USERS))
def test_adapter_listings_show_an_adapter_only_to_its_readers(shared, trained_on_b, client, user):
    """The CLI/registry listing, the chat's adapter picker and GET /v1/models all leave out an
    adapter trained on a collection the user may not read, and do not tell them it is active."""
    from archivist import adapters
    from archivist.ui.core import adapter_names

    allowed = "B" in READS[user]
    assert ("ft-b" in [a["name"] for a in adapters.list_for(shared, user)]) == allowed
    assert ("ft-b" in adapter_names(shared, user)) == allowed
    models = client.get("/v1/models", headers=_h(client, user)).json()["data"]
    assert ("ft-b" in [m["id"] for m in models]) == allowed
    assert next(m for m in models if m["id"] == "archivist")["adapter"] == ("ft-b" if allowed else None)
    assert client.get("/v1/models/ft-b", headers=_h(client, user)).status_code == (200 if allowed else 404)


def test_ask_falls_back_to_the_base_model_when_the_active_adapter_learned_unreadable_text(shared, trained_on_b, embedder):
    from archivist.retrieval.answer import ask

    a = ask(shared, f"What is the alpha launch code word {SECRETS['A']}?", user="rita", embedder=embedder, mode="extractive")
    assert a.adapter is None and SECRETS["A"] in a.answer.lower()


def test_a_forbidden_adapter_looks_exactly_like_an_unknown_one(shared, trained_on_b, embedder, client):
    """Asking through an adapter one may not use tells no more than asking through one that does
    not exist (it used to be 403 naming the collections it trained on, against 404), in ask() and
    in the API, streaming or not."""
    from archivist.retrieval.answer import ask

    said = {}
    for name in (trained_on_b, "no-such-adapter"):
        with pytest.raises(LookupError) as e:
            ask(shared, "alpha budget?", user="rita", adapter=name, embedder=embedder, mode="extractive")
        said[name] = str(e.value).replace(name, "NAME")
        for stream in (False, True):
            r = client.post("/v1/chat/completions", headers=_h(client, "rita"), json={
                "model": name, "stream": stream, "messages": [{"role": "user", "content": "alpha budget?"}]})
            said[name, stream] = (r.status_code, r.text.replace(name, "NAME"))
    assert said[trained_on_b] == said["no-such-adapter"] and "B" not in said[trained_on_b]
    for stream in (False, True):
        assert said[trained_on_b, stream] == said["no-such-adapter", stream] and said[trained_on_b, stream][0] == 404


# -- the HTTP API ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(shared):
    from fastapi.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.keys import create_key

    keys = {u: create_key(shared, u) for u in USERS}
    with TestClient(create_app(shared.settings)) as c:
        c.keys = keys
        yield c


def _h(client, user):
    return {"Authorization": f"Bearer {client.keys[user]}"}


@pytest.mark.parametrize("user,coll", MATRIX)
def test_api(shared, client, user, coll):
    h = _h(client, user)
    r = client.post("/v1/search", json={"query": SECRETS[coll], "k": 20, "mode": "lexical"}, headers=h)
    assert r.status_code == 200 and {x["collection"] for x in r.json()["data"]} == ({coll} & READS[user])
    r = client.post("/v1/search", json={"query": SECRETS[coll], "k": 20, "collections": [coll], "mode": "lexical"}, headers=h)
    assert r.status_code == (200 if coll in READS[user] else 403)
    assert {d["collection"] for d in client.get("/v1/documents", headers=h).json()["data"]} == READS[user]
    doc = _doc_id(shared, coll)
    assert client.get(f"/v1/documents/{doc}", headers=h).status_code == (200 if coll in READS[user] else 404)
    if coll not in WRITES[user]:  # refused deletes and uploads change nothing, so the shared workspace stays as is
        assert client.delete(f"/v1/documents/{doc}", headers=h).status_code == (403 if coll in READS[user] else 404)
        r = client.post("/v1/documents", data={"collection": coll}, files={"file": ("x.md", b"# x\n\nhello\n")}, headers=h)
        assert r.status_code == 403
    assert _count_chunks(shared, coll) > 0
    r = client.get("/v1/documents", headers={"Authorization": "Bearer not-a-key"})
    assert r.status_code == 401


def test_vector_reuse_is_no_oracle_for_other_collections(fresh, tmp_path, embedder):
    """Ingesting a copy of A's text into B: will (no read on A) gets it embedded afresh, so the
    `embedded` count cannot tell him the text exists in A; the admin reuses A's stored vectors."""
    ws = fresh
    copy = tmp_path / "guess.md"
    copy.write_text(TEXTS["A"])
    [mine] = ingest_paths(ws, [copy], collection="B", user="will", names=["guess-will.md"], embedder=embedder, progress=False)
    assert mine.status == "added" and mine.embedded == mine.chunks > 0
    [admins] = ingest_paths(ws, [copy], collection="B", names=["guess-admin.md"], embedder=embedder, progress=False)
    assert admins.status == "added" and admins.embedded == 0
