"""Deleting an adapted embedder or a learned reranker (`archivist embedders delete NAME [--force]`,
`archivist rerankers delete NAME`, DELETE /v1/models/{id} for an embedder, the Fine-tune page's
Retriever tab): admins only, audited, the folder gone, the active embedder first switched back to
the base (every collection re-embedded), refused while a re-embed into it is under way, and a name
registered again never embedding with the deleted weights. The real small embedder (MiniLM, torch
backend) on a tiny corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

DOCS = {
    "kettle.md": "# Kettle\n\nThe kettle boils water in ninety seconds. Descale it monthly with citric acid.\n",
    "bicycle.md": "# Bicycle\n\nInflate the tyres to four bar. Oil the chain after riding in the rain.\n",
    "garden.md": "# Garden\n\nWater the tomatoes at dawn. Prune the roses in late winter before new growth.\n",
}
QUERY = "how long does the kettle take to boil"


@pytest.fixture
def tiny_ws(ws, tmp_path, monkeypatch):
    """Three short documents in collection 'default', a member 'bob' who reads it."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths

    monkeypatch.setenv("ARCHIVIST_EMBED_BACKEND", "torch")  # no ONNX export of a saved copy in a test
    ws.settings.embed_backend = "torch"
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest_paths(ws, sorted(folder.iterdir()), collection="default", progress=False)
    access.add_user(ws, "bob")
    access.grant(ws, "bob", "default", "read")
    return ws


def save_perturbed(ws, name: str, seed: int) -> np.ndarray:
    """Save the base model with its token embeddings moved by seeded noise as adapted embedder
    `name` (as a fine-tune saves one); returns what those weights make of QUERY."""
    import torch
    from sentence_transformers import SentenceTransformer

    from archivist.catalog import resolve_embedder
    from archivist.finetune import embedders

    model = SentenceTransformer(resolve_embedder(ws.settings.embedder), device="cpu")
    table = model[0].auto_model.embeddings.word_embeddings.weight
    with torch.no_grad():
        table += 0.05 * torch.randn(table.shape, generator=torch.Generator().manual_seed(seed))
    embedders.save(ws, name, model, {"kind": "retriever", "base": ws.settings.embedder, "collections": ["default"]})
    return model.encode([QUERY], normalize_embeddings=True, convert_to_numpy=True)[0]


def stored_vectors(ws) -> dict[int, np.ndarray]:
    return {r[0]: np.frombuffer(r[1], np.float32) for r in ws.db.execute("SELECT id, embedding FROM chunks")}


