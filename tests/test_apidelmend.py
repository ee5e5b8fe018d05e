"""The API and adapted embedders: DELETE /v1/models/{id} never re-embeds the workspace within the
request (the active embedder is refused, naming the CLI's job), and POST /v1/embeddings keeps at most
one inactive adapted embedder loaded besides the active one. The real small embedder (MiniLM, torch
backend) on tests/test_retrdel.py's tiny corpus, through the app's real ASGI stack."""

from __future__ import annotations

import numpy as np
from test_retrdel import QUERY, save_perturbed, stored_vectors, tiny_ws  # noqa: F401 (tiny_ws: a fixture)


def _client(ws):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.keys import create_key

    return TestClient(create_app(ws.settings)), {"Authorization": f"Bearer {create_key(ws, 'admin')}"}


def test_delete_of_the_active_embedder_is_refused_naming_the_cli_job_and_nothing_is_reembedded(tiny_ws):
    """Before: ?force=true re-embedded every collection with the base inside the HTTP request (minutes to
    hours at scale: a client or proxy timed out not knowing what happened) and answered 200."""
    from archivist import jobs
    from archivist.finetune import embedders
    from archivist.models import active_embedder

    ws = tiny_ws
    save_perturbed(ws, "spare", seed=11)
    save_perturbed(ws, "live", seed=12)
    embedders.activate(ws, "live", None, progress=False)
    before = stored_vectors(ws)
    reembeds = len(jobs.every(ws, ("reembed",)))
    client, admin = _client(ws)
    with client:
        for query in ("?force=true", ""):
            r = client.delete(f"/v1/models/live{query}", headers=admin)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "embedder_active" and "is the active embedder" in error["message"]
            assert "`archivist embedders delete live --force`" in error["message"]
            assert "--resume base" in error["message"]
        # the inactive one is deleted as before
        r = client.delete("/v1/models/spare", headers=admin)
        assert (r.status_code, r.json()) == (200, {"id": "spare", "object": "model", "deleted": True,
                                                   "was_active": False, "notes": []}), r.text
    # the active one is untouched: still active, its folder and every stored vector as they were, no job
    assert active_embedder(ws.home)["generation"].startswith("live-") and (ws.home / "embedders" / "live").is_dir()
    assert not (ws.home / "embedders" / "spare").exists()
    after = stored_vectors(ws)
    assert after.keys() == before.keys() and all(np.array_equal(after[c], before[c]) for c in before)
    assert len(jobs.every(ws, ("reembed",))) == reembeds
    # the CLI's way still deletes it (re-embedding with the base first)
    gone = embedders.delete(ws, "live", force=True)
    assert gone["was_active"] and active_embedder(ws.home) is None


def test_embeddings_keep_at_most_one_inactive_adapted_embedder_loaded_besides_the_active_one(tiny_ws):
    """Before: every inactive adapted embedder asked for by name stayed loaded for the process's life."""
    from archivist.finetune import embedders
    from archivist.models import loaded_models

    ws = tiny_ws
    wants = {name: save_perturbed(ws, name, seed=seed) for seed, name in enumerate(("live", "a", "b", "c"), 20)}
    embedders.activate(ws, "live", None, progress=False)
    folders = {name: str(embedders.folder(ws, name)) for name in wants}

    def held() -> set[str]:
        """The adapted embedders of this workspace this process holds, by name."""
        return {n for n, f in folders.items() for k in loaded_models("embedder") if k[1] == f}

    client, admin = _client(ws)
    with client:
        for name, expect in (("live", {"live"}), ("a", {"live", "a"}), ("b", {"live", "b"}),
                             ("c", {"live", "c"}), ("a", {"live", "a"}), ("live", {"live", "a"})):
            r = client.post("/v1/embeddings", json={"model": name, "input": QUERY}, headers=admin)
            assert r.status_code == 200 and r.json()["model"] == name, r.text
            # each name's own weights, a reloaded one ('a' the second time) included
            assert np.allclose(r.json()["data"][0]["embedding"], wants[name], atol=1e-5)
            assert held() == expect, (name, held())
        r = client.post("/v1/search", json={"query": QUERY, "k": 1}, headers=admin)
        assert r.status_code == 200 and "kettle" in r.text, r.text
    assert held() == {"live", "a"}
