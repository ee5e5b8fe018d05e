"""Errors in OpenAI's shape: `{"error": {"message", "type", "code", "param"}}` with a fitting status.

Our own exceptions (AccessDenied, LookupError, QueueFull, ...) become these at the edge, in one
place, so a route never builds an error body by hand.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)

# status -> OpenAI error type
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
         429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class APIError(Exception):
    """Raise anywhere under a route: becomes the JSON error with this status and code."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers or {}


def internal_message(exc: BaseException, what: str = "internal error") -> str:
    """The message of a 500: the exception's type, not its text, which may hold server paths, SQL or other
    users' names (`FileExistsError: [Errno 17] File exists: '/srv/archivist-data/uploads/…'`); the
    server's log has it whole."""
    return f"{what}: {type(exc).__name__} (the server's log has the details)"


# an absolute path left in a message once the workspace and the model cache are named: `/srv/x`, `~/x`,
# `C:\\x`; not a document name (those are relative: `policies/travel.md`) nor a URL's path (`http://h/v1`)
_ABS_PATH = re.compile(r"(?<![\w:/.>~-])(?:~?/|[A-Za-z]:\\)[^\s'\"()\[\]{},;]+")


def without_paths(text: str | None, settings=None) -> str | None:
    """`text` as a client may see it: the workspace folder written `<workspace>`, the model cache
    `<model cache>`, any other absolute path `<server path>`. For messages the server does not write
    for the client (a job's error, a WorkspaceError): the server's log, or `archivist jobs`, has them whole."""
    if not text:
        return text
    if settings is not None:
        for path, name in ((settings.home, "<workspace>"), (settings.cache, "<model cache>")):
            for form in _forms(path):
                text = text.replace(form, name)
    return _ABS_PATH.sub("<server path>", text)


@functools.lru_cache(maxsize=16)
def _forms(path: Path) -> tuple[str, ...]:
    """The ways a message may write `path` (as given, expanded, absolute, resolved), the longest
    first (one may hold another); resolved once per path, not on every message."""
    forms = {str(path), str(path.expanduser()), str(path.expanduser().absolute()), str(path.expanduser().resolve())}
    return tuple(sorted(forms - {"", "."}, key=len, reverse=True))


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "code": code, "param": param}}


_DESCRIPTIONS = {400: "bad request", 401: "missing, unknown or revoked API key", 403: "no access to that collection",
                 404: "unknown model, document, collection or ingestion job", 413: "the body (an upload, or any other) is over the server's limit",
                 422: "the body or a parameter does not validate", 429: "the generation queue is full (`queue_full`), or the caller's user already holds their share of it "
                      "(`user_queue_full`, ARCHIVIST_MAX_QUEUED_PER_USER); see Retry-After",
                 500: "the server's settings do not fit its embedder (`embedder_misconfigured`: no retry helps, an "
                      "administrator changes them or re-embeds); for chat, also the model failed while it wrote the "
                      "answer (`generation_failed`)",
                 503: "the workspace database stayed locked (`workspace_unavailable`, see Retry-After), is damaged "
                      "(`workspace_damaged`), or a newer release migrated it under this server (`workspace_upgraded`: "
                      "no retry helps, restart the server with that release); for chat, also the LLM server down "
                      "(`llm_unavailable`)"}


def responses(*statuses: int, forbidden: str | None = None) -> dict:
    """The `responses=` argument of a route: these error statuses documented with ErrorResponse.

    400, 401, 413, 422 and 503 are added always (a body that is not even JSON, a key, a body over
    max_json_mb, which the Guard counts on every route, a GET's too, the validation, and the workspace
    the Guard opens to check the key, locked or damaged), and documenting 422 here replaces FastAPI's
    own HTTPValidationError shape, which we never send. `forbidden`: what a 403 means on a route where
    it is not a collection the caller may not read (an admin-only route: the role it needs).
    """
    described = {**_DESCRIPTIONS, **({403: forbidden} if forbidden else {})}
    return {s: {"model": ErrorResponse, "description": described[s]} for s in sorted({400, 401, 413, 422, 503, *statuses})}


