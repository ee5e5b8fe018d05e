"""GET /v1/models and /v1/models/{id}: the chat models a key's user may name (the base, 'archivist' for
whatever the chat page uses, each adapter they may use) and the embedder; and how a request's
`model` becomes the `adapter=` argument of ask(). DELETE /v1/models/{id}: an admin deletes an adapter
or an adapted embedder."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from archivist.api import schemas as S
from archivist.api.deps import Server, server, user, workspace
from archivist.api.errors import APIError, responses, without_paths
from archivist.workspace import Workspace

DEFAULT_MODEL = "archivist"  # the model name meaning "whatever the chat page uses": the active adapter, else the base

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=S.ModelList, responses=responses())
def models(ws: Workspace = Depends(workspace), name: str = Depends(user), srv: Server = Depends(server)):
    """The chat models: 'archivist' (the active adapter, else the base), the base model, each adapter
    the caller may use; and the embedder."""
    return {"object": "list", "data": list_models(ws, srv.started, name)}


@router.get("/v1/models/{model_id:path}", response_model=S.Model, responses=responses(404))
def model(model_id: str, ws: Workspace = Depends(workspace), name: str = Depends(user), srv: Server = Depends(server)):
    for m in list_models(ws, srv.started, name):
        if m["id"] == model_id:
            return m
    raise APIError(404, f"no model {model_id!r} (see GET /v1/models)", "model_not_found", "model")


@router.delete("/v1/models/{model_id:path}", response_model=S.ModelDeleted,
               responses=responses(403, 404, forbidden="the caller is not an admin: only admins delete an adapter "
                                                       "(whatever the name, so no name is confirmed)"))
def delete_model(model_id: str, force: bool = Query(False, description="even the active adapter (the chat then uses "
                                                                        "the base model); not the active embedder"),
                 ws: Workspace = Depends(workspace), name: str = Depends(user)):
    """Delete an adapter, as `archivist adapters delete` (adapters.delete): admins only (403 for a member,
    whatever the name), 404 for an unknown one, 400 for the active adapter without `force` or one a
    run is retraining. Its old answers stay withheld from readers who lost what it learned. An id no
    adapter has but an adapted embedder of GET /v1/models does deletes that embedder, as `archivist
    embedders delete` (embedders.delete), an inactive one only: the active one is 400 `embedder_active`,
    `force` or not, because deleting it re-embeds every collection with the base embedder first, minutes
    to hours that a client or proxy would time out on, leaving the admin not knowing what happened;
    the CLI runs that as a job (`archivist embedders delete NAME --force`)."""
    from archivist import access, adapters
    from archivist.finetune import embedders

    # one refusal for a member whatever the id names (an adapter, an embedder, nothing): none is confirmed
    access.require_admin(ws, name, "delete an adapter")
    if adapters.trained_on(ws, model_id) is None and embedders.is_registered(ws, model_id):
        if embedders.is_active(ws, model_id):
            raise APIError(400, f"embedder {model_id!r} is the active embedder: deleting it first re-embeds every "
                                f"collection with the base embedder {ws.settings.embedder!r}, which the API does not "
                                f"run within a request. On the server, run `archivist embedders delete {model_id} "
                                f"--force` (a resumable job), or switch back to the base first (`archivist finetune "
                                f"--target retriever --resume base`) and delete it here then", "embedder_active", "model_id")
        # never `force`: an embedder made active since the look above is refused (400), not re-embedded here
        gone = embedders.delete(ws, model_id, user=name, progress=False)
        return {"id": gone["name"], "deleted": True, "was_active": gone["was_active"],
                "notes": [without_paths(n, ws.settings) for n in gone["notes"]]}
    rec = adapters.delete(ws, model_id, force=force, user=name)
    return {"id": rec["name"], "deleted": True, "was_active": rec["active"],
            "notes": [without_paths(n, ws.settings) for n in rec["notes"]]}


def list_models(ws: Workspace, created: int, user: str) -> list[dict]:
    """The models `user` may name, as OpenAI model objects with archivist's `kind`. Adapters trained
    on collections the user may not read are left out (`adapters.list_for`); which adapter is
    active is told only when the user may use it."""
    from archivist import adapters

    s = ws.settings
    rows = sorted(adapters.list_for(ws, user), key=lambda r: (r["created_at"], r["name"]))
    active = next((r["name"] for r in rows if r["active"]), None)
    out = [{"id": DEFAULT_MODEL, "object": "model", "created": created, "owned_by": "archivist", "kind": "chat",
            "base_model": s.llm, "active": True, "adapter": active},
           {"id": s.llm, "object": "model", "created": created, "owned_by": "archivist", "kind": "chat",
            "base_model": None, "active": active is None}]
    for r in rows:
        out.append({"id": r["name"], "object": "model", "created": int(r["created_at"]), "owned_by": "archivist",
                    "kind": "adapter", "base_model": r["base_model"], "active": bool(r["active"]), "stale": r["stale"]})
    from archivist.finetune.embedders import list_embedders

    adapted = list_embedders(ws, user)  # only those trained on collections the user may read
    # the base is active for this user unless an adapted embedder they may see is: one they may not
    # see is neither named nor told, and /v1/embeddings gives them the base (embedders.served_embedder)
    out.append({"id": s.embedder, "object": "model", "created": created, "owned_by": "archivist", "kind": "embedding",
                "base_model": None, "active": not any(e["active"] for e in adapted)})
    for e in adapted:
        out.append({"id": e["name"], "object": "model", "created": created, "owned_by": "archivist", "kind": "embedding",
                    "base_model": e["base"], "active": e["active"], "stale": e.get("stale")})
    return out


def adapter_for_model(ws: Workspace, model: str, user: str) -> str | None:
    """The `adapter=` argument of ask() for a model name: 'active', None (base) or an adapter's name.

    Raises APIError 404 for a name that is none of them, and the same 404 for an adapter `user` may not
    use (`adapters.may_use`): a 403 would confirm a guessed name, as GET /v1/models/{id} does not.
    """
    from archivist import adapters

    if model == DEFAULT_MODEL:
        return "active"
    if model == ws.settings.llm:
        return None
    if adapters.may_use(ws, user, model):  # False for an unknown name too
        return model
    raise APIError(404, f"no model {model!r}: use {DEFAULT_MODEL!r}, {ws.settings.llm!r} or an adapter from GET /v1/models",
                   "model_not_found", "model")