def test_the_active_embedder_is_deleted_with_force_after_a_reembed_with_the_base_and_its_name_serves_new_weights(tiny_ws):
    from archivist import access, audit
    from archivist.finetune import embedders
    from archivist.models import active_embedder, embedder_for, load_embedder
    from archivist.retrieval.reembed import embed_input
    from archivist.retrieval.search import search

    ws = tiny_ws
    first = save_perturbed(ws, "tuned", seed=1)
    embedders.activate(ws, "tuned", None, progress=False)
    assert np.allclose(embedder_for(ws.settings).embed([QUERY])[0], first, atol=1e-5)

    with pytest.raises(access.AccessDenied):  # a member, whatever the name
        embedders.delete(ws, "tuned", force=True, user="bob")
    with pytest.raises(ValueError, match=r"active embedder: every collection \(default\).*--force"):
        embedders.delete(ws, "tuned")
    assert (ws.home / "embedders" / "tuned").is_dir() and active_embedder(ws.home)["generation"].startswith("tuned-")

    gone = embedders.delete(ws, "tuned", force=True)
    total = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    assert gone["was_active"] and gone["reembed"]["chunks"] == total and gone["notes"] == []
    # nothing of it on disk, and the collections are the base embedder's again, searchable
    assert [p.name for p in (ws.home / "embedders").iterdir()] == []
    assert active_embedder(ws.home) is None and ws.meta("embedder_generation", "") == ""
    base = load_embedder(ws.settings.embedder, ws.settings.device, "torch", str(ws.settings.cache))
    for cid, vec in stored_vectors(ws).items():
        r = ws.db.execute("SELECT text, heading FROM chunks WHERE id = ?", (cid,)).fetchone()
        assert np.allclose(vec, base.embed([embed_input(r["text"], r["heading"])])[0], atol=1e-5)
    hits = search(ws, QUERY, k=1, user="bob")
    assert "kettle" in hits[0].text
    assert embedders.list_embedders(ws, None) == []
    [deleted] = [r for r in audit.read(ws, "admin", action="embedder.delete")]
    assert deleted["target"] == "tuned" and deleted["user"] == "admin" and deleted["detail"]["was_active"] is True
    assert [r["target"] for r in audit.read(ws, "admin", action="embedder.activated")][-1] == "base"

    # the name registered again holds other weights at the same path: this process (as the app's, the
    # API's) never embeds with the deleted ones it loaded before, neither the re-embed nor the queries
    second = save_perturbed(ws, "tuned", seed=2)
    assert not np.allclose(first, second, atol=1e-3)
    embedders.activate(ws, "tuned", None, progress=False)
    assert np.allclose(embedder_for(ws.settings).embed([QUERY])[0], second, atol=1e-5)
    kettle = ws.db.execute("SELECT id, text, heading FROM chunks WHERE text LIKE '%kettle boils%'").fetchone()
    assert np.allclose(stored_vectors(ws)[kettle["id"]],
                       embedder_for(ws.settings).embed([embed_input(kettle["text"], kettle["heading"])])[0], atol=1e-5)


