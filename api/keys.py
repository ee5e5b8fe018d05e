"""API keys over HTTP, with the rules of archivist/keys.py (the same as `archivist keys`):

    GET    /v1/keys[?user=NAME]     the caller's keys (an admin: everyone's, or NAME's); never their secrets
    POST   /v1/keys                 a new key, shown once (an admin's key only): its own, or `{"user": NAME}`'s
    DELETE /v1/keys/{prefix}        revoke one (`ak-1a2b3c4d`, or the whole key): a member's key itself only

A member asking for another user's key (or list) gets 403 before the name is looked up (so no user
name is confirmed), another user's prefix is 404 like an unknown one, and an admin's unknown name 404.
A member's key that asks for a new key, or names another of her keys, gets 403: a key does not manage
keys (archivist/keys.py says why); she does that with `archivist keys`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from archivist import keys
from archivist.api import schemas as S
from archivist.api.deps import api_key, user, workspace
from archivist.api.errors import responses
from archivist.workspace import Workspace

router = APIRouter(tags=["keys"])


class KeyOut(BaseModel):
    object: Literal["api_key"] = "api_key"
    prefix: str = Field(description="names the key: `ak-1a2b3c4d`")
    user: str
    created_at: float
    revoked_at: float | None = None


class NewKey(KeyOut):
    key: str = Field(description="the whole key: shown this once, only its hash is kept")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]


class KeyRequest(S._Open):
    model_config = ConfigDict(extra="forbid")
    # not empty: `"user": ""` (an unset variable in a provisioning script) made the admin's key a key of the admin
    user: str | None = Field(None, min_length=1,
                             description="whose key (default: the caller's own; another user's needs the admin role)")


def key_out(k: dict) -> dict:
    return {"object": "api_key", "prefix": k["prefix"], "user": k["user"], "created_at": k["created_at"],
            "revoked_at": k["revoked_at"]}


@router.get("/v1/keys", response_model=KeyList,
            responses=responses(403, 404, forbidden="a member's key named another user (`?user=`): only admins list others' keys"))
def list_route(user_: str | None = Query(None, alias="user", description="admins: this user's keys only"),
               ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """The caller's API keys, oldest first (an admin: everyone's, or `user`'s); prefixes and states, never secrets."""
    return {"object": "list", "data": [key_out(k) for k in keys.list_keys(ws, user_, by=who)]}


@router.post("/v1/keys", response_model=NewKey, status_code=201,
             responses=responses(403, 404, forbidden="a member's key: only an admin's key makes keys (a member uses "
                                                     "`archivist keys`)"))
def create_route(body: KeyRequest | None = None, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """A new API key, for an admin's key only: for the caller (or `user`). The key is in this answer only."""
    owner = (body.user if body else None) or who
    key = keys.create_key(ws, owner, by=who, with_key=True)
    listed = next(k for k in keys.list_keys(ws, owner, by=who) if k["prefix"] == "ak-" + key.split("-")[1])
    return JSONResponse({**key_out(listed), "key": key}, status_code=201, headers={"Cache-Control": "no-store"})


@router.delete("/v1/keys/{prefix}", response_model=KeyOut,
               responses=responses(403, 404, forbidden="a member's key named another of her keys: it revokes only "
                                                       "itself (she uses `archivist keys` for the others)"))
def revoke_route(prefix: str, ws: Workspace = Depends(workspace), who: str = Depends(user),
                 key: str = Depends(api_key)):
    """Revoke a key (by its prefix `ak-1a2b3c4d`, or whole): at once, also when it is the key of this
    request, which is the only one a member's key may revoke. Revoking twice is harmless."""
    return key_out(keys.revoke_key(ws, prefix, by=who, with_key=key))
