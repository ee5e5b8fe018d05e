"""The door of the API: an ASGI middleware that checks the API key from the headers, and caps the
request body's size, before a byte of the body is read.

FastAPI reads and parses a route's body before it runs the route's dependencies, so a key checked in
a dependency comes too late: a keyless 300 MB JSON body was held in memory, and a keyless chunked
upload spooled to disk, before its 401. Here a request under /v1 without a valid key is answered 401
without the body ever being received (uvicorn drops it unread), and every body is counted as it
arrives: over the limit it is refused with 413, from its Content-Length when it has one, else as
soon as the count passes the limit (chunked uploads).

Limits: `max_json_mb` for every body, `max_file_mb` (plus multipart framing) for an upload
(POST /v1/documents).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException

from archivist.api.errors import error_body, internal_message

log = logging.getLogger(__name__)

USER = "archivist.user"  # scope keys under which the key's user and the request's workspace
WORKSPACE = "archivist.workspace"  # are passed on to the routes (api/deps.py)
UPLOAD_SLACK = 64 * 1024  # multipart framing and the other form fields of an upload

MISSING_KEY = ("missing API key: send `Authorization: Bearer <key>` (create one with "
               "`archivist keys create --user NAME`)", "missing_api_key")
# two Authorization headers: the Guard would check one key and the routes read another (a member's key
# "may revoke only itself": a leaked key sent beside a made-up one naming her other key revoked that)
TWO_KEYS = ("more than one Authorization header: send one `Authorization: Bearer <key>`", "invalid_api_key")
INVALID_KEY = ("invalid API key: unknown, malformed or revoked", "invalid_api_key")


class BodyTooLarge(HTTPException):
    """A request body past its limit, noticed while it arrived; becomes a 413 (errors.install)."""

    def __init__(self, message: str, code: str, param: str | None):
        super().__init__(status_code=413, detail=message)
        self.message, self.code, self.param = message, code, param


def needs_key(path: str) -> bool:
    """Every /v1 route needs a key; /health and the API's own docs (/docs, /openapi.json) do not."""
    return path == "/v1" or path.startswith("/v1/")


def body_limit(scope, settings) -> tuple[int, str, str | None, str]:
    """(bytes, error code, param, what) for this request's body: an upload's or any other's."""
    if scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/documents":
        return settings.max_file_mb * 2**20 + UPLOAD_SLACK, "file_too_large", "file", f"the upload is larger than {settings.max_file_mb} MB"
    return (settings.max_json_mb * 2**20, "request_too_large", None,
            f"the request body is larger than {settings.max_json_mb} MB (the server's max_json_mb)")


def authenticate(ws, authorization: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """(user, None) for a valid `Authorization: Bearer <key>` header, else (None, (message, code)).

    SQLite: call it from a worker thread, not the event loop.
    """
    from archivist.keys import user_for_key

    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None, MISSING_KEY
    name = user_for_key(ws, key.strip())
    return (name, None) if name is not None else (None, INVALID_KEY)


def _open_and_authenticate(server, authorization: str | None):
    """(workspace, user, refusal): the request's workspace, opened here so that the key lookup and the
    route share one SQLite connection (opening one costs more than the lookup)."""
    ws = server.workspace()
    try:
        return (ws, *authenticate(ws, authorization))
    except BaseException:
        ws.close()
        raise


class Guard:
    """ASGI middleware in front of the API: key first, then a counted body.

    `server` is the app's Server (its settings and its `workspace()` for the key lookup).
    """

    def __init__(self, app, server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if not needs_key(scope["path"]):
            await self._limited(scope, receive, send, headers)
            return
        if sum(k.lower() == b"authorization" for k, _ in scope.get("headers") or []) > 1:
            await _reply(scope, receive, send, 401, *TWO_KEYS, headers={"WWW-Authenticate": "Bearer"})
            return
        from anyio import to_thread

        from archivist.api.errors import workspace_reply
        from archivist.workspace import WorkspaceError, damaged

        try:
            ws, user, refusal = await to_thread.run_sync(_open_and_authenticate, self.server, headers.get("authorization"))
        except Exception as e:  # noqa: BLE001
            problem = e if isinstance(e, WorkspaceError) else damaged(e, self.server.settings.home)
            if problem is not None:  # locked, or archivist.db damaged: said without server paths
                await workspace_reply(self.server.settings, problem, f"{scope['method']} {scope['path']}")(scope, receive, send)
                return
            # the database could not be opened or read: shaped as the app's own 500s
            log.error("key check failed on %s %s", scope["method"], scope["path"], exc_info=e)
            await _reply(scope, receive, send, 500, internal_message(e), "internal_error")
            return
        try:
            if refusal is not None:
                await _reply(scope, receive, send, 401, *refusal, headers={"WWW-Authenticate": "Bearer"})
                return
            scope[USER], scope[WORKSPACE] = user, ws  # for the routes' `user` and `workspace` dependencies
            await self._limited(scope, receive, send, headers)
        finally:
            ws.close()

    async def _limited(self, scope, receive, send, headers: dict[str, str]):
        """Refuse a body whose Content-Length is over its limit; count the others as they arrive."""
        limit, code, param, message = body_limit(scope, self.server.settings)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reply(scope, receive, send, 413, f"{message}: {int(length) / 2**20:.1f} MB sent", code, param)
            return
        await self._counted(scope, receive, send, limit, BodyTooLarge(message, code, param))

    async def _counted(self, scope, receive, send, limit: int, too_large: BodyTooLarge):
        """Run the app with a receive that counts the body and raises `too_large` past `limit`."""
        seen, started = 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as e:  # the app's own handler (errors.install) answers it; this is the fallback
            if started:
                raise
            await _reply(scope, receive, send, 413, e.message, e.code, e.param)


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


async def _reply(scope, receive, send, status: int, message: str, code: str, param: str | None = None,
                 headers: dict | None = None):
    """An OpenAI-shaped JSON error (a JSONResponse never reads the request body)."""
    from starlette.responses import JSONResponse

    await JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)(scope, receive, send)