def test_a_delete_is_refused_while_a_reembed_into_it_is_under_way_and_an_idle_one_goes_from_the_cli(tiny_ws, cli):
    from archivist import audit, jobs
    from archivist.finetune import embedders

    ws = tiny_ws
    save_perturbed(ws, "spare", seed=3)
    job = jobs.start(ws, jobs.create(ws, "reembed", None, spec={"embedder": "spare"}).id)  # held by this live process
    with pytest.raises(ValueError, match=f"re-embed job {job.id} \\(running"):
        embedders.delete(ws, "spare")
    jobs.end(ws, job.id, "cancelled")
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    listed = cli("embedders", "--json")
    assert listed.returncode == 0 and [e["name"] for e in json.loads(listed.stdout)] == ["spare"]
    refused = cli("embedders", "delete", "spare", "--user", "bob")
    assert refused.returncode != 0 and "admin" in refused.stderr
    assert cli("embedders", "delete", "nosuch").returncode != 0
    done = cli("embedders", "delete", "spare", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["deleted"] and out["name"] == "spare" and out["was_active"] is False and out["notes"] == []
    assert not (ws.home / "embedders" / "spare").exists()
    assert [r["target"] for r in audit.read(ws, "admin", action="embedder.delete")] == ["spare"]
    # the resume of its cut-short re-embed finds it gone, and switches nothing
    with pytest.raises(LookupError, match="spare"):
        embedders.resume_reembed(ws, job.id, None, progress=False)
    assert embedders.list_embedders(ws, None) == [] and ws.meta("embedder_generation", "") == ""


def test_a_learned_reranker_is_deleted_by_an_admin_and_its_name_is_free(tiny_ws, cli):
    from archivist import audit
    from archivist.retrieval import rerank

    ws = tiny_ws
    weights = {f: 1.0 for f in rerank.FEATURES}
    rerank.save_learned(ws, "rr", {"kind": "reranker", "weights": weights, "collections": ["default"]})
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert [r["name"] for r in json.loads(cli("rerankers", "--json").stdout)] == ["rr"]
    refused = cli("rerankers", "delete", "rr", "--user", "bob")
    assert refused.returncode != 0 and "admin" in refused.stderr and (ws.home / "rerankers" / "rr").is_dir()
    done = cli("rerankers", "delete", "rr")
    assert done.returncode == 0 and "deleted reranker rr" in done.stdout, done.stderr
    assert list((ws.home / "rerankers").iterdir()) == [] and rerank.list_learned(ws, None) == []
    with pytest.raises(LookupError):
        rerank.load_learned(ws, "rr")
    assert [r["target"] for r in audit.read(ws, "admin", action="reranker.delete")] == ["rr"]
    rerank.save_learned(ws, "rr", {"kind": "reranker", "weights": {**weights, "cosine": -1.0}, "collections": ["default"]})
    assert rerank.load_learned(ws, "rr").weights[list(rerank.FEATURES).index("cosine")] == -1.0


def test_delete_v1_models_deletes_an_adapted_embedder_for_admins_and_the_active_one_with_force(tiny_ws):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.finetune import embedders
    from archivist.keys import create_key
    from archivist.models import active_embedder

    ws = tiny_ws
    save_perturbed(ws, "spare", seed=4)
    save_perturbed(ws, "live", seed=5)
    embedders.activate(ws, "live", None, progress=False)
    keys = {u: {"Authorization": f"Bearer {create_key(ws, u)}"} for u in ("admin", "bob")}
    with TestClient(create_app(ws.settings)) as client:
        r = client.delete("/v1/models/spare", headers=keys["bob"])
        assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied"), r.text
        # the same words as for a name nothing has: a member's refusal confirms no embedder's name
        assert r.json()["error"] == client.delete("/v1/models/no-such-model", headers=keys["bob"]).json()["error"]
        r = client.delete("/v1/models/live", headers=keys["admin"])
        assert r.status_code == 400 and "is the active embedder" in r.json()["error"]["message"], r.text
        r = client.delete("/v1/models/spare", headers=keys["admin"])
        assert (r.status_code, r.json()) == (200, {"id": "spare", "object": "model", "deleted": True,
                                                   "was_active": False, "notes": []}), r.text
        r = client.delete("/v1/models/live?force=true", headers=keys["admin"])  # no re-embed within a request
        assert (r.status_code, r.json()["error"]["code"]) == (400, "embedder_active"), r.text
        embedders.delete(ws, "live", force=True)  # what the refusal names: the CLI's delete --force
        listed = client.get("/v1/models", headers=keys["admin"]).json()["data"]
    assert [(m["id"], m["active"]) for m in listed if m["kind"] == "embedding"] == [(ws.settings.embedder, True)]
    assert active_embedder(ws.home) is None and list((ws.home / "embedders").iterdir()) == []


def test_the_fine_tune_page_deletes_an_embedder_after_a_confirmation_naming_the_reembed(tiny_ws):
    from test_ui_members import app

    from archivist import auth
    from archivist.finetune import embedders
    from archivist.models import active_embedder

    ws = tiny_ws
    save_perturbed(ws, "live", seed=6)
    embedders.activate(ws, "live", None, progress=False)
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    at = app(auth.create_session(ws, "bob"), "finetune")
    assert not [b for b in at.button if b.key == "rt-delete-go"]  # a member has no delete
    at = app(auth.create_session(ws, "admin"), "finetune")
    assert at.button(key="rt-delete-go").disabled  # not before the confirmation
    sure = at.checkbox(key="rt-delete-sure-live")
    assert "it is the active embedder, so every collection is re-embedded with the base embedder first" in sure.label
    sure.check().run()
    at.button(key="rt-delete-go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Deleted embedder live." in [s.value for s in at.success]
    assert not (ws.home / "embedders" / "live").exists() and active_embedder(ws.home) is None


def test_a_taken_name_is_refused_before_the_retriever_trains_and_says_how_to_free_it(tiny_ws, cli):
    """Before: the name was looked at only by the save after training (minutes on a CPU, then lost);
    on this tiny corpus the run stopped at 'too few synthetic questions' instead, and once documents
    were added it trained and then refused."""
    ws = tiny_ws
    save_perturbed(ws, "tuned", seed=7)
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    r = cli("finetune", "--target", "retriever", "--name", "tuned", "--quiet")
    assert r.returncode != 0
    assert "an embedder named 'tuned' exists already" in r.stderr and "archivist embedders delete tuned" in r.stderr, r.stderr
