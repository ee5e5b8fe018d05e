"""The OpenAI-compatible HTTP API: a thin shell over the same functions the CLI and the UI call.
`create_app` assembles it; each resource's routes live in a router module of their own:

    GET    /health                    no key needed: status and the generation queue         health.py
    GET    /v1/models                 the base model, 'archivist' (the active adapter), each adapter, the embedder
    GET    /v1/models/{id}            one of them                                             models.py
    POST   /v1/chat/completions       grounded answers with [n] citations                     chat.py
    POST   /v1/embeddings             archivist.models.embedder_for(settings).embed           embeddings.py
    POST   /v1/search                 archivist.retrieval.search.search                       search.py
    GET    /v1/documents              a page (limit, after); POST (multipart `file`, `collection`, `wait`) upload + ingest
    GET    /v1/documents/{doc}        one;   DELETE removes it from SQLite, FTS5 and FAISS     documents.py
    GET    /v1/jobs[/{id}]            the caller's background jobs, a page; POST /v1/jobs/{id}/cancel
    GET    /v1/ingest_jobs[/{id}]     the uploads with wait=false, in their first shape       jobs.py
    GET    /v1/conversations[/{id}]   the caller's own chat conversations and their messages  conversations.py
    POST   /v1/feedback               rate or correct an answer of one's own; GET lists it     feedback.py
    GET    /v1/keys                   the caller's keys; POST makes one, DELETE /v1/keys/{prefix} revokes  keys.py
    GET    /v1/audit[/verify]         the audit log and its hash chain (admins)               audit.py

Every /v1 route needs `Authorization: Bearer <key>` (archivist/keys.py); the key's user is passed as
`user=` to search / ask / list / ingest / delete, so the access checks are those of archivist.access.
What the routers share (the Server record, the workspace and user dependencies) is in deps.py.
CORS is off unless `settings.cors_origins` lists origins (docs/api.md, "Browsers").
"""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI

from archivist import __version__
from archivist.api import audit, chat, conversations, documents, embeddings, feedback, health, jobs, keys, models, search
from archivist.api.deps import Server, known_query_only
from archivist.api.errors import install
from archivist.api.guard import Guard
from archivist.api.queue import GenerationQueue
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings

ROUTERS = (health, models, chat, embeddings, search, documents, jobs, conversations, feedback, keys, audit)  # in this order in the OpenAPI schema


def create_app(settings: Settings | None = None, max_waiting: int = 16, warm: bool = False) -> FastAPI:
    """The FastAPI app for the workspace of `settings` (default: from the environment).

    max_waiting: generations that may wait behind the running one before new ones get 429.
    warm: load the embedder and the chat model now rather than on the first request.
    Raises WorkspaceError when the workspace cannot be opened.
    """
    settings = settings or Settings.from_env()
    with open_checked(settings):  # create, migrate, repair FAISS: once, before serving
        pass
    if warm:
        from archivist.models import embedder_for
        from archivist.retrieval.llm import llm_for

        embedder_for(settings)
        llm_for(settings)
    app = FastAPI(title="archivist", version=__version__, dependencies=[Depends(known_query_only)],
                  description="OpenAI-compatible API over your documents: grounded answers with citations.")
    app.state.server = server = Server(settings=settings, queue=GenerationQueue(max_waiting=max_waiting, concurrency=generation_slots(settings), per_user=settings.max_queued_per_user), started=int(time.time()))
    install(app)
    app.add_middleware(Guard, server=server)  # the key, then the body's size, before the body is read
    if settings.cors_origin_list:  # outside the Guard: a browser's preflight carries no key
        from starlette.middleware.cors import CORSMiddleware

        # Keys travel in the Authorization header, never in cookies: no credentials mode is needed,
        # and the listed origins alone may read the answers.
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Retry-After"], max_age=600)
    for module in ROUTERS:
        app.include_router(module.router)
    return app


def generation_slots(settings: Settings) -> int:
    """Generations run at once: one in-process (the model is one object using every core), and
    settings.llm_parallel against an LLM server, which batches them itself."""
    return settings.llm_parallel if settings.llm_url else 1
