"""The OpenAI-compatible HTTP API: a thin shell over the same functions the CLI and the UI call.

    GET    /v1/models                 the base model, 'archivist' (the active adapter), each adapter, the embedder
    POST   /v1/chat/completions       grounded answers with [n] citations (see api/chat.py)
    POST   /v1/embeddings             archivist.models.embedder_for(settings).embed
    POST   /v1/search                 archivist.retrieval.search.search
    GET    /v1/documents              list;  POST (multipart `file`, `collection`, `wait`) upload + ingest
    GET    /v1/ingest_jobs            the caller's background ingestions (uploads with wait=false)
    GET    /v1/ingest_jobs/{id}       one of them
    GET    /v1/documents/{doc}        one;   DELETE removes it from SQLite, FTS5 and FAISS
    GET    /health                    no key needed: status and the generation queue

Every /v1 route needs `Authorization: Bearer <key>` (archivist/keys.py); the key's user is passed as
`user=` to search / ask / list / ingest / delete, so the access checks are those of archivist.access.

SQLite: a connection per request (sqlite3 connections must not be used from two threads at once,
and FastAPI runs sync routes in a thread pool); the workspace is opened, migrated and repaired once
at start-up.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from archivist import __version__, access
from archivist.api import schemas as S
from archivist.api.errors import APIError, install, responses
from archivist.api.jobs import UploadJobs
from archivist.api.queue import GenerationQueue
from archivist.settings import Settings
from archivist.workspace import Workspace, connect, open_workspace

log = logging.getLogger(__name__)

DEFAULT_MODEL = "archivist"  # the model name meaning "whatever the chat page uses": the active adapter, else the base
MAX_EMBED_CHARS = 2_000_000  # all texts of one embeddings request together


@dataclass
class Server:
    """What the routes share: settings, the generation queue, when the server started."""

    settings: Settings
    queue: GenerationQueue
    started: int
    uploads: UploadJobs = field(default_factory=UploadJobs)

    def workspace(self, settings: Settings | None = None) -> Workspace:
        """A Workspace on a fresh SQLite connection, for one request or one worker thread; close it after."""
        s = settings or self.settings
        return Workspace(settings=s, db=connect(s.home / "archivist.db"))


_bearer = HTTPBearer(auto_error=False, description="an API key from `archivist keys create --user NAME`")


def create_app(settings: Settings | None = None, max_waiting: int = 16, warm: bool = False) -> FastAPI:
    """The FastAPI app for the workspace of `settings` (default: from the environment).

    max_waiting: generations that may wait behind the running one before new ones get 429.
    warm: load the embedder and the chat model now rather than on the first request.
    Raises WorkspaceError when the workspace cannot be opened.
    """
    settings = settings or Settings.from_env()
    with open_workspace(settings):  # create, migrate, repair FAISS: once, before serving
        pass
    if warm:
        from archivist.models import embedder_for
        from archivist.retrieval.llm import llm_for

        embedder_for(settings)
        llm_for(settings)
    server = Server(settings=settings, queue=GenerationQueue(max_waiting=max_waiting), started=int(time.time()))
    app = FastAPI(title="archivist", version=__version__, dependencies=[Depends(known_query_only)],
                  description="OpenAI-compatible API over your documents: grounded answers with citations.")
    app.state.server = server
    install(app)
    app.add_middleware(UploadLimit, max_bytes=settings.max_file_mb * 2**20)

    def workspace() -> Iterator[Workspace]:
        ws = server.workspace()
        try:
            yield ws
        finally:
            ws.close()

    def user(creds: HTTPAuthorizationCredentials | None = Depends(_bearer), ws: Workspace = Depends(workspace)) -> str:
        from archivist.keys import user_for_key

        if creds is None or not creds.credentials:
            raise APIError(401, "missing API key: send `Authorization: Bearer <key>` (create one with "
                                "`archivist keys create --user NAME`)", "missing_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        name = user_for_key(ws, creds.credentials)
        if name is None:
            raise APIError(401, "invalid API key: unknown, malformed or revoked", "invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        return name

    @app.get("/health", tags=["server"])
    def health() -> dict:
        """Liveness and the generation queue (running, waiting, completed, cancelled). No key needed."""
        return {"status": "ok", "version": __version__, "generation": server.queue.stats()}

    @app.get("/v1/models", response_model=S.ModelList, responses=responses(), tags=["models"])
    def models(ws: Workspace = Depends(workspace), name: str = Depends(user)):
        """The chat models: 'archivist' (the active adapter, else the base), the base model, each adapter
        the caller may use; and the embedder."""
        return {"object": "list", "data": list_models(ws, server.started, name)}

    @app.get("/v1/models/{model_id:path}", response_model=S.Model, responses=responses(404), tags=["models"])
    def model(model_id: str, ws: Workspace = Depends(workspace), name: str = Depends(user)):
        for m in list_models(ws, server.started, name):
            if m["id"] == model_id:
                return m
        raise APIError(404, f"no model {model_id!r} (see GET /v1/models)", "model_not_found", "model")

    from archivist.api.chat import register as register_chat

    register_chat(app, server, workspace, user)

    @app.post("/v1/embeddings", response_model=S.EmbeddingResponse, responses=responses(400, 404), tags=["embeddings"])
    def embeddings(body: S.EmbeddingRequest, _: str = Depends(user)):
        """Embed texts with the workspace's embedder (normalized vectors; `base64` is little-endian float32)."""
        import numpy as np

        from archivist.models import embedder_for

        if body.model != settings.embedder:
            raise APIError(404, f"no embedding model {body.model!r}; this server embeds with {settings.embedder!r}",
                           "model_not_found", "model")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise APIError(400, "input must hold at least one text", "empty_input", "input")
        if len(texts) > S.MAX_INPUTS:
            raise APIError(400, f"input holds {len(texts)} texts; at most {S.MAX_INPUTS} per request", "too_many_inputs", "input")
        if sum(map(len, texts)) > MAX_EMBED_CHARS:
            raise APIError(400, f"input is longer than {MAX_EMBED_CHARS} characters in all; split it", "input_too_long", "input")
        emb = embedder_for(settings)
        if body.dimensions is not None and body.dimensions != emb.dim:
            raise APIError(400, f"{settings.embedder} gives {emb.dim} dimensions, not {body.dimensions}", "bad_dimensions", "dimensions")
        vecs = emb.embed(texts, batch_size=settings.embed_batch)
        tokens = sum(len(ids) for ids in emb.tokenizer(texts, truncation=True, max_length=emb.max_tokens)["input_ids"])
        data = []
        for i, v in enumerate(vecs):
            value = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
                     if body.encoding_format == "base64" else [float(x) for x in v])
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": settings.embedder,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/search", response_model=S.SearchResponse, responses=responses(403, 404), tags=["retrieval"])
    def search_route(body: S.SearchRequest, ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """Ranked passages among the collections the key's user may read (retrieval only, no generation)."""
        from archivist.retrieval.answer import hit_json
        from archivist.retrieval.search import search

        scope = requested_collections(ws, who, body.collection, body.collections)
        hits = search(ws, body.query, k=body.k, user=who, collections=scope, documents=body.documents,
                      kinds=body.kinds, mode=body.mode)
        return {"object": "list", "data": [hit_json(h) for h in hits]}

    @app.get("/v1/documents", response_model=S.DocumentList, responses=responses(403, 404), tags=["documents"])
    def documents(collection: str | None = Query(None), ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """Documents in the collections the key's user may read, newest first."""
        from archivist.ingest.pipeline import list_documents

        requested_collections(ws, who, collection, None)
        return {"object": "list", "data": [document_out(d) for d in list_documents(ws, who, collection)]}

    @app.get("/v1/documents/{doc}", response_model=S.DocumentOut, responses=responses(400, 404), tags=["documents"])
    def document(doc: str, collection: str | None = Query(None), ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """One document by id or name."""
        return document_out(_find(ws, doc, who, collection))

    @app.delete("/v1/documents/{doc}", response_model=S.Deleted, responses=responses(400, 403, 404), tags=["documents"])
    def delete(doc: str, collection: str | None = Query(None), ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """Remove a document (by id or name) from SQLite, FTS5 and FAISS. Needs write access to its collection."""
        from archivist.ingest.pipeline import delete_document

        found = _find(ws, doc, who, collection)
        gone = delete_document(ws, found["id"], who, found["collection"])
        return {"id": gone["id"], "object": "document", "name": gone["name"], "collection": gone["collection"], "deleted": True}

    @app.post("/v1/documents", response_model=S.UploadResult, tags=["documents"],
              responses={**responses(400, 403, 413),
                         202: {"model": S.IngestJob, "description": "with wait=false: the ingestion job, started"}})
    def upload(file: UploadFile = File(..., description="the document: PDF, DOCX, PPTX, XLSX, HTML, Markdown, text, CSV"),
               collection: str | None = Form(None, description="default: the server's default collection"),
               wait: bool = Form(True, description="false: answer 202 with an ingestion job at once "
                                                   "(poll GET /v1/ingest_jobs/{id}) instead of after ingesting"),
               ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """Upload a document and ingest it: saved under the workspace's uploads/, then read, chunked and
        embedded, before the answer (default) or in the background (`wait=false`). A later upload under
        the same name replaces the document."""
        from archivist.ingest.pipeline import ingest_paths
        from archivist.ingest.uploads import UploadError, save_upload

        target = collection or settings.collection
        access.require(ws, who, target, "write")  # before a byte is written
        too_large = APIError(413, f"{file.filename or 'the upload'} is larger than {settings.max_file_mb} MB", "file_too_large", "file")
        if file.size is not None and file.size > settings.max_file_mb * 2**20:
            raise too_large
        try:  # the name is cleaned, the type decided from the bytes, the size counted as it is copied
            path, name = save_upload(ws, file.filename or "upload", file.file, settings.max_file_mb)
        except UploadError as e:
            if "too large" in str(e):
                raise too_large from None
            raise APIError(422, str(e), "rejected_upload", "file") from None
        if not wait:
            job = server.uploads.start(server.workspace, who, target, path, name)
            return JSONResponse(job.out(), status_code=202)
        t0 = time.perf_counter()
        [res] = ingest_paths(ws, [path], collection=target, user=who, names=[name], progress=False)
        if res.status == "failed":
            raise APIError(422, f"{name}: {res.reason}", "unreadable_document", "file")
        return {"object": "document", "id": res.document_id, "name": res.name, "collection": target,
                "status": res.status, "chunks": res.chunks, "seconds": round(time.perf_counter() - t0, 3)}

    @app.get("/v1/ingest_jobs", response_model=S.IngestJobList, responses=responses(), tags=["documents"])
    def ingest_jobs(ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """The background ingestions this server holds, newest first: the caller's own (an admin sees
        everyone's), running ones and the newest 100 finished."""
        return {"object": "list", "data": [j.out() for j in server.uploads.visible(who, access.is_admin(ws, who))]}

    @app.get("/v1/ingest_jobs/{job_id}", response_model=S.IngestJob, responses=responses(404), tags=["documents"])
    def ingest_job(job_id: str, ws: Workspace = Depends(workspace), who: str = Depends(user)):
        """A background ingestion (`POST /v1/documents` with wait=false): running, or how it ended. Only
        the user who uploaded (or an admin) sees it; the server keeps the newest 100 finished jobs."""
        job = server.uploads.get(job_id, who, access.is_admin(ws, who))
        if job is None:
            raise APIError(404, f"no ingestion job {job_id!r}", "job_not_found", "job_id")
        return job.out()

    return app


# -- helpers the routes share -------------------------------------------------------------------


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


def list_models(ws: Workspace, created: int, user: str) -> list[dict]:
    """The models `user` may name, as OpenAI model objects with archivist's `kind`. Adapters trained
    on collections the user may not read are left out (`access.may_use_adapter`); which adapter is
    active is told only when the user may use it."""
    from archivist.access import may_use_adapter

    s = ws.settings
    rows = ws.db.execute("SELECT name, base_model, active, created_at FROM adapters ORDER BY created_at, name").fetchall()
    rows = [r for r in rows if may_use_adapter(ws, user, r["name"])]
    active = next((r["name"] for r in rows if r["active"]), None)
    out = [{"id": DEFAULT_MODEL, "object": "model", "created": created, "owned_by": "archivist", "kind": "chat",
            "base_model": s.llm, "active": True, "adapter": active},
           {"id": s.llm, "object": "model", "created": created, "owned_by": "archivist", "kind": "chat",
            "base_model": None, "active": active is None}]
    for r in rows:
        out.append({"id": r["name"], "object": "model", "created": int(r["created_at"]), "owned_by": "archivist",
                    "kind": "adapter", "base_model": r["base_model"], "active": bool(r["active"])})
    out.append({"id": s.embedder, "object": "model", "created": created, "owned_by": "archivist", "kind": "embedding",
                "base_model": None, "active": True})
    return out


def adapter_for_model(ws: Workspace, model: str) -> str | None:
    """The `adapter=` argument of ask() for a model name: 'active', None (base) or an adapter's name.

    Raises APIError 404 for a name that is none of them.
    """
    if model == DEFAULT_MODEL:
        return "active"
    if model == ws.settings.llm:
        return None
    if ws.db.execute("SELECT 1 FROM adapters WHERE name = ?", (model,)).fetchone():
        return model
    raise APIError(404, f"no model {model!r}: use {DEFAULT_MODEL!r}, {ws.settings.llm!r} or an adapter from GET /v1/models",
                   "model_not_found", "model")


def requested_collections(ws: Workspace, user: str, collection: str | None, collections: list[str] | None) -> list[str] | None:
    """The collections a request names (None: every readable one), each checked for read access.

    A member gets 403 for a collection that is not theirs whether or not it exists, so the API never
    tells which collection names exist; an admin gets 404 for one that does not exist.
    """
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


def _find(ws: Workspace, doc: str, user: str, collection: str | None) -> dict:
    from archivist.ingest.pipeline import find_document

    requested_collections(ws, user, collection, None)
    try:
        return find_document(ws, doc, user, collection)
    except LookupError as e:
        if str(e).startswith("no document"):
            raise APIError(404, f"no document {doc!r} among those you may read", "document_not_found", "doc") from None
        raise APIError(400, str(e), "ambiguous_document", "doc") from None


def document_out(d: dict) -> dict:
    return {"id": d["id"], "object": "document", "name": d["name"], "collection": d["collection"], "kind": d["kind"],
            "pages": d["pages"], "size": d["size"], "chunks": d["chunks"], "status": d["status"],
            "content_hash": d["content_hash"], "added_at": d["added_at"], "updated_at": d["updated_at"]}


class UploadLimit:
    """ASGI middleware: refuse an upload whose Content-Length is over the limit before its body is
    read (the multipart parser would otherwise spool all of it to disk first)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/documents":
            length = dict(scope.get("headers") or []).get(b"content-length")
            slack = 64 * 1024  # multipart framing and the other fields
            if length is not None and length.isdigit() and int(length) > self.max_bytes + slack:
                from fastapi.responses import JSONResponse

                from archivist.api.errors import error_body

                mb = self.max_bytes // 2**20
                body = error_body(413, f"the upload ({int(length) / 2**20:.1f} MB) is larger than {mb} MB", "file_too_large", "file")
                await JSONResponse(body, status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)
