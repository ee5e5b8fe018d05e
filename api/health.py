"""GET /health: liveness, the generation queue and the chat model's server; the one route that
needs no key."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends

from archivist import __version__
from archivist.api.deps import Server, server
from archivist.retrieval.llm_remote import server_state

router = APIRouter(tags=["server"])


@router.get("/health")
def health(srv: Server = Depends(server)) -> dict:
    """Liveness, the generation queue (running, waiting, completed, cancelled) and where answers
    are generated: `llm` is "in-process", or the state of the `ARCHIVIST_LLM_URL` server
    ("reachable" / "unreachable"). With that server unreachable and no local fallback, chat
    cannot answer: `status` is "degraded" (HTTP 200 still: the process itself is alive; search,
    documents and extractive answers work). No key needed, so the server's address is not named."""
    s = srv.settings
    llm = server_state(s.llm_url) if s.llm_url else "in-process"
    status = "degraded" if llm == "unreachable" and s.llm_fallback != "local" else "ok"
    # worker: this process's id; `archivist serve --workers N` runs N of them behind one port
    return {"status": status, "version": __version__, "worker": os.getpid(), "llm": llm,
            "generation": srv.queue.stats()}
