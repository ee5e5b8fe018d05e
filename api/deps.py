"""What the routers share: the Server record, and the dependencies every route takes (the server, a
workspace on its own SQLite connection, the key's user), the query-parameter check and the
collection scope check.

SQLite: a connection per request (sqlite3 connections must not be used from two threads at once,
and FastAPI runs sync routes in a thread pool); the workspace is opened, migrated and repaired once
at start-up, by create_app.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from archivist import access
from archivist.api.errors import APIError
from archivist.api.queue import GenerationQueue
from archivist.settings import Settings
from archivist.workspace import Workspace, connect


@dataclass
class Server:
    """What the routes share: settings, the generation queue, when the server started."""

    settings: Settings
    queue: GenerationQueue
    started: int

    def workspace(self, settings: Settings | None = None) -> Workspace:
        """A Workspace on a fresh SQLite connection, for one request or one worker thread; close it after."""
        s = settings or self.settings
        return Workspace(settings=s, db=connect(s.home / "archivist.db"))


def server(request: Request) -> Server:
    """The Server of the app that got the request (create_app puts it on app.state)."""
    return request.app.state.server


def workspace(request: Request, srv: Server = Depends(server)) -> Iterator[Workspace]:
    """The request's workspace on its own connection: the one the Guard opened to check the key (and
    closes after the response), else a fresh one closed after the request."""
    from archivist.api.guard import WORKSPACE

    ws = request.scope.get(WORKSPACE)
    if ws is not None:
        yield ws
        return
    ws = srv.workspace()
    try:
        yield ws
    finally:
        ws.close()


_bearer = HTTPBearer(auto_error=False, description="an API key from `archivist keys create --user NAME`")


def user(request: Request, srv: Server = Depends(server),
         creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:  # creds: the security scheme in OpenAPI
    """The name of the user whose API key the request carries.

    The Guard middleware (api/guard.py) checked the key before the body was read and left the user in
    the scope; checking again here keeps a route closed should it ever be mounted without the Guard.
    Raises APIError 401 without a valid key.
    """
    from archivist.api.guard import USER, authenticate

    name = request.scope.get(USER)
    if name is not None:
        return name
    with srv.workspace() as ws:
        name, refusal = authenticate(ws, request.headers.get("authorization"))
    if refusal is not None:
        raise APIError(401, *refusal, headers={"WWW-Authenticate": "Bearer"})
    return name


def api_key(who: str = Depends(user),
            creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    """The API key of the request, once `user` has checked it: a key's rights over keys are not all of
    its user's (archivist/keys.py)."""
    return creds.credentials.strip()


def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not take, or given twice: `?colection=hr` silently
    listing every collection would be worse than an error."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known, todo = set(), [dependant]
    while todo:  # the route's own query parameters and those of its dependencies
        d = todo.pop()
        known |= {p.alias for p in d.query_params}
        todo += d.dependencies
    unknown = sorted(set(request.query_params) - known)
    repeated = sorted(k for k in set(request.query_params) if len(request.query_params.getlist(k)) > 1)
    if repeated:  # every query parameter here is a single value; which one would win is a guess
        raise APIError(422, f"query parameter {repeated[0]!r} is given more than once", "repeated_parameter", repeated[0])
    if unknown:
        raise APIError(422, f"unknown query parameter {unknown[0]!r}" + (f"; this route takes {', '.join(sorted(known))}" if known else
                       "; this route takes none"), "unknown_parameter", unknown[0])


def requested_collections(ws: Workspace, user: str, collection: str | None, collections: list[str] | None) -> list[str] | None:
    """The collections a request names (None: every readable one), each checked for read access.

    A member gets 403 for a collection that is not theirs whether or not it exists, so the API never
    tells which collection names exist; an admin gets 404 for one that does not exist. An empty or blank
    name is a 422: `collection=""` (an unset variable in a client's script) searched and answered from
    every readable collection while the listing read it as a collection with no documents.
    """
    for param, names in (("collection", [] if collection is None else [collection]), ("collections", collections or [])):
        for name in names:
            refusal = access.blank_collection(name, f"the field {param!r}")
            if refusal:
                raise APIError(422, refusal, "invalid_parameter", param)
    wanted = list(dict.fromkeys(([collection] if collection else []) + list(collections or [])))
    if not wanted:
        return None
    readable = set(access.readable_collections(ws, user))
    for c in wanted:
        if c in readable:
            continue
        if access.is_admin(ws, user):
            raise APIError(404, f"no collection {c!r}", "collection_not_found", "collection")
        raise APIError(403, f"user {user!r} has no read access to collection {c!r} (or it does not exist)",
                       "permission_denied", "collection")
    return wanted