def install(app) -> None:
    """Register the handlers that turn exceptions into OpenAI-shaped JSON errors."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from archivist.access import AccessDenied
    from archivist.api.guard import BodyTooLarge
    from archivist.api.queue import QueueFull
    from archivist.workspace import WorkspaceError

    def reply(status, message, code, param=None, headers=None):
        return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        if exc.status == 403:  # a collection the key's user may not read: a refusal, on the audit log
            from anyio import to_thread

            await to_thread.run_sync(_record_refusal, request, exc)
        return reply(exc.status, exc.message, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":  # loc is ("body", character offset): no field to name
            return reply(422, f"the body is not valid JSON: {first.get('ctx', {}).get('error', 'decode error')} "
                              f"(at character {first['loc'][-1]})", "invalid_json")
        if tuple(first.get("loc", ())) == ("body",) and isinstance(first.get("input"), bytes):  # not parsed as JSON
            return reply(422, "the body must be a JSON object sent with `Content-Type: application/json` (got "
                              f"{request.headers.get('content-type') or 'no Content-Type'})", "invalid_body")
        loc = [str(p) for p in first.get("loc", ())]
        if loc[:2] == ["body", "file"] and "Expected UploadFile" in str(first.get("msg")):  # a part without a filename
            return reply(422, "the upload has no usable file name (got ''): name the file in its multipart part, "  # (api/documents.py)
                              "e.g. `curl -F file=@report.pdf` or `-F 'file=@-;filename=report.pdf'`", "missing_filename", "file")
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):  # where it was, not a field's name:
            loc = loc[1:]  # only the first part (a body field may well be named `query`, as search's is)
        where = ".".join(loc) or "body"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return reply(422, message, "invalid_body", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        bad = exc.__cause__  # FastAPI answers a body json.loads cannot decode "There was an error parsing the body"
        if isinstance(bad, UnicodeDecodeError):  # not JSON, as _invalid answers other such bodies (422)
            return reply(422, f"the body is not valid JSON: it is not UTF-8 text ({bad.reason} at byte {bad.start})",
                         "invalid_json")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        if exc.status_code == 404 and not allowed_methods(app, request.scope):  # no route has this path: say so
            return reply(404, f"no route {request.method} {request.url.path}: this server's routes are listed at /docs; "
                              "OpenAI's /v1/responses and /v1/completions are not served, ask /v1/chat/completions", code)
        return reply(exc.status_code, str(exc.detail), code, headers=headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc: BodyTooLarge):  # raised by the Guard while the body arrives
        return reply(413, exc.message, exc.code, exc.param)

    @app.exception_handler(AccessDenied)
    async def _denied(request, exc: AccessDenied):
        from anyio import to_thread

        await to_thread.run_sync(_record_refusal, request, exc)  # a refusal is on the audit log
        return reply(403, str(exc), "permission_denied")

    @app.exception_handler(WorkspaceError)
    async def _workspace(request, exc: WorkspaceError):
        return workspace_reply(request.app.state.server.settings, exc, f"{request.method} {request.url.path}")

    @app.exception_handler(ConnectionError)
    async def _llm_down(request, exc: ConnectionError):  # the LLM server (ARCHIVIST_LLM_URL) is down
        return reply(503, str(exc), "llm_unavailable", headers={"Retry-After": "5"})

    @app.exception_handler(LookupError)
    async def _missing(request, exc: LookupError):
        if isinstance(exc, (KeyError, IndexError)):  # a bug, not a missing thing the caller named
            return await _crash(request, exc)
        return reply(404, str(exc), "not_found")

    @app.exception_handler(ValueError)
    async def _bad_value(request, exc: ValueError):
        return reply(400, str(exc), "invalid_value")

    @app.exception_handler(QueueFull)
    async def _full(request, exc: QueueFull):
        return reply(429, str(exc), exc.code, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        from archivist.workspace import damaged

        settings = request.app.state.server.settings
        problem = damaged(exc, settings.home)  # a damaged page of archivist.db, met by this request
        if problem is not None:
            return workspace_reply(settings, problem, f"{request.method} {request.url.path}")
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return reply(500, internal_message(exc), "internal_error")


def workspace_reply(settings, exc: BaseException, where: str):
    """The 503 of a workspace that cannot serve (WorkspaceError): its database locked, a full disk, or
    archivist.db damaged (`workspace_damaged`: no Retry-After, an administrator must restore it), or
    migrated by a newer release under this server (`workspace_upgraded`: no Retry-After, as no retry
    helps until the server is restarted with that release; the message names both schemas). The
    client gets the message without server paths; the server's log has it whole. The server's settings
    refused with its embedder (chunks longer than it reads, vectors of another embedder) are a 500
    `embedder_misconfigured` with no Retry-After: no retry clears them, an administrator changes the
    settings or re-embeds (the message says which)."""
    from fastapi.responses import JSONResponse

    from archivist.models import ChunkLimitError
    from archivist.retrieval.vectors import EmbedderMismatch
    from archivist.workspace import DatabaseDamaged, NewerSchema

    text = str(exc)
    log.error("workspace error on %s: %s", where, text)
    if isinstance(exc, (ChunkLimitError, EmbedderMismatch)):
        return JSONResponse(error_body(500, without_paths(text, settings), "embedder_misconfigured"), status_code=500)
    if isinstance(exc, DatabaseDamaged):
        message = (f"the workspace database is damaged ({exc.reason}): an administrator must restore it from a "
                   "backup of the workspace folder (the server's log names the file)")
        return JSONResponse(error_body(503, without_paths(message, settings), "workspace_damaged"), status_code=503)
    if isinstance(exc, NewerSchema):
        return JSONResponse(error_body(503, without_paths(text, settings), "workspace_upgraded"), status_code=503)
    return JSONResponse(error_body(503, without_paths(text, settings), "workspace_unavailable"), status_code=503,
                        headers={"Retry-After": "5"})


def _record_refusal(request, exc: Exception) -> None:
    """Write the `access.denied` record of a 403 (archivist/audit.py): the key's user, the method and
    path tried, the reason; on a connection of its own, the route's transaction having rolled back.
    A failure to record is logged and the 403 still answered."""
    from archivist import audit
    from archivist.api.guard import USER

    try:
        ws = request.app.state.server.workspace()
        try:
            audit.denied(ws, request.scope.get(USER), "api", f"{request.method} {request.url.path}", str(exc))
        finally:
            ws.close()
    except Exception as e:  # noqa: BLE001
        log.error("could not record a refusal on %s %s in the audit log", request.method, request.url.path, exc_info=e)


def allowed_methods(app, scope) -> list[str]:
    """Every method some route accepts for this path (for the Allow header of a 405)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in _leaf_routes(app.router.routes):
        match, _ = route.matches({**scope, "method": "__none__"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def _leaf_routes(routes) -> list:
    """The routes under `routes`, with included routers opened: newer FastAPI keeps an included
    APIRouter as one entry (its `original_router`) where older versions copied its routes in.
    The API's routers are included without a prefix, so their routes match the request's path as is."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out += _leaf_routes(inner.routes) if inner is not None else [route]
    return out
